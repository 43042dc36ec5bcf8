//! Acceptance of `--record-traffic`: a node records what it served, and the recording
//! replays at x1 and x10 against a single node and a three-node cluster with every
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

#[test]
fn a_recorded_run_replays_at_x1_and_x10_on_one_node_and_on_three() {
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

    // 2. The recording against a fresh node and a 3-node cluster, at x1 and x10.
    let single = Deployment::start(DeploymentOptions {
        node: opts.clone(),
        ..DeploymentOptions::default()
    });
    let cluster = Deployment::start(DeploymentOptions {
        node: opts.clone(),
        ..DeploymentOptions::nodes(3)
    });
    for (name, targets) in [("one node", single.apis()), ("three nodes", cluster.apis())] {
        for speed in ["1", "10"] {
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
