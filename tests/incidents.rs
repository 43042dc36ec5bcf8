//! DESIGN.md's seven incidents as named end-to-end scenarios under concurrent load.
//!
//! Each scenario body is a function of the API base URLs (`&[String]`) and an [`Env`]
//! (fixtures, issuer key, admin listeners), so the same body runs against one node
//! today and against a three-node cluster when the cluster issue lands: that is what
//! incident 6 (configuration drift) is about. Every body also runs a little background
//! traffic ([`Noise`]) so that nothing it checks holds only on an idle node.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use kofu_proto::api::{
    AuthResponse, CreateSessionResponse, IssuerKeyResponse, JobResponse, PrintedResponse,
};
use kofu_proto::{Binding, CertKind};
use kofu_testkit::{
    Card, Fixtures, Kiosk, KofuNode, NodeOptions, Resp, contains_name, pdf_text, verify_document,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Barrier, Semaphore};
use tokio::task::JoinSet;

/// One population for every scenario: enough kiosks for incident 2 (>= 100 stores).
const RESIDENTS: u32 = 500;
const KIOSKS: u32 = 130;
/// The last kiosks of the population carry the background traffic.
const NOISE_KIOSKS: usize = 4;
const NOISE_CARDS_PER_KIOSK: usize = 2;
/// Bounds every noise loop even if nobody stops it.
const NOISE_MAX_SESSIONS: usize = 300;
/// A whole scenario, node start included; a hang fails the test instead of CI.
const SCENARIO_BUDGET: Duration = Duration::from_secs(80);
/// How long one job may take from the first fetch to a final answer.
const FETCH_BUDGET: Duration = Duration::from_secs(20);
/// Parallel pdftotext runs of the verifier (each is a process).
const VERIFY_PARALLEL: usize = 6;

// ---------------------------------------------------------------------------------
// The named tests: one node each, default shard count.
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_1_timeout_under_load() {
    run_on_node(Scenario::TimeoutUnderLoad, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_2_near_simultaneous_requests() {
    run_on_node(Scenario::NearSimultaneous, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_3_record_update_during_issuance() {
    run_on_node(Scenario::RecordUpdate, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_4_multi_page_documents() {
    run_on_node(Scenario::MultiPage, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_5_stale_data_revocation() {
    run_on_node(Scenario::StaleData, None).await;
}

/// Configuration drift: the same scenario bodies against a node with one shard and a
/// node with the default 1,024 must give the same results, because no safety feature
/// may depend on the topology. The three-node variant arrives with the cluster issue:
/// it starts three nodes, passes their three API bases and admin listeners, and calls
/// these same functions; nothing in the bodies knows how many nodes there are.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_6_configuration_drift() {
    let started = Instant::now();
    for scenario in Scenario::ALL {
        let one = run_on_node(scenario, Some(1)).await;
        let default = run_on_node(scenario, None).await;
        assert_eq!(
            one.exact,
            default.exact,
            "{}: the deterministic outcomes differ between --shard-count 1 and the default",
            scenario.name()
        );
    }
    eprintln!("configuration drift: 12 runs in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_7_error_and_retry() {
    run_on_node(Scenario::ErrorAndRetry, None).await;
}

// ---------------------------------------------------------------------------------
// Scenarios, deployments and summaries.
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    TimeoutUnderLoad,
    NearSimultaneous,
    RecordUpdate,
    MultiPage,
    StaleData,
    ErrorAndRetry,
}

/// Incident 1's fault injection: every third job sleeps 1.5 s before rendering while
/// its deadline is 0.5 s, so it is voided while the jobs around it render at once.
const TIMEOUT_FLAGS: &[&str] = &[
    "--render-delay-ms",
    "1500",
    "--render-deadline-ms",
    "500",
    "--render-delay-every",
    "3",
];
/// A voided job is fetched again this long after its creation: the injected delay has
/// elapsed by then, so a late render would have finished and could be (wrongly) released.
const REFETCH_AFTER: Duration = Duration::from_millis(2000);

impl Scenario {
    const ALL: [Scenario; 6] = [
        Scenario::TimeoutUnderLoad,
        Scenario::NearSimultaneous,
        Scenario::RecordUpdate,
        Scenario::MultiPage,
        Scenario::StaleData,
        Scenario::ErrorAndRetry,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::TimeoutUnderLoad => "incident 1 (timeout under load)",
            Scenario::NearSimultaneous => "incident 2 (near-simultaneous requests)",
            Scenario::RecordUpdate => "incident 3 (record update during issuance)",
            Scenario::MultiPage => "incident 4 (multi-page documents)",
            Scenario::StaleData => "incident 5 (stale data)",
            Scenario::ErrorAndRetry => "incident 7 (error and retry)",
        }
    }

    /// The fault flags a scenario needs; the same on every topology.
    fn flags(self) -> &'static [&'static str] {
        match self {
            Scenario::TimeoutUnderLoad => TIMEOUT_FLAGS,
            // Renders take a while, so registry updates land while documents render.
            Scenario::RecordUpdate => &["--render-delay-ms", "200"],
            // Seal jobs are still rendering when their registration is revoked.
            Scenario::StaleData => &["--render-delay-ms", "1000"],
            // Long polls are in flight when the kiosk drops its connection.
            Scenario::ErrorAndRetry => &["--render-delay-ms", "300"],
            Scenario::NearSimultaneous | Scenario::MultiPage => &[],
        }
    }

    async fn run(self, apis: &[String], env: &Arc<Env>) -> Summary {
        match self {
            Scenario::TimeoutUnderLoad => timeout_under_load(apis, env).await,
            Scenario::NearSimultaneous => near_simultaneous_requests(apis, env).await,
            Scenario::RecordUpdate => record_update_during_issuance(apis, env).await,
            Scenario::MultiPage => multi_page_documents(apis, env).await,
            Scenario::StaleData => stale_data_revocation(apis, env).await,
            Scenario::ErrorAndRetry => error_and_retry(apis, env).await,
        }
    }
}

/// What a scenario run showed. `exact` counts are deterministic, so they must be the
/// same on every topology; `seen` counts depend on timing (which job hit the injected
/// delay, how much background traffic ran) and are only reported: every outcome a
/// scenario needs (say, both voided and released jobs) is asserted by its body.
#[derive(Debug, Default)]
struct Summary {
    exact: BTreeMap<&'static str, u64>,
    seen: BTreeMap<&'static str, u64>,
}

/// What tasks of a scenario report: counters, released serials and failures. Tasks
/// never panic, so one bad answer cannot leave others waiting at a barrier.
#[derive(Debug, Default)]
struct Tally {
    n: BTreeMap<&'static str, u64>,
    serials: Vec<String>,
    fails: Vec<String>,
}

impl Tally {
    fn add(&mut self, key: &'static str, v: u64) {
        *self.n.entry(key).or_default() += v;
    }

    fn fail(&mut self, msg: impl Into<String>) {
        self.fails.push(msg.into());
    }

    fn merge(&mut self, other: Tally) {
        for (k, v) in other.n {
            self.add(k, v);
        }
        self.serials.extend(other.serials);
        self.fails.extend(other.fails);
    }

    /// Collects every task of a join set.
    async fn join(&mut self, mut tasks: JoinSet<Tally>) {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(t) => self.merge(t),
                Err(e) => self.fail(format!("a scenario task died: {e}")),
            }
        }
    }

    fn get(&self, key: &str) -> u64 {
        self.n.get(key).copied().unwrap_or_default()
    }

    /// Asserts no failure and unique serials, then splits the counters into a summary.
    fn finish(self, name: &str, exact_keys: &[&'static str]) -> Summary {
        let mut dup = 0;
        let mut serials = HashSet::new();
        for s in &self.serials {
            if !serials.insert(s.as_str()) {
                dup += 1;
            }
        }
        assert!(
            self.fails.is_empty(),
            "{name}: {} failure(s):\n{}",
            self.fails.len(),
            self.fails
                .iter()
                .take(25)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert_eq!(dup, 0, "{name}: {dup} serial(s) released twice");
        let mut summary = Summary::default();
        for (k, v) in self.n {
            if exact_keys.contains(&k) {
                summary.exact.insert(k, v);
            } else {
                summary.seen.insert(k, v);
            }
        }
        for k in exact_keys {
            summary.exact.entry(k).or_default();
        }
        summary
    }
}

/// Everything a scenario may use besides the API bases.
struct Env {
    fx: Fixtures,
    issuer: VerifyingKey,
    /// Admin listeners of every node (one today).
    admins: Vec<String>,
    /// One keep-alive pool for all kiosks of the scenario.
    client: reqwest::Client,
    verify_gate: Semaphore,
    /// Cards reserved for the background traffic.
    noise_cards: Vec<usize>,
}

/// A running topology: today one node.
struct Deployment {
    _nodes: Vec<KofuNode>,
    apis: Vec<String>,
    env: Arc<Env>,
}

async fn deploy(flags: &[&str], shard_count: Option<u32>) -> Deployment {
    let mut args: Vec<String> = flags.iter().map(|s| (*s).to_owned()).collect();
    if let Some(n) = shard_count {
        args.extend(["--shard-count".to_owned(), n.to_string()]);
    }
    let opts = NodeOptions {
        residents: RESIDENTS,
        kiosks: KIOSKS,
        args,
        ..NodeOptions::default()
    };
    let seed = opts.seed;
    // Process start and `kofu fixtures` block; the runtime has spare workers.
    let node = tokio::task::block_in_place(|| KofuNode::start(opts));
    let fx = tokio::task::block_in_place(|| Fixtures::load(seed, RESIDENTS, KIOSKS));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .pool_idle_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .build()
        .expect("http client");
    let r = Resp::read(
        client
            .get(format!("{}/v1/issuer-key", node.api))
            .send()
            .await,
    )
    .await;
    assert_eq!(r.status, 200, "issuer key: {}", r.text());
    let key: IssuerKeyResponse = r.json();
    let issuer = kofu_proto::verify::issuer_key(&key.public_key).expect("issuer key parses");
    let mut noise_cards: Vec<usize> = ordinary_ixs(&fx)
        .rev()
        .take(NOISE_KIOSKS * NOISE_CARDS_PER_KIOSK)
        .collect();
    noise_cards.reverse();
    let env = Env {
        fx,
        issuer,
        admins: vec![node.admin.clone()],
        client,
        verify_gate: Semaphore::new(VERIFY_PARALLEL),
        noise_cards,
    };
    // The topology under test must be the one asked for, or incident 6 compares nothing.
    let cluster = env
        .admin(0, reqwest::Method::GET, "/admin/v1/cluster", None)
        .await;
    assert_eq!(cluster.status, 200, "cluster view: {}", cluster.text());
    let expected_shards = shard_count.unwrap_or(kofu_proto::DEFAULT_SHARD_COUNT);
    assert_eq!(
        cluster.value()["shard_count"],
        json!(expected_shards),
        "the node runs the requested shard count"
    );
    Deployment {
        apis: vec![node.api.clone()],
        _nodes: vec![node],
        env: Arc::new(env),
    }
}

/// Starts a node for `scenario`, runs it, checks the node-wide invariants afterwards.
async fn run_on_node(scenario: Scenario, shard_count: Option<u32>) -> Summary {
    let started = Instant::now();
    let run = async {
        let d = deploy(scenario.flags(), shard_count).await;
        let summary = scenario.run(&d.apis, &d.env).await;
        // The node's own check of every binding against its session must never trip.
        let self_check = d
            .env
            .metric_sum("kofu_binding_self_check_failures_total")
            .await;
        assert_eq!(self_check, Ok(0.0), "binding self-check failures");
        summary
    };
    let summary = tokio::time::timeout(SCENARIO_BUDGET, run)
        .await
        .unwrap_or_else(|_| panic!("{} exceeded {SCENARIO_BUDGET:?}", scenario.name()));
    eprintln!(
        "{} on shard count {}: {:?} in {:?}",
        scenario.name(),
        shard_count.map_or("default".to_owned(), |n| n.to_string()),
        summary,
        started.elapsed()
    );
    summary
}

fn ordinary_ixs(fx: &Fixtures) -> impl DoubleEndedIterator<Item = usize> + '_ {
    fx.cards
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.card_revoked && !c.restricted)
        .map(|(i, _)| i)
}

/// A released document that passed the kiosk's check, with its text.
struct Checked {
    binding: Binding,
    text: String,
}

impl Env {
    /// Kiosk number `i`, talking to node `i mod n`: consecutive kiosks hit different nodes.
    fn kiosk(&self, apis: &[String], i: usize) -> Kiosk {
        Kiosk::with_client(
            &apis[i % apis.len()],
            &self.fx.kiosks[i],
            self.client.clone(),
        )
    }

    fn card(&self, ix: usize) -> &Card {
        &self.fx.cards[ix]
    }

    fn picker(&self) -> Picker<'_> {
        Picker {
            env: self,
            used: self.noise_cards.iter().copied().collect(),
        }
    }

    async fn admin(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self
            .client
            .request(
                method,
                format!("{}{path}", self.admins[i % self.admins.len()]),
            )
            .bearer_auth(&self.fx.admin_token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        Resp::read(req.send().await).await
    }

    /// Sum of a metric's samples over every node (all label sets).
    async fn metric_sum(&self, name: &str) -> Result<f64, String> {
        let mut sum = 0.0;
        for admin in &self.admins {
            let r = Resp::read(self.client.get(format!("{admin}/metrics")).send().await).await;
            if r.status != 200 {
                return Err(format!("metrics: status {}", r.status));
            }
            for line in r.text().lines() {
                if line.starts_with('#') {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
                    continue;
                };
                if key.split('{').next() == Some(name) {
                    sum += value
                        .parse::<f64>()
                        .map_err(|e| format!("metric {name} value {value:?}: {e}"))?;
                }
            }
        }
        Ok(sum)
    }

    /// The full kiosk check (issuer signature, doc_sha256, binding session/kiosk/card/
    /// kind/copies, holder's name present and no name from outside the household),
    /// plus the text for scenario-specific checks. Runs pdftotext on a blocking thread.
    async fn verify(
        self: &Arc<Self>,
        card_ix: usize,
        resp: &Resp,
        sid: &str,
        kiosk_id: &str,
        kind: CertKind,
        copies: u8,
    ) -> Result<Checked, String> {
        let _slot = self
            .verify_gate
            .acquire()
            .await
            .map_err(|e| format!("verify gate: {e}"))?;
        let (env, resp, sid, kiosk_id) = (
            self.clone(),
            resp.clone(),
            sid.to_owned(),
            kiosk_id.to_owned(),
        );
        tokio::task::spawn_blocking(move || {
            let binding = verify_document(
                &env.fx,
                env.card(card_ix),
                &resp,
                &sid,
                &kiosk_id,
                kind.as_str(),
                copies,
                &env.issuer,
            )
            .map_err(|e| format!("MISDELIVERY/REFUSED session {sid} {kind} x{copies}: {e}"))?;
            let text = pdf_text(&resp.body);
            // The page footers name the record version; it must be the binding's.
            for v in numbers_after(&normalize_spaces(&text), "record version ") {
                if v != binding.record_version {
                    return Err(format!(
                        "document {}: text names record version {v}, binding {}",
                        binding.serial, binding.record_version
                    ));
                }
            }
            Ok(Checked { binding, text })
        })
        .await
        .map_err(|e| format!("verify task: {e}"))?
    }

    /// Opens `n` pooled connections to every node at once, so that barriers release
    /// requests rather than TCP handshakes.
    async fn warm(&self, apis: &[String], n: usize) {
        let mut set = JoinSet::new();
        for api in apis {
            for _ in 0..n {
                let req = self.client.get(format!("{api}/v1/issuer-key"));
                set.spawn(async move { Resp::read(req.send().await).await.status });
            }
        }
        while let Some(r) = set.join_next().await {
            assert_eq!(r.ok(), Some(200), "warming the connection pool");
        }
    }
}

/// Hands out distinct cards within one scenario (never the noise cards).
struct Picker<'a> {
    env: &'a Env,
    used: HashSet<usize>,
}

impl Picker<'_> {
    /// Up to `n` unused ordinary cards satisfying `pred`, in fixture order.
    fn take(&mut self, n: usize, mut pred: impl FnMut(&Card) -> bool) -> Vec<usize> {
        let out: Vec<usize> = ordinary_ixs(&self.env.fx)
            .filter(|i| !self.used.contains(i) && pred(&self.env.fx.cards[*i]))
            .take(n)
            .collect();
        self.used.extend(&out);
        out
    }
}

// ---------------------------------------------------------------------------------
// Kiosk steps shared by the scenarios. Each returns a message instead of panicking.
// ---------------------------------------------------------------------------------

fn brief(what: &str, r: &Resp) -> String {
    let body: String = r.text().chars().take(200).collect();
    format!("{what}: status {}: {body}", r.status)
}

/// create + auth; returns the session id and the kinds offered.
async fn open(kiosk: &Kiosk, card: &Card) -> Result<(String, Vec<CertKind>), String> {
    let r = kiosk.create_session(&card.card_id).await;
    if r.status != 201 {
        return Err(brief("create session", &r));
    }
    let created: CreateSessionResponse = r.json();
    authenticate(kiosk, card, &created).await
}

async fn authenticate(
    kiosk: &Kiosk,
    card: &Card,
    created: &CreateSessionResponse,
) -> Result<(String, Vec<CertKind>), String> {
    let sid = created.session_id.clone();
    let sig = Kiosk::sign_challenge(card, &sid, &kiosk.kiosk_id, &created.challenge);
    let r = kiosk.auth(&sid, &sig).await;
    if r.status != 200 {
        return Err(brief("auth", &r));
    }
    let auth: AuthResponse = r.json();
    Ok((sid, auth.kinds.iter().map(|k| k.kind).collect()))
}

/// A job the kiosk asked for.
#[derive(Debug, Clone)]
struct JobRef {
    id: String,
    kind: CertKind,
    copies: u8,
    created: Instant,
}

impl JobRef {
    fn fee(&self) -> u32 {
        self.kind.fee_yen() * u32::from(self.copies)
    }
}

/// Creates a job (202, fee as quoted by API.md's fee table).
async fn new_job(kiosk: &Kiosk, sid: &str, kind: CertKind, copies: u8) -> Result<JobRef, String> {
    let r = kiosk.create_job(sid, kind.as_str(), copies).await;
    let created = Instant::now();
    if r.status != 202 {
        return Err(brief(&format!("create {kind} job"), &r));
    }
    let job: JobResponse = r.json();
    let job = JobRef {
        id: job.job_id,
        kind,
        copies,
        created,
    };
    let quoted = r.value()["fee_yen"].as_u64().unwrap_or_default();
    if quoted != u64::from(job.fee()) {
        return Err(format!(
            "{kind} x{copies} quoted {quoted} yen, expected {}",
            job.fee()
        ));
    }
    Ok(job)
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

/// `printed` must answer 200 with this serial and the job's fee.
async fn print(
    kiosk: &Kiosk,
    sid: &str,
    job: &JobRef,
    serial: &str,
) -> Result<PrintedResponse, String> {
    let r = kiosk.printed(sid, &job.id).await;
    if r.status != 200 {
        return Err(brief("printed", &r));
    }
    let p: PrintedResponse = r.json();
    if p.serial != serial || p.charged_yen != job.fee() {
        return Err(format!(
            "printed answered {}/{} yen for document {serial}/{} yen",
            p.serial,
            p.charged_yen,
            job.fee()
        ));
    }
    Ok(p)
}

async fn close(kiosk: &Kiosk, sid: &str) -> Result<(), String> {
    let r = kiosk.close(sid).await;
    if r.status != 204 {
        return Err(brief("close", &r));
    }
    Ok(())
}

/// An API.md error answer with this status and code.
fn is_error(r: &Resp, status: u16, code: &str) -> bool {
    r.status == status && r.error_code().as_deref() == Some(code)
}

/// pdftotext pads columns with runs of spaces; collapse them (line breaks stay).
fn normalize_spaces(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last_space = false;
    for c in text.chars() {
        let space = c == ' ' || c == '\t';
        if !(space && last_space) {
            out.push(if space { ' ' } else { c });
        }
        last_space = space;
    }
    out
}

/// Every integer that directly follows `prefix` in `text`.
fn numbers_after(text: &str, prefix: &str) -> Vec<u64> {
    text.match_indices(prefix)
        .filter_map(|(at, _)| {
            let digits: String = text[at + prefix.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

/// Every "Page i/n" of a text (spaces around the slash tolerated).
fn page_marks(text: &str) -> Vec<(u32, u32)> {
    let mut marks = Vec::new();
    for (at, _) in text.match_indices("Page ") {
        let rest = text[at + 5..].trim_start();
        let i: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let rest = rest[i.len()..].trim_start();
        let Some(rest) = rest.strip_prefix('/') else {
            continue;
        };
        let rest = rest.trim_start();
        let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let (Ok(i), Ok(n)) = (i.parse(), n.parse()) {
            marks.push((i, n));
        }
    }
    marks
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

// ---------------------------------------------------------------------------------
// Background traffic.
// ---------------------------------------------------------------------------------

/// A few kiosks running complete residence sessions in a loop until stopped, verifying
/// every document like any other kiosk. `410 job_voided` is tolerated (fault flags may
/// void their jobs too); anything else wrong is a failure of the scenario.
struct Noise {
    stop: Arc<AtomicBool>,
    tasks: JoinSet<Tally>,
}

impl Noise {
    fn start(apis: &[String], env: &Arc<Env>) -> Noise {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        let first = env.fx.kiosks.len() - NOISE_KIOSKS;
        for k in 0..NOISE_KIOSKS {
            let kiosk = env.kiosk(apis, first + k);
            let cards = env.noise_cards[k * NOISE_CARDS_PER_KIOSK..(k + 1) * NOISE_CARDS_PER_KIOSK]
                .to_vec();
            let (env, stop) = (env.clone(), stop.clone());
            tasks.spawn(async move { noise_loop(env, kiosk, cards, stop).await });
        }
        Noise { stop, tasks }
    }

    async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut t = Tally::default();
        t.join(self.tasks).await;
        t
    }
}

async fn noise_loop(
    env: Arc<Env>,
    kiosk: Kiosk,
    cards: Vec<usize>,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut t = Tally::default();
    for n in 0..NOISE_MAX_SESSIONS {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let card_ix = cards[n % cards.len()];
        let (sid, _) = match open(&kiosk, env.card(card_ix)).await {
            Ok(s) => s,
            Err(e) => {
                t.fail(format!("noise: {e}"));
                break;
            }
        };
        t.add("noise_sessions", 1);
        match new_job(&kiosk, &sid, CertKind::Residence, 1).await {
            Ok(job) => {
                let r = fetch(&kiosk, &sid, &job.id).await;
                if r.status == 200 {
                    match env
                        .verify(card_ix, &r, &sid, &kiosk.kiosk_id, job.kind, job.copies)
                        .await
                    {
                        Ok(c) => match print(&kiosk, &sid, &job, &c.binding.serial).await {
                            Ok(p) => {
                                t.add("noise_printed", 1);
                                t.add("noise_charged_yen", u64::from(p.charged_yen));
                                t.serials.push(c.binding.serial);
                            }
                            Err(e) => t.fail(format!("noise: {e}")),
                        },
                        Err(e) => t.fail(format!("noise: {e}")),
                    }
                } else if is_error(&r, 410, "job_voided") {
                    t.add("noise_voided", 1);
                } else {
                    t.fail(format!("noise: {}", brief("document", &r)));
                }
            }
            Err(e) => t.fail(format!("noise: {e}")),
        }
        if let Err(e) = close(&kiosk, &sid).await {
            t.fail(format!("noise: {e}"));
        }
    }
    t
}

// ---------------------------------------------------------------------------------
// Incident 1: timeout under load.
// ---------------------------------------------------------------------------------

/// Concurrent sessions of three jobs each while every third job misses its render
/// deadline: a voided job answers `410` forever, and no other job's document is ever
/// released in its place (every `200` verifies against its own session, kind and
/// copies, and every serial is unique). Then, within one session, job A times out and
/// job B created right after it is released: A stays `410`, B is B's document.
async fn timeout_under_load(apis: &[String], env: &Arc<Env>) -> Summary {
    const SESSIONS: usize = 40;
    let mut pick = env.picker();
    let cards = pick.take(SESSIONS, |_| true);
    assert_eq!(cards.len(), SESSIONS, "enough ordinary cards");
    let mut tally = Tally::default();
    let noise = Noise::start(apis, env);
    let barrier = Arc::new(Barrier::new(SESSIONS));
    let mut tasks = JoinSet::new();
    for (i, card_ix) in cards.into_iter().enumerate() {
        let (env, barrier, kiosk) = (env.clone(), barrier.clone(), env.kiosk(apis, i));
        tasks.spawn(async move { timeout_session(&env, &kiosk, card_ix, i, &barrier).await });
    }
    tally.join(tasks).await;
    tally.merge(noise.stop().await);
    if tally.get("released") == 0 || tally.get("voided") == 0 {
        tally.fail("under load, some documents must release and some jobs time out");
    }

    // Part two runs without other traffic on the node's job counter, so which job is
    // delayed is predictable enough to meet "A delayed, B (created after) not" within a
    // few sessions.
    let card_ix = pick.take(1, |_| true)[0];
    let kiosk = env.kiosk(apis, 0);
    tally.merge(void_then_release(env, &kiosk, card_ix).await);
    if tally.get("a_voided_b_released") != 1 {
        tally.fail("six sessions never showed job A voided and job B (created after) released");
    }
    tally.finish("incident 1", &["sessions", "a_voided_b_released"])
}

async fn timeout_session(
    env: &Arc<Env>,
    kiosk: &Kiosk,
    card_ix: usize,
    i: usize,
    barrier: &Barrier,
) -> Tally {
    let mut t = Tally::default();
    barrier.wait().await;
    let (sid, kinds) = match open(kiosk, env.card(card_ix)).await {
        Ok(s) => s,
        Err(e) => {
            t.fail(format!("session {i}: {e}"));
            return t;
        }
    };
    t.add("sessions", 1);
    // Three jobs back to back, so a delayed job and fast later ones are in flight
    // together; copies 1, 2, 3 make any swap within the session visible in the binding.
    let mut jobs = Vec::new();
    for n in 0..3 {
        let kind = kinds[(i + n) % kinds.len()];
        match new_job(kiosk, &sid, kind, n as u8 + 1).await {
            Ok(j) => jobs.push(j),
            Err(e) => t.fail(format!("session {i}: {e}")),
        }
    }
    let mut released = Vec::new();
    let mut voided = Vec::new();
    for job in &jobs {
        let r = fetch(kiosk, &sid, &job.id).await;
        if r.status == 200 {
            match env
                .verify(card_ix, &r, &sid, &kiosk.kiosk_id, job.kind, job.copies)
                .await
            {
                Ok(c) => {
                    t.serials.push(c.binding.serial.clone());
                    released.push((job, c.binding.serial, r.body));
                }
                Err(e) => t.fail(format!("session {i} job {}: {e}", job.id)),
            }
        } else if is_error(&r, 410, "job_voided") {
            voided.push(job);
        } else {
            t.fail(format!("session {i}: {}", brief("document", &r)));
        }
    }
    if let Some(last) = jobs.iter().map(|j| j.created).max() {
        tokio::time::sleep_until((last + REFETCH_AFTER).into()).await;
    }
    // The delayed renders have had time to finish: a voided job still answers 410 and
    // cannot be printed; a released one still gives exactly its own bytes.
    for job in &voided {
        let r = kiosk.document(&sid, &job.id, 0).await;
        if r.status == 200 {
            t.fail(format!(
                "session {i}: voided job {} released a document later",
                job.id
            ));
        } else if !is_error(&r, 410, "job_voided") {
            t.fail(format!(
                "session {i}: {}",
                brief("refetch of a voided job", &r)
            ));
        }
        let p = kiosk.printed(&sid, &job.id).await;
        if !is_error(&p, 410, "job_voided") {
            t.fail(format!(
                "session {i}: {}",
                brief("printed on a voided job", &p)
            ));
        }
    }
    for (job, serial, body) in &released {
        let r = kiosk.document(&sid, &job.id, 0).await;
        if r.status != 200 || r.body != *body {
            t.fail(format!(
                "session {i}: {} (not the same bytes)",
                brief("refetch", &r)
            ));
        }
        if let Err(e) = print(kiosk, &sid, job, serial).await {
            t.fail(format!("session {i}: {e}"));
        }
    }
    t.add("released", released.len() as u64);
    t.add("voided", voided.len() as u64);
    if let Err(e) = close(kiosk, &sid).await {
        t.fail(format!("session {i}: {e}"));
    }
    t
}

/// One session at a time: job A then job B at once; until A is the delayed one and B
/// is not (every third job is delayed, so that happens within three sessions when
/// nothing else creates jobs; six are allowed).
async fn void_then_release(env: &Arc<Env>, kiosk: &Kiosk, card_ix: usize) -> Tally {
    let mut t = Tally::default();
    for attempt in 0..6 {
        let (sid, _) = match open(kiosk, env.card(card_ix)).await {
            Ok(s) => s,
            Err(e) => {
                t.fail(format!("A/B attempt {attempt}: {e}"));
                return t;
            }
        };
        // Different kind and copies, so a swapped document fails the binding check.
        let a = new_job(kiosk, &sid, CertKind::FamilyRegister, 2).await;
        let b = new_job(kiosk, &sid, CertKind::Residence, 1).await;
        let (a, b) = match (a, b) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                t.fail(format!(
                    "A/B attempt {attempt}: {:?} {:?}",
                    a.err(),
                    b.err()
                ));
                return t;
            }
        };
        // A is asked first and both long polls run together: a shared-slot bug would
        // hand B's finished document to A's waiting poll.
        let (ra, rb) = tokio::join!(fetch(kiosk, &sid, &a.id), fetch(kiosk, &sid, &b.id));
        let mut outcome = [false; 2];
        for (k, (job, r)) in [(&a, &ra), (&b, &rb)].into_iter().enumerate() {
            if r.status == 200 {
                match env
                    .verify(card_ix, r, &sid, &kiosk.kiosk_id, job.kind, job.copies)
                    .await
                {
                    Ok(c) => t.serials.push(c.binding.serial),
                    Err(e) => t.fail(format!("A/B attempt {attempt}: {e}")),
                }
            } else if is_error(r, 410, "job_voided") {
                outcome[k] = true;
            } else {
                t.fail(format!("A/B attempt {attempt}: {}", brief("document", r)));
            }
        }
        if outcome == [true, false] && rb.status == 200 {
            tokio::time::sleep_until((a.created + REFETCH_AFTER).into()).await;
            let again_a = kiosk.document(&sid, &a.id, 0).await;
            if !is_error(&again_a, 410, "job_voided") {
                t.fail(brief("A (voided) fetched after its delay", &again_a));
            }
            let again_b = kiosk.document(&sid, &b.id, 0).await;
            if again_b.status != 200 || again_b.body != rb.body {
                t.fail(brief("B fetched again (must be the same bytes)", &again_b));
            }
            if !is_error(&kiosk.printed(&sid, &a.id).await, 410, "job_voided") {
                t.fail("printed on voided A must answer 410 job_voided");
            }
            t.add("a_voided_b_released", 1);
            if let Err(e) = close(kiosk, &sid).await {
                t.fail(e);
            }
            return t;
        }
        if let Err(e) = close(kiosk, &sid).await {
            t.fail(e);
        }
    }
    t
}

// ---------------------------------------------------------------------------------
// Incident 2: near-simultaneous requests.
// ---------------------------------------------------------------------------------

/// 110 kiosks (different stores) open sessions in the same millisecond, create jobs in
/// the same millisecond, fetch and print together: distinct session ids, distinct
/// serials, every document verifies for its own session.
async fn near_simultaneous_requests(apis: &[String], env: &Arc<Env>) -> Summary {
    const STORES: usize = 110;
    let mut pick = env.picker();
    let cards = pick.take(STORES, |_| true);
    assert_eq!(cards.len(), STORES, "enough ordinary cards");
    env.warm(apis, STORES).await;
    let mut tally = Tally::default();
    let noise = Noise::start(apis, env);
    // One barrier per phase: each phase of all stores starts within the same moment.
    let phases: Arc<[Barrier; 4]> = Arc::new(std::array::from_fn(|_| Barrier::new(STORES)));
    let mut tasks = JoinSet::new();
    for (i, card_ix) in cards.into_iter().enumerate() {
        let (env, phases, kiosk) = (env.clone(), phases.clone(), env.kiosk(apis, i));
        tasks.spawn(async move { same_millisecond_store(&env, &kiosk, card_ix, i, &phases).await });
    }
    let mut sids = HashSet::new();
    let mut created_at = Vec::new();
    let mut jobs_at = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((t, sid, at)) => {
                tally.merge(t);
                if let Some(sid) = sid
                    && !sids.insert(sid)
                {
                    tally.fail("two stores got the same session id");
                }
                created_at.extend(at.0);
                jobs_at.extend(at.1);
            }
            Err(e) => tally.fail(format!("store task died: {e}")),
        }
    }
    tally.merge(noise.stop().await);
    let span = |v: &[Instant]| match (v.iter().min(), v.iter().max()) {
        (Some(a), Some(b)) => b.duration_since(*a),
        _ => Duration::ZERO,
    };
    eprintln!(
        "near-simultaneous: {STORES} creates sent within {:?}, {STORES} job requests within {:?}",
        span(&created_at),
        span(&jobs_at)
    );
    tally.finish("incident 2", &["sessions", "released", "printed"])
}

type SendTimes = (Option<Instant>, Option<Instant>);

/// One store's kiosk; waits at every phase barrier even after a failure, so that the
/// other stores are never left waiting.
async fn same_millisecond_store(
    env: &Arc<Env>,
    kiosk: &Kiosk,
    card_ix: usize,
    i: usize,
    phases: &[Barrier; 4],
) -> (Tally, Option<String>, SendTimes) {
    let mut t = Tally::default();
    let card = env.card(card_ix);
    phases[0].wait().await;
    let create_at = Instant::now();
    let r = kiosk.create_session(&card.card_id).await;
    let session = if r.status == 201 {
        let created: CreateSessionResponse = r.json();
        authenticate(kiosk, card, &created).await
    } else {
        Err(brief("create session", &r))
    };
    phases[1].wait().await;
    let job_at = Instant::now();
    let job = match &session {
        Ok((sid, kinds)) => new_job(kiosk, sid, kinds[i % kinds.len()], (i % 3) as u8 + 1).await,
        Err(e) => Err(e.clone()),
    };
    phases[2].wait().await;
    let doc = match (&session, &job) {
        (Ok((sid, _)), Ok(job)) => {
            let r = fetch(kiosk, sid, &job.id).await;
            env.verify(card_ix, &r, sid, &kiosk.kiosk_id, job.kind, job.copies)
                .await
        }
        (Err(e), _) | (_, Err(e)) => Err(e.clone()),
    };
    phases[3].wait().await;
    let mut sid_out = None;
    match (&session, &job, &doc) {
        (Ok((sid, _)), Ok(job), Ok(c)) => {
            t.add("sessions", 1);
            t.add("released", 1);
            t.serials.push(c.binding.serial.clone());
            match print(kiosk, sid, job, &c.binding.serial).await {
                Ok(_) => t.add("printed", 1),
                Err(e) => t.fail(format!("store {i}: {e}")),
            }
            if let Err(e) = close(kiosk, sid).await {
                t.fail(format!("store {i}: {e}"));
            }
            sid_out = Some(sid.clone());
        }
        (_, _, Err(e)) => t.fail(format!("store {i}: {e}")),
        _ => t.fail(format!("store {i}: inconsistent step results")),
    }
    (t, sid_out, (Some(create_at), Some(job_at)))
}

// ---------------------------------------------------------------------------------
// Incident 3: record update during issuance.
// ---------------------------------------------------------------------------------

/// Address changes land again and again for the same holders while their residence
/// certificates render (200 ms each). Each document reflects exactly one record
/// version of its own holder: the binding's `record_version` is one the admin API
/// acknowledged (or the original one), the text holds that version's address and no
/// other address we set, and only names of the holder's household.
async fn record_update_during_issuance(apis: &[String], env: &Arc<Env>) -> Summary {
    const HOLDERS: usize = 6;
    const ROUNDS: usize = 15;
    const SESSIONS_PER_HOLDER: usize = 2;
    const JOBS_PER_SESSION: usize = 4;
    let mut pick = env.picker();
    // Distinct households: one holder's update cannot show up on another's paper.
    let mut households = HashSet::new();
    let holders = pick.take(usize::MAX, |c| households.insert(c.household_id.clone()));
    let holders: Vec<usize> = holders.into_iter().take(HOLDERS).collect();
    assert_eq!(
        holders.len(),
        HOLDERS,
        "enough holders in distinct households"
    );
    let mut tally = Tally::default();
    let noise = Noise::start(apis, env);

    // The updater: every 40 ms a new address for every holder; the admin answer tells
    // which record version each address produced.
    let updater = {
        let (env, holders) = (env.clone(), holders.clone());
        tokio::spawn(async move {
            let mut t = Tally::default();
            let mut versions: HashMap<(usize, u64), String> = HashMap::new();
            for round in 0..ROUNDS {
                let mut set = JoinSet::new();
                for (h, &card_ix) in holders.iter().enumerate() {
                    let env = env.clone();
                    let address = format!("Kofutest {h:02}-{round:03} Chome");
                    set.spawn(async move {
                        let path =
                            format!("/admin/v1/residents/{}/address", env.card(card_ix).card_id);
                        let r = env
                            .admin(
                                round + h,
                                reqwest::Method::POST,
                                &path,
                                Some(json!({ "address": address })),
                            )
                            .await;
                        (h, address, r)
                    });
                }
                while let Some(joined) = set.join_next().await {
                    let Ok((h, address, r)) = joined else {
                        t.fail("address update task died");
                        continue;
                    };
                    match r.value()["record_version"].as_u64() {
                        Some(v) if r.status == 200 => {
                            t.add("address_updates", 1);
                            if versions.insert((h, v), address).is_some() {
                                t.fail(format!("two address updates acknowledged as version {v}"));
                            }
                        }
                        _ => t.fail(brief("address update", &r)),
                    }
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            (t, versions)
        })
    };

    // The issuers: per holder, sessions of four residence jobs created 50 ms apart,
    // so every render overlaps several updates.
    let mut tasks = JoinSet::new();
    for (h, &card_ix) in holders.iter().enumerate() {
        let (env, kiosk) = (env.clone(), env.kiosk(apis, h));
        tasks.spawn(async move {
            let mut t = Tally::default();
            let mut docs = Vec::new();
            for s in 0..SESSIONS_PER_HOLDER {
                let sid = match open(&kiosk, env.card(card_ix)).await {
                    Ok((sid, _)) => sid,
                    Err(e) => {
                        t.fail(format!("holder {h} session {s}: {e}"));
                        continue;
                    }
                };
                let mut jobs = Vec::new();
                for _ in 0..JOBS_PER_SESSION {
                    match new_job(&kiosk, &sid, CertKind::Residence, 1).await {
                        Ok(j) => jobs.push(j),
                        Err(e) => t.fail(format!("holder {h}: {e}")),
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                for job in &jobs {
                    let r = fetch(&kiosk, &sid, &job.id).await;
                    match env
                        .verify(card_ix, &r, &sid, &kiosk.kiosk_id, job.kind, job.copies)
                        .await
                    {
                        Ok(c) => {
                            t.serials.push(c.binding.serial.clone());
                            docs.push((h, c));
                        }
                        Err(e) => t.fail(format!("holder {h}: {e}")),
                    }
                }
                if let Err(e) = close(&kiosk, &sid).await {
                    t.fail(format!("holder {h}: {e}"));
                }
            }
            (t, docs)
        });
    }
    let mut docs = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((t, d)) => {
                tally.merge(t);
                docs.extend(d);
            }
            Err(e) => tally.fail(format!("issuer task died: {e}")),
        }
    }
    let versions = match updater.await {
        Ok((t, v)) => {
            tally.merge(t);
            v
        }
        Err(e) => {
            tally.fail(format!("updater died: {e}"));
            HashMap::new()
        }
    };
    tally.merge(noise.stop().await);

    let mut set_by_holder: HashMap<usize, Vec<(u64, &str)>> = HashMap::new();
    for ((h, v), a) in &versions {
        set_by_holder.entry(*h).or_default().push((*v, a.as_str()));
    }
    for (h, c) in &docs {
        tally.add("docs", 1);
        let text = normalize_spaces(&c.text);
        let v = c.binding.record_version;
        let serial = &c.binding.serial;
        let mine = set_by_holder.get(h).cloned().unwrap_or_default();
        let present: Vec<&str> = mine
            .iter()
            .filter(|(_, a)| text.contains(a))
            .map(|(_, a)| *a)
            .collect();
        if present.len() > 1 {
            tally.fail(format!(
                "holder {h} document {serial}: mixes {} record versions' addresses",
                present.len()
            ));
        }
        match versions.get(&(*h, v)) {
            Some(addr) => {
                tally.add("docs_with_updated_record", 1);
                if present != [addr.as_str()] {
                    tally.fail(format!(
                        "holder {h} document {serial}: binding says record version {v} but the \
                         text does not hold exactly that version's address"
                    ));
                }
            }
            None => {
                // Not a version we produced: it must be the original record, older than
                // every update we made, with none of our addresses.
                let first = mine.iter().map(|(v, _)| *v).min().unwrap_or(u64::MAX);
                if v >= first || !present.is_empty() {
                    tally.fail(format!(
                        "holder {h} document {serial}: record version {v} is neither the \
                         original nor one the admin API acknowledged"
                    ));
                }
                tally.add("docs_with_original_record", 1);
            }
        }
        for (other, addrs) in &set_by_holder {
            if other != h && addrs.iter().any(|(_, a)| text.contains(a)) {
                tally.fail(format!(
                    "holder {h} document {serial}: CROSS-DELIVERY: holds holder {other}'s address"
                ));
            }
        }
    }
    if tally.get("docs_with_updated_record") == 0 {
        tally.fail("no document rendered from an updated record: updates did not overlap issuance");
    }
    tally.finish("incident 3", &["docs", "address_updates"])
}

// ---------------------------------------------------------------------------------
// Incident 4: multi-page documents.
// ---------------------------------------------------------------------------------

/// Family-register certificates of multi-person households, concurrently: every page
/// carries the binding's serial, "Page i/n" with the right i and n, the holder's name,
/// and only names of that household; households of two or more give two or more pages.
async fn multi_page_documents(apis: &[String], env: &Arc<Env>) -> Summary {
    const FAMILIES: usize = 24;
    const SINGLES: usize = 4;
    let mut pick = env.picker();
    let fx = &env.fx;
    let mut households = HashSet::new();
    let families: Vec<usize> = pick
        .take(usize::MAX, |c| {
            fx.household_names(&c.household_id).len() >= 2
                && households.insert(c.household_id.clone())
        })
        .into_iter()
        .take(FAMILIES)
        .collect();
    assert!(
        families.len() >= 8,
        "the population has multi-person households"
    );
    let singles = pick.take(SINGLES, |c| fx.household_names(&c.household_id).len() == 1);
    let holders: Vec<usize> = families.iter().chain(&singles).copied().collect();
    let mut tally = Tally::default();
    let noise = Noise::start(apis, env);
    let barrier = Arc::new(Barrier::new(holders.len()));
    let mut tasks = JoinSet::new();
    for (i, card_ix) in holders.into_iter().enumerate() {
        let (env, barrier, kiosk) = (env.clone(), barrier.clone(), env.kiosk(apis, i));
        tasks.spawn(async move {
            let mut t = Tally::default();
            barrier.wait().await;
            let sid = match open(&kiosk, env.card(card_ix)).await {
                Ok((sid, _)) => sid,
                Err(e) => {
                    t.fail(format!("holder {i}: {e}"));
                    return t;
                }
            };
            // Two copies on some: the PDF is one copy either way, the binding says how many.
            let copies = (i % 2) as u8 + 1;
            match new_job(&kiosk, &sid, CertKind::FamilyRegister, copies).await {
                Ok(job) => {
                    let r = fetch(&kiosk, &sid, &job.id).await;
                    match env
                        .verify(card_ix, &r, &sid, &kiosk.kiosk_id, job.kind, job.copies)
                        .await
                    {
                        Ok(c) => {
                            check_pages(&env, card_ix, &c, &mut t);
                            t.serials.push(c.binding.serial.clone());
                            if let Err(e) = print(&kiosk, &sid, &job, &c.binding.serial).await {
                                t.fail(format!("holder {i}: {e}"));
                            }
                        }
                        Err(e) => t.fail(format!("holder {i}: {e}")),
                    }
                }
                Err(e) => t.fail(format!("holder {i}: {e}")),
            }
            if let Err(e) = close(&kiosk, &sid).await {
                t.fail(format!("holder {i}: {e}"));
            }
            t
        });
    }
    tally.join(tasks).await;
    tally.merge(noise.stop().await);
    tally.finish("incident 4", &["docs", "pages", "multi_page_docs"])
}

fn check_pages(env: &Env, card_ix: usize, c: &Checked, t: &mut Tally) {
    let card = env.card(card_ix);
    let serial = &c.binding.serial;
    let members = env.fx.household_names(&card.household_id);
    let foreign = env.fx.foreign_names(&card.household_id);
    // pdftotext ends every page with a form feed.
    let mut pages: Vec<&str> = c.text.split('\u{c}').collect();
    if pages.last().is_some_and(|p| p.trim().is_empty()) {
        pages.pop();
    }
    let n = pages.len() as u32;
    t.add("docs", 1);
    t.add("pages", u64::from(n));
    if members.len() >= 2 {
        t.add("multi_page_docs", u64::from(n >= 2));
        if n < 2 {
            t.fail(format!(
                "document {serial}: a household of {} fits on {n} page(s)",
                members.len()
            ));
        }
    }
    for (k, page) in pages.iter().enumerate() {
        let at = k as u32 + 1;
        let text = normalize_spaces(page);
        if !text.contains(serial.as_str()) {
            t.fail(format!("document {serial}: page {at}/{n} lacks the serial"));
        }
        // Exactly one page mark, and it is this page's: a page of another document (or of
        // another length) would carry its own.
        let marks = page_marks(&text);
        if marks != [(at, n)] {
            t.fail(format!(
                "document {serial}: page {at} of {n} carries page marks {marks:?}"
            ));
        }
        if !contains_name(&text, &card.full_name) {
            t.fail(format!(
                "document {serial}: page {at}/{n} does not name the holder"
            ));
        }
        let intruders = foreign
            .iter()
            .filter(|name| contains_name(&text, name))
            .count();
        if intruders > 0 {
            t.fail(format!(
                "document {serial}: CROSS-DELIVERY: page {at}/{n} names {intruders} person(s) \
                 outside the household"
            ));
        }
    }
}

// ---------------------------------------------------------------------------------
// Incident 5: stale data.
// ---------------------------------------------------------------------------------

/// Seal jobs are created, then the holders' seal registrations are revoked (admin API
/// acknowledged) — some jobs already rendered but not fetched, some still rendering.
/// Every one of them answers `422 not_issuable` (reason `seal_revoked`) from then on,
/// a new seal job is refused at creation, while other holders' seal certificates
/// (fetched concurrently) and the revoked holders' residence certificates still release.
async fn stale_data_revocation(apis: &[String], env: &Arc<Env>) -> Summary {
    const GROUP: usize = 4;
    let mut pick = env.picker();
    let sealed = |c: &Card| c.seal_registered && !c.seal_revoked;
    let rendered = pick.take(GROUP, sealed);
    let rendering = pick.take(GROUP, sealed);
    let untouched = pick.take(GROUP, sealed);
    assert_eq!(
        rendered.len() + rendering.len() + untouched.len(),
        3 * GROUP,
        "enough holders with a seal registration"
    );
    let mut tally = Tally::default();
    let noise = Noise::start(apis, env);

    // Kiosk i serves holder i of the concatenated list.
    let holders: Vec<(usize, usize)> = rendered
        .iter()
        .chain(&rendering)
        .chain(&untouched)
        .copied()
        .enumerate()
        .collect();
    let mut sessions = HashMap::new();
    for &(i, card_ix) in &holders {
        match open(&env.kiosk(apis, i), env.card(card_ix)).await {
            Ok((sid, kinds)) if kinds.contains(&CertKind::Seal) => {
                sessions.insert(i, sid);
            }
            Ok(_) => tally.fail(format!("holder {i}: a registered seal was not offered")),
            Err(e) => tally.fail(format!("holder {i}: {e}")),
        }
    }
    let job = |i: usize, kind: CertKind| {
        let (kiosk, sid) = (
            env.kiosk(apis, i),
            sessions.get(&i).cloned().unwrap_or_default(),
        );
        async move { new_job(&kiosk, &sid, kind, 1).await }
    };
    // Group one: seal and residence jobs whose renders finish (1 s) before the revocation.
    let mut seal_jobs = HashMap::new();
    let mut residence_jobs = HashMap::new();
    for &(i, _) in &holders[..GROUP] {
        match (
            job(i, CertKind::Seal).await,
            job(i, CertKind::Residence).await,
        ) {
            (Ok(s), Ok(r)) => {
                seal_jobs.insert(i, s);
                residence_jobs.insert(i, r);
            }
            (s, r) => tally.fail(format!("holder {i}: {:?} {:?}", s.err(), r.err())),
        }
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // Groups two and three: seal jobs that are still rendering when the revocation lands.
    for &(i, _) in &holders[GROUP..] {
        match job(i, CertKind::Seal).await {
            Ok(s) => {
                seal_jobs.insert(i, s);
            }
            Err(e) => tally.fail(format!("holder {i}: {e}")),
        }
    }

    // Revoke groups one and two while group three's documents are fetched.
    let revoked: Vec<(usize, usize)> = holders[..2 * GROUP].to_vec();
    let revocations = {
        let env = env.clone();
        let revoked = revoked.clone();
        async move {
            let mut t = Tally::default();
            let mut acked = HashMap::new();
            let mut set = JoinSet::new();
            for (i, card_ix) in revoked {
                let env = env.clone();
                set.spawn(async move {
                    let path = format!(
                        "/admin/v1/residents/{}/seal/revoke",
                        env.card(card_ix).card_id
                    );
                    (
                        i,
                        env.admin(i, reqwest::Method::POST, &path, None).await,
                        Instant::now(),
                    )
                });
            }
            while let Some(joined) = set.join_next().await {
                match joined {
                    Ok((i, r, at)) if r.status == 200 && r.value()["seal"] == "revoked" => {
                        acked.insert(i, at);
                    }
                    Ok((i, r, _)) => t.fail(format!("holder {i}: {}", brief("seal revoke", &r))),
                    Err(e) => t.fail(format!("revoke task died: {e}")),
                }
            }
            (t, acked)
        }
    };
    let unaffected = {
        let mut set = JoinSet::new();
        for &(i, card_ix) in &holders[2 * GROUP..] {
            let (env, kiosk) = (env.clone(), env.kiosk(apis, i));
            let sid = sessions.get(&i).cloned().unwrap_or_default();
            let Some(job) = seal_jobs.get(&i).cloned() else {
                continue;
            };
            set.spawn(async move {
                let mut t = Tally::default();
                let r = fetch(&kiosk, &sid, &job.id).await;
                match env
                    .verify(card_ix, &r, &sid, &kiosk.kiosk_id, job.kind, job.copies)
                    .await
                {
                    Ok(c) => {
                        t.add("seal_released_untouched", 1);
                        t.serials.push(c.binding.serial.clone());
                        if let Err(e) = print(&kiosk, &sid, &job, &c.binding.serial).await {
                            t.fail(format!("holder {i}: {e}"));
                        }
                    }
                    Err(e) => t.fail(format!("untouched holder {i}: {e}")),
                }
                t
            });
        }
        let mut t = Tally::default();
        async move {
            t.join(set).await;
            t
        }
    };
    let ((t, acked), t2) = tokio::join!(revocations, unaffected);
    tally.merge(t);
    tally.merge(t2);

    for &(i, card_ix) in &revoked {
        let kiosk = env.kiosk(apis, i);
        let Some(sid) = sessions.get(&i) else {
            continue;
        };
        let Some(job) = seal_jobs.get(&i) else {
            continue;
        };
        if !acked.contains_key(&i) {
            continue;
        }
        // Acknowledged before this job's render could finish: it was still rendering.
        if acked[&i] < job.created + Duration::from_millis(1000) {
            tally.add("revoked_while_rendering", 1);
        } else {
            tally.add("revoked_after_render", 1);
        }
        for attempt in 0..2 {
            let r = fetch(&kiosk, sid, &job.id).await;
            if r.status == 200 {
                tally.fail(format!(
                    "holder {i}: STALE: a seal certificate was released after its revocation \
                     was acknowledged (fetch {attempt})"
                ));
            } else if !is_error(&r, 422, "not_issuable") || r.value()["reason"] != "seal_revoked" {
                tally.fail(format!(
                    "holder {i}: {}",
                    brief("seal document after revocation", &r)
                ));
            } else {
                tally.add("seal_refused", 1);
            }
        }
        let p = kiosk.printed(sid, &job.id).await;
        if p.status < 400 {
            tally.fail(format!(
                "holder {i}: {}",
                brief("printed on a refused job", &p)
            ));
        }
        // A new seal job after the revocation is refused at creation.
        let r = kiosk.create_job(sid, "seal", 1).await;
        if is_error(&r, 422, "not_issuable") && r.value()["reason"] == "seal_revoked" {
            tally.add("seal_job_refused", 1);
        } else {
            tally.fail(format!(
                "holder {i}: {}",
                brief("new seal job after revocation", &r)
            ));
        }
        // The revocation touches the seal only: a residence certificate still releases.
        if let Some(res) = residence_jobs.get(&i) {
            let r = fetch(&kiosk, sid, &res.id).await;
            match env
                .verify(card_ix, &r, sid, &kiosk.kiosk_id, res.kind, res.copies)
                .await
            {
                Ok(c) => {
                    tally.add("residence_released_revoked", 1);
                    tally.serials.push(c.binding.serial);
                }
                Err(e) => tally.fail(format!("holder {i}: residence after seal revocation: {e}")),
            }
        }
        if let Err(e) = close(&kiosk, sid).await {
            tally.fail(format!("holder {i}: {e}"));
        }
        // A fresh session no longer offers the seal and refuses it at creation. Revoking
        // again is acknowledged as well (idempotent).
        match open(&kiosk, env.card(card_ix)).await {
            Ok((sid, kinds)) => {
                if kinds.contains(&CertKind::Seal) {
                    tally.fail(format!("holder {i}: a revoked seal is still offered"));
                }
                let r = kiosk.create_job(&sid, "seal", 1).await;
                if !is_error(&r, 422, "not_issuable") || r.value()["reason"] != "seal_revoked" {
                    tally.fail(format!(
                        "holder {i}: {}",
                        brief("seal job in a new session", &r)
                    ));
                }
                if let Err(e) = close(&kiosk, &sid).await {
                    tally.fail(format!("holder {i}: {e}"));
                }
            }
            Err(e) => tally.fail(format!("holder {i}: reopening: {e}")),
        }
        let path = format!(
            "/admin/v1/residents/{}/seal/revoke",
            env.card(card_ix).card_id
        );
        let again = env.admin(i, reqwest::Method::POST, &path, None).await;
        if again.status != 200 {
            tally.fail(format!("holder {i}: {}", brief("repeated revoke", &again)));
        }
    }
    for &(i, _) in &holders[2 * GROUP..] {
        if let Some(sid) = sessions.get(&i)
            && let Err(e) = close(&env.kiosk(apis, i), sid).await
        {
            tally.fail(format!("holder {i}: {e}"));
        }
    }
    tally.merge(noise.stop().await);
    tally.finish(
        "incident 5",
        &[
            "seal_refused",
            "seal_job_refused",
            "seal_released_untouched",
            "residence_released_revoked",
        ],
    )
}

// ---------------------------------------------------------------------------------
// Incident 7: error and retry.
// ---------------------------------------------------------------------------------

/// Kiosks that lose answers and retry, concurrently: a create whose answer was lost
/// (connection dropped after the server answered) is retried; auth is repeated; the job
/// request is repeated; document fetches are dropped while waiting and mid-response, or
/// time out on the client, and are retried; `printed` is lost and retried, also
/// several times at once. Every answer is the kiosk's own document (verified) or a
/// clear error, and each print is charged once: the node's `kofu_charged_yen_total`
/// equals the sum of distinct charges. (A `503` cannot be provoked on a single node
/// without stopping it; the cluster variant retries after a drain.)
async fn error_and_retry(apis: &[String], env: &Arc<Env>) -> Summary {
    const KIOSKS_RETRYING: usize = 16;
    let mut pick = env.picker();
    let cards = pick.take(KIOSKS_RETRYING, |_| true);
    assert_eq!(cards.len(), KIOSKS_RETRYING, "enough ordinary cards");
    // Times out while a 300 ms render is still pending.
    let hasty = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .expect("http client");
    let mut tally = Tally::default();
    let noise = Noise::start(apis, env);
    let mut tasks = JoinSet::new();
    for (i, card_ix) in cards.into_iter().enumerate() {
        let (env, kiosk) = (env.clone(), env.kiosk(apis, i));
        let hasty = Kiosk::with_client(&kiosk.base, &env.fx.kiosks[i], hasty.clone());
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
    let token = &kiosk.token;
    let fail = |t: &mut Tally, msg: String| t.fail(format!("kiosk {i}: {msg}"));

    // 1. The create's answer is lost: the server answered, the connection dropped. (The
    //    test reads the lost answer to learn the session id the kiosk never saw.)
    let body = json!({ "card_id": card.card_id }).to_string();
    let lost = abandoned_request(
        &kiosk.base,
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
    let r = kiosk.create_session(&card.card_id).await;
    if r.status != 201 {
        fail(&mut t, brief("retried create", &r));
        return t;
    }
    if let Some(lost_sid) = lost_sid {
        let r = kiosk.create_job(&lost_sid, "residence", 1).await;
        if is_error(&r, 404, "unknown_session") {
            t.add("lost_sessions_closed", 1);
        } else {
            fail(
                &mut t,
                brief("job in the session whose create answer was lost", &r),
            );
        }
    }
    let created: CreateSessionResponse = r.json();
    let sid = match authenticate(kiosk, card, &created).await {
        Ok((sid, _)) => sid,
        Err(e) => {
            fail(&mut t, e);
            return t;
        }
    };
    t.add("sessions", 1);
    // 2. Auth repeated with the same signature: a clear error, still authenticated.
    let sig = Kiosk::sign_challenge(card, &sid, &kiosk.kiosk_id, &created.challenge);
    let r = kiosk.auth(&sid, &sig).await;
    if !is_error(&r, 409, "already_authenticated") {
        fail(&mut t, brief("repeated auth", &r));
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
        &kiosk.base,
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
    let r = hasty.document(&sid, &a.id, 5000).await;
    match r.status {
        0 => t.add("client_timeouts", 1),
        200 => match env
            .verify(card_ix, &r, &sid, &kiosk.kiosk_id, a.kind, a.copies)
            .await
        {
            Ok(_) => t.add("hasty_documents", 1),
            Err(e) => fail(&mut t, e),
        },
        _ => fail(&mut t, brief("document with a client timeout", &r)),
    }
    match abandoned_request(&kiosk.base, token, "GET", &path, None, 64, Duration::ZERO).await {
        Ok(p) if p.status == Some(200) => t.add("dropped_mid_response", 1),
        other => fail(&mut t, format!("document dropped mid-response: {other:?}")),
    }
    // The retries: the kiosk's own documents, the same bytes every time.
    let mut serials = Vec::new();
    let mut first_bodies = Vec::new();
    for job in [&a, &b] {
        let r = fetch(kiosk, &sid, &job.id).await;
        match env
            .verify(card_ix, &r, &sid, &kiosk.kiosk_id, job.kind, job.copies)
            .await
        {
            Ok(c) => {
                t.add("released", 1);
                t.serials.push(c.binding.serial.clone());
                serials.push(c.binding.serial);
                first_bodies.push(r.body);
            }
            Err(e) => {
                fail(&mut t, e);
                return t;
            }
        }
    }
    let again = kiosk.document(&sid, &a.id, 0).await;
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
        &kiosk.base,
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
    let r = kiosk.document(&sid, &b.id, 0).await;
    if !is_error(&r, 404, "unknown_session") {
        fail(&mut t, brief("document after close", &r));
    }
    let r = kiosk.printed(&sid, &b.id).await;
    if !is_error(&r, 404, "unknown_session") {
        fail(&mut t, brief("printed after close", &r));
    }
    t
}
