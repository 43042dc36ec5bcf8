//! The Redis backend: a takeover is the lease scripts' handoff (the owner releases its
//! lease, another node acquires the shard at a higher epoch), and audit records are read
//! back from the shard's audit stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kofu_coord::conformance::Backend;
use kofu_coord::conformance::fixtures::SHARDS;
use kofu_coord::redis::{RedisConn, RedisLeases, RedisRegistry, RedisStore, connect};
use kofu_coord::{AuditRecord, Fence, FencedStore, Registry};
use kofu_core::records::ResidentRecord;
use kofu_proto::CertKind;
use kofu_testkit::RedisServer;
use parking_lot::Mutex;

const LEASE: Duration = Duration::from_secs(60);
const STATE_TTL: Duration = Duration::from_secs(600);

pub struct Redis {
    server: RedisServer,
    conn: RedisConn,
    leases: RedisLeases,
    store: Arc<RedisStore>,
    /// Each shard's owner (node id) and fence.
    owners: Mutex<HashMap<u32, (String, Fence)>>,
    takeovers: Mutex<u32>,
}

impl Backend for Redis {
    async fn start() -> Redis {
        let server = RedisServer::start();
        let conn = connect(&server.url()).await.expect("connect");
        Redis {
            leases: RedisLeases::new(conn.clone()),
            store: Arc::new(RedisStore::new(conn.clone(), STATE_TTL)),
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
