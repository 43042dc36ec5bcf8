//! The registry of authoritative records on Redis: one MessagePack value per card under
//! its shard's hash tag, changed only by compare-and-set so that concurrent admin
//! updates of one record never lose each other (I4).
//!
//! Freshness: every read and write goes to the primary that holds the record's slot
//! (never a replica), and `revoke_seal` resolves only after that primary acknowledged
//! the write, so every later `record` call, from any connection of any node, reads the
//! revoked record. (A failover to a replica that had not yet received the write could
//! lose it; making that impossible would need `WAIT` and is out of scope here.)

use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use kofu_core::records::{Date, ResidentRecord, Seal};
use kofu_proto::CardId;

use super::{RedisConn, bad_reply, keys, reply_int, scripts, unavailable};
use crate::{Registry, RevokeOutcome, StoreError};

/// Compare-and-set attempts before giving up: each lost round means another admin write
/// to the same record landed in between, which is rare, so a few suffice.
const CAS_ATTEMPTS: u32 = 32;
/// Records per pipelined round trip during a bulk load.
const LOAD_BATCH: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum RegistrySetupError {
    #[error("registry was loaded with {stored} shards, this node is configured with {configured}")]
    ShardCountMismatch { stored: u32, configured: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct RedisRegistry {
    conn: RedisConn,
    shard_count: u32,
}

impl std::fmt::Debug for RedisRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRegistry")
            .field("shard_count", &self.shard_count)
            .finish_non_exhaustive()
    }
}

fn encode(record: &ResidentRecord) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(record)
        .map_err(|_| StoreError::Unavailable("cannot encode a registry record".into()))
}

/// The decoder's message could quote the record's content, so it is dropped (I6).
fn decode(card: &CardId, bytes: &[u8]) -> Result<ResidentRecord, StoreError> {
    let record: ResidentRecord = rmp_serde::from_slice(bytes)
        .map_err(|_| StoreError::Corrupt("registry record does not decode".into()))?;
    if record.card_id != *card {
        return Err(StoreError::Corrupt(
            "registry record belongs to another card".into(),
        ));
    }
    Ok(record)
}

impl RedisRegistry {
    pub fn new(conn: RedisConn, shard_count: u32) -> RedisRegistry {
        RedisRegistry { conn, shard_count }
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
        let mut conn = self.conn.manager();
        ::redis::cmd("SET")
            .arg(keys::META_POPULATION)
            .arg(label)
            .arg("NX")
            .query_async::<Option<String>>(&mut conn)
            .await
            .map(drop)
            .map_err(|e| unavailable(&e))
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
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        Ok(total)
    }

    async fn read(&self, card: &CardId) -> Result<Option<(Vec<u8>, ResidentRecord)>, StoreError> {
        let mut conn = self.conn.manager();
        let bytes: Option<Vec<u8>> = ::redis::cmd("GET")
            .arg(keys::record(card, self.shard_count))
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        match bytes {
            None => Ok(None),
            Some(bytes) => {
                let record = decode(card, &bytes)?;
                Ok(Some((bytes, record)))
            }
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
        let key = keys::record(card, self.shard_count);
        for _ in 0..CAS_ATTEMPTS {
            let Some((old_bytes, current)) = self.read(card).await? else {
                return Ok(None);
            };
            let Some(next) = change(&current) else {
                return Ok(Some((current, None)));
            };
            let mut conn = self.conn.manager();
            let reply: ::redis::Value = scripts::CAS_SCRIPT
                .key(&key)
                .arg(old_bytes)
                .arg(encode(&next)?)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
            match reply_int(&reply) {
                Some(1) => return Ok(Some((current, Some(next)))),
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
    fn record(
        &self,
        card: &CardId,
    ) -> BoxFuture<'static, Result<Option<Arc<ResidentRecord>>, StoreError>> {
        let (registry, card) = (self.clone(), card.clone());
        async move { Ok(registry.read(&card).await?.map(|(_, r)| Arc::new(r))) }.boxed()
    }

    fn revoke_seal(
        &self,
        card: &CardId,
        on: Date,
    ) -> BoxFuture<'static, Result<RevokeOutcome, StoreError>> {
        let (registry, card) = (self.clone(), card.clone());
        async move { registry.revoke_seal_now(&card, on).await }.boxed()
    }

    fn update_address(
        &self,
        card: &CardId,
        address: String,
    ) -> BoxFuture<'static, Result<Option<u64>, StoreError>> {
        let (registry, card) = (self.clone(), card.clone());
        async move { registry.update_address_now(&card, address).await }.boxed()
    }
}
