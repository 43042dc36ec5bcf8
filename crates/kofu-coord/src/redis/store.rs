//! The fenced store on Redis: each `Change` is one script that checks the fence and then
//! applies the audit record, serial, card lock and snapshot together, so a stale owner
//! writes nothing at all (I2) and a repeated print is never charged twice (I5).

use std::time::Duration;

use ::redis::Value;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use kofu_proto::SessionId;

use super::{RedisConn, bad_reply, keys, millis, reply_int, scripts, unavailable};
use crate::{
    Applied, AuditOutcome, AuditRecord, CardLockOp, Change, Fence, FencedStore, LockOutcome,
    SnapshotOp, StoreError,
};

/// How long a replicated write may wait for its replicas.
const REPLICA_WAIT: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct RedisStore {
    conn: RedisConn,
    /// How long snapshots and card locks outlive their last write: the session hard
    /// limit plus a margin, so an abandoned session cannot pin a card forever.
    state_ttl: Duration,
    /// Replicas that must hold every change before it is acknowledged (`WAIT`), so that
    /// a failover cannot lose a confirmed print, a snapshot or a card lock, nor hand a
    /// serial out twice; 0 with a single Redis.
    replicas: u32,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("state_ttl", &self.state_ttl)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    pub fn new(conn: RedisConn, state_ttl: Duration) -> RedisStore {
        RedisStore {
            conn,
            state_ttl,
            replicas: 0,
        }
    }

    /// Requires `n` replicas to acknowledge every change (Sentinel setups). A change
    /// they do not acknowledge in time answers `Unavailable`: it may or may not survive
    /// a failover, and retrying it is safe (audits are idempotent, serials unused).
    pub fn with_replicas(mut self, n: u32) -> RedisStore {
        self.replicas = n;
        self
    }

    pub async fn apply_now(
        &self,
        fence: Fence,
        session: SessionId,
        change: Change,
    ) -> Result<Applied, StoreError> {
        let shard = fence.shard;
        let session_text = session.to_string();
        let mut invocation = scripts::APPLY_SCRIPT.prepare_invoke();
        invocation
            .key(keys::lease(shard))
            .key(keys::serial(shard))
            .key(keys::audited(shard))
            .key(keys::audit(shard))
            .key(keys::snapshot(shard, &session));
        let (lock_op, kiosk) = match &change.card_lock {
            CardLockOp::None => ("N", ""),
            CardLockOp::Acquire {
                card_digest,
                kiosk_id,
            } => {
                invocation.key(keys::card_lock(shard, card_digest));
                ("A", kiosk_id.as_str())
            }
            CardLockOp::Release { card_digest } => {
                invocation.key(keys::card_lock(shard, card_digest));
                ("R", "")
            }
        };
        let (snapshot_op, snapshot_bytes): (&str, &[u8]) = match &change.snapshot {
            SnapshotOp::Keep => ("K", &[]),
            SnapshotOp::Put(bytes) => ("P", bytes),
            SnapshotOp::Delete => ("D", &[]),
        };
        invocation
            .arg(fence.epoch)
            .arg(&session_text)
            .arg(if change.allocate_serial { "1" } else { "0" })
            .arg(lock_op)
            .arg(kiosk)
            .arg(millis(self.state_ttl))
            .arg(snapshot_op)
            .arg(snapshot_bytes);
        match &change.audit {
            None => {
                invocation.arg("");
            }
            Some(record) => {
                invocation.arg(format!("{}/{}", record.session_id, record.job_id));
                for (field, value) in audit_fields(record) {
                    invocation.arg(field).arg(value);
                }
            }
        }
        let mut conn = self.conn.manager();
        let reply: Value = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let applied = parse_applied(fence, &reply)?;
        if self.replicas > 0 && applied.lock != Some(LockOutcome::InUse) {
            // Not acknowledged until a replica has it: a retry of the same print is a
            // duplicate (never charged twice), and an unacknowledged serial is unused.
            let acked: i64 = ::redis::cmd("WAIT")
                .arg(self.replicas)
                .arg(millis(REPLICA_WAIT))
                .query_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
            if acked < i64::from(self.replicas) {
                return Err(StoreError::Unavailable(
                    "write not replicated in time".into(),
                ));
            }
        }
        Ok(applied)
    }

    pub async fn load_snapshot_now(
        &self,
        fence: Fence,
        session: SessionId,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn.manager();
        let reply: Value = scripts::LOAD_SNAPSHOT_SCRIPT
            .key(keys::lease(fence.shard))
            .key(keys::snapshot(fence.shard, &session))
            .arg(fence.epoch)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let Value::Array(items) = reply else {
            return Err(bad_reply("snapshot load"));
        };
        match items.as_slice() {
            [status] if reply_int(status) == Some(0) => Err(fenced(fence)),
            [status] if reply_int(status) == Some(1) => Ok(None),
            [status, Value::BulkString(bytes)] if reply_int(status) == Some(1) => {
                Ok(Some(bytes.clone()))
            }
            _ => Err(bad_reply("snapshot load")),
        }
    }
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
    let ints: Option<Vec<i64>> = items.iter().map(reply_int).collect();
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
    Ok(Applied {
        serial,
        lock,
        audit,
    })
}

impl FencedStore for RedisStore {
    fn apply(
        &self,
        fence: Fence,
        session: SessionId,
        change: Change,
    ) -> BoxFuture<'static, Result<Applied, StoreError>> {
        let store = self.clone();
        async move { store.apply_now(fence, session, change).await }.boxed()
    }

    fn load_snapshot(
        &self,
        fence: Fence,
        session: SessionId,
    ) -> BoxFuture<'static, Result<Option<Vec<u8>>, StoreError>> {
        let store = self.clone();
        async move { store.load_snapshot_now(fence, session).await }.boxed()
    }
}
