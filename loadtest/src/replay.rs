//! Open-model replay: every session starts at its intended time whether or not earlier
//! ones have finished, and each step is sent at its intended time or as soon as the
//! step before it has finished. Latency runs from the intended time, so a stalled
//! target shows up in the tail instead of silently slowing the generator down
//! (no coordinated omission). Every document is checked like a kiosk checks it.

pub(crate) mod call;
pub(crate) mod session;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kofu_proto::verify::IssuerKeys;
use std::sync::Mutex;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::history::History;
use crate::report::{Collector, Report, ReportMeta};
use kofu_kiosk::{Client, Fixtures, Kiosk};
use kofu_proto::trace::Trace;

/// A session starting more than this after its intended time counts as a late start:
/// the generator itself could not keep up.
const LATE: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct Config {
    /// Kiosk API bases; session `i` talks to `targets[i mod n]`.
    pub targets: Vec<String>,
    /// 10 replays the trace ten times faster.
    pub speed: f64,
    /// How long one fetch step may poll a document still rendering.
    pub fetch_budget: Duration,
    pub request_timeout: Duration,
    /// Each request to a random target, as a load balancer would, instead of every
    /// request of session `i` to target `i mod n`.
    pub spread: bool,
    /// How kiosks react to answers that are not final; `None`: every step is sent once.
    pub patience: Option<Patience>,
    /// HTTPS: the CA to trust and a client certificate.
    pub tls: Tls,
}

/// How the kiosks' client speaks HTTPS to `https://` targets.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// The only CA trusted (PEM); default: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), presented to every target.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// A kiosk that repeats what a node could not answer, as real kiosks do.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// How long a step is repeated after `503` or no answer (with backoff).
    pub budget: Duration,
    /// The same for a print confirmation: the paper is out, the kiosk insists longer.
    pub confirm_budget: Duration,
    /// How often a step is asked again after an answer saying the session or job is
    /// gone (`404`, `410`, a `422` no revocation explains), so that a history shows
    /// whether it really was.
    pub sceptical: u32,
}

/// Shared by every session task.
pub(crate) struct Shared {
    pub(crate) fx: Arc<Fixtures>,
    pub(crate) issuer: IssuerKeys,
    /// Kiosk `i` of the fixtures on the one keep-alive pool over every target.
    pub(crate) kiosks: Vec<Kiosk>,
    pub(crate) config: Config,
    pub(crate) collector: Mutex<Collector>,
    pub(crate) origin: Instant,
    /// Every request with its answer, when the run checks a history afterwards.
    pub(crate) history: Option<Arc<History>>,
}

impl Shared {
    pub(crate) fn new(
        fx: Arc<Fixtures>,
        client: &Client,
        issuer: IssuerKeys,
        config: Config,
    ) -> Shared {
        Shared {
            kiosks: fx.kiosks.iter().map(|k| client.kiosk(k)).collect(),
            fx,
            issuer,
            config,
            collector: Mutex::new(Collector::default()),
            origin: Instant::now(),
            history: None,
        }
    }

    /// Sleeps until `intended` (a step's or a session's intended time) and records how
    /// late the generator woke, when it had to wait at all: tokio's timer wakes on whole
    /// milliseconds, and a busy machine adds its scheduling delay. That lateness is part
    /// of every latency measured from the intended time, so the report shows it apart.
    /// (A timer thread with sub-millisecond wake-ups was tried: it halved the median
    /// lateness and doubled the p99 of an embedded node's latency at 300 sessions/s,
    /// being one more thread to schedule on a busy 2-core machine.)
    pub(crate) async fn wait_until(&self, intended: Instant) {
        if Instant::now() >= intended {
            return;
        }
        tokio::time::sleep_until(intended).await;
        let late = Instant::now().saturating_duration_since(intended);
        self.with(|c| c.woke_late(late));
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Collector) -> T) -> T {
        let mut c = self.collector.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut c)
    }

    /// When `offset_us` of trace time falls, at this replay's speed.
    pub(crate) fn at(&self, offset_us: u64) -> Instant {
        self.origin + Duration::from_secs_f64(offset_us as f64 / 1e6 / self.config.speed)
    }
}

/// The kiosks' HTTP client over `targets`: one pool for them all, idle connections
/// retired before the node's keep-alive ends.
pub fn client(targets: &[String], timeout: Duration, tls: &Tls) -> anyhow::Result<Client> {
    let mut builder = Client::builder();
    if let Some(ca) = &tls.ca_file {
        builder = builder.ca_file(ca)?;
    }
    if let Some((cert, key)) = &tls.client_cert {
        builder = builder.client_cert_files(cert, key)?;
    }
    Ok(builder
        .targets(targets)
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(1024)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()?)
}

/// Fetches the issuer key every document must be signed with, from the first target.
pub async fn issuer_key(client: &Client) -> anyhow::Result<IssuerKeys> {
    Ok(client.pinned(0).issuer_keys().await?)
}

/// Replays `trace`; `progress` is told of every finished session.
pub async fn replay(
    trace: &Trace,
    fx: Arc<Fixtures>,
    config: Config,
    progress: impl Fn(u64) + Send + Sync + 'static,
) -> anyhow::Result<Report> {
    anyhow::ensure!(!config.targets.is_empty(), "no target to replay against");
    anyhow::ensure!(config.speed > 0.0, "the speed must be positive");
    anyhow::ensure!(
        trace.meta.residents as usize == fx.cards.len()
            && trace.meta.kiosks as usize == fx.kiosks.len(),
        "the trace was made for {} residents and {} kiosks, the fixtures have {} and {}",
        trace.meta.residents,
        trace.meta.kiosks,
        fx.cards.len(),
        fx.kiosks.len()
    );
    let client = client(&config.targets, config.request_timeout, &config.tls)?;
    let issuer = issuer_key(&client).await?;
    let meta = ReportMeta {
        trace: trace.meta.description.clone(),
        targets: config.targets.clone(),
        speed: config.speed,
    };
    let mut shared = Shared::new(fx, &client, issuer, config);
    // A moment to spawn the first tasks before the first intended time.
    shared.origin = Instant::now() + Duration::from_millis(50);
    let origin = shared.origin;
    let shared = Arc::new(shared);
    let progress = Arc::new(progress);
    let mut tasks = JoinSet::new();
    for (i, s) in trace.sessions.iter().enumerate() {
        let intended = shared.at(s.start_us);
        shared.wait_until(intended).await;
        // Reap finished sessions so the set stays small on long replays.
        while tasks.try_join_next().is_some() {}
        let late = Instant::now().saturating_duration_since(intended) > LATE;
        shared.with(|c| {
            c.counts.sessions_started += 1;
            c.counts.late_starts += u64::from(late);
        });
        let (shared, progress, s) = (shared.clone(), progress.clone(), s.clone());
        tasks.spawn(async move {
            session::run(&shared, i, &s).await;
            progress(1);
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = origin.elapsed();
    Ok(shared.with(|c| c.report(trace.sessions.len() as u64, elapsed, meta)))
}
