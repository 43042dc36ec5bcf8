//! `kofu-load bench`: one command that measures, in one run on this machine, (a) the HTTP
//! ceiling (a trivial actix-web endpoint), (b) an embedded kofu node over HTTP and over
//! HTTPS (the cost of TLS) and (c) a 3-node cluster with Redis (mutual TLS between the
//! nodes), all driven by the same closed-loop generator, and prints one table with the
//! ratios; then the peak RSS of a node holding 100k open idle sessions.

mod drive;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::procs::{Certs, NodeSpec, fixtures, kofu_path, registry_load, start_node, start_redis};
use drive::Measured;

use crate::replay::Tls;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The `kofu` binary (default: the one beside kofu-load).
    #[arg(long)]
    kofu: Option<PathBuf>,
    /// Seconds each target is driven.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Kiosks in flight at once.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    #[arg(long, default_value_t = 20_000)]
    residents: u32,
    #[arg(long, default_value_t = 200)]
    kiosks: u32,
    /// Open idle sessions for the memory measurement (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    idle_sessions: usize,
    /// Skip the 3-node cluster (no redis-server here).
    #[arg(long)]
    no_cluster: bool,
}

const SEED: u64 = 1;
const SHARDS: u32 = 1024;
const SECRET: &str = "kofu-bench-cluster-secret-0123456789";

pub fn run(a: BenchArgs) -> anyhow::Result<std::process::ExitCode> {
    let kofu = kofu_path(a.kofu.clone())?;
    let dir = tempfile_dir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let run_for = Duration::from_secs(a.seconds);
    let fx = Arc::new(fixtures(&kofu, SEED, a.residents, a.kiosks)?);
    let certs = Certs::generate(&dir)?;
    let spec = |name: &'static str| NodeSpec {
        kofu: &kofu,
        dir: &dir,
        name,
        seed: SEED,
        residents: a.residents,
        kiosks: a.kiosks,
        cluster: None,
        tls: None,
        https: false,
    };

    eprintln!(
        "(a) HTTP ceiling: trivial actix-web endpoint, {} s",
        a.seconds
    );
    let ceiling = rt.block_on(drive::ceiling(a.concurrency, run_for))?;

    eprintln!("(b) embedded kofu node, {} s", a.seconds);
    let embedded = {
        let node = start_node(&spec("embedded"))?;
        rt.block_on(drive::sessions(
            fx.clone(),
            vec![node.api.clone()],
            a.concurrency,
            run_for,
            Tls::default(),
        ))?
    };

    eprintln!("(b) embedded kofu node over HTTPS, {} s", a.seconds);
    let https = {
        let node = start_node(&NodeSpec {
            tls: Some(&certs),
            https: true,
            ..spec("embedded-https")
        })?;
        let tls = Tls {
            ca_file: Some(certs.ca.clone()),
            client_cert: None,
        };
        rt.block_on(drive::sessions(
            fx.clone(),
            vec![node.api.clone()],
            a.concurrency,
            run_for,
            tls,
        ))?
    };

    let cluster = if a.no_cluster {
        None
    } else {
        eprintln!("(c) 3-node cluster with Redis, {} s", a.seconds);
        let (_redis, url) = start_redis(&dir)?;
        registry_load(&kofu, &url, SEED, a.residents, SHARDS)?;
        let mut nodes = Vec::new();
        for name in ["node-0", "node-1", "node-2"] {
            nodes.push(start_node(&NodeSpec {
                cluster: Some((url.as_str(), SECRET, SHARDS)),
                tls: Some(&certs),
                ..spec(name)
            })?);
        }
        // Until every shard has an owner, requests would only wait.
        std::thread::sleep(Duration::from_secs(2));
        let apis = nodes.iter().map(|n| n.api.clone()).collect();
        Some(rt.block_on(drive::sessions(
            fx.clone(),
            apis,
            a.concurrency,
            run_for,
            Tls::default(),
        ))?)
    };

    let memory = if a.idle_sessions == 0 {
        None
    } else {
        eprintln!(
            "peak RSS: {} open idle sessions on an embedded node",
            a.idle_sessions
        );
        let residents = (a.idle_sessions + a.idle_sessions / 10 + 100) as u32;
        let idle_fx = fixtures(&kofu, SEED, residents, 50)?;
        let node = start_node(&NodeSpec {
            residents,
            kiosks: 50,
            ..spec("idle")
        })?;
        let (before, _) = node.proc.rss()?;
        let opened = rt.block_on(drive::open_idle(&idle_fx, &node.api, a.idle_sessions, 64))?;
        std::thread::sleep(Duration::from_secs(1));
        let (after, peak) = node.proc.rss()?;
        Some((opened, before, after, peak))
    };

    print_table(&ceiling, &embedded, &https, cluster.as_ref(), a.concurrency);
    if let Some((opened, before, after, peak)) = memory {
        println!(
            "memory: {opened} open idle sessions: RSS {:.1} MiB -> {:.1} MiB (peak {:.1} MiB), {:.0} bytes per session, {:.1} MiB per 100k",
            mib(before),
            mib(after),
            mib(peak),
            (after.saturating_sub(before)) as f64 / opened.max(1) as f64,
            mib(after.saturating_sub(before)) * 100_000.0 / opened.max(1) as f64
        );
    }
    let clean = [Some(&embedded), Some(&https), cluster.as_ref()]
        .into_iter()
        .flatten()
        .all(|m| m.misdeliveries == 0 && m.errors == 0);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(if clean {
        std::process::ExitCode::SUCCESS
    } else {
        println!("FAILED: errors or misdeliveries during the bench");
        std::process::ExitCode::FAILURE
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kofu-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn print_table(
    a: &Measured,
    b: &Measured,
    tls: &Measured,
    c: Option<&Measured>,
    concurrency: usize,
) {
    println!(
        "kofu-load bench: closed loop, {concurrency} kiosks in flight, residence sessions (6 requests each), every document verified"
    );
    println!(
        "{:<28} {:>12} {:>12} {:>9} {:>10} {:>8} {:>14}",
        "target", "sessions/s", "requests/s", "p99 ms", "sessions", "errors", "sessions vs (a)"
    );
    let row = |name: &str, m: &Measured, ratio: Option<f64>| {
        println!(
            "{:<28} {:>12.0} {:>12.0} {:>9.2} {:>10} {:>8} {:>14}",
            name,
            m.sessions_per_s,
            m.requests_per_s,
            m.p99_ms,
            m.sessions,
            m.errors + m.misdeliveries,
            ratio.map_or_else(|| "-".to_owned(), |r| format!("{:.1} %", r * 100.0))
        );
    };
    row("(a) HTTP ceiling", a, None);
    row(
        "(b) embedded node",
        b,
        Some(b.sessions_per_s / a.sessions_per_s.max(1e-9)),
    );
    row(
        "(b) embedded node, HTTPS",
        tls,
        Some(tls.sessions_per_s / a.sessions_per_s.max(1e-9)),
    );
    if let Some(c) = c {
        row(
            "(c) 3-node cluster + Redis",
            c,
            Some(c.sessions_per_s / a.sessions_per_s.max(1e-9)),
        );
    }
    println!(
        "TLS cost (embedded, keep-alive connections): HTTPS serves {:.1} % of the HTTP sessions/s; p99 {:.2} ms vs {:.2} ms",
        tls.sessions_per_s / b.sessions_per_s.max(1e-9) * 100.0,
        tls.p99_ms,
        b.p99_ms
    );
}
