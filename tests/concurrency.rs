//! Issue acceptance 3: 2,000 sessions from 200 kiosks, all opened within a few
//! milliseconds, every document verified end to end (I1 no cross-delivery, I3
//! isolation) — once with healthy rendering, once with every third render forced past
//! its deadline so that voided jobs and released documents interleave.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use kofu_proto::CertKind;
use kofu_proto::api::{
    AuthResponse, CreateSessionResponse, IssuerKeyResponse, JobResponse, PrintedResponse,
};
use kofu_testkit::{Fixtures, Kiosk, KofuNode, NodeOptions, Resp, verify_document};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Barrier, Semaphore, watch};
use tokio::task::JoinSet;

const RESIDENTS: u32 = 2500;
const KIOSKS: usize = 200;
const SESSIONS: usize = 2000;
/// Ten sessions per kiosk: the same kiosk credential is used concurrently, as a store
/// with several printers sharing one credential would.
const PER_KIOSK: usize = SESSIONS / KIOSKS;
/// Hard stop for a whole test (node start included): a hang fails instead of blocking CI.
const TEST_BUDGET: Duration = Duration::from_secs(240);
/// How long one job may take from creation to a final answer before the test calls it lost.
const FETCH_BUDGET: Duration = Duration::from_secs(30);
/// The creates are released together; their send instants must fall within this window.
/// 6–17 ms is measured on the 2-core machine (see `run`), up to 49 ms while builds ran
/// beside the test (load average 10); the node is paused meanwhile, so from its side
/// all creates arrive at once whatever this span is. The span is always printed.
const MAX_CREATE_SPAN: Duration = Duration::from_millis(50);
/// pdftotext per document is a process spawn: bound how many run at once (the testkit
/// gates itself too) so that 3,000 verifications do not starve the node under test.
const VERIFY_PARALLEL: usize = 8;

/// Fault flags of the second test: every third job sleeps 1.5 s before rendering, but
/// its deadline is 0.5 s, so it is voided while jobs around it render at once.
const TIMEOUT_FLAGS: [&str; 6] = [
    "--render-delay-ms",
    "1500",
    "--render-deadline-ms",
    "500",
    "--render-delay-every",
    "3",
];
/// A voided job is fetched again this long after its creation: by then the injected
/// delay has elapsed and a late render would have finished, so a document here would
/// be a released-after-void bug.
const REFETCH_AFTER: Duration = Duration::from_millis(2000);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_sessions_from_two_hundred_kiosks() {
    let report = tokio::time::timeout(TEST_BUDGET, run(&[], false))
        .await
        .expect("the test finished within its budget");
    report.print("healthy rendering");
    report.assert_clean();
    assert_eq!(report.voided, 0, "no job may be voided without faults");
    assert_eq!(
        report.sessions_completed, SESSIONS,
        "every session completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_sessions_with_forced_render_timeouts() {
    let report = tokio::time::timeout(TEST_BUDGET, run(&TIMEOUT_FLAGS, true))
        .await
        .expect("the test finished within its budget");
    report.print("forced render timeouts");
    report.assert_clean();
    assert!(report.released > 0, "some documents must be released");
    assert!(
        report.voided > 0,
        "some jobs must time out (every 3rd is delayed)"
    );
    assert_eq!(
        report.sessions_completed, SESSIONS,
        "every session completed"
    );
}

/// Everything one test run observed.
#[derive(Debug, Default)]
struct Report {
    create_span: Duration,
    /// p50, p90, p99 of the creates' send instants, after the first one.
    create_quantiles: [Duration; 3],
    elapsed: Duration,
    sessions_completed: usize,
    released: usize,
    voided: usize,
    /// Documents that reached the kiosk but fail the kiosk's check: each one is an I1 breach.
    misdeliveries: Vec<String>,
    /// Any other deviation from API.md (wrong status, transport failure, lost job).
    errors: Vec<String>,
    duplicate_serials: usize,
    duplicate_sessions: usize,
}

impl Report {
    fn print(&self, what: &str) {
        eprintln!(
            "{what}: {} sessions, creates sent within {:?} (p50/p90/p99 {:?}), {} released, \
             {} voided, {} misdeliveries, {} errors, {:?} in all",
            self.sessions_completed,
            self.create_span,
            self.create_quantiles,
            self.released,
            self.voided,
            self.misdeliveries.len(),
            self.errors.len(),
            self.elapsed
        );
    }

    fn assert_clean(&self) {
        assert!(
            self.misdeliveries.is_empty(),
            "{} MISDELIVERIES, first: {:#?}",
            self.misdeliveries.len(),
            &self.misdeliveries[..self.misdeliveries.len().min(10)]
        );
        assert!(
            self.errors.is_empty(),
            "{} errors, first: {:#?}",
            self.errors.len(),
            &self.errors[..self.errors.len().min(10)]
        );
        assert_eq!(self.duplicate_serials, 0, "serials are unique");
        assert_eq!(self.duplicate_sessions, 0, "session ids are unique");
        assert!(
            self.create_span <= MAX_CREATE_SPAN,
            "the 2,000 creates were sent over {:?}, not within a few ms",
            self.create_span
        );
    }
}

/// Shared, read-only state of the run.
struct Ctx {
    fx: Fixtures,
    issuer: VerifyingKey,
    verify_gate: Semaphore,
    /// With fault flags a `410 job_voided` is a valid answer; without, it is an error.
    voids_allowed: bool,
}

/// What one session task reports.
#[derive(Debug, Default)]
struct SessionOutcome {
    session_id: Option<String>,
    completed: bool,
    serials: Vec<String>,
    voided: usize,
    misdeliveries: Vec<String>,
    errors: Vec<String>,
}

async fn run(flags: &[&str], voids_allowed: bool) -> Report {
    let started = Instant::now();
    let opts = NodeOptions {
        residents: RESIDENTS,
        kiosks: KIOSKS as u32,
        args: flags.iter().map(|s| (*s).to_owned()).collect(),
        ..NodeOptions::default()
    };
    let seed = opts.seed;
    // Starting a process and reading fixtures block; the runtime has spare workers.
    let node = tokio::task::block_in_place(|| KofuNode::start(opts));
    let fx = tokio::task::block_in_place(|| Fixtures::load(seed, RESIDENTS, KIOSKS as u32));
    let card_ixs: Vec<usize> = fx
        .cards
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.card_revoked && !c.restricted)
        .map(|(i, _)| i)
        .take(SESSIONS)
        .collect();
    assert_eq!(card_ixs.len(), SESSIONS, "enough ordinary cards");

    // One client for all kiosks with a pool large enough for every session at once:
    // HTTP/1.1 needs one connection per in-flight request.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(SESSIONS + 64)
        // Below the node's keep-alive (75 s): never reuse a connection being closed.
        .pool_idle_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .build()
        .expect("http client");
    let kiosks: Vec<Kiosk> = fx
        .kiosks
        .iter()
        .map(|cred| Kiosk::with_client(&node.api, cred, client.clone()))
        .collect();
    let key: IssuerKeyResponse = kiosks[0].issuer_key().await.json();
    let issuer = kofu_proto::verify::issuer_key(&key.public_key).expect("issuer key parses");
    let ctx = Arc::new(Ctx {
        fx,
        issuer,
        verify_gate: Semaphore::new(VERIFY_PARALLEL),
        voids_allowed,
    });

    // The creates: every connection is opened beforehand and carries its whole create
    // request but the last byte, so the node waits on 2,000 incomplete bodies. Two
    // blaster tasks (one per core) then write the last bytes in a tight loop behind a
    // barrier: no per-session task wake-up, one small syscall per create, while the node
    // is paused so that it neither competes for the two cores nor starts on the first
    // creates before the last are written. Measured on the 2-core box: through reqwest
    // the sends spread over ~150 ms; raw writes with the node running 15–70 ms; with
    // the node paused ~10 ms (about 10 µs per loopback write per core). Everything
    // after the create goes through the kiosk client as usual.
    let mut prepared = JoinSet::new();
    for (i, &card_ix) in card_ixs.iter().enumerate() {
        let request = create_request(&kiosks[i / PER_KIOSK], &ctx.fx.cards[card_ix].card_id);
        let host = node.api.trim_start_matches("http://").to_owned();
        prepared.spawn(async move { (i, prepare(&host, &request).await) });
    }
    let mut readers: Vec<Option<OwnedReadHalf>> = (0..SESSIONS).map(|_| None).collect();
    let mut writers = Vec::with_capacity(SESSIONS);
    let mut report = Report::default();
    while let Some(joined) = prepared.join_next().await {
        match joined {
            Ok((i, Ok((reader, writer)))) => {
                readers[i] = Some(reader);
                writers.push(writer);
            }
            Ok((i, Err(e))) => report.errors.push(format!("session {i}: {e}")),
            Err(e) => report.errors.push(format!("prepare task died: {e}")),
        }
    }
    let (blast_tx, blast_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for (i, card_ix) in card_ixs.into_iter().enumerate() {
        let (ctx, kiosk) = (ctx.clone(), kiosks[i / PER_KIOSK].clone());
        let (reader, rx) = (readers[i].take(), blast_rx.clone());
        tasks.spawn(async move { session(ctx, i, kiosk, card_ix, reader, rx).await });
    }
    let (sent, writers) = {
        let _paused = Paused::new(node.pid());
        blast(writers, &mut report).await
    };
    let _ = blast_tx.send(true);

    let mut serials = HashSet::new();
    let mut sids = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        let out = match joined {
            Ok(out) => out,
            Err(e) => {
                report.errors.push(format!("session task died: {e}"));
                continue;
            }
        };
        if let Some(sid) = out.session_id
            && !sids.insert(sid)
        {
            report.duplicate_sessions += 1;
        }
        for serial in out.serials {
            report.released += 1;
            if !serials.insert(serial) {
                report.duplicate_serials += 1;
            }
        }
        report.voided += out.voided;
        report.sessions_completed += usize::from(out.completed);
        report.misdeliveries.extend(out.misdeliveries);
        report.errors.extend(out.errors);
    }
    // Dropping a write half half-closes its connection: only once every answer was read.
    drop(writers);
    let mut sent = sent;
    sent.sort();
    if let (Some(first), Some(_)) = (sent.first(), sent.last()) {
        let at = |q: usize| sent[(sent.len() - 1) * q / 100].duration_since(*first);
        report.create_span = at(100);
        report.create_quantiles = [at(50), at(90), at(99)];
    }
    report.elapsed = started.elapsed();
    drop(node);
    report
}

/// Holds the node stopped (SIGSTOP) while the creates' last bytes are written, so that
/// when it resumes it finds all 2,000 requests complete at the same instant, however
/// slowly two busy cores let the kiosks write. Resumes it when dropped, whatever happens.
struct Paused(String);

impl Paused {
    fn new(pid: u32) -> Paused {
        let paused = Paused(pid.to_string());
        assert!(paused.signal("-STOP"), "cannot pause the node (kill -STOP)");
        paused
    }

    fn signal(&self, sig: &str) -> bool {
        std::process::Command::new("kill")
            .args([sig, &self.0])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        // No assert here: a panic while unwinding would abort the test process. A node
        // left stopped fails every later request, which the test reports anyway.
        if !self.signal("-CONT") {
            eprintln!("could not resume the node (kill -CONT {})", self.0);
        }
    }
}

/// Connects and sends all of `request` but its last byte, which must be the closing
/// `}` of its JSON body (the blasters send exactly that byte).
async fn prepare(host: &str, request: &[u8]) -> Result<(OwnedReadHalf, OwnedWriteHalf), String> {
    if request.last() != Some(&b'}') {
        return Err("a create request must end with its body's closing brace".to_owned());
    }
    let stream = TcpStream::connect(host)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let (reader, mut writer) = stream.into_split();
    writer
        .write_all(&request[..request.len() - 1])
        .await
        .map_err(|e| format!("sending the create's head: {e}"))?;
    Ok((reader, writer))
}

/// Completes every prepared create at once: two tasks, each writing the last byte of
/// half of the requests behind a common barrier. Returns each write's instant.
async fn blast(
    writers: Vec<OwnedWriteHalf>,
    report: &mut Report,
) -> (Vec<Instant>, Vec<OwnedWriteHalf>) {
    const BLASTERS: usize = 2;
    let barrier = Arc::new(Barrier::new(BLASTERS));
    let mut groups: Vec<Vec<OwnedWriteHalf>> = (0..BLASTERS).map(|_| Vec::new()).collect();
    for (i, w) in writers.into_iter().enumerate() {
        groups[i % BLASTERS].push(w);
    }
    let mut set = JoinSet::new();
    for mut group in groups {
        let barrier = barrier.clone();
        set.spawn(async move {
            let mut sent = Vec::with_capacity(group.len());
            let mut errors = Vec::new();
            barrier.wait().await;
            for w in &mut group {
                let at = Instant::now();
                // The JSON body ends with `}`; that byte completes the request.
                match w.write_all(b"}").await {
                    Ok(()) => sent.push(at),
                    Err(e) => errors.push(format!("sending the create's last byte: {e}")),
                }
            }
            (sent, errors, group)
        });
    }
    let mut sent = Vec::new();
    let mut writers = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((s, errors, group)) => {
                sent.extend(s);
                report.errors.extend(errors);
                writers.extend(group);
            }
            Err(e) => report.errors.push(format!("blaster died: {e}")),
        }
    }
    (sent, writers)
}

/// `POST /v1/sessions` as bytes, on a connection the server closes after answering.
fn create_request(kiosk: &Kiosk, card_id: &str) -> Vec<u8> {
    let host = kiosk.base.trim_start_matches("http://");
    let body = serde_json::json!({ "card_id": card_id }).to_string();
    format!(
        "POST /v1/sessions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        kiosk.token,
        body.len()
    )
    .into_bytes()
}

/// An answer that never came, as the testkit reports one (`status == 0`).
fn no_answer(why: String) -> Resp {
    Resp {
        status: 0,
        headers: reqwest::header::HeaderMap::new(),
        body: bytes::Bytes::from(why),
    }
}

/// Reads a whole HTTP/1.1 answer up to the server's close.
async fn read_answer(stream: &mut OwnedReadHalf) -> Resp {
    let mut raw = Vec::with_capacity(512);
    match tokio::time::timeout(FETCH_BUDGET, stream.read_to_end(&mut raw)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return no_answer(format!("reading the create answer: {e}")),
        Err(_) => return no_answer("no create answer in time".to_owned()),
    }
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return no_answer("the create answer has no header end".to_owned());
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers: reqwest::header::HeaderMap::new(),
        body: bytes::Bytes::from(body),
    }
}

/// Decodes a chunked body (the server may chunk any answer).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        raw = &raw[eol + 2..];
        if size == 0 || raw.len() < size {
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or_default();
    }
    out
}

/// One kiosk session: its create was sent by a blaster; here it reads the answer
/// (once the blast is over), then auth, 1–2 jobs, fetch and verify each, print, close.
/// Never panics: every deviation is reported.
async fn session(
    ctx: Arc<Ctx>,
    i: usize,
    kiosk: Kiosk,
    card_ix: usize,
    reader: Option<OwnedReadHalf>,
    mut blast_done: watch::Receiver<bool>,
) -> SessionOutcome {
    let mut out = SessionOutcome::default();
    let card = &ctx.fx.cards[card_ix];
    // Reading (and the work that follows) waits for the blast, so that the kiosks'
    // own processing does not spread the creates.
    let _ = blast_done.wait_for(|done| *done).await;
    let Some(mut reader) = reader else {
        out.errors
            .push(format!("session {i}: its connection could not be prepared"));
        return out;
    };
    let r = read_answer(&mut reader).await;
    drop(reader);
    if r.status != 201 {
        out.errors.push(step(i, "create session", &r));
        return out;
    }
    let created: CreateSessionResponse = r.json();
    let sid = created.session_id;
    out.session_id = Some(sid.clone());
    let sig = Kiosk::sign_challenge(card, &sid, &kiosk.kiosk_id, &created.challenge);
    let r = kiosk.auth(&sid, &sig).await;
    if r.status != 200 {
        out.errors.push(step(i, "auth", &r));
        return out;
    }
    let auth: AuthResponse = r.json();
    if auth.kinds.is_empty() {
        out.errors
            .push(format!("session {i}: an ordinary card was offered no kind"));
        return out;
    }

    // Jobs are created back to back so that they render side by side; kinds rotate
    // over what this holder may get, copies over 1..=3.
    let mut jobs = Vec::new();
    for n in 0..(1 + i % 2) {
        let kind = auth.kinds[(i + n) % auth.kinds.len()].kind;
        let copies = 1 + ((i / 2 + n) % 3) as u8;
        let r = kiosk.create_job(&sid, kind.as_str(), copies).await;
        let created_at = Instant::now();
        if r.status != 202 {
            out.errors.push(step(i, "create job", &r));
            continue;
        }
        let job: JobResponse = r.json();
        let fee = kind.fee_yen() * u32::from(copies);
        if job.fee_yen != fee {
            out.errors.push(format!(
                "session {i}: {kind} x{copies} quoted {} yen, expected {fee}",
                job.fee_yen
            ));
        }
        jobs.push((job.job_id, kind, copies, created_at));
    }

    let mut voided = Vec::new();
    for (job_id, kind, copies, created_at) in &jobs {
        let r = fetch(&kiosk, &sid, job_id).await;
        match r.status {
            200 => {
                let checked =
                    verify(&ctx, card_ix, &r, &sid, &kiosk.kiosk_id, *kind, *copies).await;
                match checked {
                    Ok(serial) => {
                        let fee = kind.fee_yen() * u32::from(*copies);
                        let p = kiosk.printed(&sid, job_id).await;
                        if p.status != 200 {
                            out.errors.push(step(i, "printed", &p));
                        } else {
                            let printed: PrintedResponse = p.json();
                            if printed.serial != serial || printed.charged_yen != fee {
                                out.errors.push(format!(
                                    "session {i}: printed answered {}/{} yen for serial {serial}/{fee} yen",
                                    printed.serial, printed.charged_yen
                                ));
                            }
                        }
                        out.serials.push(serial);
                    }
                    Err(e) => out
                        .misdeliveries
                        .push(format!("session {i} job {job_id}: {e}")),
                }
            }
            410 if ctx.voids_allowed && r.error_code().as_deref() == Some("job_voided") => {
                voided.push((job_id.clone(), *created_at));
            }
            _ => out.errors.push(step(i, "document", &r)),
        }
    }

    // A voided job stays voided after its render would have finished: the late render
    // must not be released, nor printed, nor anything else in its place.
    for (job_id, created_at) in &voided {
        tokio::time::sleep_until((*created_at + REFETCH_AFTER).into()).await;
        let r = kiosk.document(&sid, job_id, 0).await;
        if r.status == 200 {
            out.misdeliveries.push(format!(
                "session {i} job {job_id}: a voided job released a document later"
            ));
        } else if r.status != 410 || r.error_code().as_deref() != Some("job_voided") {
            out.errors.push(step(i, "refetch of a voided job", &r));
        }
        let p = kiosk.printed(&sid, job_id).await;
        if p.status != 410 || p.error_code().as_deref() != Some("job_voided") {
            out.errors.push(step(i, "printed on a voided job", &p));
        }
    }
    out.voided = voided.len();

    let r = kiosk.close(&sid).await;
    if r.status != 204 {
        out.errors.push(step(i, "close", &r));
        return out;
    }
    out.completed = out.errors.is_empty() && out.misdeliveries.is_empty();
    out
}

/// Long-polls (`wait_ms=5000`) until the job leaves `rendering`, bounded in time.
async fn fetch(kiosk: &Kiosk, sid: &str, job_id: &str) -> Resp {
    let deadline = Instant::now() + FETCH_BUDGET;
    loop {
        let r = kiosk.document(sid, job_id, 5000).await;
        if r.status != 202 || Instant::now() >= deadline {
            return r;
        }
    }
}

/// The full kiosk check (issuer signature, doc_sha256, binding session/kiosk/card/kind/
/// copies, holder's name in the PDF text and no name from outside the household) on a
/// blocking thread, since it runs pdftotext. Returns the serial.
async fn verify(
    ctx: &Arc<Ctx>,
    card_ix: usize,
    resp: &Resp,
    sid: &str,
    kiosk_id: &str,
    kind: CertKind,
    copies: u8,
) -> Result<String, String> {
    let _slot = ctx
        .verify_gate
        .acquire()
        .await
        .map_err(|e| format!("verify gate: {e}"))?;
    let (ctx, resp, sid, kiosk_id) = (
        ctx.clone(),
        resp.clone(),
        sid.to_owned(),
        kiosk_id.to_owned(),
    );
    tokio::task::spawn_blocking(move || {
        verify_document(
            &ctx.fx,
            &ctx.fx.cards[card_ix],
            &resp,
            &sid,
            &kiosk_id,
            kind.as_str(),
            copies,
            &ctx.issuer,
        )
        .map(|b| b.serial)
    })
    .await
    .map_err(|e| format!("verify task: {e}"))?
}

fn step(i: usize, what: &str, r: &Resp) -> String {
    let body: String = r.text().chars().take(200).collect();
    format!("session {i}: {what}: status {}: {body}", r.status)
}
