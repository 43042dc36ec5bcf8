//! An outside fuzzer against a live embedded node: schemathesis (PyPI, the version
//! `.ci/install` pins) with every check on, its stateful phase driving sessions through
//! openapi.json's links (create → auth → jobs → document → printed → close), bounded
//! in time. What it may not flag is in `schemathesis.toml` beside this file, each
//! exclusion with its reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kofu_testkit::{Deployment, DeploymentOptions};
use serde_json::Value;

use super::{doc, root};

/// What `.ci/install` installs.
const SCHEMATHESIS: &str = "4.32.5";
/// The fuzzer's own time budget; its phases repeat until it is spent.
const BUDGET_S: u64 = 100;
/// Past this the run counts as hung (brief: at most three minutes).
const HARD_LIMIT: Duration = Duration::from_secs(170);
/// Cards the fuzzer may open sessions for.
const CARDS: usize = 8;

fn schemathesis() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("schemathesis"))
            .find(|p| p.is_file())
    });
    let bin = found.unwrap_or_else(|| {
        panic!("schemathesis is not installed: run .ci/install (pip install schemathesis=={SCHEMATHESIS})")
    });
    let version = Command::new(&bin)
        .arg("--version")
        .output()
        .expect("schemathesis --version");
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.contains(SCHEMATHESIS),
        "schemathesis {SCHEMATHESIS} expected (.ci/install), found: {version}"
    );
    bin
}

/// openapi.json as the node under test serves it: the same operations and answers, with
/// the node's population as the cards a session can be created for (a random card id
/// is `404 unknown_card`, and a fuzzer would never get further).
fn schema_for(deployment: &Deployment, dir: &Path) -> PathBuf {
    let mut d = doc();
    let cards: Vec<Value> = deployment
        .fixtures()
        .cards
        .iter()
        .take(CARDS)
        .map(|c| Value::String(c.id.expose().to_owned()))
        .collect();
    d["components"]["schemas"]["CreateSessionRequest"]["properties"]["card_id"]["enum"] =
        Value::Array(cards);
    let path = dir.join("openapi.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&d).expect("json")).expect("write schema");
    path
}

/// Waits for the child, killing it past `limit`; `None` if it had to be killed.
fn wait_bounded(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for schemathesis") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_with_every_check_finds_nothing() {
    let bin = schemathesis();
    let deployment =
        tokio::task::block_in_place(|| Deployment::start(DeploymentOptions::default()));
    let dir = tempfile::tempdir().expect("temp dir");
    let schema = schema_for(&deployment, dir.path());
    let token = &deployment.fixtures().kiosks[0].token;
    let log_path = dir.path().join("schemathesis.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let seed = std::env::var("KOFU_FUZZ_SEED").unwrap_or_else(|_| "20261201".into());
    let mut child = Command::new(bin)
        .arg("--config-file")
        .arg(root().join("tests/openapi/schemathesis.toml"))
        .arg("--no-color")
        .arg("run")
        .arg(&schema)
        .args(["--url", &deployment.node(0).api])
        .args(["--checks", "all"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        // The kiosk listener; the admin operations are served on the other one.
        .args(["--include-tag", "kiosk"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-time", &BUDGET_S.to_string()])
        .args(["--seed", &seed])
        // One worker: Python 3.11's parser is not thread-safe under hypothesis'
        // lambda descriptions ("AST constructor recursion depth mismatch").
        .args(["--workers", "1"])
        .args(["--generation-database", "none"])
        .args(["--request-timeout", "15"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .expect("start schemathesis");
    let status = tokio::task::block_in_place(|| wait_bounded(&mut child, HARD_LIMIT));
    let out = std::fs::read_to_string(&log_path).unwrap_or_default();
    println!("{out}");
    let status = status.unwrap_or_else(|| panic!("schemathesis ran past {HARD_LIMIT:?}"));
    assert!(
        status.success(),
        "schemathesis found faults (seed {seed}); see above"
    );
    // The stateful phase ran and followed links: sessions were driven, not only 404s.
    let covered = out
        .lines()
        .find_map(|l| {
            let rest = l.trim().strip_prefix("API Links:")?;
            rest.split_whitespace().next()?.parse::<u32>().ok()
        })
        .expect("a stateful phase with API links");
    assert!(covered >= 3, "the stateful phase followed {covered} links");
    assert!(
        !out.contains("Runtime Error"),
        "schemathesis errored (see above)"
    );
}
