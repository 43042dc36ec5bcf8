//! `kofu audit export` over real nodes: the confirmed prints of a period, card digests
//! only, from an embedded node's audit file and from a cluster's Redis audit streams
//! (every shard's, merged), and `--trim`, which removes from the streams what was
//! exported and never anything that was not.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kofu_testkit::{Deployment, DeploymentOptions, full_session, kofu_bin};
use serde_json::Value;

/// The fields of an exported line, and nothing else (no card id, no name).
const FIELDS: [&str; 10] = [
    "session_id",
    "job_id",
    "serial",
    "kiosk_id",
    "card_digest",
    "kind",
    "copies",
    "charged_yen",
    "record_version",
    "printed_at",
];

/// `ms` since the epoch as RFC 3339 UTC with milliseconds.
fn rfc3339(ms: u128) -> String {
    let (secs, milli) = ((ms / 1000) as i64, ms % 1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis()
}

/// An instant strictly after every write so far (Redis stamps entries with the same
/// clock, in milliseconds).
fn instant_after_writes() -> u128 {
    let t = now_ms() + 1;
    while now_ms() <= t {
        std::thread::sleep(Duration::from_millis(1));
    }
    t
}

#[test]
fn rfc3339_of_known_instants() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
    assert_eq!(rfc3339(1_796_169_599_999), "2026-12-01T23:59:59.999Z");
}

struct Export {
    code: Option<i32>,
    lines: Vec<Value>,
    stdout: String,
    stderr: String,
}

impl Export {
    fn serials(&self) -> Vec<String> {
        self.lines
            .iter()
            .map(|l| l["serial"].as_str().expect("serial").to_owned())
            .collect()
    }
}

fn export(args: &[&str]) -> Export {
    let out = Command::new(kofu_bin())
        .args(["audit", "export"])
        .args(args)
        .env_remove("KOFU_REDIS_URL")
        .output()
        .expect("run kofu audit export");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines = if out.status.success() {
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    } else {
        Vec::new()
    };
    Export {
        code: out.status.code(),
        lines,
        stdout,
        stderr,
    }
}

/// Runs `export` and requires success.
fn exported(args: &[&str]) -> Export {
    let e = export(args);
    assert_eq!(e.code, Some(0), "kofu audit export {args:?}: {}", e.stderr);
    e
}

/// Every line has exactly the record's fields, the card only as its digest, and no
/// card id of the population appears anywhere in the output.
fn assert_auditable(d: &Deployment, e: &Export) {
    for line in &e.lines {
        let keys: BTreeSet<&str> = line
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, FIELDS.into_iter().collect(), "fields of {line}");
        let digest = line["card_digest"].as_str().expect("digest");
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "card_digest is a hex sha256"
        );
    }
    for card in &d.fixtures().cards {
        assert!(
            !e.stdout.contains(card.id.expose()),
            "a card id in the export"
        );
    }
}

/// `n` complete sessions (one residence copy each) on fresh cards from `next`; their
/// serials.
async fn prints(d: &Deployment, next: &mut usize, n: usize) -> Vec<String> {
    let fx = d.fixtures();
    let mut serials = Vec::new();
    for _ in 0..n {
        let card = fx.ordinary().nth(*next).expect("enough cards");
        let kiosk = d.kiosk(*next % fx.kiosks.len());
        *next += 1;
        let report = full_session(&kiosk, fx, card, "residence", 1, d.issuer())
            .await
            .unwrap_or_else(|e| panic!("session failed: {e}"));
        serials.push(report.serial);
    }
    serials
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_nodes_audit_file_exports_its_confirmed_prints() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("audit.jsonl");
    let file_arg = file.to_str().expect("path");
    let mut opts = DeploymentOptions::default();
    opts.node
        .env
        .push(("KOFU_AUDIT_FILE".into(), file_arg.to_owned()));
    let d = tokio::task::block_in_place(|| Deployment::start(opts));
    let before = rfc3339(now_ms() - 2_000);
    let mut next = 0;
    let serials = prints(&d, &mut next, 6).await;
    let after = rfc3339(now_ms() + 2_000);

    let all = exported(&["--audit-file", file_arg, "--since", &before]);
    assert_eq!(sorted(&all.serials()), sorted(&serials));
    assert_auditable(&d, &all);
    // The node wrote them in the order they were confirmed, and the export keeps it.
    assert_eq!(all.serials(), serials);

    // --out writes the same lines to a file.
    let out = dir.path().join("export.jsonl");
    let to_file = exported(&[
        "--audit-file",
        file_arg,
        "--since",
        &before,
        "--until",
        &after,
        "--out",
        out.to_str().expect("path"),
    ]);
    assert!(to_file.stdout.is_empty());
    assert_eq!(
        std::fs::read_to_string(&out).expect("export file"),
        all.stdout
    );

    // A period with no print, and one that ended before them.
    assert!(
        exported(&["--audit-file", file_arg, "--since", &after])
            .lines
            .is_empty()
    );
    let old = rfc3339(now_ms() - 3_600_000);
    assert!(
        exported(&[
            "--audit-file",
            file_arg,
            "--since",
            &old,
            "--until",
            &before
        ])
        .lines
        .is_empty()
    );

    // Refusals: --trim is for the Redis streams (the file is the node's record);
    // no source; a time that is not RFC 3339; an end before the start.
    for args in [
        vec!["--audit-file", file_arg, "--since", &before, "--trim"],
        vec!["--since", &before],
        vec!["--audit-file", file_arg, "--since", "yesterday"],
        vec![
            "--audit-file",
            file_arg,
            "--since",
            &after,
            "--until",
            &before,
        ],
    ] {
        let e = export(&args);
        assert_eq!(e.code, Some(2), "{args:?} should be refused: {}", e.stderr);
        assert!(e.stdout.is_empty());
    }
}

/// Every audit stream's entries, as serials, by stream key.
fn streams(d: &Deployment) -> BTreeMap<Vec<u8>, Vec<String>> {
    let mut conn = d.redis.as_ref().expect("the deployment's redis").conn();
    let keys = conn.scan("kofu:{s*}:audit");
    keys.into_iter()
        .map(|key| {
            let serials = conn
                .stream(&key)
                .into_iter()
                .filter_map(|fields| {
                    fields
                        .into_iter()
                        .find(|(k, _)| k == "serial")
                        .map(|(_, v)| v)
                })
                .collect();
            (key, serials)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_audit_streams_export_merged_and_trim_only_what_was_exported() {
    let d = tokio::task::block_in_place(|| Deployment::start(DeploymentOptions::nodes(2)));
    let url = d.redis.as_ref().expect("redis").url();
    let t0 = rfc3339(now_ms() - 2_000);
    let mut next = 0;
    let a = prints(&d, &mut next, 8).await;
    let t_mid_ms = instant_after_writes();
    let t_mid = rfc3339(t_mid_ms);
    let b = prints(&d, &mut next, 8).await;

    // Every shard's stream, merged.
    let all = exported(&["--redis", &url, "--since", &t0]);
    let mut ab = a.clone();
    ab.extend(b.iter().cloned());
    assert_eq!(sorted(&all.serials()), sorted(&ab));
    assert_auditable(&d, &all);
    let held = streams(&d);
    assert!(
        held.len() > 1,
        "the prints should spread over several shards"
    );
    // Merged in time order: the first batch entirely before the second.
    assert_eq!(sorted(&all.serials()[..a.len()]), sorted(&a));
    // A period: exactly the first batch.
    let first = exported(&["--redis", &url, "--since", &t0, "--until", &t_mid]);
    assert_eq!(sorted(&first.serials()), sorted(&a));

    // Exporting the second batch alone and trimming: a stream that still holds a
    // print of the first batch (never exported) is left whole; the others lose what
    // was exported.
    let second = exported(&["--redis", &url, "--since", &t_mid, "--trim"]);
    assert_eq!(sorted(&second.serials()), sorted(&b));
    assert!(second.stderr.contains("trimmed"), "{}", second.stderr);
    let after = streams(&d);
    let remaining: BTreeSet<&String> = after.values().flatten().collect();
    for s in &a {
        assert!(remaining.contains(s), "an unexported print was trimmed");
    }
    let a_set: BTreeSet<&String> = a.iter().collect();
    for (key, serials) in &after {
        let holds_a = serials.iter().any(|s| a_set.contains(s));
        assert!(
            holds_a || serials.is_empty(),
            "{}: exported entries left in a stream with nothing older",
            String::from_utf8_lossy(key)
        );
        if holds_a {
            assert_eq!(
                serials, &held[key],
                "a stream with older entries was changed"
            );
        }
    }

    // Exporting everything from the start and trimming empties every stream.
    let left: Vec<String> = after.values().flatten().cloned().collect();
    let rest = exported(&["--redis", &url, "--since", &t0, "--trim"]);
    assert_eq!(sorted(&rest.serials()), sorted(&left));
    assert!(!rest.stderr.contains("not trimmed"), "{}", rest.stderr);
    assert!(
        streams(&d).values().all(Vec::is_empty),
        "streams not empty after exporting and trimming everything"
    );
    // Later prints are exported; the trimmed ones are gone.
    let c = prints(&d, &mut next, 2).await;
    let later = exported(&["--redis", &url, "--since", &t0]);
    assert_eq!(sorted(&later.serials()), sorted(&c));
}
