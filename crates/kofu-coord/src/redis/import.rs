//! Importing a registry file into Redis (`kofu registry import`), a batch of records at
//! a time: one `MGET` reads what is stored, each record that the file changes is
//! written by a compare-and-set script that keeps the version it supersedes for the
//! history TTL (as an admin change does, so a delivered document re-renders), and one
//! `WAIT` per batch, in the batch's pipeline, makes the replicas acknowledge it all.
//! A record changed meanwhile by an admin call (a revocation at the counter) fails its
//! compare-and-set and is merged again from what is stored now, so neither write is
//! lost and no revocation is undone (`ResidentRecord::imported`).

use std::sync::LazyLock;

use ::redis::{Script, Value};
use kofu_core::records::ResidentRecord;

use super::call::{REPLICA_WAIT, not_replicated};
use super::registry::{CAS_ATTEMPTS, decode, encode};
use super::{RedisRegistry, RegistrySetupError, bad_reply, keys, millis, reply_int, unavailable};
use crate::{ImportStats, StoreError};

/// Registry labels (`kofu:meta:population`) of imported registries start with this; the
/// rest is the digest of the file last imported. A fixture population's label is
/// `seed=<seed>/residents=<n>`.
pub const IMPORT_LABEL_PREFIX: &str = "import:";

/// Compare-and-set where "absent" is the empty string: a new card is written only if
/// no record appeared meanwhile. The superseded bytes go to the version key.
const IMPORT: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == false then cur = '' end
if cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[1] ~= '' then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
end
return 1
";

static IMPORT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(IMPORT));

/// One record's write: where, what was read, what replaces it.
struct Write<'a> {
    record: &'a ResidentRecord,
    key: String,
    history: String,
    old: Vec<u8>,
    new: Vec<u8>,
}

impl RedisRegistry {
    /// Checks that a file may be imported: the shard count agrees (or is recorded now)
    /// and the registry holds no fixture population. Answers the current label.
    pub async fn check_importable(&self) -> Result<Option<String>, RegistrySetupError> {
        self.check_shard_count().await?;
        match self.loaded_population().await? {
            Some(stored) if !stored.starts_with(IMPORT_LABEL_PREFIX) => {
                Err(RegistrySetupError::FixturePopulation { stored })
            }
            other => Ok(other),
        }
    }

    /// Applies one batch of a file's records (a few thousand at most: they travel in
    /// one pipeline). On `Err` some of the batch may be written and unacknowledged;
    /// importing the file again converges, since unchanged records are left alone.
    pub async fn import_batch(
        &self,
        records: &[ResidentRecord],
    ) -> Result<ImportStats, StoreError> {
        let mut stats = ImportStats::default();
        let mut pending: Vec<&ResidentRecord> = records.iter().collect();
        for _ in 0..CAS_ATTEMPTS {
            if pending.is_empty() {
                return Ok(stats);
            }
            let writes = self.plan(&pending, &mut stats).await?;
            if writes.is_empty() {
                return Ok(stats);
            }
            pending = self.write(&writes, &mut stats).await?;
        }
        Err(StoreError::Unavailable(
            "registry records kept changing during the import".into(),
        ))
    }

    /// Reads the stored records of `pending` and decides what each needs.
    async fn plan<'a>(
        &self,
        pending: &[&'a ResidentRecord],
        stats: &mut ImportStats,
    ) -> Result<Vec<Write<'a>>, StoreError> {
        let record_keys: Vec<String> = pending
            .iter()
            .map(|r| keys::record(&r.card_id, self.shard_count))
            .collect();
        let mut conn = self.conn.manager();
        let stored: Vec<Option<Vec<u8>>> = ::redis::cmd("MGET")
            .arg(&record_keys)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        if stored.len() != pending.len() {
            return Err(bad_reply("registry import read"));
        }
        let mut writes = Vec::new();
        for ((record, key), stored) in pending.iter().zip(record_keys).zip(stored) {
            let digest = record.card_id.digest_bytes();
            let (old, new, version) = match stored {
                // A new card: the file's record as it is, at version 1.
                None if record.version == 1 => (Vec::new(), encode(record)?, 0),
                None => (
                    Vec::new(),
                    encode(&ResidentRecord {
                        version: 1,
                        ..(*record).clone()
                    })?,
                    0,
                ),
                Some(bytes) => {
                    let current = decode(&digest, &bytes)?;
                    match current.imported(record) {
                        None => {
                            stats.unchanged += 1;
                            continue;
                        }
                        Some(next) => (bytes, encode(&next)?, current.version),
                    }
                }
            };
            writes.push(Write {
                record,
                key,
                history: keys::record_version(&digest, self.shard_count, version),
                old,
                new,
            });
        }
        Ok(writes)
    }

    /// Writes `writes` in one pipeline with one `WAIT`; answers the records whose
    /// compare-and-set lost to a concurrent change, to be planned again.
    async fn write<'a>(
        &self,
        writes: &[Write<'a>],
        stats: &mut ImportStats,
    ) -> Result<Vec<&'a ResidentRecord>, StoreError> {
        let mut pipe = ::redis::pipe();
        // Loaded in the pipeline itself: after a failover the new primary may not
        // know the script, and `SCRIPT LOAD` of a known script costs next to nothing.
        pipe.cmd("SCRIPT").arg("LOAD").arg(IMPORT).ignore();
        let ttl = millis(self.history_ttl);
        for w in writes {
            pipe.cmd("EVALSHA")
                .arg(IMPORT_SCRIPT.get_hash())
                .arg(2)
                .arg(&w.key)
                .arg(&w.history)
                .arg(&w.old)
                .arg(&w.new)
                .arg(ttl);
        }
        if self.replicas > 0 {
            pipe.cmd("WAIT")
                .arg(self.replicas)
                .arg(millis(REPLICA_WAIT));
        }
        let mut conn = self.conn.manager();
        let replies: Vec<Value> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        if replies.len() != writes.len() + usize::from(self.replicas > 0) {
            return Err(bad_reply("registry import"));
        }
        if self.replicas > 0
            && replies
                .last()
                .and_then(reply_int)
                .is_none_or(|n| n < i64::from(self.replicas))
        {
            return Err(not_replicated("registry import"));
        }
        let mut lost = Vec::new();
        for (w, reply) in writes.iter().zip(&replies) {
            match reply_int(reply) {
                Some(1) if w.old.is_empty() => stats.added += 1,
                Some(1) => stats.changed += 1,
                Some(0) => lost.push(w.record),
                _ => return Err(bad_reply("registry import")),
            }
        }
        Ok(lost)
    }

    /// Labels the registry as imported (after every record is written, so an
    /// interrupted import is simply run again); replaces an earlier import's label.
    pub async fn mark_imported(&self, label: &str) -> Result<(), StoreError> {
        self.set_label(label, false, "registry label").await
    }
}
