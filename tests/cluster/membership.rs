//! Forwarding, joins and graceful leaves under continuous load.

use super::load::Load;
use super::*;

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub(crate) async fn scrape(admin: &str, name: &str) -> f64 {
    metric(&get(&format!("{admin}/metrics")).await.text(), name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_to_random_nodes_reach_their_sessions() {
    let cluster = cluster_with(3, &[]);
    let load = Load::start(&cluster, cluster.apis(), 12);
    load.until_completed(30).await;
    let tally = load.finish().await;
    println!("{tally:?}");
    tally.assert_clean(30);
    let mut forwarded = 0.0;
    for n in cluster.live() {
        forwarded += scrape(&cluster.node(n).admin, "kofu_forwards_total{result=\"ok\"}").await;
    }
    // With 3 nodes about two thirds of all requests land on a non-owner.
    assert!(forwarded > 0.0, "no request was forwarded");
    // Every node exports the cluster series, promtool-clean.
    for n in cluster.live() {
        let text = get(&format!("{}/metrics", cluster.node(n).admin))
            .await
            .text();
        let (ok, said) = kofu_testkit::promtool_check(&text);
        assert!(ok, "promtool on node {n}: {said}");
        for series in [
            "kofu_shards_owned",
            "kofu_shard_acquisitions_total",
            "kofu_shard_handoffs_total",
            "kofu_shard_handoff_duration_seconds_bucket",
            "kofu_lease_renew_failures_total",
            "kofu_lease_losses_total",
            "kofu_fencing_rejections_total",
            "kofu_forwards_total",
            "kofu_forwards_received_total",
            "kofu_route_retries_total",
            "kofu_route_buffered_requests",
            "kofu_route_buffer_dropped_total",
            "kofu_sessions_resumed_total",
        ] {
            assert!(text.contains(series), "node {n} lacks {series}");
        }
        let owned = metric(&text, "kofu_shards_owned ");
        assert!(owned > 200.0, "node {n} owns {owned} shards");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_and_graceful_leave_under_load_fail_no_session() {
    let mut cluster = cluster_with(3, &[]);
    let before = cluster.wait_converged();
    let load = Load::start(&cluster, cluster.apis(), 12);
    load.until_completed(12).await;

    // Join: the new node takes about a quarter of the shards, all from the others.
    let joined = tokio::task::block_in_place(|| cluster.add_node());
    let after_join = tokio::task::block_in_place(|| cluster.wait_converged());
    load.set_targets(cluster.apis());
    // Every shard that moved went to the new node, none between old ones.
    let new_id = format!("node-{joined}");
    assert_moved_a_quarter("join", &before, &after_join, |_, a| {
        a.as_ref() == Some(&new_id)
    });
    // Sessions run on the grown cluster before one node leaves.
    load.until_completed(load.completed() + 12).await;

    // Graceful leave: the load balancer stops sending to node 1 first, then SIGTERM.
    let leaving = 1;
    let others: Vec<String> = cluster
        .live()
        .into_iter()
        .filter(|&n| n != leaving)
        .map(|n| cluster.node(n).api.clone())
        .collect();
    load.set_targets(others);
    let status = tokio::task::block_in_place(|| cluster.stop(leaving));
    assert!(status.success(), "the leaving node exited with {status}");
    let after_leave = tokio::task::block_in_place(|| cluster.wait_converged());
    // Only the leaving node's shards moved.
    let gone = format!("node-{leaving}");
    assert_moved_a_quarter("leave", &after_join, &after_leave, |b, _| {
        b.as_ref() == Some(&gone)
    });
    load.until_completed(load.completed() + 12).await;
    let tally = load.finish().await;
    println!("{tally:?}");
    tally.assert_clean(30);
}
