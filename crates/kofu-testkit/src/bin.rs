//! Locates the `kofu` binary under test: built once per test process from the same
//! workspace and profile, so tests never run a stale or foreign binary by accident.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Path to the `kofu` binary, built once per test process (`KOFU_BIN` overrides).
pub fn kofu_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("KOFU_BIN") {
            return PathBuf::from(path);
        }
        build_kofu()
    })
    .clone()
}

fn workspace_root() -> PathBuf {
    // The testkit sits at <root>/crates/kofu-testkit.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn is_release() -> bool {
    std::env::current_exe()
        .map(|exe| exe.components().any(|c| c.as_os_str() == "release"))
        .unwrap_or(false)
}

/// `cargo build -p kofu-node --bin kofu` in this workspace and profile (a no-op when
/// it is up to date); the path is the one cargo reports.
fn build_kofu() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // Cargo (and nextest) give a test process the variables of *its* package; a build
    // started with them looks dirty to build scripts that track them (ring's tracks
    // CARGO_MANIFEST_DIR), so every test would rebuild half the dependency tree and the
    // next build from a shell would rebuild it back. The child gets the shell's view.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_MANIFEST_LINKS",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&key.as_ref())
        {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd.current_dir(workspace_root())
        .args(["build", "-p", "kofu-node", "--bin", "kofu"])
        .args(["--message-format", "json-render-diagnostics"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if is_release() {
        cmd.arg("--release");
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build kofu: {e}"));
    assert!(
        out.status.success(),
        "`cargo build -p kofu-node --bin kofu` failed ({}); see the compiler output above",
        out.status
    );
    // Cargo's own artifact report is the only reliable source of the path, whatever
    // the target dir configuration is.
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" || msg["target"]["name"] != "kofu" {
            continue;
        }
        if let Some(exe) = msg["executable"].as_str() {
            return PathBuf::from(exe);
        }
    }
    panic!("cargo built kofu but reported no executable path");
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind an ephemeral port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("no local address: {e}"))
        .port()
}

/// Command-line arguments naming files: `--flag path` for each pair.
pub fn file_args(pairs: &[(&str, &Path)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(flag, path)| [(*flag).to_owned(), path.display().to_string()])
        .collect()
}

/// Sends `sig` to the child process `pid`, if it still runs; a test's way to freeze
/// (`SIGSTOP`), thaw (`SIGCONT`) or reload (`SIGHUP`) a server.
pub fn signal(pid: Option<u32>, sig: rustix::process::Signal) {
    if let Some(pid) = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
}
