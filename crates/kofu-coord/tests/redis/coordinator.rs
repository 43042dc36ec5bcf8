//! The Redis coordinator against a real server: rendezvous ownership across nodes, no
//! shard ever local on two nodes (I2), takeover after a graceful leave, and self-fencing
//! when Redis is unreachable (I7).

use std::collections::{BTreeMap, BTreeSet};

use kofu_coord::Coordinator;
use kofu_coord::redis::RedisCoordinator;
use kofu_core::assignment::{assign, moved, owner};
use tokio::time::{Instant, sleep, timeout};

use super::*;

const NODE_SHARDS: u32 = 32;
const TTL: Duration = Duration::from_millis(900);
/// Generous bound for convergence, which needs a few loop rounds (a second or two idle,
/// several times that on a busy 2-core CI machine); never a fixed sleep.
const CONVERGE: Duration = Duration::from_secs(60);
const A: &str = "node-a";
const B: &str = "node-b";
const C: &str = "node-c";

/// Each node gets its own connection, as separate processes would.
async fn node(server: &RedisServer, id: &str, ttl: Duration) -> RedisCoordinator {
    let conn = connect(&server.url()).await.expect("connect");
    RedisCoordinator::start(
        conn,
        id.into(),
        format!("{id}.internal:7000"),
        NODE_SHARDS,
        ttl,
        None,
    )
}

fn local(node: &RedisCoordinator) -> BTreeSet<u32> {
    node.local_leases().iter().map(|f| f.shard).collect()
}

fn epochs(node: &RedisCoordinator) -> BTreeMap<u32, u64> {
    node.local_leases()
        .iter()
        .map(|f| (f.shard, f.epoch))
        .collect()
}

fn expected(id: &str, nodes: &[&str]) -> BTreeSet<u32> {
    (0..NODE_SHARDS)
        .filter(|&shard| owner(shard, nodes) == Some(id))
        .collect()
}

async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        sleep(POLL).await;
    }
}

/// Nodes A and B, once each owns its rendezvous share.
async fn two_nodes(server: &RedisServer, ttl: Duration) -> (RedisCoordinator, RedisCoordinator) {
    let a = node(server, A, ttl).await;
    let b = node(server, B, ttl).await;
    wait_until("two nodes converge", CONVERGE, || {
        local(&a) == expected(A, &[A, B]) && local(&b) == expected(B, &[A, B])
    })
    .await;
    (a, b)
}

/// Samples the nodes listed, receivers of moving shards first (so a shard moving away
/// from a later node cannot look doubly owned), and fails on any shard local twice.
fn assert_disjoint(nodes: &[&RedisCoordinator]) {
    let mut seen: BTreeMap<u32, &str> = BTreeMap::new();
    for node in nodes {
        for shard in local(node) {
            if let Some(other) = seen.insert(shard, node.node_id()) {
                panic!("shard {shard} local on {other} and {}", node.node_id());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_owns_every_shard_and_keeps_its_epochs() {
    let server = RedisServer::start();
    let a = node(&server, A, TTL).await;
    let mut changes = a.subscribe();
    timeout(
        CONVERGE,
        changes.wait_for(|fences| fences.len() == NODE_SHARDS as usize),
    )
    .await
    .expect("all shards within the bound")
    .expect("loop alive");
    assert_eq!(local(&a), (0..NODE_SHARDS).collect());
    let first = epochs(&a);

    // Renewals keep the very same leases: no epoch changes across several TTLs.
    sleep(TTL * 3).await;
    assert_eq!(epochs(&a), first);

    let leases = RedisLeases::new(connect(&server.url()).await.expect("connect"));
    for (&shard, &epoch) in &first {
        let holder = leases.holder(shard).await.expect("holder");
        assert_eq!(holder, Some((A.to_owned(), epoch)), "shard {shard}");
    }
    let view = a.view();
    assert_eq!(view.mode, "redis");
    assert_eq!(view.shard_count, NODE_SHARDS);
    assert_eq!(view.nodes.len(), 1);
    assert_eq!(view.nodes[0].node_id, A);
    assert_eq!(view.shards.len(), NODE_SHARDS as usize);
    assert!(view.shards.iter().all(|s| s.owner == A));
    let members = a.members();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].internal_addr, "node-a.internal:7000");

    a.shutdown().await;
    for shard in 0..NODE_SHARDS {
        assert_eq!(leases.holder(shard).await.expect("holder"), None);
    }
    let conn = connect(&server.url()).await.expect("connect");
    let exists: bool = raw(&conn, redis::cmd("EXISTS").arg("kofu:{m}:member:node-a")).await;
    assert!(!exists, "the heartbeat is gone after a graceful leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_split_the_shards_and_never_overlap() {
    let server = RedisServer::start();
    let a = node(&server, A, TTL).await;
    let b = node(&server, B, TTL).await;
    let (want_a, want_b) = (expected(A, &[A, B]), expected(B, &[A, B]));
    assert!(!want_a.is_empty() && !want_b.is_empty());

    // Sample throughout convergence and for two seconds after; b only ever gains.
    let start = Instant::now();
    let mut converged = false;
    while !converged || start.elapsed() < Duration::from_secs(2) {
        assert!(
            start.elapsed() < CONVERGE,
            "no convergence within {CONVERGE:?}"
        );
        assert_disjoint(&[&b, &a]);
        converged = local(&a) == want_a && local(&b) == want_b;
        sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(local(&a), want_a);
    assert_eq!(local(&b), want_b);
    let view = a.view();
    assert_eq!(view.nodes.len(), 2);
    assert_eq!(view.shards.len(), NODE_SHARDS as usize);
    for lease in &view.shards {
        assert_eq!(owner(lease.shard, &[A, B]), Some(lease.owner.as_str()));
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_takes_about_a_third_only_for_itself() {
    let server = RedisServer::start();
    let (a, b) = two_nodes(&server, TTL).await;
    let (before_a, before_b) = (epochs(&a), epochs(&b));

    let c = node(&server, C, TTL).await;
    let want: BTreeMap<&str, BTreeSet<u32>> = [A, B, C]
        .into_iter()
        .map(|id| (id, expected(id, &[A, B, C])))
        .collect();
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < CONVERGE,
            "no convergence within {CONVERGE:?}"
        );
        assert_disjoint(&[&c, &a, &b]);
        // The old nodes only ever lose shards, and keep the same leases for the rest.
        for (node, before) in [(&a, &before_a), (&b, &before_b)] {
            for (shard, epoch) in epochs(node) {
                assert_eq!(before.get(&shard), Some(&epoch), "{}", node.node_id());
            }
        }
        if local(&a) == want[A] && local(&b) == want[B] && local(&c) == want[C] {
            break;
        }
        sleep(Duration::from_millis(5)).await;
    }

    let moves = moved(
        &assign(NODE_SHARDS, &[A, B]),
        &assign(NODE_SHARDS, &[A, B, C]),
    );
    let moves: BTreeSet<u32> = moves.into_iter().collect();
    assert_eq!(
        moves,
        local(&c),
        "exactly the moved shards, all to the newcomer"
    );
    let share = moves.len() as f64 / f64::from(NODE_SHARDS);
    assert!((0.15..=0.5).contains(&share), "moved share {share}");
    for (shard, epoch) in epochs(&c) {
        let previous = before_a.get(&shard).or(before_b.get(&shard));
        assert!(previous.is_some_and(|p| epoch > *p), "shard {shard}");
    }
    for node in [a, b, c] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_leave_hands_every_shard_over_with_higher_epochs() {
    let ttl = Duration::from_millis(1000);
    let server = RedisServer::start();
    let (a, b) = two_nodes(&server, ttl).await;
    let left = epochs(&b);

    b.shutdown().await;
    wait_until("the survivor owns everything", ttl * 2, || {
        local(&a).len() == NODE_SHARDS as usize
    })
    .await;
    let now = epochs(&a);
    for (shard, old) in left {
        assert!(now[&shard] > old, "shard {shard}: {} <= {old}", now[&shard]);
    }
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_fences_the_node_and_it_recovers_on_its_own() {
    let mut server = RedisServer::start();
    let a = node(&server, A, TTL).await;
    let mut changes = a.subscribe();
    wait_until("all shards", CONVERGE, || {
        local(&a).len() == NODE_SHARDS as usize
    })
    .await;

    let before = epochs(&a);
    server.stop();
    // The last renewal was sent before the stop, so every lease is invalid within TTL
    // of it, well before Redis (were it alive) could hand the shard to anyone else.
    wait_until("self-fencing", TTL, || a.local_leases().is_empty()).await;
    timeout(TTL * 2, changes.wait_for(Vec::is_empty))
        .await
        .expect("subscribers see the loss")
        .expect("loop alive");

    // A restarted Redis has lost everything, epoch counters included; the new leases
    // still get higher epochs than any before (the acquirer's clock is their floor),
    // and the node re-acquires by itself.
    server.start_again();
    wait_until("re-acquisition", CONVERGE, || {
        local(&a).len() == NODE_SHARDS as usize
    })
    .await;
    let leases = RedisLeases::new(connect(&server.url()).await.expect("connect"));
    for fence in a.local_leases() {
        let holder = leases.holder(fence.shard).await.expect("holder");
        assert_eq!(holder, Some((A.to_owned(), fence.epoch)), "{fence:?}");
        assert!(fence.epoch > before[&fence.shard], "{fence:?} did not rise");
    }
    a.shutdown().await;
}
