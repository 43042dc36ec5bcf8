//! The fenced store on Redis: each `Change` is one script that checks the fence (the
//! shard's lease is exactly this node's at the fence's epoch) and then applies the audit
//! record, serial, card lock, snapshot and the shard's session index together, so a
//! stale owner writes nothing at all (I2) and a repeated print is never charged twice
//! (I5). With replicas configured, a change is acknowledged only once they have it.

use std::time::Duration;

use ::redis::Value;
use futures::FutureExt as _;
use kofu_proto::SessionId;

use super::call::{Call, not_replicated};
use super::{RedisConn, bad_reply, keys, millis, reply_int, scripts, unavailable};
use crate::{
    Applied, AuditOutcome, AuditRecord, CardLockOp, Change, Fence, FencedStore, Loaded,
    LockOutcome, SessionCursor, SessionPage, SnapshotOp, StoreError, StoreFuture,
};

/// How long the audit stream keeps a confirmed print by default. The stream is the
/// record a checker or an accounting export reads; it must be exported within this.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Clone)]
pub struct RedisStore {
    conn: RedisConn,
    /// This node's id: a fence is valid only while the shard's lease is exactly
    /// `node:epoch` (another node's lease of the same epoch number refuses it).
    node_id: String,
    /// How long snapshots and card locks outlive their last write: the session hard
    /// limit plus a margin, so an abandoned session cannot pin a card forever.
    state_ttl: Duration,
    /// Replicas that must hold every change before it is acknowledged (`WAIT`), so that
    /// a failover cannot lose a confirmed print, a snapshot or a card lock, nor hand a
    /// serial out twice; 0 with a single Redis.
    replicas: u32,
    /// Audit stream entries older than this are trimmed (approximately: whole stream
    /// nodes) by one of the next prints of the shard (about one print in 16 trims).
    audit_retention: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("node_id", &self.node_id)
            .field("state_ttl", &self.state_ttl)
            .field("replicas", &self.replicas)
            .field("audit_retention", &self.audit_retention)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The store of node `node_id` (the id its coordinator acquires leases under).
    pub fn new(conn: RedisConn, node_id: impl Into<String>, state_ttl: Duration) -> RedisStore {
        RedisStore {
            conn,
            node_id: node_id.into(),
            state_ttl,
            replicas: 0,
            audit_retention: DEFAULT_AUDIT_RETENTION,
        }
    }

    /// Requires `n` replicas to acknowledge every change (Sentinel setups). A change
    /// they do not acknowledge in time answers `Unavailable`: it may or may not survive
    /// a failover, and retrying it is safe (audits are idempotent, serials unused).
    pub fn with_replicas(mut self, n: u32) -> RedisStore {
        self.replicas = n;
        self
    }

    /// How long the audit stream keeps a confirmed print once an export handed it over
    /// (default 30 days); a print no export handed over is kept, however old. A session
    /// that ended leaves nothing in Redis but its prints' stream entries, about 235 bytes
    /// each (measured by `tests/redis/memory.rs`): Redis holds about
    /// `235 B x prints per day x retention in days` for the sessions served, plus about
    /// 1 KB per open session (snapshot, audited set, card lock, index entry).
    pub fn with_audit_retention(mut self, retention: Duration) -> RedisStore {
        self.audit_retention = retention;
        self
    }

    fn lease_value(&self, fence: Fence) -> String {
        format!("{}:{}", self.node_id, fence.epoch)
    }

    pub async fn apply_now(
        &self,
        fence: Fence,
        session: SessionId,
        change: Change,
    ) -> Result<Applied, StoreError> {
        let shard = fence.shard;
        let session_text = session.to_string();
        let mut call = Call::new(&scripts::APPLY_SCRIPT);
        call.key(keys::lease(shard))
            .key(keys::serial(shard))
            .key(keys::audited(shard, &session))
            .key(keys::audit(shard))
            .key(keys::snapshot(shard, &session))
            .key(keys::sessions(shard))
            .key(keys::audit_exported(shard));
        let (lock_op, kiosk) = match &change.card_lock {
            CardLockOp::None => ("N", ""),
            CardLockOp::Acquire {
                card_digest,
                kiosk_id,
            } => {
                call.key(keys::card_lock(shard, card_digest));
                ("A", kiosk_id.as_str())
            }
            CardLockOp::Release { card_digest } => {
                call.key(keys::card_lock(shard, card_digest));
                ("R", "")
            }
        };
        let (snapshot_op, snapshot_bytes, tombstone_ttl): (&str, &[u8], u64) =
            match &change.snapshot {
                SnapshotOp::Keep => ("K", &[], 0),
                SnapshotOp::Put(bytes) => ("P", bytes, 0),
                SnapshotOp::Delete => ("D", &[], 0),
                SnapshotOp::Tombstone { bytes, ttl } => ("T", bytes, millis(*ttl)),
            };
        call.arg(self.lease_value(fence))
            .arg(&session_text)
            .arg(if change.allocate_serial { "1" } else { "0" })
            .arg(lock_op)
            .arg(kiosk)
            .arg(millis(self.state_ttl))
            .arg(snapshot_op)
            .arg(snapshot_bytes)
            .arg(tombstone_ttl)
            .arg(millis(self.audit_retention));
        let audit_member = change
            .audit
            .as_ref()
            .map(|r| format!("{}/{}", r.session_id, r.job_id));
        call.arg(audit_member.as_deref().unwrap_or(""))
            .arg(wall_clock_ms());
        if let Some(record) = &change.audit {
            for (field, value) in audit_fields(record) {
                call.arg(field).arg(value);
            }
        }
        let mut conn = self.conn.manager();
        // Not acknowledged until a replica has it: a retry of the same print is a
        // duplicate (never charged twice), and an unacknowledged serial is unused.
        let (reply, acked) = call
            .run_replicated(&mut conn, self.replicas)
            .await
            .map_err(|e| unavailable(&e))?;
        let applied = parse_applied(fence, &reply)?;
        // A refused acquisition wrote nothing: nothing to wait for.
        if !acked && applied.lock != Some(LockOutcome::InUse) {
            return Err(not_replicated("write"));
        }
        Ok(applied)
    }

    pub async fn load_session_now(
        &self,
        fence: Fence,
        session: SessionId,
    ) -> Result<Option<Loaded>, StoreError> {
        let mut conn = self.conn.manager();
        let mut call = Call::new(&scripts::LOAD_SNAPSHOT_SCRIPT);
        call.key(keys::lease(fence.shard))
            .key(keys::snapshot(fence.shard, &session))
            .arg(self.lease_value(fence));
        let reply = call.run(&mut conn).await.map_err(|e| unavailable(&e))?;
        let Value::Array(items) = reply else {
            return Err(bad_reply("snapshot load"));
        };
        match items.as_slice() {
            [status] if reply_int(status) == Some(0) => Err(fenced(fence)),
            [status] if reply_int(status) == Some(1) => Ok(None),
            [status, Value::BulkString(bytes), ttl] if reply_int(status) == Some(1) => {
                // A missing or negative ttl (none set) counts as written just now: the
                // age only ever delays an idle timeout, never brings it forward.
                let left = reply_int(ttl).and_then(|ms| u64::try_from(ms).ok());
                let written_ago = left.map_or(Duration::ZERO, |ms| {
                    self.state_ttl.saturating_sub(Duration::from_millis(ms))
                });
                Ok(Some(Loaded {
                    bytes: bytes.clone(),
                    written_ago,
                }))
            }
            _ => Err(bad_reply("snapshot load")),
        }
    }

    pub async fn list_sessions_now(
        &self,
        fence: Fence,
        cursor: &SessionCursor,
        limit: usize,
    ) -> Result<SessionPage, StoreError> {
        let mut conn = self.conn.manager();
        let mut call = Call::new(&scripts::LIST_SESSIONS_SCRIPT);
        let start = if cursor.0.is_empty() { "0" } else { &cursor.0 };
        call.key(keys::lease(fence.shard))
            .key(keys::sessions(fence.shard))
            .arg(self.lease_value(fence))
            .arg(start)
            .arg(limit.max(1))
            .arg(keys::snapshot_prefix(fence.shard))
            .arg(keys::audited_prefix(fence.shard));
        let reply = call.run(&mut conn).await.map_err(|e| unavailable(&e))?;
        let Value::Array(items) = reply else {
            return Err(bad_reply("session listing"));
        };
        let text = |v: &Value| match v {
            Value::BulkString(b) => std::str::from_utf8(b).ok().map(str::to_owned),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        };
        match items.as_slice() {
            [status] if reply_int(status) == Some(0) => Err(fenced(fence)),
            [status, next, members @ ..] if reply_int(status) == Some(1) => {
                let next = text(next).ok_or_else(|| bad_reply("session listing"))?;
                let sessions = members
                    .iter()
                    .map(|m| text(m).and_then(|t| SessionId::parse(&t).ok()))
                    .collect::<Option<Vec<SessionId>>>()
                    // Never quote what is stored (I6).
                    .ok_or_else(|| StoreError::Corrupt("session index holds a bad id".into()))?;
                Ok(SessionPage {
                    sessions,
                    next: (next != "0").then_some(SessionCursor(next)),
                })
            }
            _ => Err(bad_reply("session listing")),
        }
    }
}

/// This node's clock in ms: the score of a new index entry, which nothing reads (the
/// listing checks the snapshots themselves), so no safety depends on it.
fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn fenced(fence: Fence) -> StoreError {
    StoreError::Fenced {
        shard: fence.shard,
        held: fence.epoch,
    }
}

/// The stream entry of a confirmed print: every field as text, the card only as digest.
fn audit_fields(record: &AuditRecord) -> [(&'static str, String); 10] {
    [
        ("session_id", record.session_id.clone()),
        ("job_id", record.job_id.clone()),
        ("serial", record.serial.clone()),
        ("kiosk_id", record.kiosk_id.clone()),
        ("card_digest", record.card_digest.clone()),
        ("kind", record.kind.as_str().to_owned()),
        ("copies", record.copies.to_string()),
        ("charged_yen", record.charged_yen.to_string()),
        ("record_version", record.record_version.to_string()),
        ("printed_at", record.printed_at.clone()),
    ]
}

fn parse_applied(fence: Fence, reply: &Value) -> Result<Applied, StoreError> {
    let Value::Array(items) = reply else {
        return Err(bad_reply("apply"));
    };
    let (head, rest) = items.split_at(items.len().min(4));
    let ints: Option<Vec<i64>> = head.iter().map(reply_int).collect();
    let ints = ints.ok_or_else(|| bad_reply("apply"))?;
    let [1, serial, lock, audit] = ints.as_slice() else {
        return match ints.as_slice() {
            [0] => Err(fenced(fence)),
            _ => Err(bad_reply("apply")),
        };
    };
    let serial = match *serial {
        -1 => None,
        n => Some(u64::try_from(n).map_err(|_| bad_reply("apply"))?),
    };
    let lock = match *lock {
        0 => None,
        1 => Some(LockOutcome::Acquired),
        2 => Some(LockOutcome::Released),
        3 => Some(LockOutcome::NotHeld),
        4 => Some(LockOutcome::InUse),
        _ => return Err(bad_reply("apply")),
    };
    let audit = match *audit {
        0 => None,
        1 => Some(AuditOutcome::Recorded),
        2 => Some(AuditOutcome::Duplicate),
        _ => return Err(bad_reply("apply")),
    };
    let replaced = match rest.first() {
        Some(Value::BulkString(b)) if !b.is_empty() => Some(
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| SessionId::parse(s).ok())
                .ok_or_else(|| bad_reply("apply"))?,
        ),
        _ => None,
    };
    Ok(Applied {
        serial,
        lock,
        audit,
        replaced,
    })
}

impl FencedStore for RedisStore {
    fn apply(&self, fence: Fence, session: SessionId, change: Change) -> StoreFuture<Applied> {
        let store = self.clone();
        async move { store.apply_now(fence, session, change).await }.boxed()
    }

    fn load_session(&self, fence: Fence, session: SessionId) -> StoreFuture<Option<Loaded>> {
        let store = self.clone();
        async move { store.load_session_now(fence, session).await }.boxed()
    }

    fn list_sessions(&self, fence: Fence, at: SessionCursor, n: usize) -> StoreFuture<SessionPage> {
        let store = self.clone();
        async move { store.list_sessions_now(fence, &at, n).await }.boxed()
    }
}
