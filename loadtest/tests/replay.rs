//! `kofu-load` end to end against a real `kofu serve`: synthesize a trace from the node's
//! own fixtures, replay it, and check what the report says; thresholds set the exit code;
//! a stalled target shows in the latency (no coordinated omission).

mod common;

use std::process::Command;
use std::time::Duration;

use common::swap::SwapProxy;
use common::{
    ALL_BEHAVIOURS, LOAD, NO_BEHAVIOURS, fixtures, load, replay_args, report, synth, utf8,
};
use kofu_testkit::{KofuNode, NodeOptions};

#[test]
fn a_synthesized_day_replays_with_every_document_verified() {
    let opts = NodeOptions::default();
    let node = KofuNode::start(opts.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let fx = fixtures(dir.path(), &opts);
    // About 300 sessions in the noon minute, with every error behaviour switched up.
    let trace = synth(dir.path(), &fx, "3", &ALL_BEHAVIOURS);
    // Deterministic by seed: the same arguments give the same bytes.
    let again = dir.path().join("again.kofu");
    std::fs::copy(&trace, &again).expect("copy");
    let trace = synth(dir.path(), &fx, "3", &ALL_BEHAVIOURS);
    assert_eq!(
        std::fs::read(&trace).expect("trace"),
        std::fs::read(&again).expect("trace"),
        "synth is deterministic by seed"
    );
    let json = dir.path().join("report.json");
    let html = dir.path().join("report.html");
    let out = load(&replay_args(
        &trace,
        &fx,
        &node.api,
        "10",
        &[
            "--report-json",
            utf8(&json),
            "--report-html",
            utf8(&html),
            "--fail-if",
            "errors=0,misdeliveries=0",
        ],
    ));
    assert!(out.status.success(), "replay failed");
    // The HTML report stands alone: tables and three embedded SVG charts, no links out.
    let page = std::fs::read_to_string(&html).expect("html report");
    assert!(page.starts_with("<!doctype html>"));
    assert_eq!(
        page.matches("<svg").count(),
        3,
        "throughput, latency, errors charts"
    );
    assert!(page.contains("0 misdeliveries") && page.contains("<td>fetch</td>"));
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
    let r = report(&json);
    assert_eq!(r["misdeliveries"], 0);
    assert_eq!(r["error_requests"], 0, "{}", r["errors"]);
    let planned = r["sessions_planned"].as_u64().expect("planned");
    assert!(planned >= 150, "only {planned} sessions");
    assert_eq!(r["sessions_started"].as_u64(), Some(planned));
    assert!(r["documents_verified"].as_u64().expect("verified") >= planned / 2);
    for step in [
        "create",
        "auth",
        "auth_bad",
        "job",
        "fetch",
        "printed",
        "close",
        "retry",
        "duplicate_card",
    ] {
        assert!(
            r["steps"][step]["count"].as_u64().is_some_and(|n| n > 0),
            "no {step} step ran"
        );
    }
    // A threshold the run cannot meet gives a non-zero exit.
    let strict = load(&replay_args(
        &trace,
        &fx,
        &node.api,
        "10",
        &["--fail-if", "p50<1us"],
    ));
    assert_eq!(strict.status.code(), Some(1));
}

#[test]
fn a_paused_target_shows_in_the_latency() {
    let opts = NodeOptions::default();
    let node = KofuNode::start(opts.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let fx = fixtures(dir.path(), &opts);
    // A steady arrival rate (no behaviours): ~1,500 sessions over one minute at x6.
    let model = [
        &["--sessions-per-day", "500000", "--think", "0.02"][..],
        &NO_BEHAVIOURS,
    ]
    .concat();
    let trace = synth(dir.path(), &fx, "3", &model);
    let json = dir.path().join("report.json");
    let child = Command::new(LOAD)
        .args(replay_args(
            &trace,
            &fx,
            &node.api,
            "6",
            &["--report-json", utf8(&json)],
        ))
        .spawn()
        .expect("replay starts");
    std::thread::sleep(Duration::from_secs(4));
    node.pause();
    std::thread::sleep(Duration::from_secs(1));
    node.resume();
    let out = child.wait_with_output().expect("replay ends");
    assert!(out.status.success(), "replay failed");
    let r = report(&json);
    assert_eq!(r["misdeliveries"], 0);
    // Requests meant for the paused second waited for it: measured from their intended
    // time, the tail holds the pause (a closed-loop generator would hide it).
    let p99 = r["latency"]["p99_ms"].as_f64().expect("p99");
    let max = r["latency"]["max_ms"].as_f64().expect("max");
    assert!(max >= 900.0, "max {max} ms does not show the 1 s pause");
    assert!(p99 >= 300.0, "p99 {p99} ms does not show the 1 s pause");
}

#[test]
fn a_node_that_swaps_documents_is_caught() {
    // The kiosks reach a real node through a proxy that hands each released document to
    // the next release: every kiosk but the first gets someone else's, correctly signed.
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = NodeOptions::default();
    let node = KofuNode::start(opts.clone());
    let proxy = SwapProxy::start(&node.api);
    let fx = fixtures(dir.path(), &opts);
    let model = [
        &["--sessions-per-day", "30000", "--think", "0.02"][..],
        &NO_BEHAVIOURS,
    ]
    .concat();
    let trace = synth(dir.path(), &fx, "3", &model);
    let json = dir.path().join("report.json");
    let out = load(&replay_args(
        &trace,
        &fx,
        &proxy.url,
        "10",
        &["--report-json", utf8(&json)],
    ));
    assert_eq!(
        out.status.code(),
        Some(1),
        "a misdelivering node must fail the replay"
    );
    let r = report(&json);
    let fetched = r["steps"]["fetch"]["count"].as_u64().expect("fetches");
    let misdelivered = r["misdeliveries"].as_u64().expect("misdeliveries");
    assert!(fetched >= 10, "only {fetched} fetches");
    // Only the very first release can be its own (its kiosk gets it back).
    assert!(
        misdelivered + 1 >= fetched,
        "{misdelivered} of {fetched} caught"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("misdelivered"));
}
