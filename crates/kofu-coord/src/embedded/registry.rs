//! In-process registry: the synthetic population, updated in place by admin calls, keyed
//! by card digest so that sessions need not keep card ids (I6). Superseded record
//! versions stay readable for the history TTL, so a delivered document re-renders byte
//! for byte after the record changed (I3, I4).

use std::collections::VecDeque;

use foldhash::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use kofu_core::records::{Date, ResidentRecord, Seal};
use kofu_proto::CardId;
use parking_lot::RwLock;
use tokio::time::Instant;

use crate::{DEFAULT_HISTORY_TTL, ImportStats, Registry, RevokeOutcome, StoreFuture};

const BUCKETS: usize = 64;

type Digest = [u8; 32];

#[derive(Debug, Default)]
struct Bucket {
    current: HashMap<Digest, Arc<ResidentRecord>>,
    /// (card, version) → the record as it was, and until when it is kept.
    superseded: HashMap<(Digest, u64), (Arc<ResidentRecord>, Instant)>,
    /// In expiry order (one TTL for all), for pruning at the next write.
    expiries: VecDeque<(Instant, (Digest, u64))>,
}

impl Bucket {
    fn prune(&mut self, now: Instant) {
        while let Some((at, key)) = self.expiries.front() {
            if *at > now {
                return;
            }
            self.superseded.remove(key);
            self.expiries.pop_front();
        }
    }
}

/// Records in buckets so readers on different cores rarely meet on one lock.
#[derive(Debug)]
pub struct EmbeddedRegistry {
    buckets: Vec<RwLock<Bucket>>,
    history_ttl: Duration,
}

impl EmbeddedRegistry {
    pub fn new(records: impl IntoIterator<Item = ResidentRecord>) -> EmbeddedRegistry {
        let mut buckets: Vec<Bucket> = (0..BUCKETS).map(|_| Bucket::default()).collect();
        for r in records {
            let digest = r.card_id.digest_bytes();
            buckets[bucket(&digest)].current.insert(digest, Arc::new(r));
        }
        EmbeddedRegistry {
            buckets: buckets.into_iter().map(RwLock::new).collect(),
            history_ttl: DEFAULT_HISTORY_TTL,
        }
    }

    /// Keeps superseded versions readable for `ttl` (at least the session hard limit
    /// plus a margin, or a delivered document could not be fetched again).
    pub fn with_history_ttl(mut self, ttl: Duration) -> EmbeddedRegistry {
        self.history_ttl = ttl;
        self
    }

    pub fn get(&self, card: &CardId) -> Option<Arc<ResidentRecord>> {
        self.get_by_digest(&card.digest_bytes())
    }

    pub fn get_by_digest(&self, digest: &Digest) -> Option<Arc<ResidentRecord>> {
        self.buckets[bucket(digest)]
            .read()
            .current
            .get(digest)
            .cloned()
    }

    pub fn get_at(&self, digest: &Digest, version: u64) -> Option<Arc<ResidentRecord>> {
        let b = self.buckets[bucket(digest)].read();
        if let Some(current) = b.current.get(digest)
            && current.version == version
        {
            return Some(current.clone());
        }
        b.superseded
            .get(&(*digest, version))
            .filter(|(_, until)| *until > Instant::now())
            .map(|(r, _)| r.clone())
    }

    fn update(
        &self,
        card: &CardId,
        f: impl FnOnce(&ResidentRecord) -> Option<ResidentRecord>,
    ) -> Option<Option<Arc<ResidentRecord>>> {
        let digest = card.digest_bytes();
        let mut b = self.buckets[bucket(&digest)].write();
        let now = Instant::now();
        b.prune(now);
        let current = b.current.get(&digest)?.clone();
        let next = f(&current).map(Arc::new);
        if let Some(n) = &next {
            let key = (digest, current.version);
            let until = now + self.history_ttl;
            b.superseded.insert(key, (current, until));
            b.expiries.push_back((until, key));
            b.current.insert(digest, n.clone());
        }
        Some(next)
    }

    /// Applies a registry file's records (`docs/registry-format.md`, "Re-import"): a
    /// new card is added at version 1, a changed one becomes a new version (the one it
    /// supersedes kept for the history TTL, as after an admin change), an unchanged one
    /// is left alone; an import never undoes a revocation (`ResidentRecord::imported`).
    pub fn import(&self, records: impl IntoIterator<Item = ResidentRecord>) -> ImportStats {
        let mut stats = ImportStats::default();
        for r in records {
            let digest = r.card_id.digest_bytes();
            let mut b = self.buckets[bucket(&digest)].write();
            let Some(current) = b.current.get(&digest).cloned() else {
                b.current
                    .insert(digest, Arc::new(ResidentRecord { version: 1, ..r }));
                stats.added += 1;
                continue;
            };
            let Some(next) = current.imported(&r) else {
                stats.unchanged += 1;
                continue;
            };
            let now = Instant::now();
            b.prune(now);
            let key = (digest, current.version);
            let until = now + self.history_ttl;
            b.superseded.insert(key, (current, until));
            b.expiries.push_back((until, key));
            b.current.insert(digest, Arc::new(next));
            stats.changed += 1;
        }
        stats
    }

    pub fn revoke_seal_now(&self, card: &CardId, on: Date) -> RevokeOutcome {
        let mut prior = None;
        let res = self.update(card, |r| {
            prior = Some((r.seal.clone(), r.version));
            r.with_seal_revoked(on)
        });
        match (res, prior) {
            (None, _) | (_, None) => RevokeOutcome::UnknownCard,
            (Some(Some(r)), _) => RevokeOutcome::Revoked {
                record_version: r.version,
            },
            (Some(None), Some((Seal::Revoked { .. }, version))) => RevokeOutcome::AlreadyRevoked {
                record_version: version,
            },
            (Some(None), Some(_)) => RevokeOutcome::NotRegistered,
        }
    }

    pub fn update_address_now(&self, card: &CardId, address: String) -> Option<u64> {
        self.update(card, |r| Some(r.with_address(address)))
            .flatten()
            .map(|r| r.version)
    }
}

/// Digests are uniformly distributed: the first byte spreads well enough.
fn bucket(digest: &Digest) -> usize {
    usize::from(digest[0]) % BUCKETS
}

impl Registry for EmbeddedRegistry {
    fn record(&self, card: &CardId) -> StoreFuture<Option<Arc<ResidentRecord>>> {
        futures::future::ready(Ok(self.get(card))).boxed()
    }

    fn record_by_digest(&self, card_digest: [u8; 32]) -> StoreFuture<Option<Arc<ResidentRecord>>> {
        futures::future::ready(Ok(self.get_by_digest(&card_digest))).boxed()
    }

    fn record_at(
        &self,
        card_digest: [u8; 32],
        version: u64,
    ) -> StoreFuture<Option<Arc<ResidentRecord>>> {
        futures::future::ready(Ok(self.get_at(&card_digest, version))).boxed()
    }

    fn revoke_seal(&self, card: &CardId, on: Date) -> StoreFuture<RevokeOutcome> {
        futures::future::ready(Ok(self.revoke_seal_now(card, on))).boxed()
    }

    fn update_address(&self, card: &CardId, address: String) -> StoreFuture<Option<u64>> {
        futures::future::ready(Ok(self.update_address_now(card, address))).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kofu_core::{Population, PopulationSpec};

    /// Superseded versions are kept for the history TTL only, so memory follows the
    /// changes of the last TTL, not every change ever made.
    #[test]
    fn superseded_versions_go_after_the_history_ttl() {
        let records = Population::generate(&PopulationSpec {
            seed: 3,
            residents: 10,
            kiosks: 1,
        })
        .residents;
        let ttl = Duration::from_millis(300);
        let registry = EmbeddedRegistry::new(records.clone()).with_history_ttl(ttl);
        let r = &records[0];
        let digest = r.card_id.digest_bytes();
        let next = registry.update_address_now(&r.card_id, "a".into());
        assert_eq!(next, Some(r.version + 1));
        assert_eq!(registry.get_at(&digest, r.version).as_deref(), Some(r));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while registry.get_at(&digest, r.version).is_some() {
            assert!(std::time::Instant::now() < deadline, "never expired");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The next write prunes it from memory.
        registry.update_address_now(&r.card_id, "b".into());
        let held: usize = registry
            .buckets
            .iter()
            .map(|b| b.read().superseded.len())
            .sum();
        assert_eq!(held, 1, "only the version the last change superseded");
    }

    /// A re-import changes only what the file changed, keeps the superseded version
    /// readable and leaves a revocation made meanwhile in force.
    #[test]
    fn imports_apply_changes_as_new_versions() {
        let records = Population::generate(&PopulationSpec {
            seed: 3,
            residents: 50,
            kiosks: 1,
        })
        .residents;
        let registry = EmbeddedRegistry::new(records[..40].to_vec());
        let sealed = records[..40]
            .iter()
            .find(|r| matches!(r.seal, Seal::Registered { .. }))
            .expect("a registered seal");
        let on = Date::ymd(2026, 11, 30);
        assert!(matches!(
            registry.revoke_seal_now(&sealed.card_id, on),
            RevokeOutcome::Revoked { record_version: 2 }
        ));
        let mut file = records.clone();
        let j = usize::from(records[0].card_id == sealed.card_id);
        file[j].address = "〒980-0811 宮城県仙台市青葉区一番町一丁目1番1号".into();
        let stats = registry.import(file.clone());
        assert_eq!(
            stats,
            ImportStats {
                added: 10,
                changed: 1,
                unchanged: 39,
            }
        );
        let digest = file[j].card_id.digest_bytes();
        assert_eq!(registry.get_at(&digest, 1).as_deref(), Some(&records[j]));
        let now = registry.get_by_digest(&digest).expect("known");
        assert_eq!((now.version, &now.address), (2, &file[j].address));
        let revoked = registry.get(&sealed.card_id).expect("known");
        assert!(matches!(revoked.seal, Seal::Revoked { .. }));
        assert_eq!(registry.import(file).total(), 50);
    }
}
