//! `kofu-load`: synthesize nationwide kiosk traffic, replay it against one node or a
//! cluster as an open model, verify every document like a kiosk, and report latency,
//! errors and misdeliveries, with thresholds that set the exit code (loadtest/README.md).

mod bench;
mod chaos;
mod conventional;
mod history;
mod procs;
mod replay;
mod report;
mod synth;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::synth::{Model, Season, Spike, parse_hhmm};
use kofu_kiosk::Fixtures;
use kofu_proto::trace::Trace;

/// Rehearse kiosk traffic against kofu
#[derive(Debug, Parser)]
#[command(name = "kofu-load", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a trace from the nationwide model.
    Synth(SynthArgs),
    /// Replay a trace against running nodes and report.
    Replay(ReplayArgs),
    /// Measure the HTTP ceiling, an embedded node and a 3-node cluster in one run, and
    /// the memory of 100k open idle sessions; prints one table.
    Bench(bench::BenchArgs),
    /// A Jepsen-style run: start Sentinel Redis and three nodes, drive kiosks while a
    /// nemesis injects faults from a seeded schedule, then check the history against
    /// Redis's audit streams; exit code 1 on any anomaly.
    Chaos(Box<chaos::ChaosArgs>),
    /// Serve the kiosk API as the conventional design does (bench-only, not a product:
    /// stateless actix-web + Redis, no fencing, no replica wait); `bench` starts it.
    #[command(hide = true)]
    Conventional(conventional::ConventionalArgs),
    /// Summarize a trace.
    Inspect { trace: PathBuf },
}

#[derive(Debug, Args)]
struct SynthArgs {
    /// The population (`kofu fixtures --seed S --residents R --kiosks K > FILE`).
    #[arg(long)]
    fixtures: PathBuf,
    /// The `--seed` the fixtures were made with (recorded in the trace).
    #[arg(long, default_value_t = 1)]
    fixture_seed: u64,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Sessions over a whole normal-season service day (06:30-23:00).
    #[arg(long, default_value_t = 20_000)]
    sessions_per_day: u32,
    #[arg(long, value_enum, default_value_t = Season::Normal)]
    season: Season,
    /// A burst, `HH:MM[xFACTOR[/MINUTES]]` (default x10 for one minute); repeatable.
    #[arg(long = "spike")]
    spikes: Vec<Spike>,
    /// The part of the day to emit.
    #[arg(long, default_value = "06:30")]
    from: String,
    #[arg(long, default_value = "23:00")]
    to: String,
    /// Share of residents using a kiosk of their own municipality.
    #[arg(long, default_value_t = 0.8)]
    local_share: f64,
    #[arg(long, default_value_t = 0.03)]
    abandon: f64,
    #[arg(long, default_value_t = 0.02)]
    wrong_signature: f64,
    #[arg(long, default_value_t = 0.02)]
    retry: f64,
    #[arg(long, default_value_t = 0.005)]
    duplicate_card: f64,
    /// Multiplies every think time (1 = people at real kiosks).
    #[arg(long, default_value_t = 1.0)]
    think: f64,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    trace: PathBuf,
    #[arg(long)]
    fixtures: PathBuf,
    /// Kiosk API bases, comma-separated; sessions are spread over them.
    #[arg(long, value_delimiter = ',', required = true)]
    target: Vec<String>,
    /// 10 replays ten times faster than recorded.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Write the JSON report here.
    #[arg(long)]
    report_json: Option<PathBuf>,
    /// Write the self-contained HTML report (tables and time-series charts) here.
    #[arg(long)]
    report_html: Option<PathBuf>,
    /// Thresholds, e.g. `p99<50ms,errors<0.1%`; any broken one gives exit code 1.
    #[arg(long)]
    fail_if: Option<String>,
    /// Seconds one fetch may wait for a document still rendering.
    #[arg(long, default_value_t = 30)]
    fetch_budget_s: u64,
    #[arg(long, default_value_t = 30)]
    request_timeout_s: u64,
    /// The CA (PEM) to trust for `https://` targets (default: the system's roots).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// A client certificate (PEM) to present to `https://` targets, with `--client-key`.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// No progress bar (it is off anyway when stderr is not a terminal).
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Synth(a) => synth(a),
        Command::Replay(a) => replay(a),
        Command::Inspect { trace } => inspect(&trace),
        Command::Bench(a) => bench::run(a),
        Command::Chaos(a) => chaos::run(*a),
        Command::Conventional(a) => conventional::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kofu-load: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn read_trace(path: &std::path::Path) -> anyhow::Result<Trace> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Trace::from_bytes(&bytes)?)
}

fn synth(a: SynthArgs) -> anyhow::Result<ExitCode> {
    let from_min = parse_hhmm(&a.from).context("--from must be HH:MM")?;
    let to_min = parse_hhmm(&a.to).context("--to must be HH:MM")?;
    anyhow::ensure!(from_min < to_min, "--from must be before --to");
    for (name, p) in [
        ("local-share", a.local_share),
        ("abandon", a.abandon),
        ("wrong-signature", a.wrong_signature),
        ("retry", a.retry),
        ("duplicate-card", a.duplicate_card),
    ] {
        anyhow::ensure!((0.0..=1.0).contains(&p), "--{name} must be a probability");
    }
    anyhow::ensure!(a.think > 0.0, "--think must be positive");
    let fx = Fixtures::read(&a.fixtures)
        .with_context(|| format!("fixtures {}", a.fixtures.display()))?;
    let model = Model {
        seed: a.seed,
        sessions_per_day: a.sessions_per_day,
        season: a.season,
        spikes: a.spikes,
        from_min,
        to_min,
        local_share: a.local_share,
        abandon: a.abandon,
        wrong_signature: a.wrong_signature,
        retry: a.retry,
        duplicate_card: a.duplicate_card,
        think: a.think,
    };
    let trace = synth::synthesize(&model, &fx, a.fixture_seed);
    std::fs::write(&a.out, trace.to_bytes()?)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    println!(
        "wrote {} sessions over {:.1} s to {}",
        trace.sessions.len(),
        trace.span_us() as f64 / 1e6,
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn inspect(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let t = read_trace(path)?;
    let steps: usize = t.sessions.iter().map(|s| s.steps.len()).sum();
    println!("{} v{} ({})", t.format, t.version, t.meta.source);
    println!("  {}", t.meta.description);
    println!(
        "  population: fixture seed {}, {} residents, {} kiosks",
        t.meta.fixture_seed, t.meta.residents, t.meta.kiosks
    );
    println!(
        "  {} sessions, {} steps, over {:.1} s",
        t.sessions.len(),
        steps,
        t.span_us() as f64 / 1e6
    );
    Ok(ExitCode::SUCCESS)
}

fn replay(a: ReplayArgs) -> anyhow::Result<ExitCode> {
    let thresholds = match &a.fail_if {
        Some(spec) => report::parse_thresholds(spec).map_err(anyhow::Error::msg)?,
        None => Vec::new(),
    };
    let trace = read_trace(&a.trace)?;
    let fx = Arc::new(
        Fixtures::read(&a.fixtures)
            .with_context(|| format!("fixtures {}", a.fixtures.display()))?,
    );
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(trace.sessions.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} sessions ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    };
    let config = replay::Config {
        targets: a.target.clone(),
        speed: a.speed,
        fetch_budget: Duration::from_secs(a.fetch_budget_s),
        request_timeout: Duration::from_secs(a.request_timeout_s),
        spread: false,
        patience: None,
        tls: replay::Tls {
            ca_file: a.ca_file.clone(),
            client_cert: a.client_cert.clone().zip(a.client_key.clone()),
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let tick = bar.clone();
    let report = runtime.block_on(replay::replay(&trace, fx, config, move |n| tick.inc(n)))?;
    bar.finish_and_clear();
    report.print();
    if let Some(path) = &a.report_json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &a.report_html {
        std::fs::write(path, report::html::render(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut failed = false;
    if report.counts.misdeliveries > 0 {
        println!(
            "FAILED: {} misdelivered document(s)",
            report.counts.misdeliveries
        );
        for s in &report.counts.misdelivery_samples {
            println!("  {s}");
        }
        failed = true;
    }
    for t in &thresholds {
        if let Err(why) = t.check(&report) {
            println!("FAILED: {why}");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
