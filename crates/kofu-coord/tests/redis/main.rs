//! The Redis coordinator against a real, private `redis-server` per test: leases, TTLs
//! and the keys of a change in `store`, the registry's setup, key layout and outages in
//! `registry`, shard ownership across nodes in `coordinator`. The rules the Redis store
//! and registry share with the embedded ones are checked by `tests/conformance`.

mod access;
mod audit;
mod coordinator;
mod durability;
mod import;
mod memory;
mod registry;
mod store;
mod threads;

use std::time::Duration;

use kofu_coord::conformance::fixtures::{ON, SHARDS, card, full_change, pick, population, session};
use kofu_coord::redis::{
    RedisConn, RedisLeases, RedisRegistry, RedisStore, RegistrySetupError, connect,
};
use kofu_coord::{Applied, Change, Fence, FencedStore, Registry, RevokeOutcome, StoreError};
use kofu_core::records::Seal;
use kofu_proto::{CardId, SessionId};
use kofu_testkit::RedisServer;

const LONG: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_millis(500);
const STATE_TTL: Duration = Duration::from_secs(600);
/// How often a test looks again at a condition, and the most it waits for it on a busy
/// 2-core CI machine (polled: free when it comes fast).
const POLL: Duration = Duration::from_millis(20);
const WITHIN: Duration = Duration::from_secs(60);

/// A SET and a GET of one key on the connection `conn` hands out here.
async fn round_trip(conn: &RedisConn) {
    let mut m = conn.manager();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut m)
        .await
        .expect("set");
    let v: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut m)
        .await
        .expect("get");
    assert_eq!(v, "v");
}

/// Polls `done` until it holds; fails the test after `WITHIN`.
async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {WITHIN:?}: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

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
        store: RedisStore::new(raw.clone(), "a", STATE_TTL),
        raw,
        _server: server,
    }
}

impl Env {
    /// The store's node takes `shard`'s lease for `ttl`; the fence its writes carry.
    async fn lease(&self, shard: u32, ttl: Duration) -> Fence {
        let fence = self.leases.acquire(shard, "a", ttl).await.expect("acquire");
        fence.expect("lease")
    }
}

async fn raw<T: redis::FromRedisValue>(conn: &RedisConn, cmd: &mut redis::Cmd) -> T {
    let mut conn = conn.manager();
    cmd.query_async(&mut conn).await.expect("raw redis command")
}
