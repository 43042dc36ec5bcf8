//! `kofu-load bench` end to end with tiny settings: it starts its own targets (a trivial
//! endpoint, the conventional design, an embedded node, 1- and 3-node clusters on
//! private redis-servers), drives them, and prints the table and the memory line. Speed is not asserted here: that is what
//! the command is for, in release mode.

use std::process::Command;

#[test]
fn the_bench_command_measures_every_target_and_prints_one_table() {
    let out = Command::new(env!("CARGO_BIN_EXE_kofu-load"))
        .args(["bench", "--seconds", "1", "--concurrency", "8"])
        .args([
            "--residents",
            "300",
            "--kiosks",
            "20",
            "--idle-sessions",
            "500",
        ])
        .arg("--kofu")
        .arg(kofu_testkit::kofu_bin())
        .output()
        .expect("kofu-load bench runs");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "bench failed");
    for row in [
        "(a) HTTP ceiling",
        "(d) conventional: 1 process + Redis",
        "(b) kofu embedded node",
        "(c) kofu 1 node + Redis",
        "(c) kofu 3-node cluster + Redis",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no row {row}"));
        // Columns after the name: sessions/s, requests/s, p99, sessions, errors, ratio.
        let sessions: u64 = line[row.len()..]
            .split_whitespace()
            .nth(3)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no session count in {line:?}"));
        assert!(sessions > 0, "{row} completed no session");
    }
    assert!(text.contains("500 open idle sessions"), "no memory line");
}
