//! Rendezvous (highest-random-weight) assignment of shards to live cluster members.
//! Every node computes the same owners from the same member list without talking to
//! the others, and a join or leave moves only the ~1/N of shards that the changed node
//! gains or loses, which keeps handoffs (and their lease churn in redis) small.

use sha2::{Digest, Sha256};

/// Domain separation: versioned so that a future change of scheme cannot silently
/// produce a mixed-version cluster that disagrees on owners.
const DOMAIN: &[u8] = b"kofu-rdv-v1\0";

/// Weight of (shard, node): highest wins. Stable across processes and versions: SHA-256 of "kofu-rdv-v1\0" || shard (u32 BE) || node id bytes, first 8 bytes as u64 BE.
pub fn weight(shard: u32, node_id: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(DOMAIN)
        .chain_update(shard.to_be_bytes())
        .chain_update(node_id.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The owner of `shard` among `nodes` (ties broken by node id), None if `nodes` is empty.
///
/// Ranking by the (weight, id) pair rather than weight alone makes the result a total
/// order, so it cannot depend on the order in which members were listed even in the
/// (astronomically unlikely) event of equal weights.
pub fn owner<'a>(shard: u32, nodes: &[&'a str]) -> Option<&'a str> {
    nodes
        .iter()
        .copied()
        .max_by_key(|&node| (weight(shard, node), node))
}

/// Owners of all shards 0..shard_count, index = shard.
pub fn assign<'a>(shard_count: u32, nodes: &[&'a str]) -> Vec<Option<&'a str>> {
    (0..shard_count).map(|shard| owner(shard, nodes)).collect()
}

/// Shards whose owner differs between two assignments.
///
/// Assignments of different lengths are compared over the longer one, a missing entry
/// counting as unowned: a shard that exists on one side only has changed hands.
pub fn moved(before: &[Option<&str>], after: &[Option<&str>]) -> Vec<u32> {
    let len = before.len().max(after.len());
    (0..len)
        .filter(|&i| before.get(i).copied().flatten() != after.get(i).copied().flatten())
        // Shard numbers are u32 by construction (`assign`), so longer slices cannot
        // come from this module; stop rather than wrap if a caller builds one.
        .map_while(|i| u32::try_from(i).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const SHARDS: u32 = 1024;

    fn count(assignment: &[Option<&str>], node: &str) -> usize {
        assignment.iter().filter(|o| **o == Some(node)).count()
    }

    /// Pinned values (computed independently with Python's hashlib) guard the wire-level
    /// stability promise: changing them would reshuffle shards in a rolling upgrade.
    #[test]
    fn weight_is_pinned() {
        assert_eq!(weight(0, "node-a"), 0x2622_77c1_7505_d296);
        assert_eq!(weight(7, "node-b"), 0x8e46_c500_781c_a891);
        assert_eq!(weight(u32::MAX, ""), 0x02e9_85ea_561c_d226);
    }

    #[test]
    fn deterministic_and_order_independent() {
        let a = assign(SHARDS, &["n1", "n2", "n3"]);
        assert_eq!(a, assign(SHARDS, &["n1", "n2", "n3"]));
        assert_eq!(a, assign(SHARDS, &["n3", "n1", "n2"]));
        assert_eq!(a, assign(SHARDS, &["n2", "n3", "n1"]));
        assert!(a.iter().all(Option::is_some));
    }

    #[test]
    fn duplicates_do_not_change_the_owner() {
        assert_eq!(
            assign(SHARDS, &["n1", "n2", "n3"]),
            assign(SHARDS, &["n1", "n2", "n2", "n3", "n1"])
        );
    }

    #[test]
    fn balanced_over_three_nodes() {
        let nodes = ["n1", "n2", "n3"];
        let a = assign(SHARDS, &nodes);
        let ideal = f64::from(SHARDS) / 3.0;
        for node in nodes {
            let got = count(&a, node) as f64;
            assert!(
                (got - ideal).abs() <= ideal * 0.15,
                "{node} owns {got} shards, ideal {ideal:.0}"
            );
        }
    }

    #[test]
    fn join_moves_about_a_quarter_all_to_the_newcomer() {
        let before = assign(SHARDS, &["n1", "n2", "n3"]);
        let after = assign(SHARDS, &["n1", "n2", "n3", "n4"]);
        let m = moved(&before, &after);
        for &shard in &m {
            assert_eq!(after[shard as usize], Some("n4"), "shard {shard}");
        }
        assert_eq!(m.len(), count(&after, "n4"));
        let share = m.len() as f64 / f64::from(SHARDS);
        assert!((0.20..=0.30).contains(&share), "moved share {share}");
    }

    #[test]
    fn leave_moves_only_the_leavers_shards() {
        let before = assign(SHARDS, &["n1", "n2", "n3", "n4"]);
        let after = assign(SHARDS, &["n1", "n3", "n4"]);
        let m = moved(&before, &after);
        for &shard in &m {
            assert_eq!(before[shard as usize], Some("n2"), "shard {shard}");
        }
        assert_eq!(m.len(), count(&before, "n2"));
        assert!(!m.is_empty());
    }

    #[test]
    fn no_nodes_no_owners() {
        assert_eq!(owner(3, &[]), None);
        let a = assign(16, &[]);
        assert_eq!(a.len(), 16);
        assert!(a.iter().all(Option::is_none));
        assert!(assign(0, &["n1"]).is_empty());
    }

    #[test]
    fn moved_handles_unequal_lengths() {
        let a = [Some("n1"), Some("n2")];
        let b = [Some("n1"), Some("n3"), None, Some("n1")];
        assert_eq!(moved(&a, &b), vec![1, 3]);
        assert_eq!(moved(&b, &a), vec![1, 3]);
        assert!(moved(&a, &a).is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A join or leave may only move shards to or from the node that changed.
        #[test]
        fn only_the_changed_node_gains_or_loses(
            ids in prop::collection::btree_set("[a-z0-9-]{1,12}", 1..8),
            pick in any::<prop::sample::Index>(),
        ) {
            let ids: Vec<String> = ids.into_iter().collect();
            let changed = ids[pick.index(ids.len())].as_str();
            let all: Vec<&str> = ids.iter().map(String::as_str).collect();
            let rest: Vec<&str> = all.iter().copied().filter(|n| *n != changed).collect();
            let with = assign(256, &all);
            let without = assign(256, &rest);

            let joined = moved(&without, &with);
            for &shard in &joined {
                prop_assert_eq!(with[shard as usize], Some(changed));
            }
            prop_assert_eq!(joined.len(), count(&with, changed));

            // Leaving is the same pair read the other way round.
            let left = moved(&with, &without);
            prop_assert_eq!(&left, &joined);
            for &shard in &left {
                prop_assert_eq!(with[shard as usize], Some(changed));
            }

            let owners: BTreeSet<&str> = with.iter().flatten().copied().collect();
            prop_assert!(owners.iter().all(|o| all.contains(o)));
        }
    }
}
