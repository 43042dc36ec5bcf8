//! The Redis backend: a takeover is the lease scripts' handoff (the owner releases its
//! lease, another node acquires the shard at a higher epoch), and audit records are read
//! back from the shard's audit stream. Each node has its own store (a fence is valid
//! only in the store of the node that holds it), so the suite's store hands each call to
//! the store of the node the fence was granted to.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kofu_coord::conformance::Backend;
use kofu_coord::conformance::fixtures::SHARDS;
use kofu_coord::redis::{RedisConn, RedisLeases, RedisRegistry, RedisStore, connect};
use kofu_coord::{
    Applied, AuditRecord, Change, Fence, FencedStore, Loaded, Registry, SessionCursor, SessionPage,
    StoreFuture,
};
use kofu_core::records::ResidentRecord;
use kofu_proto::CertKind;
use kofu_proto::SessionId;
use kofu_testkit::RedisServer;
use parking_lot::Mutex;

const LEASE: Duration = Duration::from_secs(60);
const STATE_TTL: Duration = Duration::from_secs(600);

pub struct Redis {
    server: RedisServer,
    conn: RedisConn,
    leases: RedisLeases,
    store: Arc<Nodes>,
    /// Each shard's owner (node id) and fence.
    owners: Mutex<HashMap<u32, (String, Fence)>>,
    takeovers: Mutex<u32>,
}

/// Every node's store, and which node each fence was granted to.
struct Nodes {
    conn: RedisConn,
    stores: Mutex<HashMap<String, RedisStore>>,
    granted: Mutex<HashMap<Fence, String>>,
}

impl Nodes {
    fn grant(&self, fence: Fence, node: &str) {
        self.granted.lock().insert(fence, node.to_owned());
    }

    /// The store of the node `fence` was granted to (`node-0` for a fence never granted).
    fn of(&self, fence: Fence) -> RedisStore {
        let node = self.granted.lock().get(&fence).cloned();
        let node = node.unwrap_or_else(|| "node-0".into());
        self.stores
            .lock()
            .entry(node.clone())
            .or_insert_with(|| RedisStore::new(self.conn.clone(), node, STATE_TTL))
            .clone()
    }
}

impl FencedStore for Nodes {
    fn apply(&self, fence: Fence, session: SessionId, change: Change) -> StoreFuture<Applied> {
        self.of(fence).apply(fence, session, change)
    }

    fn load_session(&self, fence: Fence, session: SessionId) -> StoreFuture<Option<Loaded>> {
        self.of(fence).load_session(fence, session)
    }

    fn list_sessions(&self, fence: Fence, at: SessionCursor, n: usize) -> StoreFuture<SessionPage> {
        self.of(fence).list_sessions(fence, at, n)
    }
}

impl Backend for Redis {
    async fn start() -> Redis {
        let server = RedisServer::start();
        let conn = connect(&server.url()).await.expect("connect");
        Redis {
            leases: RedisLeases::new(conn.clone()),
            store: Arc::new(Nodes {
                conn: conn.clone(),
                stores: Mutex::new(HashMap::new()),
                granted: Mutex::new(HashMap::new()),
            }),
            conn,
            server,
            owners: Mutex::new(HashMap::new()),
            takeovers: Mutex::new(0),
        }
    }

    fn store(&self) -> Arc<dyn FencedStore> {
        self.store.clone()
    }

    async fn fence(&self, shard: u32) -> Fence {
        if let Some((_, fence)) = self.owners.lock().get(&shard) {
            return *fence;
        }
        let fence = self.leases.acquire(shard, "node-0", LEASE).await;
        let fence = fence.expect("acquire").expect("a free shard is acquired");
        self.store.grant(fence, "node-0");
        self.owners.lock().insert(shard, ("node-0".into(), fence));
        fence
    }

    async fn take_over(&self, shard: u32) -> Fence {
        let old = self.fence(shard).await;
        let owner = self.owners.lock().get(&shard).map(|(n, _)| n.clone());
        let owner = owner.expect("an owner");
        let released = self.leases.release(old, &owner).await;
        assert!(released.expect("release"), "the owner's lease is released");
        let next = {
            let mut n = self.takeovers.lock();
            *n += 1;
            format!("node-{n}")
        };
        let fence = self.leases.acquire(shard, &next, LEASE).await;
        let fence = fence.expect("acquire").expect("a released shard is free");
        self.store.grant(fence, &next);
        self.owners.lock().insert(shard, (next, fence));
        fence
    }

    async fn audit_records(&self) -> Vec<AuditRecord> {
        let mut conn = self.conn.manager();
        let mut records = Vec::new();
        for shard in 0..SHARDS {
            let entries: Vec<(String, Vec<String>)> = ::redis::cmd("XRANGE")
                .arg(format!("kofu:{{s{shard}}}:audit"))
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .expect("XRANGE");
            records.extend(entries.into_iter().map(|(_, fields)| record(&fields)));
        }
        records
    }

    async fn registry(&self, records: Vec<ResidentRecord>) -> Arc<dyn Registry> {
        let registry = RedisRegistry::new(self.conn.clone(), SHARDS);
        let n = records.len();
        assert_eq!(registry.load(records).await.expect("load"), n);
        Arc::new(registry)
    }

    async fn registry_again(&self) -> Arc<dyn Registry> {
        let conn = connect(&self.server.url()).await.expect("connect");
        Arc::new(RedisRegistry::new(conn, SHARDS))
    }
}

/// An audit stream entry (field, value, field, value, ...) as the record it was made from.
fn record(fields: &[String]) -> AuditRecord {
    let map: HashMap<&str, &str> = fields
        .chunks(2)
        .filter_map(|p| Some((p.first()?.as_str(), p.get(1)?.as_str())))
        .collect();
    let text = |f: &str| -> String { (*map.get(f).unwrap_or_else(|| panic!("no {f}"))).into() };
    let number = |f: &str| -> u64 { text(f).parse().unwrap_or_else(|_| panic!("bad {f}")) };
    let kind = text("kind");
    AuditRecord {
        session_id: text("session_id"),
        job_id: text("job_id"),
        serial: text("serial"),
        kiosk_id: text("kiosk_id"),
        card_digest: text("card_digest"),
        kind: *CertKind::ALL
            .iter()
            .find(|k| k.as_str() == kind)
            .expect("a known kind"),
        copies: u8::try_from(number("copies")).expect("copies"),
        charged_yen: u32::try_from(number("charged_yen")).expect("yen"),
        record_version: number("record_version"),
        printed_at: text("printed_at"),
    }
}

kofu_coord::conformance_tests!(Redis);
