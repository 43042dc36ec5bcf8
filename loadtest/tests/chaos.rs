//! `kofu-load chaos` for one minute, end to end: it starts its own Sentinel Redis and
//! three nodes, injects faults while kiosks work, checks, reports, and leaves nothing
//! behind. This asserts the tool's own behaviour (faults of at least three kinds,
//! documents verified, every report field, cleanup). Whether the product passes — zero
//! anomalies — is asserted only with `KOFU_CHAOS_STRICT=1`, to be switched on once
//! issue 10's fixes have landed.

mod common;

use std::process::Command;

use common::{LOAD, utf8};
use serde_json::Value;

/// Kinds with short holds, so that a minute holds at least three of them; the one that
/// needs namespaces is skipped (and reported so) where they are not available.
const KINDS: &str = "node_kill,node_pause,redis_pause,redis_failover,partition_redis";

#[test]
fn a_one_minute_chaos_run_injects_faults_checks_and_cleans_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("chaos.json");
    let html = dir.path().join("chaos.html");
    let out = Command::new(LOAD)
        .args(["chaos", "--minutes", "1", "--seed", "7", "--rate", "6"])
        .args(["--residents", "2000", "--kiosks", "50", "--shards", "64"])
        .args(["--idle-timeout-ms", "8000", "--kinds", KINDS, "--quiet"])
        .args(["--report-json", utf8(&json), "--report-html", utf8(&html)])
        .arg("--kofu")
        .arg(kofu_testkit::kofu_bin())
        .output()
        .expect("kofu-load chaos runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let code = out.status.code();
    assert!(
        matches!(code, Some(0 | 1)),
        "the run itself failed (exit {code:?})"
    );

    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).expect("JSON");
    for field in [
        "documents_verified",
        "sessions_started",
        "sessions_completed",
        "faults",
        "faults_skipped",
        "anomalies",
        "anomaly_examples",
        "recovery",
        "timeline",
        "answers",
    ] {
        assert!(report.get(field).is_some(), "no {field} in the report");
    }
    assert!(report["documents_verified"].as_u64() > Some(0));
    assert!(report["sessions_completed"].as_u64() > Some(0));
    let faults = report["faults"].as_object().expect("faults by kind");
    let kinds = faults.values().filter(|n| n.as_u64() > Some(0)).count();
    assert!(kinds >= 3, "faults of {kinds} kinds: {faults:?}");
    let skipped = report["faults_skipped"].as_object().expect("skipped kinds");
    for (kind, why) in skipped {
        assert!(
            !why.as_str().unwrap_or_default().is_empty(),
            "{kind} skipped without a reason"
        );
    }
    let anomalies = report["anomalies"].as_object().expect("anomalies by kind");
    for kind in [
        "misdelivery",
        "wrong_gone",
        "card_locked",
        "no_answer",
        "duplicate_audit",
    ] {
        assert!(anomalies.contains_key(kind), "{kind} not reported");
    }
    let total: u64 = anomalies.values().filter_map(Value::as_u64).sum();
    assert_eq!(
        code == Some(1),
        total > 0,
        "exit code 1 exactly when anomalies were found"
    );

    let page = std::fs::read_to_string(&html).expect("the HTML report");
    assert!(page.contains("<svg") && page.contains("Fault timeline"));

    // Nothing of the run is left: no namespace, link or nft table of a dead run.
    let run = report["setup"]["run"].as_u64().expect("the run's id");
    let netns = Command::new("ip").args(["netns", "list"]).output();
    if let Ok(o) = netns {
        let list = String::from_utf8_lossy(&o.stdout);
        assert!(
            !list.contains(&format!("kofu-chaos-{run}-")),
            "namespaces left behind: {list}"
        );
    }
    assert!(
        !std::env::temp_dir()
            .join(format!("kofu-chaos-{run}"))
            .exists(),
        "scratch dir left behind"
    );

    if std::env::var("KOFU_CHAOS_STRICT").as_deref() == Ok("1") {
        assert_eq!(total, 0, "anomalies: {}", report["anomaly_examples"]);
    }
}
