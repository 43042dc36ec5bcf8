//! What the kofu-load end-to-end tests share: the population file of a node, running
//! `kofu-load`, a synthesized trace, the replay command line, the JSON report.
#![allow(dead_code)] // each test file uses its own subset

pub mod swap;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kofu_testkit::{NodeOptions, kofu_bin};
use serde_json::Value;

pub const LOAD: &str = env!("CARGO_BIN_EXE_kofu-load");

/// Synth flags that switch every error behaviour off: a steady stream of clean sessions.
pub const NO_BEHAVIOURS: [&str; 8] = [
    "--abandon",
    "0",
    "--wrong-signature",
    "0",
    "--retry",
    "0",
    "--duplicate-card",
    "0",
];

/// Synth flags that switch every error behaviour up, over a busy minute.
pub const ALL_BEHAVIOURS: [&str; 12] = [
    "--sessions-per-day",
    "150000",
    "--think",
    "0.05",
    "--abandon",
    "0.1",
    "--wrong-signature",
    "0.1",
    "--retry",
    "0.1",
    "--duplicate-card",
    "0.05",
];

pub fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `kofu fixtures` for the population `opts` serves, written into `dir`.
pub fn fixtures(dir: &Path, opts: &NodeOptions) -> PathBuf {
    let out = Command::new(kofu_bin())
        .arg("fixtures")
        .args(["--seed", &opts.seed.to_string()])
        .args(["--residents", &opts.residents.to_string()])
        .args(["--kiosks", &opts.kiosks.to_string()])
        .output()
        .expect("kofu fixtures runs");
    assert!(out.status.success(), "kofu fixtures failed");
    let path = dir.join("fixtures.jsonl");
    std::fs::write(&path, out.stdout).expect("write fixtures");
    path
}

/// Runs `kofu-load` and shows what it printed.
pub fn load<S: AsRef<str> + std::fmt::Debug>(args: &[S]) -> Output {
    let out = Command::new(LOAD)
        .args(args.iter().map(AsRef::as_ref))
        .output()
        .expect("kofu-load runs");
    eprintln!(
        "kofu-load {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The noon minute of the model with `seed`, plus `extra` model flags, as `dir/trace.kofu`.
pub fn synth(dir: &Path, fx: &Path, seed: &str, extra: &[&str]) -> PathBuf {
    let trace = dir.join("trace.kofu");
    let mut args = vec![
        "synth",
        "--fixtures",
        utf8(fx),
        "--out",
        utf8(&trace),
        "--seed",
        seed,
        "--from",
        "12:00",
        "--to",
        "12:01",
    ];
    args.extend_from_slice(extra);
    assert!(load(&args).status.success(), "synth failed");
    trace
}

/// `replay TRACE --fixtures FX --target TARGETS --speed SPEED --quiet` and `extra`.
pub fn replay_args(
    trace: &Path,
    fx: &Path,
    targets: &str,
    speed: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "replay",
        utf8(trace),
        "--fixtures",
        utf8(fx),
        "--target",
        targets,
        "--speed",
        speed,
        "--quiet",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

pub fn report(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("report written")).expect("report is JSON")
}
