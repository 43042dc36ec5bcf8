//! Every Redis key kofu uses, in one place. All keys of one shard carry the hash tag
//! `{s<shard>}` so that each script touches a single Redis Cluster slot, and card keys
//! use the hex SHA-256 card digest, never the card id (I6).

use kofu_proto::{CardId, SessionId};

/// Where the shard count the registry was loaded with is kept; records are keyed by
/// `shard_of(card, shard_count)`, so a node with another count would miss them all.
pub const META_SHARD_COUNT: &str = "kofu:meta:shard_count";
/// Which synthetic population was loaded (`seed/residents`), so a second load cannot
/// silently overwrite records that changed since (a revocation would be undone).
pub const META_POPULATION: &str = "kofu:meta:population";

/// The membership keys share one hash tag, so the member list is one `SMEMBERS` plus
/// one `MGET` in a single Redis Cluster slot, whatever else the keyspace holds (a scan
/// of a registry of millions of records every heartbeat would not do).
pub const MEMBERS: &str = "kofu:{m}:members";

/// One node's heartbeat: its `Member` record with a PX ttl (listed in `MEMBERS`).
pub fn member(node_id: &str) -> String {
    format!("kofu:{{m}}:member:{node_id}")
}

fn shard_key(shard: u32, rest: &str) -> String {
    format!("kofu:{{s{shard}}}:{rest}")
}

/// `<node_id>:<epoch>` with a PX ttl: who may write for the shard right now.
pub fn lease(shard: u32) -> String {
    shard_key(shard, "lease")
}

/// The INCR counter the lease epochs come from; never expires, so epochs never repeat.
pub fn epoch(shard: u32) -> String {
    shard_key(shard, "epoch")
}

pub fn serial(shard: u32) -> String {
    shard_key(shard, "serial")
}

pub fn snapshot(shard: u32, session: &SessionId) -> String {
    format!("{}{session}", snapshot_prefix(shard))
}

/// A session's snapshot key without the session id: the listing derives the keys of
/// the sessions it finds in the index from it.
pub fn snapshot_prefix(shard: u32) -> String {
    shard_key(shard, "snap:")
}

pub fn card_lock(shard: u32, card_digest: &[u8; 32]) -> String {
    shard_key(shard, &format!("lock:{}", hex::encode(card_digest)))
}

/// The stream of confirmed prints; only entries an export handed over are ever
/// trimmed from it.
pub fn audit(shard: u32) -> String {
    shard_key(shard, "audit")
}

/// The id of the first entry of `audit(shard)` not known to be exported: every entry
/// before it was handed over by an export. The retention trims only below it.
pub fn audit_exported(shard: u32) -> String {
    shard_key(shard, "audit:exported")
}

/// The `session_id/job_id` pairs audited for one session, for exactly-once charging
/// (I5); it lives as long as the session's snapshot and goes with it.
pub fn audited(shard: u32, session: &SessionId) -> String {
    format!("{}{session}", audited_prefix(shard))
}

pub fn audited_prefix(shard: u32) -> String {
    shard_key(shard, "audited:")
}

/// The shard's open sessions, for the sweep a new owner runs: a sorted set, member the
/// session id, score the writer's clock (ms) when the session's first snapshot was put
/// (informational; entries whose snapshot expired are pruned by the listing).
pub fn sessions(shard: u32) -> String {
    shard_key(shard, "sessions")
}

/// The shard a card's records live in, from its digest alone: the same as
/// `kofu_proto::shard_of` (the first 8 bytes of the SHA-256, big endian, modulo the
/// count), so that no lookup needs the card id (I6).
pub fn shard_of_digest(digest: &[u8; 32], shard_count: u32) -> u32 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    let shard = u64::from_be_bytes(head) % u64::from(shard_count.max(1));
    // Below `shard_count`, a u32.
    u32::try_from(shard).unwrap_or(0)
}

/// A registry record lives in the shard its card belongs to.
pub fn record(card: &CardId, shard_count: u32) -> String {
    record_by_digest(&card.digest_bytes(), shard_count)
}

pub fn record_by_digest(digest: &[u8; 32], shard_count: u32) -> String {
    let shard = shard_of_digest(digest, shard_count);
    shard_key(shard, &format!("rec:{}", hex::encode(digest)))
}

/// A superseded version of a record, kept for the history TTL so that a delivered
/// document re-renders from the record it was made from.
pub fn record_version(digest: &[u8; 32], shard_count: u32, version: u64) -> String {
    format!("{}@{version}", record_by_digest(digest, shard_count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_keys_share_one_hash_tag() {
        let session = SessionId::new(7, [1; 16]);
        for key in [
            lease(7),
            epoch(7),
            serial(7),
            snapshot(7, &session),
            card_lock(7, &[0xab; 32]),
            audit(7),
            audit_exported(7),
            audited(7, &session),
            sessions(7),
            snapshot_prefix(7),
            audited_prefix(7),
        ] {
            assert!(key.starts_with("kofu:{s7}:"), "{key}");
        }
    }

    #[test]
    fn membership_keys_share_one_hash_tag() {
        assert!(MEMBERS.starts_with("kofu:{m}:"));
        assert!(member("node-a").starts_with("kofu:{m}:"));
    }

    #[test]
    fn record_key_holds_the_digest_not_the_id() {
        let card = CardId::parse("0123456789ABCDEF").expect("valid card id");
        let key = record(&card, 16);
        assert!(!key.contains(card.expose()));
        assert!(key.ends_with(&card.digest()));
        let shard = kofu_proto::shard_of(&card, 16);
        assert!(key.starts_with(&format!("kofu:{{s{shard}}}:rec:")));
        let old = record_version(&card.digest_bytes(), 16, 4);
        assert_eq!(old, format!("{key}@4"));
    }

    #[test]
    fn the_shard_of_a_digest_is_the_shard_of_its_card() {
        for n in 0..200u32 {
            let card = CardId::parse(&format!("{n:016X}")).expect("valid card id");
            for count in [1, 7, 16, 1024] {
                assert_eq!(
                    shard_of_digest(&card.digest_bytes(), count),
                    kofu_proto::shard_of(&card, count)
                );
            }
        }
    }
}
