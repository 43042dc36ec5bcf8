//! Stamps the binary with the git commit it was built from, for `kofu_build_info`:
//! `KOFU_GIT_COMMIT` from the environment when set (the Dockerfile passes it), else
//! `git rev-parse HEAD` when the source is a git checkout; neither (a tarball, a clean
//! copy without `.git`, no git installed) leaves it empty and the build succeeds.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=KOFU_GIT_COMMIT");
    let commit = match std::env::var("KOFU_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => Some(c.trim().to_owned()),
        _ => {
            let commit = git(&["rev-parse", "HEAD"]);
            if commit.is_some() {
                // A new commit or checkout changes these; watch only files that exist
                // (a missing one would rerun this script on every build).
                let mut watch = vec![git(&["rev-parse", "--git-path", "HEAD"])];
                if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    watch.push(git(&["rev-parse", "--git-path", &head_ref]));
                }
                watch.push(git(&["rev-parse", "--git-path", "packed-refs"]));
                for path in watch.into_iter().flatten() {
                    if Path::new(&path).exists() {
                        println!("cargo:rerun-if-changed={path}");
                    }
                }
            }
            commit
        }
    };
    // Only hex digits reach the label: anything else is left out.
    let commit = commit
        .filter(|c| c.len() <= 64 && c.chars().all(|ch| ch.is_ascii_hexdigit()))
        .unwrap_or_default();
    println!("cargo:rustc-env=KOFU_GIT_COMMIT={commit}");
}
