//! `kofu-load chaos`: a Jepsen-style test of DESIGN.md's fault model. It starts its own
//! deployment (Sentinel-managed Redis and three nodes, each node in a network namespace
//! of its own where this machine allows), runs an open-model kiosk workload through the
//! replay's session code with patient kiosks and a full history, lets a nemesis inject
//! faults on a schedule drawn from the seed, and after every fault healed checks the
//! history against Redis's audit streams. Exit code 1 on any anomaly, 2 if the run
//! itself failed. Everything it started is removed at the end, on Ctrl-C too, and a
//! crashed earlier run's leftovers at the start.

mod audit;
mod check;
mod cluster;
mod nemesis;
mod net;
mod proxy;
mod redis;
mod report;
mod schedule;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;

use crate::history::History;
use crate::procs::{fixtures, kofu_path};
use crate::replay::{self, Config, Patience, Shared};
use crate::report::ReportMeta;
use crate::synth::{Model, Season};
use cluster::{Cluster, Launcher, Settings};
use nemesis::Nemesis;
use schedule::Kind;
use workload::Workload;

const NODES: usize = 3;
const FIXTURE_SEED: u64 = 1;

#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    /// How long the workload and the faults run.
    #[arg(long, default_value_t = 5.0)]
    minutes: f64,
    /// Seeds the fault schedule (a pure function of it) and the workload.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    report_json: Option<PathBuf>,
    #[arg(long)]
    report_html: Option<PathBuf>,
    /// The `kofu` binary (default: the one beside kofu-load).
    #[arg(long)]
    kofu: Option<PathBuf>,
    /// Sessions arriving per second (open model: whatever the cluster does).
    #[arg(long, default_value_t = 30.0)]
    rate: f64,
    /// Multiplies the model's think times (1 = people at real kiosks).
    #[arg(long, default_value_t = 0.1)]
    think: f64,
    #[arg(long, default_value_t = 20_000)]
    residents: u32,
    #[arg(long, default_value_t = 500)]
    kiosks: u32,
    #[arg(long, default_value_t = 256)]
    shards: u32,
    #[arg(long, default_value_t = 2_000)]
    lease_ttl_ms: u64,
    /// Short, so that "a card is free again within idle timeout + 2 x TTL" is checked.
    #[arg(long, default_value_t = 15_000)]
    idle_timeout_ms: u64,
    #[arg(long, default_value_t = 30_000)]
    render_deadline_ms: u64,
    /// The fault kinds to inject (default: every kind), comma-separated.
    #[arg(long, value_enum, value_delimiter = ',')]
    kinds: Vec<Kind>,
    /// Mean seconds between admin calls (seal revocations, address updates).
    #[arg(long, default_value_t = 1.5)]
    admin_every_s: f64,
    #[arg(long, default_value_t = 15)]
    request_timeout_s: u64,
    /// Everything on loopback even where namespaces work (network kinds are skipped).
    #[arg(long)]
    loopback: bool,
    /// Copy the nodes', Redis's and the Sentinels' logs into this directory at the end.
    #[arg(long)]
    keep_logs: Option<PathBuf>,
    /// Write every request of the run here, as JSON lines (cards as digests).
    #[arg(long)]
    history: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    #[arg(long, default_value_t = 0.03)]
    abandon: f64,
    #[arg(long, default_value_t = 0.02)]
    wrong_signature: f64,
    /// Share of sessions that fetch again (same bytes?) and confirm again (same answer?).
    #[arg(long, default_value_t = 0.2)]
    retry: f64,
    #[arg(long, default_value_t = 0.01)]
    duplicate_card: f64,
}

/// Removes what the run started when it ends, however it ends.
struct Guard {
    run: u32,
    dir: PathBuf,
    keep_logs: Option<PathBuf>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        cluster::kill_recorded(&self.dir);
        net::sweep(self.run);
        if let Some(keep) = &self.keep_logs {
            copy_logs(&self.dir, keep);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn copy_logs(from: &std::path::Path, to: &std::path::Path) {
    let _ = std::fs::create_dir_all(to);
    if let Ok(entries) = std::fs::read_dir(from) {
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "log") {
                let _ = std::fs::copy(&path, to.join(e.file_name()));
            }
        }
    }
}

pub fn run(a: ChaosArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.minutes > 0.0, "--minutes must be positive");
    anyhow::ensure!(
        a.rate > 0.0 && a.think > 0.0,
        "--rate and --think must be positive"
    );
    anyhow::ensure!(a.admin_every_s > 0.0, "--admin-every-s must be positive");
    for (name, p) in [
        ("abandon", a.abandon),
        ("wrong-signature", a.wrong_signature),
        ("retry", a.retry),
        ("duplicate-card", a.duplicate_card),
    ] {
        anyhow::ensure!((0.0..=1.0).contains(&p), "--{name} must be a probability");
    }
    anyhow::ensure!(redis::installed(), "redis-server is not installed");
    let run = std::process::id();
    cluster::sweep_leftovers();
    let kofu = kofu_path(a.kofu.clone())?;
    let fx = Arc::new(fixtures(&kofu, FIXTURE_SEED, a.residents, a.kiosks)?);
    let dir = std::env::temp_dir().join(format!("kofu-chaos-{run}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _guard = Guard {
        run,
        dir: dir.clone(),
        keep_logs: a.keep_logs.clone(),
    };
    let net_reason = if a.loopback {
        Some("--loopback given".to_owned())
    } else {
        net::unavailable()
    };
    let kinds = if a.kinds.is_empty() {
        Kind::ALL.to_vec()
    } else {
        a.kinds.clone()
    };
    let mut skipped = BTreeMap::new();
    for k in &kinds {
        if let (true, Some(why)) = (k.needs_network(), &net_reason) {
            skipped.insert(k.as_str(), format!("no network namespaces: {why}"));
        }
        if *k == Kind::ClockSkew && !Cluster::faketime_installed() {
            skipped.insert(
                k.as_str(),
                "libfaketime is not installed (Debian: faketime)".to_owned(),
            );
        }
    }
    let active: Vec<Kind> = kinds
        .into_iter()
        .filter(|k| !skipped.contains_key(k.as_str()))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = chaos(&a, fx, kofu, Launcher::new(run, dir), net_reason, active, skipped) => Some(r),
            () = interrupted() => None,
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        None => {
            eprintln!("kofu-load chaos: interrupted; everything the run started is removed");
            Ok(ExitCode::from(2))
        }
        Some(Err(e)) => Err(e),
        Some(Ok(report)) => {
            report.print();
            if let Some(p) = &a.report_json {
                std::fs::write(p, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("cannot write {}", p.display()))?;
            }
            if let Some(p) = &a.report_html {
                std::fs::write(p, report.html())
                    .with_context(|| format!("cannot write {}", p.display()))?;
            }
            let total: u64 = report.anomalies.values().sum();
            Ok(if total == 0 {
                ExitCode::SUCCESS
            } else {
                println!("FAILED: {total} anomalies");
                ExitCode::FAILURE
            })
        }
    }
}

fn write_history(
    path: &std::path::Path,
    events: &[crate::history::Event],
    digest: &dyn Fn(u32) -> String,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?,
    );
    let mut sorted: Vec<&crate::history::Event> = events.iter().collect();
    sorted.sort_by_key(|e| e.start_us);
    for e in sorted {
        serde_json::to_writer(&mut out, &e.json(&digest(e.card)))?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Ctrl-C or `SIGTERM`.
async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn bar(quiet: bool, secs: u64) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(secs);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} s {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

async fn chaos(
    a: &ChaosArgs,
    fx: Arc<kofu_kiosk::Fixtures>,
    kofu: PathBuf,
    launcher: Launcher,
    net_reason: Option<String>,
    active: Vec<Kind>,
    skipped: BTreeMap<&'static str, String>,
) -> anyhow::Result<report::ChaosReport> {
    let run_for = Duration::from_secs_f64(a.minutes * 60.0);
    let bar = bar(a.quiet, run_for.as_secs());
    let settings = Settings {
        nodes: NODES,
        shards: a.shards,
        lease_ttl: Duration::from_millis(a.lease_ttl_ms),
        idle_timeout: Duration::from_millis(a.idle_timeout_ms),
        render_deadline: Duration::from_millis(a.render_deadline_ms),
        seed: FIXTURE_SEED,
        residents: a.residents,
        kiosks: a.kiosks,
    };
    bar.set_message("starting redis, sentinels and three nodes");
    let net = match &net_reason {
        None => Some(net::Net::create(launcher.run, NODES)?),
        Some(_) => None,
    };
    let cluster = Cluster::start(launcher, kofu, settings, net).await?;
    let targets = cluster.api_urls();
    let admin: Vec<String> = cluster.nodes.iter().map(|n| n.admin_url()).collect();
    let request_timeout = Duration::from_secs(a.request_timeout_s);
    let client = replay::client(&targets, request_timeout, &replay::Tls::default())?;
    let issuer = replay::issuer_key(&client).await?;
    let config = Config {
        targets: targets.clone(),
        speed: 1.0,
        fetch_budget: Duration::from_secs(30),
        request_timeout,
        spread: true,
        patience: Some(Patience {
            budget: Duration::from_secs(30),
            confirm_budget: Duration::from_secs(60),
            sceptical: 3,
        }),
        tls: replay::Tls::default(),
    };
    let mut shared = Shared::new(fx.clone(), &client, issuer, config);
    let origin = Instant::now();
    shared.origin = origin;
    let history = Arc::new(History::new(origin.into_std()));
    shared.history = Some(history.clone());
    let shared = Arc::new(shared);
    let model = Model {
        seed: a.seed,
        sessions_per_day: 0,
        season: Season::Normal,
        spikes: Vec::new(),
        from_min: 0,
        to_min: 0,
        local_share: 0.8,
        abandon: a.abandon,
        wrong_signature: a.wrong_signature,
        retry: a.retry,
        duplicate_card: a.duplicate_card,
        think: a.think,
    };
    let hold = settings.idle_timeout + 2 * settings.lease_ttl + Duration::from_secs(2);
    let workload = Arc::new(Workload::new(shared.clone(), model, hold));
    let end = origin + run_for;
    let mut nemesis = Nemesis::new(cluster, origin);
    // The first fault once the workload runs (a tenth of the run, 5..30 s).
    let warmup = (run_for / 10).clamp(Duration::from_secs(5), Duration::from_secs(30));
    let pace = schedule::pace_for(run_for.saturating_sub(warmup));
    let plan = schedule::plan(a.seed, &active, NODES, settings.lease_ttl, pace);
    let ticker = {
        let (bar, shared, now) = (bar.clone(), shared.clone(), nemesis.now.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let (started, done, docs) = shared.with(|c| {
                    (
                        c.counts.sessions_started,
                        c.counts.sessions_completed,
                        c.counts.documents_verified,
                    )
                });
                let fault = now.lock().map(|s| s.clone()).unwrap_or_default();
                bar.set_position(shared.origin.elapsed().as_secs());
                bar.set_message(format!(
                    "{started} sessions, {done} completed, {docs} documents; nemesis: {fault}"
                ));
            }
        })
    };
    let admin_every = Duration::from_secs_f64(a.admin_every_s);
    let (mut sessions, (), ()) = tokio::join!(
        workload.arrivals(a.rate, a.seed, end),
        async {
            tokio::time::sleep(warmup).await;
            nemesis.run(plan, end).await;
        },
        workload.admin(&admin, &fx.admin_token, a.seed, admin_every, end),
    );
    ticker.abort();
    bar.set_message("the last sessions finish");
    while sessions.join_next().await.is_some() {}
    nemesis.watch().await;
    bar.set_message("every fault healed: sessions left open expire");
    tokio::time::sleep(hold + Duration::from_secs(1)).await;
    bar.set_message("probing every card used");
    workload.probe_cards(Duration::from_secs(20), 32).await;
    bar.set_message("reading the audit streams");
    let redis = &nemesis.cluster.redis;
    let port = redis.primary_port().await?;
    let audit = audit::read(redis.host, port, a.shards).await?;
    bar.finish_and_clear();
    let events = history.snapshot();
    let down = nemesis.down_windows();
    let deaths: Vec<(usize, u64)> = nemesis.deaths.iter().map(|d| (d.node, d.at_ms)).collect();
    let (misdeliveries, load) = shared.with(|c| {
        let meta = ReportMeta {
            trace: format!("chaos, seed {}, {} sessions/s", a.seed, a.rate),
            targets: targets.clone(),
            speed: 1.0,
        };
        let report = c.report(c.counts.sessions_started, origin.elapsed(), meta);
        (c.counts.misdelivery_samples.clone(), report)
    });
    let digest = |card: u32| {
        fx.cards
            .get(card as usize)
            .map_or_else(|| "?".to_owned(), |c| c.id.short_digest())
    };
    if let Some(path) = &a.history {
        write_history(path, &events, &digest)?;
    }
    let fault_windows: Vec<(u64, u64)> = nemesis
        .faults
        .iter()
        .map(|f| (f.start_ms * 1000, f.healed_ms * 1000))
        .collect();
    let anomalies = check::check(&check::Input {
        events: &events,
        audit: &audit,
        down: &down,
        idle_timeout: settings.idle_timeout,
        lease_ttl: settings.lease_ttl,
        render_deadline: settings.render_deadline,
        misdeliveries: &misdeliveries,
        faults: &fault_windows,
        deaths: &deaths,
        digest: &digest,
    });
    let network = match &net_reason {
        None => "namespaces".to_owned(),
        Some(why) => format!("loopback ({why})"),
    };
    let (counts, examples) = report::anomaly_maps(&anomalies);
    Ok(report::ChaosReport {
        seed: a.seed,
        minutes: a.minutes,
        setup: report::Setup {
            run: std::process::id(),
            nodes: NODES,
            shards: a.shards,
            lease_ttl_ms: a.lease_ttl_ms,
            idle_timeout_ms: a.idle_timeout_ms,
            render_deadline_ms: a.render_deadline_ms,
            rate_per_s: a.rate,
            residents: a.residents,
            kiosks: a.kiosks,
            network,
            fault_pace: pace,
        },
        documents_verified: load.counts.documents_verified,
        sessions_started: load.counts.sessions_started,
        sessions_completed: load.counts.sessions_completed,
        requests: events.len() as u64,
        answers: report::answers(&events),
        faults: report::fault_counts(&nemesis.faults),
        faults_skipped: skipped,
        fault_errors: nemesis.faults.iter().filter(|f| f.error.is_some()).count() as u64,
        anomalies: counts,
        anomaly_examples: examples,
        recovery: report::recovery(&nemesis.faults, &events, NODES),
        audit_records: audit.len(),
        timeline: nemesis.faults.clone(),
        load,
    })
}
