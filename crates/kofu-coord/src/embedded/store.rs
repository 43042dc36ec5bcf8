//! In-process fenced store: per-shard state behind its own lock, with the same fence,
//! lock, listing and idempotency rules the Redis scripts enforce. Memory follows the
//! sessions open: confirmed prints go to the audit sink (a file, synced before the print
//! is acknowledged), and what a session leaves behind goes when it ends.

mod shard;
mod sink;

use std::collections::VecDeque;
use std::time::Duration;

use futures::FutureExt as _;
use kofu_proto::SessionId;
use parking_lot::Mutex;
use tokio::time::Instant;

pub use sink::AuditSink;

use crate::{
    Applied, AuditOutcome, AuditRecord, CardLockOp, Change, Fence, FencedStore, Loaded,
    LockOutcome, SessionCursor, SessionPage, SnapshotOp, StoreError, StoreFuture,
};
use shard::ShardState;

/// The recent audit records a memory sink keeps, for tests and inspection; older ones
/// are dropped (the memory sink is not a record of truth).
pub const MEMORY_AUDIT_RECORDS: usize = 4096;

#[derive(Debug)]
pub struct EmbeddedStore {
    shards: Vec<Mutex<ShardState>>,
    sink: AuditSink,
    /// With a memory sink, the latest `MEMORY_AUDIT_RECORDS` records.
    recent: Mutex<VecDeque<AuditRecord>>,
    /// How long a put snapshot lives without another write; `None`: until deleted.
    state_ttl: Option<Duration>,
}

impl EmbeddedStore {
    pub fn new(shard_count: u32, epoch: u64, sink: AuditSink) -> EmbeddedStore {
        EmbeddedStore {
            shards: (0..shard_count)
                .map(|_| Mutex::new(ShardState::new(epoch)))
                .collect(),
            sink,
            recent: Mutex::new(VecDeque::new()),
            state_ttl: None,
        }
    }

    /// Snapshots (and their listing and audit keys) expire `ttl` after their last put,
    /// as the Redis store's do: a session whose actor vanished cannot stay forever.
    pub fn with_state_ttl(mut self, ttl: Duration) -> EmbeddedStore {
        self.state_ttl = Some(ttl);
        self
    }

    /// Moves a shard to a new epoch, as a takeover would; older fences fail from now on.
    pub fn bump_epoch(&self, shard: u32) -> Option<u64> {
        let mut s = self.shards.get(shard as usize)?.lock();
        s.epoch += 1;
        Some(s.epoch)
    }

    /// The latest audit records (at most `MEMORY_AUDIT_RECORDS`) with a memory sink, in
    /// the order written; none with a file sink (the file is the record).
    pub fn audit_records(&self) -> Vec<AuditRecord> {
        self.recent.lock().iter().cloned().collect()
    }

    /// Snapshots held, tombstones included (expired ones go at the shard's next use).
    pub fn snapshot_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().snapshot_count()).sum()
    }

    /// Sessions with audit keys held: never more than those with a snapshot.
    pub fn audited_session_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().audited_sessions())
            .sum()
    }

    /// The shard's state, expired entries dropped, if `fence` is current.
    fn shard(&self, fence: Fence) -> Result<parking_lot::MutexGuard<'_, ShardState>, StoreError> {
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
        s.expire(Instant::now());
        Ok(s)
    }

    pub fn apply_now(
        &self,
        fence: Fence,
        session: SessionId,
        change: Change,
    ) -> Result<Applied, StoreError> {
        let mut s = self.shard(fence)?;
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
            let member = format!("{}/{}", record.session_id, record.job_id);
            if s.audited_before(&session, &member) {
                applied.audit = Some(AuditOutcome::Duplicate);
            } else {
                self.sink.write(&record)?;
                s.mark_audited(session, member);
                if self.sink.is_memory() {
                    let mut recent = self.recent.lock();
                    if recent.len() == MEMORY_AUDIT_RECORDS {
                        recent.pop_front();
                    }
                    recent.push_back(record);
                }
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
                let before = s.card_locks.insert(card_digest, (session, kiosk_id));
                applied.replaced = before.map(|(held, _)| held).filter(|h| *h != session);
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
                let until = self.state_ttl.map(|ttl| Instant::now() + ttl);
                s.put(session, bytes, true, until);
            }
            SnapshotOp::Delete => s.end(&session),
            SnapshotOp::Tombstone { bytes, ttl } => {
                s.put(session, bytes, false, Some(Instant::now() + ttl));
            }
        }
        Ok(applied)
    }

    pub fn list_sessions_now(
        &self,
        fence: Fence,
        cursor: &SessionCursor,
        limit: usize,
    ) -> Result<SessionPage, StoreError> {
        let s = self.shard(fence)?;
        let (sessions, more) = s.list(&cursor.0, limit);
        let next = match sessions.last() {
            Some(last) if more => Some(SessionCursor(last.to_string())),
            _ => None,
        };
        Ok(SessionPage { sessions, next })
    }
}

impl FencedStore for EmbeddedStore {
    fn apply(&self, fence: Fence, session: SessionId, change: Change) -> StoreFuture<Applied> {
        futures::future::ready(self.apply_now(fence, session, change)).boxed()
    }

    fn load_session(&self, fence: Fence, session: SessionId) -> StoreFuture<Option<Loaded>> {
        let res = self
            .shard(fence)
            .map(|s| s.snapshot(&session, Instant::now()));
        futures::future::ready(res).boxed()
    }

    fn list_sessions(&self, fence: Fence, at: SessionCursor, n: usize) -> StoreFuture<SessionPage> {
        futures::future::ready(self.list_sessions_now(fence, &at, n)).boxed()
    }
}

#[cfg(test)]
mod tests;
