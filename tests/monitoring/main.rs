//! A real Prometheus (Debian's `prometheus`) scraping a local three-node cluster with
//! kofu's own rules loaded: through Prometheus' HTTP API every node's kofu series are
//! there, every target is up, and every rule group evaluates cleanly.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kofu_testkit::{Deployment, DeploymentOptions, free_port, get};
use serde_json::Value;

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Percent-encodes a query for the URL.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn query(base: &str, q: &str) -> Vec<Value> {
    let url = format!("{base}/api/v1/query?query={}", encode(q));
    let r = get(&url).await;
    if r.status != 200 {
        return Vec::new();
    }
    r.value()["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_node_of_a_cluster() {
    let cluster = tokio::task::block_in_place(|| Deployment::start(DeploymentOptions::nodes(3)));
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/rules");
    let targets: Vec<String> = cluster
        .live()
        .iter()
        .map(|&n| {
            format!(
                "\"{}\"",
                cluster.node(n).admin.trim_start_matches("http://")
            )
        })
        .collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}/kofu-recording.yml\n  - {}/kofu-alerts.yml\n\
         scrape_configs:\n  - job_name: kofu\n    static_configs:\n      - targets: [{}]\n",
        rules.display(),
        rules.display(),
        targets.join(", ")
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).expect("config");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _prom = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "prometheus must be installed (Debian package prometheus); .ci/test installs it",
            ),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = query(&base, "up{job=\"kofu\"} == 1").await;
        let owned = query(&base, "kofu_shards_owned").await;
        let forwards = query(&base, "kofu_forwards_total{result=\"ok\"}").await;
        let leases = query(&base, "kofu_lease_renew_failures_total").await;
        if up.len() == 3 && owned.len() == 3 && forwards.len() == 3 && leases.len() == 3 {
            let total: f64 = owned
                .iter()
                .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
                .sum();
            assert_eq!(total, 1024.0, "the nodes' shards add up to the shard count");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not see all three nodes: up {up:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Every query of the Grafana dashboard is valid PromQL over series that exist.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/kofu.json"),
        )
        .expect("dashboard"),
    )
    .expect("dashboard is JSON");
    let metrics = get(&format!("{}/metrics", cluster.node(0).admin))
        .await
        .text();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            let r = get(&format!("{base}/api/v1/query?query={}", encode(expr))).await;
            assert_eq!(
                r.value()["status"],
                "success",
                "dashboard query {expr}: {}",
                r.text()
            );
            for name in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if let Some(base_name) = name.strip_prefix("kofu_") {
                    let family = ["_bucket", "_count", "_sum"]
                        .iter()
                        .find_map(|s| base_name.strip_suffix(s))
                        .unwrap_or(base_name);
                    assert!(
                        metrics.contains(&format!("# TYPE kofu_{family} ")),
                        "the dashboard queries kofu_{family}, which no node exports"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} dashboard queries");
    // kofu's rules are loaded and evaluate without error on real series.
    let r = get(&format!("{base}/api/v1/rules")).await;
    let groups = r.value()["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(groups.len(), 2, "recording and alert groups");
    for g in &groups {
        for rule in g["rules"].as_array().into_iter().flatten() {
            assert_ne!(
                rule["health"], "err",
                "rule {} fails: {}",
                rule["name"], rule["lastError"]
            );
        }
    }
}
