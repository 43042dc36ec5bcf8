//! The demo's kiosk fleet: workers that each run complete sessions over HTTP and check
//! every document exactly as a kiosk must before printing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use hdrhistogram::Histogram;
use kofu_core::Population;
use kofu_proto::api::{AuthResponse, CreateSessionResponse, IssuerKeyResponse, JobResponse};
use kofu_proto::verify::{Expected, issuer_key, verify_release};
use kofu_proto::{CardId, CertKind};
use reqwest::{Client, StatusCode};

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

struct Worker {
    http: Client,
    base: String,
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
    async fn timed(
        &mut self,
        req: reqwest::RequestBuilder,
        step: &'static str,
    ) -> Result<reqwest::Response, Failure> {
        let t = Instant::now();
        let resp = req.send().await.map_err(|_| Failure::Transport(step));
        self.requests += 1;
        let _ = self
            .request_us
            .record(t.elapsed().as_micros().max(1) as u64);
        resp
    }

    async fn expect(
        &mut self,
        req: reqwest::RequestBuilder,
        step: &'static str,
        want: StatusCode,
    ) -> Result<reqwest::Response, Failure> {
        let resp = self.timed(req, step).await?;
        if resp.status() == want {
            Ok(resp)
        } else {
            Err(Failure::Status(step, resp.status()))
        }
    }

    async fn session(&mut self, n: u64, card: usize, kiosk: usize) -> Result<(), Failure> {
        let plan = self.plan.clone();
        let (card, kiosk) = (&plan.cards[card], &plan.kiosks[kiosk]);
        let base = self.base.clone();
        let url = |p: &str| format!("{base}{p}");
        let body = serde_json::json!({ "card_id": card.card.expose() });
        let req = self
            .http
            .post(url("/v1/sessions"))
            .header("authorization", &kiosk.auth)
            .json(&body);
        let created: CreateSessionResponse = self
            .expect(req, "create", StatusCode::CREATED)
            .await?
            .json()
            .await
            .map_err(|_| Failure::Transport("create"))?;
        let sid = created.session_id;
        let challenge = kofu_proto::b64url_decode(&created.challenge).unwrap_or_default();
        let sig = card
            .key
            .sign(&kofu_proto::auth_message(&sid, &kiosk.id, &challenge));
        let body = serde_json::json!({ "signature": kofu_proto::b64url(&sig.to_bytes()) });
        let req = self
            .http
            .post(url(&format!("/v1/sessions/{sid}/auth")))
            .header("authorization", &kiosk.auth)
            .json(&body);
        let auth: AuthResponse = self
            .expect(req, "auth", StatusCode::OK)
            .await?
            .json()
            .await
            .map_err(|_| Failure::Transport("auth"))?;
        let kind = plan.kind.unwrap_or_else(|| {
            let offered: Vec<CertKind> = auth.kinds.iter().map(|k| k.kind).collect();
            offered
                .get(n as usize % offered.len().max(1))
                .copied()
                .unwrap_or(CertKind::Residence)
        });
        let copies = if plan.kind.is_some() {
            1
        } else {
            1 + (n % 2) as u8
        };
        let body = serde_json::json!({ "kind": kind, "copies": copies });
        let req = self
            .http
            .post(url(&format!("/v1/sessions/{sid}/jobs")))
            .header("authorization", &kiosk.auth)
            .json(&body);
        let job: JobResponse = self
            .expect(req, "job", StatusCode::ACCEPTED)
            .await?
            .json()
            .await
            .map_err(|_| Failure::Transport("job"))?;
        let doc_url = url(&format!(
            "/v1/sessions/{sid}/jobs/{}/document?wait_ms=10000",
            job.job_id
        ));
        let resp = self
            .expect(
                self.http.get(&doc_url).header("authorization", &kiosk.auth),
                "document",
                StatusCode::OK,
            )
            .await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let (binding, signature) = (header("kofu-binding"), header("kofu-signature"));
        let pdf = resp
            .bytes()
            .await
            .map_err(|_| Failure::Transport("document"))?;
        let expected = Expected {
            session_id: &sid,
            kiosk_id: &kiosk.id,
            card: &card.card,
            kind,
            copies,
        };
        verify_release(&self.issuer, &pdf, &binding, &signature, &expected)
            .map_err(|e| Failure::Misdelivery(e.to_string()))?;
        if !contains(&pdf, card.full_name.as_bytes()) {
            return Err(Failure::Misdelivery(
                "holder's name missing from the document".into(),
            ));
        }
        self.verified += 1;
        if self.sample.is_none() {
            let pages = pdf.windows(11).filter(|w| w == b"/Type /Page").count()
                - pdf.windows(12).filter(|w| w == b"/Type /Pages").count();
            self.sample = Some(Sample {
                pdf: pdf.to_vec(),
                kind,
                pages,
            });
        }
        let req = self
            .http
            .post(url(&format!(
                "/v1/sessions/{sid}/jobs/{}/printed",
                job.job_id
            )))
            .header("authorization", &kiosk.auth);
        self.expect(req, "printed", StatusCode::OK).await?;
        let req = self
            .http
            .delete(url(&format!("/v1/sessions/{sid}")))
            .header("authorization", &kiosk.auth);
        self.expect(req, "close", StatusCode::NO_CONTENT).await?;
        Ok(())
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

pub async fn drive(base: String, plan: Plan) -> anyhow::Result<Report> {
    let http = Client::builder()
        .pool_max_idle_per_host(plan.concurrency)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let key: IssuerKeyResponse = http
        .get(format!("{base}/v1/issuer-key"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let issuer = issuer_key(&key.public_key).context("issuer key")?;
    let concurrency = plan.concurrency;
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let mut worker = Worker {
            http: http.clone(),
            base: base.clone(),
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
        tasks.push(tokio::spawn(async move {
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
                            Failure::Status(step, st) => format!("{step} answered {}", st.as_u16()),
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
        }));
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
