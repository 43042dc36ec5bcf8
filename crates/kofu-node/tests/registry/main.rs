//! `kofu registry` against a private `redis-server`: `load` of a fixture population and
//! `import` of a registry file.

use std::process::{Command, Output};

mod import;
mod load;

/// `kofu registry ARGS`, whatever its outcome (no `KOFU_REDIS_URL` from the shell).
fn registry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kofu"))
        .arg("registry")
        .args(args)
        .env_remove("KOFU_REDIS_URL")
        .output()
        .expect("kofu runs")
}

/// What the command printed, both streams.
fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
