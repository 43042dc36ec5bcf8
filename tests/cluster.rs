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

/// Asserts that a join or leave (`what`) moved about a quarter of the shards between two
/// views of their owners, and that each shard that moved did so as `allowed` says.
fn assert_moved_a_quarter(
    what: &str,
    before: &[Option<String>],
    after: &[Option<String>],
    allowed: impl Fn(&Option<String>, &Option<String>) -> bool,
) {
    let n = before.iter().zip(after).filter(|(a, b)| a != b).count();
    let share = n as f64 / before.len() as f64;
    println!("{what} moved {share:.3} of the shards");
    assert!(
        (0.15..0.35).contains(&share),
        "{what} moved {share:.3} of the shards"
    );
    for (b, a) in before.iter().zip(after) {
        assert!(
            b == a || allowed(b, a),
            "{what}: a shard moved where it should not"
        );
    }
}
