//! In-process registry: the synthetic population, updated in place by admin calls.

use std::collections::HashMap;
use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use kofu_core::records::{Date, ResidentRecord, Seal};
use kofu_proto::CardId;
use parking_lot::RwLock;

use crate::{Registry, RevokeOutcome, StoreError};

const BUCKETS: usize = 64;

/// Records in buckets so readers on different cores rarely meet on one lock.
#[derive(Debug)]
pub struct EmbeddedRegistry {
    buckets: Vec<RwLock<HashMap<CardId, Arc<ResidentRecord>>>>,
}

impl EmbeddedRegistry {
    pub fn new(records: impl IntoIterator<Item = ResidentRecord>) -> EmbeddedRegistry {
        let mut buckets: Vec<HashMap<CardId, Arc<ResidentRecord>>> =
            (0..BUCKETS).map(|_| HashMap::new()).collect();
        for r in records {
            buckets[bucket(&r.card_id)].insert(r.card_id.clone(), Arc::new(r));
        }
        EmbeddedRegistry {
            buckets: buckets.into_iter().map(RwLock::new).collect(),
        }
    }

    pub fn get(&self, card: &CardId) -> Option<Arc<ResidentRecord>> {
        self.buckets[bucket(card)].read().get(card).cloned()
    }

    fn update(
        &self,
        card: &CardId,
        f: impl FnOnce(&ResidentRecord) -> Option<ResidentRecord>,
    ) -> Option<Option<Arc<ResidentRecord>>> {
        let mut map = self.buckets[bucket(card)].write();
        let current = map.get(card)?;
        let next = f(current).map(Arc::new);
        if let Some(n) = &next {
            map.insert(card.clone(), n.clone());
        }
        Some(next)
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

fn bucket(card: &CardId) -> usize {
    let b = card.expose().as_bytes();
    // Card ids are uniformly random hex: the last two digits spread well enough.
    let tail = b.len().saturating_sub(2);
    (b[tail..]
        .iter()
        .fold(0usize, |acc, c| acc * 31 + usize::from(*c)))
        % BUCKETS
}

impl Registry for EmbeddedRegistry {
    fn record(
        &self,
        card: &CardId,
    ) -> BoxFuture<'static, Result<Option<Arc<ResidentRecord>>, StoreError>> {
        futures::future::ready(Ok(self.get(card))).boxed()
    }

    fn revoke_seal(
        &self,
        card: &CardId,
        on: Date,
    ) -> BoxFuture<'static, Result<RevokeOutcome, StoreError>> {
        futures::future::ready(Ok(self.revoke_seal_now(card, on))).boxed()
    }

    fn update_address(
        &self,
        card: &CardId,
        address: String,
    ) -> BoxFuture<'static, Result<Option<u64>, StoreError>> {
        futures::future::ready(Ok(self.update_address_now(card, address))).boxed()
    }
}
