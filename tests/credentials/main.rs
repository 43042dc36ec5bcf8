//! Real deployments' credentials (issue 11, API.md "Real deployments"): a node started
//! with a kiosks file, an admin tokens file and an issuer key file serves the protocol to
//! the tokens `kofu credentials` minted and to nothing fixture-derived; a kiosk removed
//! or disabled in the file is refused within 2 s of SIGHUP; an admin token without the
//! role an endpoint needs gets `403 forbidden`; bad files are refused naming the line
//! and the field. `rotation.rs`: issuer keys rotate without a verification gap.

mod rotation;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kofu_kiosk::KioskCred;
use kofu_testkit::suite::*;
use kofu_testkit::{Deployment, DeploymentOptions, NodeOptions, Resp, kofu_bin};
use reqwest::Method;

/// API.md: a kiosk removed or disabled in the file gets `401` within 2 s of SIGHUP.
const RELOAD_WITHIN: Duration = Duration::from_secs(2);

/// What `kofu credentials ...` printed: the secret (stderr, last word of its labelled
/// line) and stdout (the file line, or a public key).
struct Minted {
    secret: String,
    stdout: String,
}

fn credentials(args: &[&str]) -> Minted {
    let out = Command::new(kofu_bin())
        .arg("credentials")
        .args(args)
        .output()
        .expect("run kofu credentials");
    assert!(
        out.status.success(),
        "kofu credentials {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    Minted {
        secret: stderr
            .split_whitespace()
            .last()
            .expect("a labelled secret")
            .to_owned(),
        stdout: String::from_utf8(out.stdout).expect("utf-8"),
    }
}

/// `kofu credentials ... >> file`.
fn append(file: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("append");
}

struct Files {
    dir: tempfile::TempDir,
    kiosks: PathBuf,
    admins: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().expect("temp dir");
        let (kiosks, admins, key) = (
            dir.path().join("kiosks.jsonl"),
            dir.path().join("admin-tokens.jsonl"),
            dir.path().join("issuer.key"),
        );
        credentials(&["issuer-key", "--out", key.to_str().expect("path")]);
        std::fs::write(&kiosks, "").expect("kiosks file");
        std::fs::write(&admins, "").expect("admin tokens file");
        Files {
            dir,
            kiosks,
            admins,
            key,
        }
    }

    /// A new kiosk token, its line appended to the kiosks file.
    fn kiosk(&self, id: &str) -> (KioskCred, String) {
        let m = credentials(&["kiosk", "--kiosk-id", id]);
        append(&self.kiosks, &m.stdout);
        let cred = KioskCred {
            kiosk_id: id.to_owned(),
            token: m.secret,
        };
        (cred, m.stdout)
    }

    /// A new admin token with `roles`, its line appended to the admin tokens file.
    fn admin(&self, name: &str, roles: &[&str]) -> String {
        let mut args = vec!["admin", "--name", name];
        for r in roles {
            args.extend(["--role", r]);
        }
        let m = credentials(&args);
        append(&self.admins, &m.stdout);
        m.secret
    }

    fn args(&self) -> Vec<String> {
        kofu_testkit::file_args(&[
            ("--kiosks-file", self.kiosks.as_path()),
            ("--admin-tokens-file", self.admins.as_path()),
            ("--issuer-key-file", self.key.as_path()),
        ])
    }
}

fn start(files: &Files) -> Deployment {
    let opts = DeploymentOptions {
        node: NodeOptions {
            args: files.args(),
            ..NodeOptions::default()
        },
        ..DeploymentOptions::default()
    };
    tokio::task::block_in_place(|| Deployment::start(opts))
}

async fn admin(d: &Deployment, method: Method, path: &str, token: &str) -> Resp {
    let url = format!("{}{path}", d.node(0).admin);
    raw(method, &url, Some(&format!("Bearer {token}")), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_files_serves_minted_tokens_and_nothing_fixture_derived() {
    let files = Files::new();
    let (cred, _) = files.kiosk("TST-0001");
    let ops = files.admin("ops", &["read", "registry", "drain"]);
    let d = start(&files);
    let fx = d.fixtures();

    // The minted kiosk token runs a whole session, document checked as a kiosk does.
    let kiosk = d.client().kiosk(&cred);
    full_session(&kiosk, fx, full_card(fx, 0), "residence", 1, d.issuer())
        .await
        .expect("a session with a minted token");
    // The key signing is the key file's, not the fixture seed's.
    let public = credentials(&[
        "issuer-public",
        "--key-file",
        files.key.to_str().expect("path"),
    ]);
    let published: kofu_proto::api::IssuerKeyResponse =
        get(&format!("{}/v1/issuer-key", d.node(0).api))
            .await
            .json();
    assert_eq!(published.public_key, public.stdout.trim());

    // Every fixture credential is refused.
    let fixture_kiosk = d.kiosk(0);
    expect_error(
        &fixture_kiosk
            .raw()
            .create_session(full_card(fx, 1).card_id())
            .await,
        "unauthorized_kiosk",
    );
    expect_error(
        &admin(&d, Method::GET, "/admin/v1/cluster", &fx.admin_token).await,
        "unauthorized",
    );
    assert_eq!(
        admin(&d, Method::GET, "/admin/v1/cluster", &ops)
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_removed_or_disabled_gets_401_within_2_s_of_sighup() {
    let files = Files::new();
    let (removed, _) = files.kiosk("TST-0001");
    let (disabled, disabled_line) = files.kiosk("TST-0002");
    let (kept, kept_line) = files.kiosk("TST-0003");
    let d = start(&files);
    let fx = d.fixtures();
    let kiosks: Vec<_> = [&removed, &disabled, &kept]
        .iter()
        .map(|c| d.client().kiosk(c))
        .collect();
    for (i, k) in kiosks.iter().enumerate() {
        let s = authed(k, full_card(fx, i)).await;
        assert_eq!(k.raw().close(&s).await.status, 204);
    }

    let disabled_now = disabled_line.replace('}', ",\"disabled\":true}");
    std::fs::write(&files.kiosks, disabled_now + &kept_line).expect("rewrite kiosks file");
    let sent = Instant::now();
    d.node(0).hangup();
    for k in &kiosks[..2] {
        loop {
            let r = k.raw().create_session(full_card(fx, 3).card_id()).await;
            if r.status == 401 {
                expect_error(&r, "unauthorized_kiosk");
                break;
            }
            assert_eq!(r.status, 201, "{}", r.text());
            let s: kofu_proto::api::CreateSessionResponse = r.json();
            k.raw().close(&s.session_id).await;
            assert!(
                sent.elapsed() < RELOAD_WITHIN,
                "{} still accepted {:?} after SIGHUP",
                k.kiosk_id(),
                sent.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let s = authed(&kiosks[2], full_card(fx, 4)).await;
    assert_eq!(kiosks[2].raw().close(&s).await.status, 204);

    // A file that does not parse is refused whole: the kiosks in force stay, the new
    // line is not taken, and the log names the line and the field.
    let (added, _) = files.kiosk("TST-0004");
    append(
        &files.kiosks,
        "{\"kiosk_id\":\"TST-0005\",\"token_sha256\":\"abc\"}\n",
    );
    d.node(0).hangup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.node(0).logs().contains("reload refused") {
        assert!(Instant::now() < deadline, "no reload refusal logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = d.node(0).logs();
    assert!(
        log.contains("line 4") && log.contains("field token_sha256"),
        "{log}"
    );
    let s = authed(&kiosks[2], full_card(fx, 5)).await;
    assert_eq!(kiosks[2].raw().close(&s).await.status, 204);
    expect_error(
        &d.client()
            .kiosk(&added)
            .raw()
            .create_session(full_card(fx, 6).card_id())
            .await,
        "unauthorized_kiosk",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_without_the_role_gets_403() {
    let files = Files::new();
    let viewer = files.admin("viewer", &["read"]);
    let registrar = files.admin("registrar", &["registry"]);
    let oncall = files.admin("oncall", &["read", "drain"]);
    files.kiosk("TST-0001");
    let d = start(&files);
    let card = full_card(d.fixtures(), 0).card_id().to_owned();
    let revoke = format!("/admin/v1/residents/{card}/seal/revoke");

    assert_eq!(
        admin(&d, Method::GET, "/admin/v1/cluster", &viewer)
            .await
            .status,
        200
    );
    for (token, method, path) in [
        (&viewer, Method::POST, revoke.as_str()),
        (&viewer, Method::POST, "/admin/v1/drain"),
        (&registrar, Method::GET, "/admin/v1/cluster"),
        (&registrar, Method::POST, "/admin/v1/drain"),
        (&oncall, Method::POST, revoke.as_str()),
    ] {
        expect_error(&admin(&d, method, path, token).await, "forbidden");
    }
    expect_error(
        &admin(&d, Method::GET, "/admin/v1/cluster", "not-a-token").await,
        "unauthorized",
    );
    assert_eq!(
        admin(&d, Method::POST, &revoke, &registrar).await.status,
        200
    );
    assert_eq!(
        admin(&d, Method::POST, "/admin/v1/drain", &oncall)
            .await
            .status,
        200
    );
}

/// `kofu serve` with `args` (and free listeners): its exit status and stderr.
fn serve(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(kofu_bin())
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("KOFU_KIOSKS_FILE")
        .output()
        .expect("run kofu serve");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_credentials_files_stop_the_start_naming_line_and_field() {
    let files = Files::new();
    files.kiosk("TST-0001");
    append(
        &files.kiosks,
        "{\"kiosk_id\":\"TST-0002\",\"token_sha256\":\"xyz\"}\n",
    );
    let key = files.key.to_str().expect("path");
    let kiosks = files.kiosks.to_str().expect("path");
    let (code, stderr) = serve(&["--kiosks-file", kiosks, "--issuer-key-file", key]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("line 2") && stderr.contains("field token_sha256"),
        "{stderr}"
    );
    let admins = files.dir.path().join("admins.jsonl");
    std::fs::write(
        &admins,
        format!(
            "{{\"name\":\"ops\",\"token_sha256\":\"{}\",\"roles\":[\"root\"]}}\n",
            "0".repeat(64)
        ),
    )
    .expect("write");
    let (code, stderr) = serve(&[
        "--admin-tokens-file",
        admins.to_str().expect("path"),
        "--issuer-key-file",
        key,
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("line 1") && stderr.contains("field roles"),
        "{stderr}"
    );
}

#[test]
fn off_fixtures_a_node_needs_an_issuer_key_file() {
    let files = Files::new();
    files.kiosk("TST-0001");
    let (code, stderr) = serve(&["--kiosks-file", files.kiosks.to_str().expect("path")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("issuer key file is required"), "{stderr}");
}

#[test]
fn minted_tokens_are_random_and_lines_are_what_a_node_reads() {
    let (a, b) = (
        credentials(&["kiosk", "--kiosk-id", "TST-0001"]),
        credentials(&["kiosk", "--kiosk-id", "TST-0001"]),
    );
    assert_ne!(a.secret, b.secret);
    let secret = a.secret.strip_prefix("TST-0001.").expect("kiosk id first");
    // 256 bits as base64url.
    assert_eq!(secret.len(), 43);
    assert!(a.stdout.ends_with('\n') && a.stdout.lines().count() == 1);
    let line: serde_json::Value = serde_json::from_str(&a.stdout).expect("a JSON line");
    assert_eq!(line["kiosk_id"], "TST-0001");
    assert_ne!(
        line["token_sha256"].as_str().expect("hash"),
        secret,
        "the file holds a hash, not the token"
    );
    // An invalid kiosk id or role is refused before anything is printed.
    let out = Command::new(kofu_bin())
        .args(["credentials", "kiosk", "--kiosk-id", "lower-case"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let out = Command::new(kofu_bin())
        .args(["credentials", "admin", "--name", "ops", "--role", "root"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}
