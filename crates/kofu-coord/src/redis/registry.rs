//! The registry of authoritative records on Redis: one MessagePack value per card under
//! its shard's hash tag, changed only by compare-and-set so that concurrent admin
//! updates of one record never lose each other (I4).
//!
//! Freshness: every read and write goes to the primary that holds the record's slot
//! (never a replica), and `revoke_seal` resolves only after that primary acknowledged
//! the write, so every later `record` call, from any connection of any node, reads the
//! revoked record.
//!
//! Durability: with replicas configured (Sentinel), a change (revocation, address
//! update, load) resolves `Ok` only once `WAIT` reports the replicas have it, so a
//! failover cannot lose an acknowledged revocation; otherwise it answers `Unavailable`
//! and a retry converges (a second revocation finds the first and, once the replicas
//! have it too, answers `AlreadyRevoked`).
//!
//! History: a change keeps the superseded version under `rec:<digest>@<version>` for the
//! history TTL, so a delivered document re-renders from the record it was made from.

use std::sync::Arc;

use futures::FutureExt as _;
use kofu_core::records::{Date, ResidentRecord, Seal};
use kofu_proto::CardId;

use std::time::Duration;

use super::call::{Call, REPLICA_WAIT, not_replicated};
use super::{RedisConn, bad_reply, keys, millis, reply_int, scripts, unavailable};
use crate::{DEFAULT_HISTORY_TTL, Registry, RevokeOutcome, StoreError, StoreFuture};

/// Compare-and-set attempts before giving up: each lost round means another admin write
/// to the same record landed in between, which is rare, so a few suffice.
pub(super) const CAS_ATTEMPTS: u32 = 32;
/// Records per pipelined round trip during a bulk load.
const LOAD_BATCH: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum RegistrySetupError {
    #[error("registry was loaded with {stored} shards, this node is configured with {configured}")]
    ShardCountMismatch { stored: u32, configured: u32 },
    #[error(
        "the registry holds the fixture population {stored}; a registry file is imported only into a registry without one"
    )]
    FixturePopulation { stored: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct RedisRegistry {
    pub(super) conn: RedisConn,
    pub(super) shard_count: u32,
    /// Replicas that must hold a change before it is acknowledged (as the store's).
    pub(super) replicas: u32,
    /// How long a superseded record version stays readable.
    pub(super) history_ttl: Duration,
}

impl std::fmt::Debug for RedisRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRegistry")
            .field("shard_count", &self.shard_count)
            .finish_non_exhaustive()
    }
}

pub(super) fn encode(record: &ResidentRecord) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(record)
        .map_err(|_| StoreError::Unavailable("cannot encode a registry record".into()))
}

/// The decoder's message could quote the record's content, so it is dropped (I6).
pub(super) fn decode(digest: &[u8; 32], bytes: &[u8]) -> Result<ResidentRecord, StoreError> {
    let record: ResidentRecord = rmp_serde::from_slice(bytes)
        .map_err(|_| StoreError::Corrupt("registry record does not decode".into()))?;
    if record.card_id.digest_bytes() != *digest {
        return Err(StoreError::Corrupt(
            "registry record belongs to another card".into(),
        ));
    }
    Ok(record)
}

impl RedisRegistry {
    pub fn new(conn: RedisConn, shard_count: u32) -> RedisRegistry {
        RedisRegistry {
            conn,
            shard_count,
            replicas: 0,
            history_ttl: DEFAULT_HISTORY_TTL,
        }
    }

    /// Requires `n` replicas to acknowledge every change before it resolves `Ok`
    /// (Sentinel setups); unacknowledged changes answer `Unavailable`.
    pub fn with_replicas(mut self, n: u32) -> RedisRegistry {
        self.replicas = n;
        self
    }

    /// Keeps superseded record versions for `ttl`: at least the session hard limit plus
    /// a margin, or a delivered document could not be fetched again after a change.
    pub fn with_history_ttl(mut self, ttl: Duration) -> RedisRegistry {
        self.history_ttl = ttl;
        self
    }

    /// Records the shard count on first use and refuses a different one afterwards: a
    /// node with another count would look every card up under the wrong shard.
    pub async fn check_shard_count(&self) -> Result<(), RegistrySetupError> {
        let mut conn = self.conn.manager();
        let (_, stored): (Option<String>, Option<String>) = ::redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(keys::META_SHARD_COUNT)
            .arg(self.shard_count)
            .arg("NX")
            .cmd("GET")
            .arg(keys::META_SHARD_COUNT)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let stored: u32 = stored
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| StoreError::Corrupt("stored shard count is malformed".into()))?;
        if stored != self.shard_count {
            return Err(RegistrySetupError::ShardCountMismatch {
                stored,
                configured: self.shard_count,
            });
        }
        Ok(())
    }

    /// The population label stored by a completed load, if any.
    pub async fn loaded_population(&self) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.manager();
        ::redis::cmd("GET")
            .arg(keys::META_POPULATION)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))
    }

    /// Marks the load of population `label` complete; written after the records, so an
    /// interrupted load is simply run again.
    pub async fn mark_population(&self, label: &str) -> Result<(), StoreError> {
        self.set_label(label, true, "population mark").await
    }

    /// Stores the registry's label (only if none is there, with `only_new`) and waits
    /// for a replica to have it: lost in a failover, a label would let a second load or
    /// an import undo later changes.
    pub(super) async fn set_label(
        &self,
        label: &str,
        only_new: bool,
        what: &'static str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.manager();
        let mut pipe = ::redis::pipe();
        let set = pipe.cmd("SET").arg(keys::META_POPULATION).arg(label);
        if only_new {
            set.arg("NX");
        }
        set.ignore();
        pipe.cmd("WAIT")
            .arg(self.replicas)
            .arg(millis(REPLICA_WAIT));
        let (acked,): (i64,) = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        if acked < i64::from(self.replicas) {
            return Err(not_replicated(what));
        }
        Ok(())
    }

    /// Writes every record (replacing what is stored), pipelined; returns how many.
    pub async fn load(
        &self,
        records: impl IntoIterator<Item = ResidentRecord>,
    ) -> Result<usize, RegistrySetupError> {
        self.check_shard_count().await?;
        let mut conn = self.conn.manager();
        let mut total = 0;
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let mut pipe = ::redis::pipe();
            for record in records.by_ref().take(LOAD_BATCH) {
                pipe.cmd("SET")
                    .arg(keys::record(&record.card_id, self.shard_count))
                    .arg(encode(&record)?)
                    .ignore();
                total += 1;
            }
            // In the batch's pipeline, on the connection that wrote it (see `call`).
            if self.replicas > 0 {
                pipe.cmd("WAIT")
                    .arg(self.replicas)
                    .arg(millis(REPLICA_WAIT));
            } else {
                pipe.cmd("PING");
            }
            let (acked,): (::redis::Value,) = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
            if self.replicas > 0 && reply_int(&acked).is_none_or(|n| n < i64::from(self.replicas)) {
                return Err(not_replicated("registry load").into());
            }
        }
        Ok(total)
    }

    async fn read(
        &self,
        digest: &[u8; 32],
    ) -> Result<Option<(Vec<u8>, ResidentRecord)>, StoreError> {
        self.read_key(digest, keys::record_by_digest(digest, self.shard_count))
            .await
    }

    async fn read_key(
        &self,
        digest: &[u8; 32],
        key: String,
    ) -> Result<Option<(Vec<u8>, ResidentRecord)>, StoreError> {
        let mut conn = self.conn.manager();
        let bytes: Option<Vec<u8>> = ::redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        match bytes {
            None => Ok(None),
            Some(bytes) => {
                let record = decode(digest, &bytes)?;
                Ok(Some((bytes, record)))
            }
        }
    }

    pub async fn record_at_now(
        &self,
        digest: &[u8; 32],
        version: u64,
    ) -> Result<Option<ResidentRecord>, StoreError> {
        match self.read(digest).await? {
            Some((_, current)) if current.version == version => return Ok(Some(current)),
            // Versions only grow: a later one was never stored.
            Some((_, current)) if current.version < version => return Ok(None),
            _ => {}
        }
        let key = keys::record_version(digest, self.shard_count, version);
        let old = self.read_key(digest, key).await?;
        match old {
            Some((_, r)) if r.version != version => Err(StoreError::Corrupt(
                "a kept record version holds another version".into(),
            )),
            other => Ok(other.map(|(_, r)| r)),
        }
    }

    /// Writes the record's current bytes again and waits for the replicas: an answer
    /// derived from a record (an earlier, unacknowledged revocation found again) is
    /// given only once the replicas have that record.
    async fn confirm(
        &self,
        key: &str,
        bytes: &[u8],
        digest: &[u8; 32],
        version: u64,
    ) -> Result<(), StoreError> {
        if self.replicas == 0 {
            return Ok(());
        }
        let mut conn = self.conn.manager();
        let mut call = Call::new(&scripts::CAS_SCRIPT);
        call.key(key)
            .key(keys::record_version(digest, self.shard_count, version))
            .arg(bytes)
            .arg(bytes)
            .arg(millis(self.history_ttl));
        let (_, acked) = call
            .run_replicated(&mut conn, self.replicas)
            .await
            .map_err(|e| unavailable(&e))?;
        if acked {
            Ok(())
        } else {
            Err(not_replicated("registry record"))
        }
    }

    /// Reads the record, derives the next one with `change` and stores it only if the
    /// record did not change meanwhile, retrying otherwise. `Ok(None)`: unknown card;
    /// `Ok(Some((current, None)))`: `change` declined, nothing written.
    async fn update(
        &self,
        card: &CardId,
        change: impl Fn(&ResidentRecord) -> Option<ResidentRecord>,
    ) -> Result<Option<(ResidentRecord, Option<ResidentRecord>)>, StoreError> {
        let digest = card.digest_bytes();
        let key = keys::record_by_digest(&digest, self.shard_count);
        for _ in 0..CAS_ATTEMPTS {
            let Some((old_bytes, current)) = self.read(&digest).await? else {
                return Ok(None);
            };
            let Some(next) = change(&current) else {
                self.confirm(&key, &old_bytes, &digest, current.version)
                    .await?;
                return Ok(Some((current, None)));
            };
            let mut conn = self.conn.manager();
            let mut call = Call::new(&scripts::CAS_SCRIPT);
            call.key(&key)
                .key(keys::record_version(
                    &digest,
                    self.shard_count,
                    current.version,
                ))
                .arg(old_bytes)
                .arg(encode(&next)?)
                .arg(millis(self.history_ttl));
            let (reply, acked) = call
                .run_replicated(&mut conn, self.replicas)
                .await
                .map_err(|e| unavailable(&e))?;
            match reply_int(&reply) {
                Some(1) if acked => return Ok(Some((current, Some(next)))),
                Some(1) => return Err(not_replicated("registry change")),
                Some(0) => continue,
                _ => return Err(bad_reply("record update")),
            }
        }
        Err(StoreError::Unavailable(
            "registry record kept changing during the update".into(),
        ))
    }

    pub async fn revoke_seal_now(
        &self,
        card: &CardId,
        on: Date,
    ) -> Result<RevokeOutcome, StoreError> {
        Ok(
            match self.update(card, |r| r.with_seal_revoked(on)).await? {
                None => RevokeOutcome::UnknownCard,
                Some((_, Some(next))) => RevokeOutcome::Revoked {
                    record_version: next.version,
                },
                Some((current, None)) => match current.seal {
                    Seal::Revoked { .. } => RevokeOutcome::AlreadyRevoked {
                        record_version: current.version,
                    },
                    Seal::NotRegistered | Seal::Registered { .. } => RevokeOutcome::NotRegistered,
                },
            },
        )
    }

    pub async fn update_address_now(
        &self,
        card: &CardId,
        address: String,
    ) -> Result<Option<u64>, StoreError> {
        let updated = self
            .update(card, |r| Some(r.with_address(address.clone())))
            .await?;
        Ok(updated.and_then(|(_, next)| next).map(|r| r.version))
    }
}

impl Registry for RedisRegistry {
    fn record(&self, card: &CardId) -> StoreFuture<Option<Arc<ResidentRecord>>> {
        self.record_by_digest(card.digest_bytes())
    }

    fn record_by_digest(&self, card_digest: [u8; 32]) -> StoreFuture<Option<Arc<ResidentRecord>>> {
        let registry = self.clone();
        async move { Ok(registry.read(&card_digest).await?.map(|(_, r)| Arc::new(r))) }.boxed()
    }

    fn record_at(
        &self,
        card_digest: [u8; 32],
        version: u64,
    ) -> StoreFuture<Option<Arc<ResidentRecord>>> {
        let registry = self.clone();
        async move {
            Ok(registry
                .record_at_now(&card_digest, version)
                .await?
                .map(Arc::new))
        }
        .boxed()
    }

    fn revoke_seal(&self, card: &CardId, on: Date) -> StoreFuture<RevokeOutcome> {
        let (registry, card) = (self.clone(), card.clone());
        async move { registry.revoke_seal_now(&card, on).await }.boxed()
    }

    fn update_address(&self, card: &CardId, address: String) -> StoreFuture<Option<u64>> {
        let (registry, card) = (self.clone(), card.clone());
        async move { registry.update_address_now(&card, address).await }.boxed()
    }
}
