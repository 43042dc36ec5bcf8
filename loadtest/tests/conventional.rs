//! The bench's conventional design (`kofu-load conventional`, bench-only) serves the
//! kiosk protocol so that the generator cannot tell it from kofu: a replay with every
//! kiosk behaviour switched up (wrong signatures, retries, abandoned sessions, a card
//! inserted at a second kiosk, every certificate kind) gets every answer it must get and
//! verifies every document. Behaviour only; its speed is what `kofu-load bench` is for.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ALL_BEHAVIOURS, LOAD, fixtures, load, replay_args, report, synth, utf8};
use kofu_testkit::{NodeOptions, RedisServer, free_port, sync_get_url};

/// The server process, killed when the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_conventional_design_passes_the_generators_checks() {
    let redis = RedisServer::start();
    let opts = NodeOptions::default();
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let server = Server(
        Command::new(LOAD)
            .arg("conventional")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--redis-url", &redis.url()])
            .args(["--fixture-seed", &opts.seed.to_string()])
            .args(["--fixture-residents", &opts.residents.to_string()])
            .args(["--fixture-kiosks", &opts.kiosks.to_string()])
            .stdin(Stdio::null())
            .spawn()
            .expect("kofu-load conventional starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while sync_get_url(&format!("{api}/readyz"), None, None, None).map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "the server never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Refusals in the API's words: no credential, an unknown session.
    let (status, body) = sync_get_url(
        &format!("{api}/v1/sessions/x/jobs/y/document"),
        None,
        None,
        None,
    )
    .expect("an answer");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"error\":\"unauthorized_kiosk\""), "{body}");

    let dir = tempfile::tempdir().expect("tempdir");
    let fx = fixtures(dir.path(), &opts);
    let trace = synth(dir.path(), &fx, "5", &ALL_BEHAVIOURS);
    let json = dir.path().join("report.json");
    let out = load(&replay_args(
        &trace,
        &fx,
        &api,
        "10",
        &[
            "--report-json",
            utf8(&json),
            "--fail-if",
            "errors=0,misdeliveries=0",
        ],
    ));
    assert!(
        out.status.success(),
        "replay against the conventional design failed"
    );
    let r = report(&json);
    assert_eq!(r["misdeliveries"], 0);
    assert_eq!(r["error_requests"], 0, "{}", r["errors"]);
    let verified = r["documents_verified"].as_u64().expect("verified");
    assert!(verified >= 50, "only {verified} documents verified");
    drop(server);
}
