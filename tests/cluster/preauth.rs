//! Issue 11's admission acceptance for the internal listener: 600 idle connections that
//! never authenticate, held against one node's internal port (each one the node drops
//! opened again a second later, as a patient attacker would), stop neither forwarding
//! over the links the nodes already had nor a node joining and linking to it meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use kofu_testkit::full_session;
use tokio::io::AsyncReadExt as _;

use super::membership::scrape;
use super::*;

const IDLE: usize = 600;
/// kofu-wire's `MAX_PRE_AUTH`: unproven connections a node keeps at once (the tests
/// depend on kofu's binaries, not on its crates).
const PRE_AUTH_LIMIT: usize = 64;

#[derive(Default)]
struct FloodStats {
    opened: AtomicU64,
    dropped_by_node: AtomicU64,
    stop: AtomicBool,
}

/// Holds `IDLE` connections to `addr` without ever sending a byte.
fn flood(addr: String, stats: Arc<FloodStats>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..IDLE)
        .map(|_| {
            let (addr, stats) = (addr.clone(), stats.clone());
            tokio::spawn(async move {
                while !stats.stop.load(Ordering::Relaxed) {
                    let Ok(mut conn) = tokio::net::TcpStream::connect(&addr).await else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    stats.opened.fetch_add(1, Ordering::Relaxed);
                    let mut buf = [0u8; 64];
                    // Idle: only ever reads, until the node gives the connection up.
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                    stats.dropped_by_node.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        })
        .collect()
}

fn internal_addr(cluster: &Deployment, n: usize) -> String {
    let view = cluster.view(n).expect("cluster view");
    let id = format!("node-{n}");
    view["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|v| v["node_id"] == id.as_str())
        .and_then(|v| v["internal_addr"].as_str())
        .expect("the node's internal address")
        .to_owned()
}

/// `n` complete sessions sent to node `via` only, on fresh cards from `next`.
async fn sessions_via(cluster: &Deployment, via: usize, next: &mut usize, n: usize) {
    let fx = cluster.fixtures();
    let api = cluster.node(via).api.clone();
    for _ in 0..n {
        let card = fx.ordinary().nth(*next).expect("enough cards");
        let kiosk = cluster
            .kiosk(*next % fx.kiosks.len())
            .with_targets([api.as_str()]);
        *next += 1;
        full_session(&kiosk, fx, card, "residence", 1, cluster.issuer())
            .await
            .unwrap_or_else(|e| panic!("a session via node {via} under the flood: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_unauthenticated_connections_do_not_stop_forwarding() {
    let mut cluster = cluster_with(2, &[]);
    let target = internal_addr(&cluster, 0);
    let stats = Arc::new(FloodStats::default());
    let tasks = flood(target, stats.clone());
    // All of them connected at least once: the node holds at most 64 unproven ones.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stats.opened.load(Ordering::Relaxed) < IDLE as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} idle connections opened",
            stats.opened.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let received_before = scrape(&cluster.node(0).admin, "kofu_forwards_received_total").await;

    // Over the link node 1 already had to node 0.
    let mut next = 0;
    sessions_via(&cluster, 1, &mut next, 12).await;
    let received_old_link = scrape(&cluster.node(0).admin, "kofu_forwards_received_total").await;
    // A node joining under the flood links to node 0 through it.
    let joined = tokio::task::block_in_place(|| {
        let n = cluster.add_node();
        cluster.wait_converged();
        n
    });
    sessions_via(&cluster, joined, &mut next, 12).await;

    let received = scrape(&cluster.node(0).admin, "kofu_forwards_received_total").await;
    let forwarded_new = scrape(
        &cluster.node(joined).admin,
        "kofu_forwards_total{result=\"ok\"}",
    )
    .await;
    stats.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    let (opened, dropped) = (
        stats.opened.load(Ordering::Relaxed),
        stats.dropped_by_node.load(Ordering::Relaxed),
    );
    println!(
        "flood: {opened} connections opened, {dropped} dropped by the node; node 0 received {} forwarded calls from node 1, then {} (the joined node forwarded {forwarded_new})",
        received_old_link - received_before,
        received - received_old_link
    );
    assert!(
        received_old_link > received_before,
        "node 0 received no call forwarded by node 1 under the flood"
    );
    assert!(
        received > received_old_link,
        "node 0 received no call forwarded over a link made under the flood"
    );
    assert!(forwarded_new > 0.0, "the joined node forwarded nothing");
    // The node did give unproven connections up (the limits were at work).
    assert!(
        dropped >= (IDLE - PRE_AUTH_LIMIT) as u64,
        "the node dropped only {dropped} of {opened} idle connections"
    );
}
