//! The Redis coordinator against a real, private `redis-server` per test: leases and
//! the fenced store in `store`, the registry, the key layout and outages in `registry`,
//! shard ownership across nodes in `coordinator`.

mod coordinator;
mod registry;
mod store;

use std::collections::HashSet;
use std::time::Duration;

use kofu_coord::redis::{
    RedisConn, RedisLeases, RedisRegistry, RedisStore, RegistrySetupError, connect,
};
use kofu_coord::{
    Applied, AuditOutcome, AuditRecord, CardLockOp, Change, Fence, FencedStore, LockOutcome,
    Registry, RevokeOutcome, SnapshotOp, StoreError,
};
use kofu_core::records::{Date, ResidentRecord, Seal};
use kofu_core::{Population, PopulationSpec};
use kofu_proto::{CardId, CertKind, SessionId};
use kofu_testkit::RedisServer;

const SHARDS: u32 = 16;
const LONG: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_millis(500);
const STATE_TTL: Duration = Duration::from_secs(600);

struct Env {
    _server: RedisServer,
    raw: RedisConn,
    leases: RedisLeases,
    store: RedisStore,
}

async fn env() -> Env {
    let server = RedisServer::start();
    let raw = connect(&server.url()).await.expect("connect");
    Env {
        leases: RedisLeases::new(raw.clone()),
        store: RedisStore::new(raw.clone(), STATE_TTL),
        raw,
        _server: server,
    }
}

async fn raw<T: redis::FromRedisValue>(conn: &RedisConn, cmd: &mut redis::Cmd) -> T {
    let mut conn = conn.manager();
    cmd.query_async(&mut conn).await.expect("raw redis command")
}

fn session(shard: u32, n: u8) -> SessionId {
    SessionId::new(shard, [n; 16])
}

fn audit(session: &SessionId, job: &str, card: &CardId) -> AuditRecord {
    AuditRecord {
        session_id: session.to_string(),
        job_id: job.into(),
        serial: "S-1".into(),
        kiosk_id: "SEJ-1".into(),
        card_digest: card.digest(),
        kind: CertKind::Residence,
        copies: 1,
        charged_yen: 300,
        record_version: 1,
        printed_at: "2026-11-21T09:00:00Z".into(),
    }
}

fn card(n: u8) -> CardId {
    CardId::parse(&format!("{n:02X}23456789ABCDEF")).expect("card id")
}

/// Everything a state change can write at once.
fn full_change(session: &SessionId, card: &CardId) -> Change {
    Change {
        snapshot: SnapshotOp::Put(b"snap".to_vec()),
        card_lock: CardLockOp::Acquire {
            card_digest: card.digest_bytes(),
            kiosk_id: "SEJ-1".into(),
        },
        allocate_serial: true,
        audit: Some(audit(session, "j1", card)),
    }
}

fn lock_change(op: CardLockOp) -> Change {
    Change {
        snapshot: SnapshotOp::Keep,
        card_lock: op,
        allocate_serial: false,
        audit: None,
    }
}

fn population() -> Vec<ResidentRecord> {
    Population::generate(&PopulationSpec {
        seed: 11,
        residents: 300,
        kiosks: 1,
    })
    .residents
}

fn pick(records: &[ResidentRecord], f: impl Fn(&Seal) -> bool) -> ResidentRecord {
    records
        .iter()
        .find(|r| f(&r.seal))
        .cloned()
        .expect("the population has such a resident")
}

const ON: Date = Date {
    year: 2026,
    month: 11,
    day: 21,
};
