//! The cluster over real processes: three (or more) `kofu serve` nodes and a private
//! `redis-server`. Requests go to random nodes; joins, graceful leaves, `kill -9`,
//! `SIGSTOP` past the lease and Redis restarts happen under continuous load, and no
//! document may ever reach the wrong kiosk (I1, I2, I5, I7).

mod common;
#[path = "cluster/faults.rs"]
mod faults;
#[path = "cluster/load.rs"]
mod load;
#[path = "cluster/membership.rs"]
mod membership;

use common::fixtures;
use kofu_testkit::{ClusterOptions, KofuCluster, NodeOptions, get};

/// The default test cluster: 3 nodes, 1.5 s leases, the default population.
fn cluster_with(nodes: usize, extra: &[&str]) -> KofuCluster {
    let opts = ClusterOptions {
        nodes,
        node: NodeOptions {
            args: extra.iter().map(|s| s.to_string()).collect(),
            ..NodeOptions::default()
        },
        ..ClusterOptions::default()
    };
    tokio::task::block_in_place(|| KofuCluster::start(opts))
}

async fn issuer(api: &str) -> ed25519_dalek::VerifyingKey {
    let r = get(&format!("{api}/v1/issuer-key")).await;
    assert_eq!(r.status, 200, "issuer-key: {}", r.text());
    let key: kofu_proto::api::IssuerKeyResponse = r.json();
    kofu_proto::verify::issuer_key(&key.public_key).expect("issuer key parses")
}

/// Fraction of shards whose owner differs between two assignments.
fn moved(before: &[Option<String>], after: &[Option<String>]) -> f64 {
    let n = before.iter().zip(after).filter(|(a, b)| a != b).count();
    n as f64 / before.len() as f64
}
