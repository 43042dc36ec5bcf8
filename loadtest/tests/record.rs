//! Acceptance of `--record-traffic`: a node records what it served, and the recording
//! replays at x1 and faster against a single node and a three-node cluster with every
//! document verified.

mod common;

use std::path::Path;

use common::{fixtures, load, replay_args, report, synth, utf8};
use kofu_testkit::{Deployment, DeploymentOptions, KofuNode, NodeOptions};
use serde_json::Value;

fn replay(trace: &Path, fx: &Path, targets: &[String], speed: &str, json: &Path) -> Value {
    let args = replay_args(
        trace,
        fx,
        &targets.join(","),
        speed,
        &[
            "--report-json",
            utf8(json),
            "--fail-if",
            "errors=0,misdeliveries=0",
        ],
    );
    let ok = load(&args).status.success();
    let r = report(json);
    assert!(ok, "replay at x{speed} failed: errors {}", r["errors"]);
    r
}

/// Waits until no session is open on any node of `d`: a replay starts from a quiet
/// deployment, as the recording did, so no card is still held by the previous run.
fn wait_until_idle(d: &Deployment) {
    use std::time::{Duration, Instant};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let open = d.metric_sum("kofu_sessions_open").await;
            if open == Ok(0.0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sessions still open after 120 s: {open:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

#[test]
fn a_recorded_run_replays_on_one_node_and_on_three() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = NodeOptions::default();
    let fx = fixtures(dir.path(), &opts);

    // 1. Traffic against a recording node: a synthesized minute at x10.
    let recording = dir.path().join("recorded.kofu");
    let mut recorder = KofuNode::start(NodeOptions {
        // Abandoned sessions stay open: a short drain keeps the stop quick.
        args: vec![
            "--record-traffic".into(),
            utf8(&recording).into(),
            "--drain-timeout-ms".into(),
            "500".into(),
        ],
        ..opts.clone()
    });
    let synth = synth(
        dir.path(),
        &fx,
        "5",
        &[
            "--sessions-per-day",
            "60000",
            "--think",
            "0.05",
            "--retry",
            "0.1",
            "--wrong-signature",
            "0.1",
            "--duplicate-card",
            "0.05",
        ],
    );
    let original = replay(
        &synth,
        &fx,
        &[recorder.api.clone()],
        "10",
        &dir.path().join("r0.json"),
    );
    assert!(recorder.terminate().success());
    let info = load(&["inspect", utf8(&recording)]);
    assert!(info.status.success(), "the recording is a valid trace");
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("(record)"), "{text}");
    let bytes = std::fs::read(&recording).expect("recording");
    for card in std::fs::read_to_string(&fx)
        .expect("fx")
        .lines()
        .filter(|l| l.contains("\"card\""))
    {
        let v: Value = serde_json::from_str(card).expect("line");
        let id = v["card_id"].as_str().expect("card id");
        assert!(
            !bytes.windows(id.len()).any(|w| w == id.as_bytes()),
            "a card id in the recording"
        );
    }

    // 2. The recording against a fresh node and a 3-node cluster, at x1 and x10. The
    // recording has abandoned sessions: with a short idle timeout they end, and free
    // their cards, before the next replay starts (the recording spans 7 s at x1, every
    // gap inside a session is far below 6 s).
    let opts = NodeOptions {
        args: vec!["--idle-timeout-ms".into(), "6000".into()],
        ..opts
    };
    let single = Deployment::start(DeploymentOptions {
        node: opts.clone(),
        ..DeploymentOptions::default()
    });
    let cluster = Deployment::start(DeploymentOptions {
        node: opts.clone(),
        ..DeploymentOptions::nodes(3)
    });
    // Three debug nodes on a loaded 2-core machine forward a close more slowly than x10
    // leaves between one session's close and the next create of the same card (a few ms),
    // so that create meets the card still held (409): x3 there keeps the recorded order.
    for (name, deployment, speeds) in [
        ("one node", &single, ["1", "10"]),
        ("three nodes", &cluster, ["1", "3"]),
    ] {
        let targets = deployment.apis();
        for speed in speeds {
            wait_until_idle(deployment);
            let json = dir
                .path()
                .join(format!("{}-x{speed}.json", name.replace(' ', "-")));
            let r = replay(&recording, &fx, &targets, speed, &json);
            eprintln!(
                "{name} x{speed}: {} sessions, {} documents",
                r["sessions_completed"], r["documents_verified"]
            );
            assert_eq!(r["misdeliveries"], 0);
            assert_eq!(
                r["documents_verified"], original["documents_verified"],
                "{name} x{speed}: the recording holds every verified fetch of the original run"
            );
        }
    }
}
