//! Transport rules of API.md: kiosk credentials, the issuer key, body limits, and the
//! error shape of unknown routes and methods.

use kofu_proto::api::IssuerKeyResponse;
use reqwest::Method;
use serde_json::json;

use kofu_testkit::suite::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_key_needs_no_credential() {
    let env = Env::start(&[]).await;
    let r = raw(
        Method::GET,
        &format!("{}/v1/issuer-key", env.node().api),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let key: IssuerKeyResponse = r.json();
    assert_eq!(key.alg, "ed25519");
    let raw_key = kofu_proto::b64url_decode(&key.public_key).expect("base64url");
    assert_eq!(raw_key.len(), 32);
    // v1.1: the current key's id, and the key set (here the current key alone).
    let current = kofu_proto::verify::issuer_key(&key.public_key).expect("a key");
    assert_eq!(key.kid, kofu_proto::verify::key_id(&current));
    assert_eq!(key.keys.len(), 1);
    assert_eq!(key.keys[0].kid, key.kid);
    assert_eq!(key.keys[0].public_key, key.public_key);
    assert_eq!(key.keys[0].status, kofu_proto::api::KeyStatus::Current);
    assert_eq!(
        env.issuer.kids().collect::<Vec<_>>(),
        vec![key.kid.as_str()]
    );
    // The key derives from the fixture seed: a second node agrees.
    let again = Env::start(&[]).await;
    assert_eq!(again.issuer, env.issuer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_v1_call_needs_a_valid_kiosk_credential() {
    let (env, [k], card) = Env::start_kiosks(&[]).await;
    let sid = authed(&k, card).await;
    let jid = job(&k, &sid, "residence", 1).await;
    let (id0, tok0) = (&env.fx.kiosks[0].kiosk_id, &env.fx.kiosks[0].token);
    let secret0 = tok0
        .split_once('.')
        .map(|(_, s)| s)
        .expect("token has a secret");
    let id1 = &env.fx.kiosks[1].kiosk_id;
    let wrong_secret = format!("Bearer {id0}.{}", "0".repeat(secret0.len()));
    let unknown = format!("Bearer ZZZ-99999-9999-99.{secret0}");
    let swapped = format!("Bearer {id1}.{secret0}");
    let headers: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some(format!("Basic {tok0}")),
        Some(format!("Bearer {id0}")),
        Some(format!("Bearer {id0}.")),
        Some(format!("Bearer .{secret0}")),
        Some(format!("Bearer {tok0}x")),
        Some(format!("Bearer {tok0} {tok0}")),
        Some(wrong_secret),
        Some(unknown),
        Some(swapped),
    ];
    let api = &env.node().api;
    let routes = [
        (
            Method::POST,
            format!("{api}/v1/sessions"),
            Some(json!({"card_id": card.card_id()})),
        ),
        (
            Method::POST,
            format!("{api}/v1/sessions/{sid}/auth"),
            Some(json!({"signature": "AAAA"})),
        ),
        (
            Method::POST,
            format!("{api}/v1/sessions/{sid}/jobs"),
            Some(json!({"kind": "tax", "copies": 1})),
        ),
        (
            Method::GET,
            format!("{api}/v1/sessions/{sid}/jobs/{jid}/document?wait_ms=0"),
            None,
        ),
        (
            Method::POST,
            format!("{api}/v1/sessions/{sid}/jobs/{jid}/printed"),
            None,
        ),
        (Method::DELETE, format!("{api}/v1/sessions/{sid}"), None),
    ];
    for (method, url, body) in &routes {
        for h in &headers {
            let body = body.as_ref().map(|b| b.to_string().into_bytes());
            let r = raw(method.clone(), url, h.as_deref(), body).await;
            let v = expect_error(&r, "unauthorized_kiosk");
            assert!(!r.text().contains(secret0), "401 echoes a secret: {v}");
        }
    }
    // None of the refused calls changed the session.
    env.fetch_residence(&k, &sid, &jid, card, "document after refused calls")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_16_kib_are_413() {
    let env = Env::start(&[]).await;
    let k = env.kiosk(0);
    let auth = format!("Bearer {}", k.token());
    let card = full_card(env.fx, 0);
    let url = format!("{}/v1/sessions", env.node().api);
    let limit = kofu_proto::MAX_BODY_BYTES;
    // Exactly at the limit (JSON padded with whitespace) is accepted.
    let mut at_limit = json!({"card_id": card.card_id()}).to_string().into_bytes();
    at_limit.resize(limit, b' ');
    let r = raw(Method::POST, &url, Some(&auth), Some(at_limit)).await;
    let s = created(&r);
    let mut over = json!({"card_id": card.card_id()}).to_string().into_bytes();
    over.resize(limit + 1, b' ');
    expect_error(
        &raw(Method::POST, &url, Some(&auth), Some(over)).await,
        "payload_too_large",
    );
    let big = vec![b'x'; 64 * 1024];
    expect_error(
        &raw(Method::POST, &url, Some(&auth), Some(big.clone())).await,
        "payload_too_large",
    );
    let auth_url = format!("{}/v1/sessions/{}/auth", env.node().api, s.session_id);
    expect_error(
        &raw(Method::POST, &auth_url, Some(&auth), Some(big)).await,
        "payload_too_large",
    );
    let sig = json!({"signature": "A".repeat(20_000)})
        .to_string()
        .into_bytes();
    expect_error(
        &raw(Method::POST, &auth_url, Some(&auth), Some(sig)).await,
        "payload_too_large",
    );
    // The session is intact: a 413 is no auth attempt.
    let genuine = card.sign_challenge(&s.session_id, k.kiosk_id(), &s.challenge);
    assert_eq!(k.raw().auth(&s.session_id, &genuine).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let env = Env::start(&[]).await;
    let k = env.kiosk(0);
    let auth = format!("Bearer {}", k.token());
    let sid = authed(&k, full_card(env.fx, 0)).await;
    let api = &env.node().api;
    for path in ["/", "/v2/sessions", "/v1/nothing", "/v1/sessions/x/y/z/w/v"] {
        let r = raw(Method::GET, &format!("{api}{path}"), Some(&auth), None).await;
        expect_error(&r, "not_found");
    }
    for (method, path) in [
        (Method::GET, "/v1/sessions".to_string()),
        (Method::PUT, format!("/v1/sessions/{sid}/auth")),
        (Method::GET, format!("/v1/sessions/{sid}/jobs")),
        (Method::PATCH, format!("/v1/sessions/{sid}")),
        (Method::POST, "/v1/issuer-key".to_string()),
    ] {
        let r = raw(method.clone(), &format!("{api}{path}"), Some(&auth), None).await;
        expect_error(&r, "method_not_allowed");
    }
    // A malformed session id is simply an unknown session.
    for bad in ["short", "0000AAAAAAAAAAAAAAAAAAAAAA0", "%F0%9F%A6%80"] {
        let url = format!("{api}/v1/sessions/{bad}/jobs");
        let body = json!({"kind": "residence", "copies": 1})
            .to_string()
            .into_bytes();
        expect_error(
            &raw(Method::POST, &url, Some(&auth), Some(body)).await,
            "unknown_session",
        );
    }
}

/// One HTTP/1.1 exchange on a raw socket: the status, whether the answer announced
/// `Connection: close`, and what went wrong with a next request on that connection.
fn exchange(addr: &str, request: &[u8]) -> (u16, bool, Option<String>) {
    use std::io::{Read, Write};
    use std::time::Duration;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // Head and body in separate writes, as HTTP clients often send them: the answer may
    // come before the body has arrived.
    let split = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(request.len(), |i| i + 4);
    s.write_all(&request[..split]).expect("send head");
    std::thread::sleep(Duration::from_millis(20));
    let _ = s.write_all(&request[split..]);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).expect("read head");
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status = head_status(&head);
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).expect("read body");
        assert!(n > 0, "body cut short");
        buf.extend_from_slice(&chunk[..n]);
    }
    let announced = head
        .lines()
        .any(|l| l.starts_with("connection:") && l.contains("close"));
    // A kiosk's next request on the same connection must get an answer.
    std::thread::sleep(Duration::from_millis(50));
    let next = format!("GET /v1/issuer-key HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let next_answer = match s.write_all(next.as_bytes()).map(|()| s.read(&mut chunk)) {
        Err(e) | Ok(Err(e)) => format!("send/read failed: {e}"),
        Ok(Ok(0)) => "connection closed".to_string(),
        Ok(Ok(n)) => String::from_utf8_lossy(&chunk[..n.min(40)]).into_owned(),
    };
    let closed = (!next_answer.starts_with("HTTP/1.1 200")).then_some(next_answer);
    (status, announced, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_error_answers_do_not_silently_drop_keep_alive_connections() {
    let env = Env::start(&[]).await;
    let addr = env.node().api.trim_start_matches("http://").to_string();
    let token = env.fx.kiosks[0].token.clone();
    let card = full_card(env.fx, 0).card_id().to_owned();
    let body = json!({ "card_id": card }).to_string();
    let cases = [
        (
            "POST",
            "/v1/sessions",
            "Bearer wrong.secret".to_string(),
            body.clone(),
        ),
        (
            "POST",
            "/v1/sessions",
            "Bearer wrong.secret".to_string(),
            body.repeat(100),
        ),
        ("POST", "/nope/x", format!("Bearer {token}"), body.clone()),
        (
            "DELETE",
            "/v1/sessions",
            format!("Bearer {token}"),
            body.clone(),
        ),
        (
            "GET",
            "/v1/sessions/0000AAAAAAAAAAAAAAAAAAAAAA/jobs/j0-AAAAAAAAAAA/document",
            format!("Bearer {token}"),
            body.clone(),
        ),
        (
            "POST",
            "/v1/sessions",
            format!("Bearer {token}"),
            "x".repeat(20_000),
        ),
    ];
    let mut broken = Vec::new();
    for (method, path, auth, body) in cases {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let addr = addr.clone();
        let (status, announced, closed) =
            tokio::task::spawn_blocking(move || exchange(&addr, req.as_bytes()))
                .await
                .expect("exchange");
        // RFC 9112 9.6: a server that closes after a response announces it, otherwise
        // a kiosk's next request on that keep-alive connection fails mid-flight.
        if let (Some(next), false) = (closed, announced) {
            broken.push(format!(
                "{method} {path} ({} byte body) -> {status}; next request: {next:?}",
                body.len()
            ));
        }
    }
    assert!(
        broken.is_empty(),
        "closed the connection without `Connection: close`:\n{}",
        broken.join("\n")
    );
}
