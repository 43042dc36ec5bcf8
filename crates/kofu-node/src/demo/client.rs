//! The demo's kiosk fleet: workers that each run complete sessions over HTTP through
//! `kofu-kiosk`, which checks every document exactly as a kiosk must before printing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use kofu_kiosk::{
    CallError, Fault, Fixtures, KindChoice, Kiosk, LongPoll, Plan as SessionPlan, Record, Retry,
    SessionFailure, Step, TextCheck, Verifier,
};
use kofu_proto::CertKind;

pub use super::targets::{Route, Targets};

/// What to run: `sessions` sessions, `concurrency` at a time, over the usable cards.
pub struct Plan {
    pub sessions: u64,
    pub concurrency: usize,
    pub kind: Option<CertKind>,
    pub fixtures: Fixtures,
    /// Indices of the cards that may open a session (not revoked, not restricted).
    pub cards: Vec<usize>,
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

/// What one worker saw of its requests (told by the kiosk client after each).
struct Requests {
    count: u64,
    us: Histogram<u64>,
}

struct Worker {
    w: usize,
    targets: Arc<Targets>,
    /// Every kiosk of the population on the fleet's client, telling this worker about
    /// its requests.
    kiosks: Vec<Kiosk>,
    plan: Arc<Plan>,
    issuer: kofu_proto::verify::IssuerKeys,
    session_us: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    completed: u64,
    failed: u64,
    verified: u64,
    misdeliveries: u64,
    sample: Option<Sample>,
}

/// Pages of a PDF, counted from its page objects.
fn pages(pdf: &[u8]) -> usize {
    let count = |pat: &[u8]| pdf.windows(pat.len()).filter(|w| *w == pat).count();
    count(b"/Type /Page").saturating_sub(count(b"/Type /Pages"))
}

/// How the summary names why a session did not complete.
fn describe(f: &SessionFailure) -> String {
    let step = f.step;
    match &f.fault {
        Fault::Call(CallError::Api(e)) => format!("{step} answered {}", e.status),
        Fault::Call(_) => format!("{step} transport error"),
        Fault::Rendering => format!("{step} answered 202"),
        Fault::Refused(why) => format!("misdelivery: {why}"),
        Fault::Inconsistent(why) => format!("{step} inconsistent: {why}"),
    }
}

impl Worker {
    async fn session(&mut self, n: u64, card: usize, kiosk: usize) {
        let plan = self.plan.clone();
        let card = &plan.fixtures.cards[card];
        let target = self.target_for(&card.id, n);
        let kiosk = self.kiosks[kiosk].pinned(target);
        let session = SessionPlan {
            kind: plan
                .kind
                .map_or(KindChoice::Offered(n as usize), KindChoice::Fixed),
            copies: if plan.kind.is_some() {
                1
            } else {
                1 + (n % 2) as u8
            },
            poll: LongPoll::ONCE,
            retry: Retry::NEVER,
        };
        let verifier = Verifier {
            fixtures: &plan.fixtures,
            issuer: &self.issuer,
            text: TextCheck::Bytes,
        };
        let t = Instant::now();
        match kiosk.complete_session(card, &session, &verifier).await {
            Ok(done) => {
                self.completed += 1;
                self.verified += 1;
                let _ = self
                    .session_us
                    .record(t.elapsed().as_micros().max(1) as u64);
                if self.sample.is_none() {
                    self.sample = Some(Sample {
                        pages: pages(&done.document.body),
                        pdf: done.document.body.to_vec(),
                        kind: done.kind,
                    });
                }
            }
            Err(f) => {
                self.failed += 1;
                // The document was verified before the steps that follow it.
                self.verified += u64::from(matches!(f.step, Step::Printed | Step::Close));
                self.misdeliveries += u64::from(matches!(f.fault, Fault::Refused(_)));
                *self.errors.entry(describe(&f)).or_default() += 1;
            }
        }
    }
}

pub async fn drive(targets: Targets, plan: Plan) -> anyhow::Result<Report> {
    anyhow::ensure!(!targets.addrs.is_empty(), "no node to drive");
    let concurrency = plan.concurrency;
    let client = targets
        .client
        .clone()
        .targets(&targets.addrs)
        // A kiosk keeps its connection: one per worker and node.
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let issuer = client
        .pinned(0)
        .issuer_keys()
        .await
        .context("issuer keys")?;
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    let targets = Arc::new(targets);
    for w in 0..concurrency {
        let requests = Arc::new(Mutex::new(Requests {
            count: 0,
            us: histogram(),
        }));
        let seen = requests.clone();
        let client = client.with_observer(Arc::new(move |r: &Record| {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.count += 1;
            let _ = seen.us.record(r.elapsed.as_micros().max(1) as u64);
        }));
        let mut worker = Worker {
            w,
            targets: targets.clone(),
            kiosks: plan
                .fixtures
                .kiosks
                .iter()
                .map(|k| client.kiosk(k))
                .collect(),
            plan: plan.clone(),
            issuer: issuer.clone(),
            session_us: histogram(),
            errors: BTreeMap::new(),
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
                let own: Vec<usize> = (w..worker.plan.cards.len())
                    .step_by(concurrency)
                    .map(|i| worker.plan.cards[i])
                    .collect();
                let mut k = 0usize;
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= worker.plan.sessions {
                        break;
                    }
                    let card = own[k % own.len()];
                    k += 1;
                    let kiosk = n as usize % worker.kiosks.len();
                    worker.session(n, card, kiosk).await;
                }
                (worker, requests)
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
        let (w, requests) = t.await.context("demo worker panicked")?;
        report.completed += w.completed;
        report.failed += w.failed;
        report.verified += w.verified;
        report.misdeliveries += w.misdeliveries;
        let _ = report.session_us.add(&w.session_us);
        let requests = requests.lock().unwrap_or_else(|p| p.into_inner());
        report.requests += requests.count;
        let _ = report.request_us.add(&requests.us);
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

impl Worker {
    /// The node this session's requests go to.
    fn target_for(&self, card: &kofu_proto::CardId, n: u64) -> usize {
        self.targets.target_for(self.w, card, n)
    }
}
