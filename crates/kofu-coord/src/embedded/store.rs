//! In-process fenced store: per-shard state behind its own lock, with the same fence,
//! lock and idempotency rules the Redis scripts enforce.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use kofu_proto::SessionId;
use parking_lot::Mutex;

use crate::{
    Applied, AuditOutcome, AuditRecord, CardLockOp, Change, Fence, FencedStore, LockOutcome,
    SnapshotOp, StoreError,
};

/// Where confirmed prints go besides memory. A file sink makes acknowledged records
/// survive a crash of the process (written and flushed before the print is answered).
pub enum AuditSink {
    Memory,
    File(Mutex<BufWriter<File>>),
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditSink::Memory => f.write_str("AuditSink::Memory"),
            AuditSink::File(_) => f.write_str("AuditSink::File"),
        }
    }
}

impl AuditSink {
    pub fn append_to(path: &Path) -> std::io::Result<AuditSink> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AuditSink::File(Mutex::new(BufWriter::new(file))))
    }

    fn write(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let AuditSink::File(w) = self else {
            return Ok(());
        };
        let mut line =
            serde_json::to_vec(record).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        line.push(b'\n');
        let mut w = w.lock();
        w.write_all(&line)
            .and_then(|()| w.flush())
            .map_err(|e| StoreError::Unavailable(format!("audit file: {e}")))
    }
}

#[derive(Debug, Default)]
struct ShardState {
    epoch: u64,
    serial: u64,
    snapshots: HashMap<SessionId, Vec<u8>>,
    /// card digest → (holding session, kiosk)
    card_locks: HashMap<[u8; 32], (SessionId, String)>,
    audited: HashSet<(String, String)>,
    audit: Vec<AuditRecord>,
}

#[derive(Debug)]
pub struct EmbeddedStore {
    shards: Vec<Mutex<ShardState>>,
    sink: AuditSink,
}

impl EmbeddedStore {
    pub fn new(shard_count: u32, epoch: u64, sink: AuditSink) -> EmbeddedStore {
        EmbeddedStore {
            shards: (0..shard_count)
                .map(|_| {
                    Mutex::new(ShardState {
                        epoch,
                        ..ShardState::default()
                    })
                })
                .collect(),
            sink,
        }
    }

    /// Moves a shard to a new epoch, as a takeover would; older fences fail from now on.
    pub fn bump_epoch(&self, shard: u32) -> Option<u64> {
        let mut s = self.shards.get(shard as usize)?.lock();
        s.epoch += 1;
        Some(s.epoch)
    }

    /// Every audit record of every shard, for admin inspection and tests.
    pub fn audit_records(&self) -> Vec<AuditRecord> {
        self.shards
            .iter()
            .flat_map(|s| s.lock().audit.clone())
            .collect()
    }

    pub fn snapshot_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().snapshots.len()).sum()
    }

    pub fn apply_now(
        &self,
        fence: Fence,
        session: SessionId,
        change: Change,
    ) -> Result<Applied, StoreError> {
        let shard = self
            .shards
            .get(fence.shard as usize)
            .ok_or_else(|| StoreError::Unavailable(format!("no shard {}", fence.shard)))?;
        let mut s = shard.lock();
        if s.epoch != fence.epoch {
            return Err(StoreError::Fenced {
                shard: fence.shard,
                held: fence.epoch,
            });
        }
        // A card held by a session of another kiosk stays theirs: nothing is written.
        if let CardLockOp::Acquire {
            card_digest,
            kiosk_id,
        } = &change.card_lock
            && s.card_locks
                .get(card_digest)
                .is_some_and(|(_, k)| k != kiosk_id)
        {
            return Ok(Applied {
                lock: Some(LockOutcome::InUse),
                ..Applied::default()
            });
        }
        let mut applied = Applied::default();
        // The audit write is the only step that can fail after the fence check, so it
        // goes first: a failed change leaves nothing behind.
        if let Some(record) = change.audit {
            let key = (record.session_id.clone(), record.job_id.clone());
            if s.audited.contains(&key) {
                applied.audit = Some(AuditOutcome::Duplicate);
            } else {
                self.sink.write(&record)?;
                s.audited.insert(key);
                s.audit.push(record);
                applied.audit = Some(AuditOutcome::Recorded);
            }
        }
        if change.allocate_serial {
            s.serial += 1;
            applied.serial = Some(s.serial);
        }
        match change.card_lock {
            CardLockOp::None => {}
            CardLockOp::Acquire {
                card_digest,
                kiosk_id,
            } => {
                s.card_locks.insert(card_digest, (session, kiosk_id));
                applied.lock = Some(LockOutcome::Acquired);
            }
            CardLockOp::Release { card_digest } => {
                let held = s.card_locks.get(&card_digest).map(|(h, _)| *h == session);
                applied.lock = Some(if held == Some(true) {
                    s.card_locks.remove(&card_digest);
                    LockOutcome::Released
                } else {
                    LockOutcome::NotHeld
                });
            }
        }
        match change.snapshot {
            SnapshotOp::Keep => {}
            SnapshotOp::Put(bytes) => {
                s.snapshots.insert(session, bytes);
            }
            SnapshotOp::Delete => {
                s.snapshots.remove(&session);
            }
        }
        Ok(applied)
    }
}

impl FencedStore for EmbeddedStore {
    fn apply(
        &self,
        fence: Fence,
        session: SessionId,
        change: Change,
    ) -> BoxFuture<'static, Result<Applied, StoreError>> {
        futures::future::ready(self.apply_now(fence, session, change)).boxed()
    }

    fn load_snapshot(
        &self,
        fence: Fence,
        session: SessionId,
    ) -> BoxFuture<'static, Result<Option<Vec<u8>>, StoreError>> {
        let res = match self.shards.get(fence.shard as usize) {
            None => Err(StoreError::Unavailable(format!("no shard {}", fence.shard))),
            Some(shard) => {
                let s = shard.lock();
                if s.epoch == fence.epoch {
                    Ok(s.snapshots.get(&session).cloned())
                } else {
                    Err(StoreError::Fenced {
                        shard: fence.shard,
                        held: fence.epoch,
                    })
                }
            }
        };
        futures::future::ready(res).boxed()
    }
}

#[cfg(test)]
mod tests;
