//! The process interface of contract.md: settings as flags or `KOFU_*` variables, bad
//! configuration refused with exit code 2, graceful stop on SIGTERM, the hard limit.

use std::process::Command;
use std::time::{Duration, Instant};

use kofu_testkit::kofu_bin;

use kofu_testkit::suite::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_can_come_from_the_environment() {
    let env = Env::start_with(&[], &[("KOFU_IDLE_TIMEOUT_MS", "2500")]).await;
    let s = open(&env.kiosk(0), full_card(env.fx, 0)).await;
    assert_eq!(
        s.expires_in_s, 3,
        "KOFU_IDLE_TIMEOUT_MS=2500 rounds up to 3 s"
    );
}

#[test]
fn bad_configuration_exits_with_2() {
    let cases: [&[&str]; 4] = [
        &["--log-format", "xml"],
        &["--listen", "not-an-address"],
        &["--idle-timeout-ms", "soon"],
        &["--no-such-flag"],
    ];
    for args in cases {
        let out = Command::new(kofu_bin())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .expect("run kofu");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {:?}", out.status);
        assert!(!out.stderr.is_empty(), "{args:?}: no message on stderr");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_node_gracefully() {
    // Open sessions hold the shutdown for at most the drain timeout.
    let mut env = Env::start(&["--drain-timeout-ms", "1000"]).await;
    let k = env.kiosk(0);
    let card = full_card(env.fx, 0);
    let sid = authed(&k, card).await;
    job(&k, &sid, "residence", 1).await;
    let t = Instant::now();
    let status = tokio::task::block_in_place(|| env.deployment.node_mut(0).terminate());
    assert!(status.success(), "exit status {status:?} after SIGTERM");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "slow shutdown: {:?}",
        t.elapsed()
    );
    let r = k
        .with_targets([&env.node().api])
        .raw()
        .create_session(card.card_id())
        .await;
    assert_eq!(r.status, 0, "still answering after exit: {}", r.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hard_limit_ends_even_busy_sessions() {
    let (_env, [k], card) = Env::start_kiosks(&["--hard-limit-ms", "1200"]).await;
    let s = open(&k, card).await;
    let sig = card.sign_challenge(&s.session_id, k.kiosk_id(), &s.challenge);
    assert_eq!(k.raw().auth(&s.session_id, &sig).await.status, 200);
    let jid = job(&k, &s.session_id, "residence", 1).await;
    // Keep it busy well inside the idle timeout; only the hard limit can end it.
    let t = Instant::now();
    let mut last = 200;
    while t.elapsed() < Duration::from_millis(2500) {
        last = k.raw().document(&s.session_id, &jid, 0).await.status;
        if last != 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, 404, "session outlived its hard limit");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "ended early: {:?}",
        t.elapsed()
    );
    expect_error(
        &k.raw().document(&s.session_id, &jid, 0).await,
        "unknown_session",
    );
}
