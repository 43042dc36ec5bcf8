//! Acknowledged means durable: with a replica required, a lease, a registry change or a
//! session change is reported done only once the replica has it; without the replica it
//! answers `Unavailable`, and a retry once the replica is back converges.

use kofu_coord::Coordinator;
use kofu_coord::redis::RedisCoordinator;
use tokio::time::{Instant, sleep};

use super::*;

/// A primary and one replica in sync with it.
struct Pair {
    primary: RedisServer,
    replica: RedisServer,
    conn: RedisConn,
}

async fn replication(conn: &RedisConn) -> String {
    raw(conn, redis::cmd("INFO").arg("replication")).await
}

/// Retries `op` while it answers `Unavailable` (a replica just back may need a moment
/// before it acknowledges in time on a loaded machine), until `WITHIN`.
async fn once_replicated<T>(what: &str, mut op: impl AsyncFnMut() -> Result<T, StoreError>) -> T {
    let deadline = Instant::now() + WITHIN;
    loop {
        match op().await {
            Ok(v) => return v,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => sleep(POLL).await,
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// A lease on `shard` both servers hold. An acquisition the replica was too slow to
/// acknowledge (a loaded machine) is never used, so it is taken short, left to expire and
/// tried again; once acknowledged it is extended.
async fn acquired_in_sync(leases: &RedisLeases, shard: u32) -> Fence {
    let deadline = Instant::now() + WITHIN;
    loop {
        if let Ok(Some(fence)) = leases.acquire(shard, "a", SHORT).await {
            // A renewal left unacknowledged still ran on the primary: ask again.
            if once_replicated("renew", async || leases.renew(fence, "a", LONG).await).await {
                return fence;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no acknowledged lease on {shard}"
        );
        sleep(POLL).await;
    }
}

impl Pair {
    async fn start() -> Pair {
        let primary = RedisServer::start();
        let replica = RedisServer::start_replica_of(primary.port());
        let conn = connect(&primary.url()).await.expect("connect");
        let pair = Pair {
            primary,
            replica,
            conn,
        };
        pair.wait_in_sync().await;
        pair
    }

    /// Until the replica acknowledges a write (its link being up is not enough: it may
    /// still be loading what the primary sent).
    async fn wait_in_sync(&self) {
        wait_for("the replica acknowledges writes", async || {
            let mut conn = self.conn.manager();
            let acked: Result<(i64,), _> = redis::pipe()
                .cmd("INCR")
                .arg("test:sync")
                .ignore()
                .cmd("WAIT")
                .arg(1)
                .arg(200)
                .query_async(&mut conn)
                .await;
            matches!(acked, Ok((1,)))
        })
        .await;
    }

    /// Kills the replica and waits until the primary has noticed.
    async fn lose_replica(&mut self) {
        self.replica.stop();
        wait_for("the primary sees no replica", async || {
            replication(&self.conn).await.contains("connected_slaves:0")
        })
        .await;
    }

    /// Restarts the (empty) replica and waits until it has synced everything again.
    async fn restore_replica(&mut self) {
        self.replica.start_again();
        self.wait_in_sync().await;
    }

    async fn replica_conn(&self) -> RedisConn {
        connect(&self.replica.url())
            .await
            .expect("connect to replica")
    }
}

#[tokio::test]
async fn a_revocation_not_replicated_is_unavailable_and_its_retry_converges() {
    let mut pair = Pair::start().await;
    let records = population();
    let registry = RedisRegistry::new(pair.conn.clone(), SHARDS).with_replicas(1);
    once_replicated("load", async || {
        match registry.load(records.clone()).await {
            Err(RegistrySetupError::Store(e)) => Err(e),
            other => Ok(other.expect("load")),
        }
    })
    .await;
    let sealed = pick(&records, |s| matches!(s, Seal::Registered { .. }));
    pair.lose_replica().await;
    let res = registry.revoke_seal(&sealed.card_id, ON).await;
    assert!(matches!(res, Err(StoreError::Unavailable(_))), "{res:?}");
    let moved = registry.update_address(&sealed.card_id, "x".into()).await;
    assert!(
        matches!(moved, Err(StoreError::Unavailable(_))),
        "{moved:?}"
    );
    pair.restore_replica().await;
    // The retry finds the revocation applied and reports it only now that it is durable.
    let res = once_replicated("revoke again", async || {
        registry.revoke_seal(&sealed.card_id, ON).await
    })
    .await;
    assert!(
        matches!(res, RevokeOutcome::AlreadyRevoked { .. }),
        "{res:?}"
    );
    let on_replica = RedisRegistry::new(pair.replica_conn().await, SHARDS);
    let seen = on_replica
        .record(&sealed.card_id)
        .await
        .expect("read replica");
    let seen = seen.expect("the replica has the record");
    assert!(matches!(seen.seal, Seal::Revoked { .. }), "{:?}", seen.seal);
    drop(pair.primary);
}

#[tokio::test]
async fn a_lease_the_replica_does_not_have_is_never_used() {
    let mut pair = Pair::start().await;
    let leases = RedisLeases::new(pair.conn.clone()).with_replicas(1);
    let held = acquired_in_sync(&leases, 1).await;
    assert!(once_replicated("renew", async || leases.renew(held, "a", LONG).await).await);
    // Both writes reached the replica before they were reported.
    let replica = pair.replica_conn().await;
    let on_replica: Option<String> = raw(&replica, redis::cmd("GET").arg("kofu:{s1}:lease")).await;
    assert_eq!(on_replica, Some(format!("a:{}", held.epoch)));
    pair.lose_replica().await;
    // A renewal the replica did not get does not extend the lease, and an acquisition it
    // did not get is not handed out: a failover now could give either lease away again.
    let renewed = leases.renew(held, "a", LONG).await;
    assert!(
        matches!(renewed, Err(StoreError::Unavailable(_))),
        "{renewed:?}"
    );
    let acquired = leases.acquire(2, "a", SHORT).await;
    assert!(
        matches!(acquired, Err(StoreError::Unavailable(_))),
        "{acquired:?}"
    );
    pair.restore_replica().await;
    // The unused acquisition simply expires; the next one gets a higher epoch.
    let deadline = Instant::now() + WITHIN;
    let next = loop {
        let acquired = once_replicated("acquire", async || leases.acquire(2, "a", LONG).await);
        match acquired.await {
            Some(fence) => break fence,
            None => {
                assert!(Instant::now() < deadline, "the unused lease never expired");
                sleep(POLL).await;
            }
        }
    };
    assert!(next.epoch > held.epoch, "{next:?} after {held:?}");
}

#[tokio::test]
async fn a_node_that_loses_its_replica_stops_holding_shards() {
    let mut pair = Pair::start().await;
    let conn = connect(&pair.primary.url()).await.expect("connect");
    let ttl = Duration::from_millis(900);
    let node = RedisCoordinator::start_with_replicas(
        conn,
        "node-a".into(),
        "node-a.internal:7000".into(),
        8,
        ttl,
        1,
        None,
    );
    wait_for("the node holds every shard", async || {
        node.local_leases().len() == 8
    })
    .await;
    pair.lose_replica().await;
    wait_for("the node stops holding shards", async || {
        node.local_leases().is_empty()
    })
    .await;
    pair.restore_replica().await;
    wait_for("the node holds every shard again", async || {
        node.local_leases().len() == 8
    })
    .await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_session_change_is_acknowledged_only_once_the_replica_has_it() {
    let mut pair = Pair::start().await;
    let leases = RedisLeases::new(pair.conn.clone()).with_replicas(1);
    let store = RedisStore::new(pair.conn.clone(), "a", STATE_TTL).with_replicas(1);
    let fence = acquired_in_sync(&leases, 4).await;
    let (s, c) = (session(4, 1), card(1));
    once_replicated("apply", async || {
        store.apply(fence, s, full_change(&s, &c)).await
    })
    .await;
    let replica = pair.replica_conn().await;
    let snap: Option<Vec<u8>> = raw(
        &replica,
        redis::cmd("GET").arg(format!("kofu:{{s4}}:snap:{s}")),
    )
    .await;
    assert_eq!(snap.as_deref(), Some(&b"snap"[..]));
    pair.lose_replica().await;
    let res = store
        .apply(fence, s, Change::snapshot(b"next".to_vec()))
        .await;
    assert!(matches!(res, Err(StoreError::Unavailable(_))), "{res:?}");
    pair.restore_replica().await;
    let res = once_replicated("apply again", async || {
        store
            .apply(fence, s, Change::snapshot(b"next".to_vec()))
            .await
    })
    .await;
    assert_eq!(res, Applied::default());
}
