//! Incident 7 (error and retry): kiosks that lose answers and retry get their own
//! documents or clear errors, and every print is charged once.

use std::sync::Arc;
use std::time::Duration;

use kofu_kiosk::{CallError, Fetched};
use kofu_proto::{CertKind, ErrorCode};
use kofu_testkit::{Client, Kiosk};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::env::Env;
use crate::noise::Noise;
use crate::steps::{
    authenticate, brief, close, failed, fetch, is_error, is_raw_error, new_job, not_released, print,
};
use crate::{FETCH_BUDGET, Summary, Tally};

/// Kiosks that lose answers and retry, concurrently: a create whose answer was lost
/// (connection dropped after the server answered) is retried; auth is repeated; the job
/// request is repeated; document fetches are dropped while waiting and mid-response, or
/// time out on the client, and are retried; `printed` is lost and retried, also
/// several times at once. Every answer is the kiosk's own document (verified) or a
/// clear error, and each print is charged once: the node's `kofu_charged_yen_total`
/// equals the sum of distinct charges. (A `503` cannot be provoked on a single node
/// without stopping it; the cluster variant retries after a drain.)
pub(crate) async fn error_and_retry(apis: &[String], env: &Arc<Env>) -> Summary {
    const KIOSKS_RETRYING: usize = 16;
    let mut pick = env.picker();
    let cards = pick.take(KIOSKS_RETRYING, |_| true);
    assert_eq!(cards.len(), KIOSKS_RETRYING, "enough ordinary cards");
    // Times out while a 300 ms render is still pending.
    let hasty = Client::builder()
        .targets(apis)
        .timeout(Duration::from_millis(100))
        .build()
        .expect("http client");
    let mut tally = Tally::default();
    let noise = Noise::start(apis, env);
    let mut tasks = JoinSet::new();
    for (i, card_ix) in cards.into_iter().enumerate() {
        let (env, kiosk) = (env.clone(), env.kiosk(apis, i));
        let hasty = kiosk.with_client(hasty.pinned(i));
        tasks.spawn(async move { retrying_kiosk(&env, &kiosk, &hasty, card_ix, i).await });
    }
    tally.join(tasks).await;
    tally.merge(noise.stop().await);

    // Exactly once: every confirmed print charged once, nothing else charged.
    let expected_yen = tally.get("charged_yen") + tally.get("noise_charged_yen");
    let expected_prints = tally.get("printed") + tally.get("noise_printed");
    match env.metric_sum("kofu_charged_yen_total").await {
        Ok(v) if v == expected_yen as f64 => {}
        other => tally.fail(format!(
            "kofu_charged_yen_total is {other:?}, the distinct charges sum to {expected_yen}"
        )),
    }
    match env.metric_sum("kofu_prints_confirmed_total").await {
        Ok(v) if v == expected_prints as f64 => {}
        other => tally.fail(format!(
            "kofu_prints_confirmed_total is {other:?}, {expected_prints} distinct prints were confirmed"
        )),
    }
    tally.finish(
        "incident 7",
        &["sessions", "released", "printed", "charged_yen"],
    )
}

async fn retrying_kiosk(
    env: &Arc<Env>,
    kiosk: &Kiosk,
    hasty: &Kiosk,
    card_ix: usize,
    i: usize,
) -> Tally {
    let mut t = Tally::default();
    let card = env.card(card_ix);
    let token = kiosk.token();
    // The node this kiosk talks to, for requests on raw connections.
    let base = kiosk
        .client()
        .fixed_target()
        .expect("a pinned kiosk")
        .to_owned();
    let fail = |t: &mut Tally, msg: String| t.fail(format!("kiosk {i}: {msg}"));

    // 1. The create's answer is lost: the server answered, the connection dropped. (The
    //    test reads the lost answer to learn the session id the kiosk never saw.)
    let body = json!({ "card_id": card.card_id() }).to_string();
    let lost = abandoned_request(
        &base,
        token,
        "POST",
        "/v1/sessions",
        Some(&body),
        16 * 1024,
        Duration::ZERO,
    )
    .await;
    let lost_sid = match &lost {
        Ok(p) if p.status == Some(201) => {
            t.add("lost_create_answers", 1);
            let sid = p.json()["session_id"].as_str().map(str::to_owned);
            if sid.is_none() {
                fail(
                    &mut t,
                    "the lost create answer has no session id".to_owned(),
                );
            }
            sid
        }
        other => {
            fail(&mut t, format!("create with a lost answer: {other:?}"));
            None
        }
    };
    // The retry opens a new session; the same kiosk reopening closes the lost one, so
    // nothing can be done in the session the kiosk does not know.
    let created = match kiosk.create_session(card.card_id()).await {
        Ok(created) => created,
        Err(e) => {
            fail(&mut t, failed("retried create", &e));
            return t;
        }
    };
    if let Some(lost_sid) = lost_sid {
        let r = kiosk.create_job(&lost_sid, CertKind::Residence, 1).await;
        if is_error(&r, ErrorCode::UnknownSession) {
            t.add("lost_sessions_closed", 1);
        } else {
            fail(
                &mut t,
                format!("job in the session whose create answer was lost: {r:?}"),
            );
        }
    }
    let sid = match authenticate(kiosk, card, &created).await {
        Ok((sid, _)) => sid,
        Err(e) => {
            fail(&mut t, e);
            return t;
        }
    };
    t.add("sessions", 1);
    // 2. Auth repeated with the same signature: a clear error, still authenticated.
    let sig = card.sign_challenge(&sid, kiosk.kiosk_id(), &created.challenge);
    let r = kiosk.auth(&sid, &sig).await;
    if !is_error(&r, ErrorCode::AlreadyAuthenticated) {
        fail(&mut t, format!("repeated auth: {r:?}"));
    }
    // 3. The job request is repeated: two jobs, each its own document.
    let copies = (i % 3) as u8 + 1;
    let (a, b) = match (
        new_job(kiosk, &sid, CertKind::Residence, copies).await,
        new_job(kiosk, &sid, CertKind::Residence, copies).await,
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            fail(&mut t, format!("repeated job: {:?} {:?}", a.err(), b.err()));
            return t;
        }
    };
    if a.id == b.id {
        fail(
            &mut t,
            "a repeated job request got the same job id".to_owned(),
        );
    }
    // 4. Fetches that fail on the kiosk's side while A renders (300 ms): dropped during
    //    the long poll, timed out by the client, dropped after the first bytes.
    let path = format!("/v1/sessions/{sid}/jobs/{}/document?wait_ms=5000", a.id);
    if let Err(e) = abandoned_request(
        &base,
        token,
        "GET",
        &path,
        None,
        0,
        Duration::from_millis(50),
    )
    .await
    {
        fail(&mut t, format!("dropped long poll: {e}"));
    }
    match hasty.document(&sid, &a.id, 5000).await {
        Err(CallError::NoAnswer(_)) => t.add("client_timeouts", 1),
        Ok(Fetched::Ready(doc)) => match env
            .verify(card_ix, &doc, &sid, kiosk.kiosk_id(), a.kind, a.copies)
            .await
        {
            Ok(_) => t.add("hasty_documents", 1),
            Err(e) => fail(&mut t, e),
        },
        r => fail(&mut t, not_released("document with a client timeout", &r)),
    }
    match abandoned_request(&base, token, "GET", &path, None, 64, Duration::ZERO).await {
        Ok(p) if p.status == Some(200) => t.add("dropped_mid_response", 1),
        other => fail(&mut t, format!("document dropped mid-response: {other:?}")),
    }
    // The retries: the kiosk's own documents, the same bytes every time.
    let mut serials = Vec::new();
    let mut first_bodies = Vec::new();
    for job in [&a, &b] {
        let r = fetch(kiosk, &sid, &job.id).await;
        match env
            .check(card_ix, &r, &sid, kiosk.kiosk_id(), job.kind, job.copies)
            .await
        {
            Ok(c) => {
                t.add("released", 1);
                t.serials.push(c.binding.serial.clone());
                serials.push(c.binding.serial);
                if let Ok(Fetched::Ready(doc)) = r {
                    first_bodies.push(doc.body);
                }
            }
            Err(e) => {
                fail(&mut t, e);
                return t;
            }
        }
    }
    let again = kiosk.raw().document(&sid, &a.id, 0).await;
    if again.status != 200 || again.body != first_bodies[0] {
        fail(
            &mut t,
            brief("repeated fetch (must be the same bytes)", &again),
        );
    }
    // 5. printed: the answer is lost, then it is retried three times at once and once
    //    more; every answer is the same, and the charge happens once (checked on /metrics).
    let printed_path = format!("/v1/sessions/{sid}/jobs/{}/printed", a.id);
    match abandoned_request(
        &base,
        token,
        "POST",
        &printed_path,
        None,
        16,
        Duration::ZERO,
    )
    .await
    {
        Ok(p) if p.status == Some(200) => t.add("lost_printed_answers", 1),
        other => fail(&mut t, format!("printed with a lost answer: {other:?}")),
    }
    let (p1, p2, p3) = tokio::join!(
        print(kiosk, &sid, &a, &serials[0]),
        print(kiosk, &sid, &a, &serials[0]),
        print(kiosk, &sid, &a, &serials[0]),
    );
    let p4 = print(kiosk, &sid, &a, &serials[0]).await;
    for p in [p1, p2, p3, p4] {
        if let Err(e) = p {
            fail(&mut t, format!("retried printed: {e}"));
        }
    }
    t.add("printed", 1);
    t.add("charged_yen", u64::from(a.fee()));
    // 6. Card removed: B (never printed) is voided uncharged; the session is gone.
    if let Err(e) = close(kiosk, &sid).await {
        fail(&mut t, e);
    }
    let r = kiosk.raw().document(&sid, &b.id, 0).await;
    if !is_raw_error(&r, 404, "unknown_session") {
        fail(&mut t, brief("document after close", &r));
    }
    let r = kiosk.raw().printed(&sid, &b.id).await;
    if !is_raw_error(&r, 404, "unknown_session") {
        fail(&mut t, brief("printed after close", &r));
    }
    t
}
/// What a kiosk got of an answer before its connection dropped.
#[derive(Debug)]
struct Partial {
    status: Option<u16>,
    /// The bytes read, headers included.
    raw: Vec<u8>,
}

impl Partial {
    /// The body as JSON, when the whole answer was read.
    fn json(&self) -> Value {
        let at = self.raw.windows(4).position(|w| w == b"\r\n\r\n");
        at.and_then(|at| serde_json::from_slice(&self.raw[at + 4..]).ok())
            .unwrap_or(Value::Null)
    }
}

/// A request on a raw connection that is dropped on purpose: after `hold` when
/// `read_bytes` is 0 (while a long poll waits), else after the first `read_bytes`
/// bytes of the answer (mid-response) or the server's close (`Connection: close`), so a
/// large `read_bytes` reads a whole answer the kiosk then "loses".
async fn abandoned_request(
    base: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    read_bytes: usize,
    hold: Duration,
) -> Result<Partial, String> {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n"
    );
    match body {
        Some(b) => req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => req.push_str("Content-Length: 0\r\n\r\n"),
    }
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    if read_bytes == 0 {
        tokio::time::sleep(hold).await;
        return Ok(Partial {
            status: None,
            raw: Vec::new(),
        });
    }
    let mut buf = vec![0u8; read_bytes];
    let mut got = 0;
    let read = async {
        while got < read_bytes {
            match stream.read(&mut buf[got..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    };
    tokio::time::timeout(FETCH_BUDGET, read)
        .await
        .map_err(|_| "no answer on the raw connection".to_owned())?;
    // Dropping the stream here closes the connection mid-response.
    buf.truncate(got);
    let status = String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok());
    Ok(Partial { status, raw: buf })
}
