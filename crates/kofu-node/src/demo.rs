//! `kofu demo`: the main job on the embedded default. Starts a node in this process,
//! drives concurrent kiosk sessions over real HTTP, verifies every document as a kiosk
//! would, writes one sample certificate and prints a summary.

mod client;
mod targets;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser};
use kofu_core::{Population, PopulationSpec};
use kofu_proto::CertKind;

use crate::config::ServeConfig;
use crate::node::Node;
use client::{Plan, Report, Route, Targets};
use kofu_kiosk::Fixtures;

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Complete kiosk sessions to run.
    #[arg(long, default_value_t = 400)]
    pub sessions: u64,
    /// Sessions in flight at once.
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 2000)]
    pub residents: u32,
    #[arg(long, default_value_t = 50)]
    pub kiosks: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Certificate kind of every job (residence, seal, tax, family_register); default:
    /// a mix of what each holder may be issued.
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<CertKind>,
    /// Where to write one verified sample certificate.
    #[arg(long, default_value = "kofu-sample.pdf")]
    pub out: PathBuf,
    /// Threads of the in-process kiosk client.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// Drive these running nodes (kiosk API `host:port`, `http://host:port` or
    /// `https://host:port`, comma-separated) instead of an embedded one; they must serve
    /// the same `--seed/--residents/--kiosks`.
    #[arg(long, value_delimiter = ',')]
    pub target: Vec<String>,
    /// The targets' admin listeners, in the same order (needed by `--route owner|other`).
    #[arg(long, value_delimiter = ',')]
    pub admin: Vec<String>,
    /// The CA (PEM) to trust for `https://` targets (default: the system's roots).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) to present to `https://` targets, with `--client-key`.
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Which node each session talks to when there are several.
    #[arg(long, value_enum, default_value_t = Route::Spread)]
    pub route: Route,
}

fn parse_kind(s: &str) -> Result<CertKind, String> {
    CertKind::parse(s).ok_or_else(|| format!("unknown kind {s:?}"))
}

/// Lets the demo's node take `KOFU_*` settings like `serve` does, on free ports.
#[derive(Debug, Parser)]
struct ServeDefaults {
    #[command(flatten)]
    cfg: ServeConfig,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let _telemetry = crate::telemetry::init(crate::config::LogFormat::Text, "warn", None)?;
    let residents = args.residents.to_string();
    let kiosks = args.kiosks.to_string();
    let seed = args.seed.to_string();
    let mut cfg = ServeDefaults::try_parse_from([
        "kofu",
        "--fixture-residents",
        &residents,
        "--fixture-kiosks",
        &kiosks,
        "--fixture-seed",
        &seed,
        "--drain-timeout-ms",
        "1000",
        // A few kiosks drive every session as fast as they can: no per-kiosk limits.
        "--kiosk-rate",
        "0",
        "--kiosk-max-sessions",
        "0",
    ])
    .context("demo node configuration")?
    .cfg;
    cfg.listen = "127.0.0.1:0".parse()?;
    cfg.admin_listen = "127.0.0.1:0".parse()?;
    cfg.validate().context("demo node configuration")?;

    let spec = PopulationSpec {
        seed: args.seed,
        residents: args.residents,
        kiosks: args.kiosks,
    };
    spec.validate().context("demo population")?;
    let population = Population::generate(&spec);
    let fixtures = Fixtures::from_lines(population.fixture_lines()).context("demo population")?;
    // With one kind asked for, only holders it may be issued to: a demo of seal
    // certificates shows seal certificates, not the registry's refusals.
    let cards: Vec<usize> = fixtures
        .ordinary_indices()
        .filter(|&i| {
            let c = &fixtures.cards[i];
            match args.kind {
                Some(CertKind::Seal) => c.seal_issuable(),
                Some(CertKind::Tax) => c.tax_record,
                _ => true,
            }
        })
        .collect();
    anyhow::ensure!(
        !cards.is_empty(),
        "the population has no card that may open a session"
    );

    let plan = Plan {
        sessions: args.sessions,
        concurrency: args.concurrency.clamp(1, cards.len()),
        kind: args.kind,
        fixtures,
        cards,
    };
    let client_threads = args.client_threads.max(1);
    if !args.target.is_empty() {
        return drive_targets(&args, population.admin_token.clone(), plan, client_threads);
    }
    let (report, node_addr) = actix_rt::System::new().block_on(async move {
        let node = Node::start(&cfg, population).await?;
        let addr = node.kiosk_addr;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("kofu-demo-client".into())
            .spawn(move || {
                let report = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(client_threads)
                    .enable_all()
                    .build()
                    .map_err(anyhow::Error::from)
                    .and_then(|rt| {
                        let targets = Targets {
                            addrs: vec![format!("http://{addr}")],
                            route: Route::Spread,
                            owners: Vec::new(),
                            shard_count: 1,
                            client: kofu_kiosk::Client::builder(),
                        };
                        rt.block_on(client::drive(targets, plan))
                    });
                let _ = tx.send(report);
            })
            .context("starting the demo client")?;
        let report = rx.await.context("demo client vanished")?;
        node.shutdown().await;
        report.map(|r| (r, addr))
    })?;
    print_summary(&args, &report, &format!("embedded node on {node_addr}"));
    finish(&args, &report)
}

/// Drives running nodes (a cluster) instead of an embedded one.
fn drive_targets(
    args: &DemoArgs,
    admin_token: String,
    plan: Plan,
    client_threads: usize,
) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .enable_all()
        .build()?;
    let mut client = kofu_kiosk::Client::builder();
    if let Some(ca) = &args.ca_file {
        client = client.ca_file(ca)?;
    }
    if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
        client = client.client_cert_files(cert, key)?;
    }
    let report = rt.block_on(async {
        let (owners, shard_count) = if args.route == Route::Spread {
            (Vec::new(), 1)
        } else {
            anyhow::ensure!(
                args.admin.len() == args.target.len(),
                "--route {:?} needs one --admin address per --target",
                args.route
            );
            let admins: Vec<String> = args.admin.iter().map(|a| base_url(a)).collect();
            targets::owners(&client, &admins, &admin_token).await?
        };
        let targets = Targets {
            addrs: args.target.iter().map(|t| base_url(t)).collect(),
            route: args.route,
            owners,
            shard_count,
            client,
        };
        client::drive(targets, plan).await
    })?;
    let what = format!("{} node(s) ({:?} routing)", args.target.len(), args.route);
    print_summary(args, &report, &what);
    finish(args, &report)
}

/// `host:port` means `http://host:port`; a URL stays as it is.
fn base_url(target: &str) -> String {
    if target.contains("://") {
        target.trim_end_matches('/').to_owned()
    } else {
        format!("http://{target}")
    }
}

fn finish(args: &DemoArgs, report: &Report) -> anyhow::Result<ExitCode> {
    if let Some(sample) = &report.sample {
        std::fs::write(&args.out, &sample.pdf)
            .with_context(|| format!("cannot write {}", args.out.display()))?;
        println!(
            "  sample certificate   {} ({}, {} page{})",
            args.out.display(),
            sample.kind,
            sample.pages,
            if sample.pages == 1 { "" } else { "s" }
        );
    }
    let ok = report.failed == 0 && report.misdeliveries == 0 && report.verified == report.completed;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn print_summary(args: &DemoArgs, r: &Report, what: &str) {
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    println!(
        "kofu demo: {what}, {} sessions, {} in flight, {} kiosks",
        args.sessions, r.concurrency, args.kiosks
    );
    println!(
        "  completed sessions   {} ({} failed)",
        r.completed, r.failed
    );
    println!(
        "  documents verified   {} (issuer signature, doc_sha256, binding, holder name)",
        r.verified
    );
    println!("  misdeliveries        {}", r.misdeliveries);
    for (what, n) in &r.errors {
        println!("  error                {what}: {n}");
    }
    println!(
        "  throughput           {:.0} sessions/s, {:.0} requests/s over {:.2} s",
        r.completed as f64 / secs,
        r.requests as f64 / secs,
        secs
    );
    let q = |h: &hdrhistogram::Histogram<u64>, p: f64| ms(h.value_at_quantile(p));
    println!(
        "  request latency      p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        q(&r.request_us, 0.5),
        q(&r.request_us, 0.99),
        q(&r.request_us, 0.999),
        ms(r.request_us.max())
    );
    println!(
        "  session latency      p50 {:.2} ms  p99 {:.2} ms",
        q(&r.session_us, 0.5),
        q(&r.session_us, 0.99)
    );
}
