//! The demo's kiosk fleet: workers that each run complete sessions over HTTP and check
//! every document exactly as a kiosk must before printing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use anyhow::Context as _;
use bytes::Bytes;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use hdrhistogram::Histogram;
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use kofu_core::Population;
use kofu_proto::api::{AuthResponse, CreateSessionResponse, IssuerKeyResponse, JobResponse};
use kofu_proto::verify::{Expected, issuer_key, verify_release};
use kofu_proto::{CardId, CertKind};

pub use super::targets::{Route, Targets};
use serde::de::DeserializeOwned;

pub struct DemoCard {
    card: CardId,
    key: SigningKey,
    full_name: String,
}

impl DemoCard {
    /// Cards that may open a session (not revoked, not restricted).
    pub fn from_population(p: &Population) -> Vec<DemoCard> {
        p.residents
            .iter()
            .zip(&p.card_secrets)
            .filter(|(r, _)| !r.card_revoked && !r.restricted)
            .map(|(r, s)| DemoCard {
                card: r.card_id.clone(),
                key: SigningKey::from_bytes(s),
                full_name: r.full_name.clone(),
            })
            .collect()
    }
}

pub struct DemoKiosk {
    id: String,
    auth: String,
}

impl DemoKiosk {
    pub fn from_population(p: &Population) -> Vec<DemoKiosk> {
        p.kiosks
            .iter()
            .map(|k| DemoKiosk {
                id: k.kiosk_id.as_str().to_owned(),
                auth: format!("Bearer {}", k.token()),
            })
            .collect()
    }
}

pub struct Plan {
    pub sessions: u64,
    pub concurrency: usize,
    pub kind: Option<CertKind>,
    pub cards: Vec<DemoCard>,
    pub kiosks: Vec<DemoKiosk>,
}

pub struct Sample {
    pub pdf: Vec<u8>,
    pub kind: CertKind,
    pub pages: usize,
}

pub struct Report {
    pub concurrency: usize,
    pub completed: u64,
    pub failed: u64,
    pub verified: u64,
    pub misdeliveries: u64,
    pub requests: u64,
    pub errors: BTreeMap<String, u64>,
    pub elapsed: Duration,
    pub request_us: Histogram<u64>,
    pub session_us: Histogram<u64>,
    pub sample: Option<Sample>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits; bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

/// A kiosk's own keep-alive connection: one request at a time, like a real kiosk, and
/// no shared pool between workers.
type Conn = SendRequest<Full<Bytes>>;

pub(super) async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    let span = tracing::debug_span!("demo_connection");
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let _ = conn.await;
        },
        span,
    ));
    Ok(sender)
}

pub(super) struct Reply {
    pub(super) status: StatusCode,
    headers: http::HeaderMap,
    pub(super) body: Bytes,
}

impl Reply {
    fn json<T: DeserializeOwned>(&self, step: &'static str) -> Result<T, Failure> {
        serde_json::from_slice(&self.body).map_err(|_| Failure::Transport(step))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

pub(super) async fn exchange(
    conn: &mut Conn,
    host: &str,
    method: Method,
    path: &str,
    auth: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<Reply> {
    conn.ready().await?;
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, host);
    if !auth.is_empty() {
        req = req.header(header::AUTHORIZATION, auth);
    }
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let (parts, body) = conn.send_request(req).await?.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

pub(super) struct Worker {
    pub(super) w: usize,
    pub(super) targets: Arc<Targets>,
    /// Index into `targets.addrs` of the node the current session talks to.
    current: usize,
    conns: Vec<Option<Conn>>,
    issuer: VerifyingKey,
    plan: Arc<Plan>,
    request_us: Histogram<u64>,
    session_us: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    requests: u64,
    completed: u64,
    failed: u64,
    verified: u64,
    misdeliveries: u64,
    sample: Option<Sample>,
}

/// Why one session did not complete.
enum Failure {
    Status(&'static str, StatusCode),
    Transport(&'static str),
    Misdelivery(String),
}

impl Worker {
    async fn send(
        &mut self,
        step: &'static str,
        method: Method,
        path: &str,
        auth: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, Failure> {
        let t = Instant::now();
        let addr = self.targets.addrs[self.current];
        let conn = match self.conns[self.current].take() {
            Some(c) if !c.is_closed() => Ok(c),
            _ => connect(addr).await,
        };
        let reply = match conn {
            Ok(mut c) => {
                let host = addr.to_string();
                let r = exchange(&mut c, &host, method, path, auth, body).await;
                if r.is_ok() {
                    self.conns[self.current] = Some(c);
                }
                r
            }
            Err(e) => Err(e),
        };
        self.requests += 1;
        let _ = self
            .request_us
            .record(t.elapsed().as_micros().max(1) as u64);
        reply.map_err(|_| Failure::Transport(step))
    }

    async fn expect(
        &mut self,
        step: &'static str,
        want: StatusCode,
        method: Method,
        path: &str,
        auth: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, Failure> {
        let reply = self.send(step, method, path, auth, body).await?;
        if reply.status == want {
            Ok(reply)
        } else {
            Err(Failure::Status(step, reply.status))
        }
    }

    async fn session(&mut self, n: u64, card: usize, kiosk: usize) -> Result<(), Failure> {
        let plan = self.plan.clone();
        let (card, kiosk) = (&plan.cards[card], &plan.kiosks[kiosk]);
        self.current = self.target_for(&card.card, n);
        let auth = kiosk.auth.as_str();
        let body = serde_json::to_vec(&serde_json::json!({ "card_id": card.card.expose() })).ok();
        let created: CreateSessionResponse = self
            .expect(
                "create",
                StatusCode::CREATED,
                Method::POST,
                "/v1/sessions",
                auth,
                body,
            )
            .await?
            .json("create")?;
        let sid = created.session_id;
        let challenge = kofu_proto::b64url_decode(&created.challenge).unwrap_or_default();
        let sig = card
            .key
            .sign(&kofu_proto::auth_message(&sid, &kiosk.id, &challenge));
        let body = serde_json::to_vec(
            &serde_json::json!({ "signature": kofu_proto::b64url(&sig.to_bytes()) }),
        )
        .ok();
        let path = format!("/v1/sessions/{sid}/auth");
        let offered: AuthResponse = self
            .expect("auth", StatusCode::OK, Method::POST, &path, auth, body)
            .await?
            .json("auth")?;
        let kind = plan.kind.unwrap_or_else(|| {
            let kinds: Vec<CertKind> = offered.kinds.iter().map(|k| k.kind).collect();
            kinds
                .get(n as usize % kinds.len().max(1))
                .copied()
                .unwrap_or(CertKind::Residence)
        });
        let copies = if plan.kind.is_some() {
            1
        } else {
            1 + (n % 2) as u8
        };
        let body = serde_json::to_vec(&serde_json::json!({ "kind": kind, "copies": copies })).ok();
        let path = format!("/v1/sessions/{sid}/jobs");
        let job: JobResponse = self
            .expect("job", StatusCode::ACCEPTED, Method::POST, &path, auth, body)
            .await?
            .json("job")?;
        let path = format!(
            "/v1/sessions/{sid}/jobs/{}/document?wait_ms=10000",
            job.job_id
        );
        let doc = self
            .expect("document", StatusCode::OK, Method::GET, &path, auth, None)
            .await?;
        let expected = Expected {
            session_id: &sid,
            kiosk_id: &kiosk.id,
            card: &card.card,
            kind,
            copies,
        };
        verify_release(
            &self.issuer,
            &doc.body,
            doc.header("kofu-binding"),
            doc.header("kofu-signature"),
            &expected,
        )
        .map_err(|e| Failure::Misdelivery(e.to_string()))?;
        if !contains(
            &doc.body,
            &kofu_proto::doctext::name_pattern(&card.full_name),
        ) {
            return Err(Failure::Misdelivery(
                "holder's name missing from the document".into(),
            ));
        }
        self.verified += 1;
        if self.sample.is_none() {
            let pdf = &doc.body;
            let pages = pdf.windows(11).filter(|w| w == b"/Type /Page").count()
                - pdf.windows(12).filter(|w| w == b"/Type /Pages").count();
            self.sample = Some(Sample {
                pdf: pdf.to_vec(),
                kind,
                pages,
            });
        }
        let path = format!("/v1/sessions/{sid}/jobs/{}/printed", job.job_id);
        self.expect("printed", StatusCode::OK, Method::POST, &path, auth, None)
            .await?;
        let path = format!("/v1/sessions/{sid}");
        self.expect(
            "close",
            StatusCode::NO_CONTENT,
            Method::DELETE,
            &path,
            auth,
            None,
        )
        .await?;
        Ok(())
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

pub async fn drive(targets: Targets, plan: Plan) -> anyhow::Result<Report> {
    let addr = *targets.addrs.first().context("no node to drive")?;
    let host = addr.to_string();
    let mut conn = connect(addr).await.context("connecting to the node")?;
    let reply = exchange(&mut conn, &host, Method::GET, "/v1/issuer-key", "", None).await?;
    anyhow::ensure!(
        reply.status == StatusCode::OK,
        "issuer key answered {}",
        reply.status
    );
    let key: IssuerKeyResponse = serde_json::from_slice(&reply.body).context("issuer key body")?;
    let issuer = issuer_key(&key.public_key).context("issuer key")?;
    let concurrency = plan.concurrency;
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    let targets = Arc::new(targets);
    for w in 0..concurrency {
        let mut worker = Worker {
            w,
            current: 0,
            conns: targets.addrs.iter().map(|_| None).collect(),
            targets: targets.clone(),
            issuer,
            plan: plan.clone(),
            request_us: histogram(),
            session_us: histogram(),
            errors: BTreeMap::new(),
            requests: 0,
            completed: 0,
            failed: 0,
            verified: 0,
            misdeliveries: 0,
            sample: None,
        };
        let next = next.clone();
        let span = tracing::debug_span!("demo_kiosk", worker = w);
        tasks.push(tokio::spawn(tracing::Instrument::instrument(
            async move {
                // Each worker owns the cards w, w+C, w+2C, ... so no card is ever in two
                // sessions at once (that would be a legitimate 409, not a demo failure).
                let own: Vec<usize> = (w..worker.plan.cards.len()).step_by(concurrency).collect();
                let mut k = 0usize;
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= worker.plan.sessions {
                        break;
                    }
                    let card = own[k % own.len()];
                    k += 1;
                    let kiosk = n as usize % worker.plan.kiosks.len();
                    let t = Instant::now();
                    match worker.session(n, card, kiosk).await {
                        Ok(()) => {
                            worker.completed += 1;
                            let _ = worker
                                .session_us
                                .record(t.elapsed().as_micros().max(1) as u64);
                        }
                        Err(f) => {
                            worker.failed += 1;
                            let what = match f {
                                Failure::Status(step, st) => {
                                    format!("{step} answered {}", st.as_u16())
                                }
                                Failure::Transport(step) => format!("{step} transport error"),
                                Failure::Misdelivery(why) => {
                                    worker.misdeliveries += 1;
                                    format!("misdelivery: {why}")
                                }
                            };
                            *worker.errors.entry(what).or_default() += 1;
                        }
                    }
                }
                worker
            },
            span,
        )));
    }
    let mut report = Report {
        concurrency,
        completed: 0,
        failed: 0,
        verified: 0,
        misdeliveries: 0,
        requests: 0,
        errors: BTreeMap::new(),
        elapsed: Duration::ZERO,
        request_us: histogram(),
        session_us: histogram(),
        sample: None,
    };
    for t in tasks {
        let w = t.await.context("demo worker panicked")?;
        report.completed += w.completed;
        report.failed += w.failed;
        report.verified += w.verified;
        report.misdeliveries += w.misdeliveries;
        report.requests += w.requests;
        let _ = report.request_us.add(&w.request_us);
        let _ = report.session_us.add(&w.session_us);
        for (k, v) in w.errors {
            *report.errors.entry(k).or_default() += v;
        }
        if report.sample.is_none() {
            report.sample = w.sample;
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}
