//! Admission control (issue 11): a kiosk over its request rate or its open sessions gets
//! `429 too_many_requests`, the kiosk listener refuses requests beyond its in-flight cap
//! with `503`, every `503` and `429 too_many_requests` carries a `Retry-After` that
//! differs between answers (refused kiosks must not come back in step), and a slow
//! client (half a header, or half a body) is cut off without holding anyone else up.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kofu_testkit::Resp;
use kofu_testkit::suite::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A session id that cannot exist: the cheapest call that passes authentication.
const NO_SESSION: &str = "not-a-session";

/// The `Retry-After` of a refusal, in seconds.
#[track_caller]
fn retry_after(r: &Resp) -> u32 {
    r.header("retry-after")
        .unwrap_or_else(|| panic!("status {} without Retry-After: {}", r.status, r.text()))
        .parse()
        .unwrap_or_else(|e| panic!("Retry-After is not seconds: {e}"))
}

/// Default `KOFU_RETRY_AFTER_S` is 2: answers spread over 1..=3 s.
#[track_caller]
fn assert_jittered(values: &[u32]) {
    let distinct: BTreeSet<u32> = values.iter().copied().collect();
    assert!(
        distinct.len() >= 2,
        "{} refusals, all with Retry-After {distinct:?}",
        values.len()
    );
    assert!(distinct.iter().all(|v| (1..=3).contains(v)), "{distinct:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_over_its_rate_gets_429_with_differing_retry_after() {
    let env = Env::start(&["--kiosk-rate", "1", "--kiosk-burst", "5"]).await;
    let (busy, calm) = (env.kiosk(0), env.kiosk(1));
    let mut waits = Vec::new();
    let mut passed = 0;
    let started = Instant::now();
    while waits.len() < 30 {
        let r = busy.raw().close(NO_SESSION).await;
        if r.status == 429 {
            expect_error(&r, "too_many_requests");
            waits.push(retry_after(&r));
        } else {
            expect_error(&r, "unknown_session");
            passed += 1;
        }
        assert!(passed < 200, "the kiosk's rate is not limited");
    }
    // The burst of 5, and one more per second the loop took.
    let refill = started.elapsed().as_secs_f64().ceil() as usize;
    assert!(
        (5..=6 + refill).contains(&passed),
        "{passed} passed in {:?}",
        started.elapsed()
    );
    assert_jittered(&waits);
    // Another kiosk has its own bucket.
    expect_error(&calm.raw().close(NO_SESSION).await, "unknown_session");
    let refused = env
        .deployment
        .metric_sum("kofu_admission_refusals_total")
        .await
        .expect("metrics");
    assert!(refused >= waits.len() as f64, "{refused} refusals counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_over_its_open_sessions_gets_429_until_one_ends() {
    let env = Env::start(&["--kiosk-max-sessions", "2"]).await;
    let (k, other) = (env.kiosk(0), env.kiosk(1));
    let a = open(&k, full_card(env.fx, 0)).await;
    open(&k, full_card(env.fx, 1)).await;
    let r = k.raw().create_session(full_card(env.fx, 2).card_id()).await;
    expect_error(&r, "too_many_requests");
    retry_after(&r);
    // The same kiosk replacing its own session of a card is not refused.
    assert_eq!(
        k.raw()
            .create_session(full_card(env.fx, 1).card_id())
            .await
            .status,
        201
    );
    open(&other, full_card(env.fx, 2)).await;
    assert_eq!(k.raw().close(&a.session_id).await.status, 204);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = k.raw().create_session(full_card(env.fx, 3).card_id()).await;
        if r.status == 201 {
            break;
        }
        expect_error(&r, "too_many_requests");
        assert!(
            Instant::now() < deadline,
            "the closed session's place never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_503_carries_a_jittered_retry_after() {
    let env = Env::start(&[]).await;
    let drained = admin_post(env.node(), "/admin/v1/drain", env.admin_token(), None).await;
    assert_eq!(drained.status, 200, "{}", drained.text());
    let k = env.kiosk(0);
    let mut waits = Vec::new();
    for i in 0..20 {
        let r = k.raw().create_session(full_card(env.fx, i).card_id()).await;
        expect_error(&r, "unavailable");
        waits.push(retry_after(&r));
    }
    assert_jittered(&waits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kiosk_listener_refuses_beyond_its_in_flight_cap() {
    // Every document renders 20 s late: a long poll (the longest the API allows, 10 s)
    // holds its request in flight, long enough for a busy machine to see the cap.
    let env = Env::start(&[
        "--max-in-flight",
        "2",
        "--render-delay-ms",
        "20000",
        "--render-deadline-ms",
        "60000",
    ])
    .await;
    let api = env.node().api.clone();
    let mut polls = Vec::new();
    for i in 0..2 {
        let k = env.kiosk(i);
        let sid = authed(&k, full_card(env.fx, i)).await;
        let jid = job(&k, &sid, "residence", 1).await;
        // A poll that arrives while a probe below holds the other place is itself
        // refused (`503`); it asks again, as a kiosk would, until it holds a place.
        polls.push(tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(8);
            loop {
                let status = k.raw().document(&sid, &jid, 10_000).await.status;
                if status != 503 || Instant::now() >= until {
                    return status;
                }
            }
        }));
    }
    let issuer_key = || async { get(&format!("{api}/v1/issuer-key")).await };
    let deadline = Instant::now() + Duration::from_secs(8);
    while issuer_key().await.status != 503 {
        assert!(Instant::now() < deadline, "never over the in-flight cap");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut waits = Vec::new();
    for _ in 0..20 {
        let r = issuer_key().await;
        if r.status == 503 {
            expect_error(&r, "unavailable");
            waits.push(retry_after(&r));
        }
    }
    assert!(waits.len() >= 10, "{} refusals", waits.len());
    assert_jittered(&waits);
    for p in polls {
        assert_eq!(p.await.expect("long poll"), 202);
    }
    assert_eq!(issuer_key().await.status, 200);
    let refused = env
        .deployment
        .metric_sum("kofu_admission_refusals_total")
        .await
        .expect("metrics");
    assert!(refused >= waits.len() as f64);
}

/// Reads until the server closes the connection; what it sent and when it closed.
async fn until_closed(mut conn: TcpStream, opened: Instant) -> (String, Duration) {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "a slow client was never cut off");
    (String::from_utf8_lossy(&got).into_owned(), opened.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_hold_nobody_up() {
    let env = Env::start(&[
        "--http-header-timeout-ms",
        "1000",
        "--http-body-timeout-ms",
        "1000",
    ])
    .await;
    let addr = |url: &str| url.trim_start_matches("http://").to_owned();
    let (api, admin) = (addr(&env.node().api), addr(&env.node().admin));
    let token = &env.fx.kiosks[0].token;
    let opened = Instant::now();
    let mut slow = Vec::new();
    for i in 0..120 {
        let target = if i % 6 == 0 { &admin } else { &api };
        let mut conn = TcpStream::connect(target).await.expect("connect");
        let part: String = match i % 3 {
            // Half a header.
            0 => "POST /v1/sessions HTTP/1.1\r\nHost: kofu\r\nContent-Ty".to_owned(),
            // Headers, and half the body they announce.
            1 => format!(
                "POST /v1/sessions HTTP/1.1\r\nHost: kofu\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"card_id\":"
            ),
            // Nothing at all.
            _ => String::new(),
        };
        conn.write_all(part.as_bytes()).await.expect("write");
        slow.push((i, conn));
    }
    // Meanwhile kiosks are served as usual.
    let k = env.kiosk(1);
    full_session(
        &k,
        env.fx,
        full_card(env.fx, 0),
        "residence",
        1,
        &env.issuer,
    )
    .await
    .expect("a session beside slow clients");

    let mut closed = tokio::task::JoinSet::new();
    for (i, conn) in slow {
        closed.spawn(async move { (i, until_closed(conn, opened).await) });
    }
    while let Some(r) = closed.join_next().await {
        let (i, (answer, after)) = r.expect("reader");
        assert!(
            after < Duration::from_secs(10),
            "slow client {i} cut off only after {after:?}"
        );
        if i % 3 == 1 && i % 6 != 0 {
            // A body that never completes: the kiosk API's own error, then the close.
            assert!(answer.starts_with("HTTP/1.1 400"), "{i}: {answer}");
            assert!(answer.contains("invalid_request"), "{i}: {answer}");
        }
    }
    assert_eq!(
        get(&format!("{}/readyz", env.node().admin)).await.status,
        200
    );
}
