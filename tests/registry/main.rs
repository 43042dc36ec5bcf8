//! A real registry (issue 11, API.md "Real deployments", Registry;
//! `docs/registry-format.md`): a node started with only a registry file, a kiosks file,
//! an admin tokens file and an issuer key file (no fixture seed) serves the whole
//! protocol over HTTPS; SIGHUP applies the file's changes and never undoes a revocation;
//! a bad file refuses the start naming the line and the field; a cluster serves a
//! registry imported with `kofu registry import` (directly or through Sentinel with a
//! password), and a re-import applies changes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kofu_kiosk::{Card, Fixtures, Kiosk, KioskCred};
use kofu_testkit::suite::*;
use kofu_testkit::{
    Deployment, DeploymentOptions, NodeOptions, RedisServer, Reply, SentinelSetup, kofu_bin,
};
use serde_json::{Value, json};

/// How long a SIGHUP may take to show (API.md gives kiosks files 2 s; records get more
/// room on a loaded machine, the test waits on the condition).
const RELOAD_WITHIN: Duration = Duration::from_secs(10);
const SHARDS: u32 = 64;

fn kofu(args: &[&str]) -> std::process::Output {
    Command::new(kofu_bin())
        .args(args)
        .output()
        .expect("run kofu")
}

/// `kofu credentials ...`: (secret from stderr's last word, stdout).
fn credentials(args: &[&str]) -> (String, String) {
    let out = kofu(&[&["credentials"], args].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    let secret = stderr.split_whitespace().last().expect("secret").to_owned();
    (secret, String::from_utf8(out.stdout).expect("utf-8"))
}

/// A registry file, a kiosks file, an admin tokens file and an issuer key: nothing from
/// a fixture seed but the registry's content (which the harness needs to sign as the
/// cards would).
struct Files {
    _dir: tempfile::TempDir,
    registry: PathBuf,
    kiosk: KioskCred,
    args: Vec<String>,
}

impl Files {
    fn new(opts: &NodeOptions) -> Files {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = |name: &str| dir.path().join(name);
        let (registry, kiosks, admins, key) = (
            path("registry.jsonl"),
            path("kiosks.jsonl"),
            path("admin-tokens.jsonl"),
            path("issuer.key"),
        );
        let out = kofu(&[
            "fixtures",
            "--seed",
            &opts.seed.to_string(),
            "--residents",
            &opts.residents.to_string(),
            "--registry",
        ]);
        assert!(out.status.success());
        std::fs::write(&registry, &out.stdout).expect("registry file");
        credentials(&["issuer-key", "--out", key.to_str().expect("path")]);
        let (token, line) = credentials(&["kiosk", "--kiosk-id", "REG-0001"]);
        std::fs::write(&kiosks, line).expect("kiosks file");
        let (_, line) = credentials(&[
            "admin", "--name", "ops", "--role", "read", "--role", "registry",
        ]);
        std::fs::write(&admins, line).expect("admin tokens file");
        let args = [
            ("--kiosks-file", &kiosks),
            ("--admin-tokens-file", &admins),
            ("--issuer-key-file", &key),
        ]
        .into_iter()
        .flat_map(|(flag, p)| [flag.to_owned(), p.display().to_string()])
        .collect();
        Files {
            _dir: dir,
            registry,
            kiosk: KioskCred {
                kiosk_id: "REG-0001".to_owned(),
                token,
            },
            args,
        }
    }

    /// The registry file's lines, each edited by `edit(card id, line)`.
    fn rewrite(&self, edit: impl Fn(&str, &mut Value)) -> String {
        let text = std::fs::read_to_string(&self.registry).expect("registry file");
        text.lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).expect("a registry line");
                let id = v["card_id"].as_str().expect("card id").to_owned();
                edit(&id, &mut v);
                v.to_string() + "\n"
            })
            .collect()
    }

    /// Replaces the file as an operator would: a new file renamed over the old one.
    fn replace(&self, text: &str) {
        let tmp = self.registry.with_extension("new");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &self.registry).expect("rename");
    }
}

fn a_sealed_card(fx: &Fixtures, n: usize) -> &Card {
    card_where(fx, n, |c| c.usable() && c.seal_issuable())
}

/// Why a `kind` job for `card` is refused now (`None`: it is accepted).
async fn refusal(k: &Kiosk, card: &Card, kind: &str) -> Option<String> {
    let sid = authed(k, card).await;
    let r = k.raw().create_job(&sid, kind, 1).await;
    let reason = (r.status != 202).then(|| {
        let v = expect_error(&r, "not_issuable");
        v["reason"].as_str().unwrap_or_default().to_owned()
    });
    assert_eq!(k.raw().close(&sid).await.status, 204);
    reason
}

async fn wait_for_refusal(k: &Kiosk, card: &Card, kind: &str, reason: &str) {
    let deadline = Instant::now() + RELOAD_WITHIN;
    loop {
        if refusal(k, card, kind).await.as_deref() == Some(reason) {
            return;
        }
        assert!(Instant::now() < deadline, "still no {reason} after SIGHUP");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_files_alone_serves_https_and_reloads_its_registry() {
    let node = NodeOptions::default();
    let files = Files::new(&node);
    let opts = DeploymentOptions {
        https: true,
        node: NodeOptions {
            registry_file: Some(files.registry.clone()),
            args: files.args.clone(),
            ..node
        },
        ..DeploymentOptions::default()
    };
    let d = tokio::task::block_in_place(|| Deployment::start(opts));
    assert!(d.node(0).api.starts_with("https://"));
    let fx = d.fixtures();
    let k = d.client().kiosk(&files.kiosk);
    full_session(&k, fx, full_card(fx, 0), "residence", 1, d.issuer())
        .await
        .expect("a whole session on a registry file");
    full_session(&k, fx, a_sealed_card(fx, 1), "seal", 1, d.issuer())
        .await
        .expect("a seal certificate");

    // The municipality revokes a seal in its file: SIGHUP applies it.
    let (revoked, marker) = (a_sealed_card(fx, 2), a_sealed_card(fx, 3));
    let original = files.rewrite(|_, _| {});
    files.replace(&files.rewrite(|id, v| {
        if id == revoked.card_id() {
            let number = v["seal"]["number"].clone();
            v["seal"] = json!({"status": "revoked", "number": number, "revoked_on": "2026-11-30"});
        }
    }));
    d.node(0).hangup();
    wait_for_refusal(&k, revoked, "seal", "seal_revoked").await;

    // An older file (still "registered") does not undo it; its other changes apply.
    files.replace(&files.rewrite(|id, v| {
        if id == revoked.card_id() {
            *v = serde_json::from_str(
                original
                    .lines()
                    .find(|l| l.contains(revoked.card_id()))
                    .expect("listed"),
            )
            .expect("line");
        }
        if id == marker.card_id() {
            v["restricted"] = json!(true);
        }
    }));
    d.node(0).hangup();
    wait_for_refusal(&k, marker, "residence", "record_restricted").await;
    assert_eq!(
        refusal(&k, revoked, "seal").await.as_deref(),
        Some("seal_revoked")
    );

    // A bad file is refused whole: the marker's restriction, in the same file, stays.
    let bad = files.rewrite(|id, v| {
        if id == marker.card_id() {
            v["restricted"] = json!(false);
        }
    }) + "{\"card_id\": \"0000000000000000\"}\n";
    files.replace(&bad);
    d.node(0).hangup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.node(0).logs().contains("reload refused") {
        assert!(Instant::now() < deadline, "no reload refused in the log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(d.node(0).logs().contains("field card_public_key"));
    assert_eq!(
        refusal(&k, marker, "residence").await.as_deref(),
        Some("record_restricted")
    );
}

fn serve_with_registry(file: &Path) -> std::process::Output {
    kofu(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--registry-file",
        file.to_str().expect("path"),
    ])
}

#[test]
fn a_bad_registry_file_refuses_the_start_naming_line_and_field() {
    let files = Files::new(&NodeOptions::default());
    let good = std::fs::read_to_string(&files.registry).expect("file");
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    let mut third: Value = serde_json::from_str(&lines[2]).expect("line");
    let name = third["full_name"].as_str().expect("name").to_owned();
    third["birth_date"] = json!(format!("{name} 1980"));
    lines[2] = third.to_string();
    // And a card listed twice, further down: the first bad line is the one named.
    lines.push(lines[0].clone());
    std::fs::write(&files.registry, lines.join("\n")).expect("write");
    let out = serve_with_registry(&files.registry);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 3, field birth_date"), "{stderr}");
    assert!(
        !stderr.contains(&name),
        "the value is never echoed: {stderr}"
    );

    lines[2] = good.lines().nth(2).expect("line").to_owned();
    std::fs::write(&files.registry, lines.join("\n")).expect("write");
    let out = serve_with_registry(&files.registry);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let last = lines.len();
    assert!(
        stderr.contains(&format!(
            "line {last}, field card_id: duplicate card id (first on line 1)"
        )),
        "{stderr}"
    );
}

/// The cluster nodes run on fixture credentials of the default seed (the harness checks
/// convergence with the fixture admin token) but get no `--fixture-*` argument: their
/// records are the imported file's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_serves_an_imported_registry_and_a_reimport_keeps_revocations() {
    let redis = RedisServer::start();
    let (files, opts) = on_imported_registry(2, redis.url());
    let d = tokio::task::block_in_place(|| Deployment::start(opts));
    // The client sends each request to a random node: sessions cross both.
    sessions_on_full_cards(&d, 4).await;
    let fx = d.fixtures();
    let k = d.kiosk(0);

    // A revocation at the counter, then the nightly file that predates it.
    let revoked = a_sealed_card(fx, 0);
    let path = format!("/admin/v1/residents/{}/seal/revoke", revoked.card_id());
    let r = d.admin(1, reqwest::Method::POST, &path, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let moved = full_card(fx, 3);
    files.replace(&files.rewrite(|id, v| {
        if id == moved.card_id() {
            v["restricted"] = json!(true);
        }
    }));
    let out = kofu(&[
        "registry",
        "import",
        "--redis",
        &redis.url(),
        files.registry.to_str().expect("path"),
        "--shard-count",
        &SHARDS.to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("0 added, 1 changed"), "{stdout}");
    for _ in 0..2 {
        assert_eq!(
            refusal(&k, moved, "residence").await.as_deref(),
            Some("record_restricted")
        );
        assert_eq!(
            refusal(&k, revoked, "seal").await.as_deref(),
            Some("seal_revoked")
        );
    }
}

/// `nodes` nodes on the Redis at `url`, its registry imported from a file of fixture
/// population 1 (the harness imports it before the nodes start); the files stay with
/// the caller.
fn on_imported_registry(nodes: usize, url: String) -> (Files, DeploymentOptions) {
    let node = NodeOptions {
        seed: 1,
        ..NodeOptions::default()
    };
    let files = Files::new(&node);
    let opts = DeploymentOptions {
        nodes,
        redis_url: Some(url),
        shard_count: Some(SHARDS),
        node: NodeOptions {
            registry_file: Some(files.registry.clone()),
            ..node
        },
        ..DeploymentOptions::default()
    };
    (files, opts)
}

/// `n` whole residence sessions of kiosk 0, each on another card with a full record.
async fn sessions_on_full_cards(d: &Deployment, n: usize) {
    let (fx, k) = (d.fixtures(), d.kiosk(0));
    for i in 0..n {
        full_session(&k, fx, full_card(fx, i), "residence", 1, d.issuer())
            .await
            .expect("a session on the imported registry");
    }
}

/// `kofu registry import` with a `redis+sentinel://` URL and a password (`requirepass`
/// on the primary, the replica and the Sentinels): the records reach the primary the
/// Sentinels name and its replica (each batch waits for it), and a node on the same URL
/// serves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_through_sentinel_with_a_password_is_served() {
    const PASSWORD: &str = "import-pass-1";
    let sentinel = tokio::task::block_in_place(|| SentinelSetup::start_with_requirepass(PASSWORD));
    let url = sentinel.url();
    assert!(
        url.starts_with(&format!("redis+sentinel://:{PASSWORD}@")),
        "{url}"
    );
    let (_files, opts) = on_imported_registry(1, url);
    // Imports the file through the Sentinels (the harness checks the exit status).
    let d = tokio::task::block_in_place(|| Deployment::start(opts));
    sessions_on_full_cards(&d, 2).await;
    let fx = d.fixtures();
    let residents = fx.cards.len() as u64;
    for server in [&sentinel.primary, &sentinel.replica] {
        let mut c = server.conn();
        let anonymous = c.call(&["DBSIZE"]).expect("reply");
        assert!(matches!(anonymous, Reply::Error(_)), "{anonymous:?}");
        c.must(&["AUTH", PASSWORD]);
        let label = c.must(&["GET", "kofu:meta:population"]).text();
        assert!(
            label.as_deref().is_some_and(|l| l.starts_with("import:")),
            "{label:?}"
        );
        let Reply::Int(keys) = c.must(&["DBSIZE"]) else {
            panic!("DBSIZE");
        };
        assert!(keys.unsigned_abs() >= residents, "{keys} keys");
    }
}
