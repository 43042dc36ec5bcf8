//! `promtool check metrics` on an exposition text, for the tests that scrape nodes.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Whether promtool accepts `text`, and what it said.
///
/// # Panics
/// If promtool is not installed (Debian package `prometheus`; `.ci/test` installs it).
pub fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (Debian package prometheus); .ci/test installs it");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}
