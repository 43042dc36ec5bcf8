//! `kofu-load bench`: one command that measures, in one run on this machine, (a) the HTTP
//! ceiling (a trivial actix-web endpoint), (d) the conventional design (a stateless
//! actix-web process keeping everything in Redis, `crate::conventional`), (b) an embedded
//! kofu node over HTTP and over HTTPS (the cost of TLS) and (c) kofu coordinated by Redis
//! with 1 and with 3 nodes (mutual TLS between the nodes), all driven by the same
//! closed-loop generator, and prints one table with the ratios to (d) and (a) and where
//! each target's CPU went; then the peak RSS of a node holding 100k open idle sessions.

mod cost;
mod drive;
mod table;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::procs::{
    Certs, NodeSpec, Proc, fixtures, kofu_path, registry_load, start_conventional, start_node,
    start_redis, wait_shards_settled,
};
use table::{CEILING, CONVENTIONAL, Row};

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
    /// Skip every target that needs Redis (no redis-server here).
    #[arg(long)]
    no_cluster: bool,
    /// Measure only these targets (comma-separated; default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Target>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Target {
    Ceiling,
    Conventional,
    Embedded,
    Https,
    Redis1,
    Redis3,
}

const SEED: u64 = 1;
const SHARDS: u32 = 1024;
const SECRET: &str = "kofu-bench-cluster-secret-0123456789";

/// What every measurement shares.
struct Bench {
    rt: tokio::runtime::Runtime,
    fx: Arc<kofu_kiosk::Fixtures>,
    run_for: Duration,
    concurrency: usize,
}

impl Bench {
    /// Drives `apis` closed-loop while counting the CPU of `servers` and of the Redis at
    /// `redis` (if any).
    fn measure(
        &self,
        name: &'static str,
        apis: Vec<String>,
        tls: Tls,
        servers: &[&Proc],
        redis: Option<&str>,
    ) -> anyhow::Result<Row> {
        let pids: Vec<u32> = servers.iter().map(|p| p.pid()).collect();
        let sampler = cost::Sampler::start(&pids, redis)?;
        let m = self.rt.block_on(drive::sessions(
            self.fx.clone(),
            apis,
            self.concurrency,
            self.run_for,
            tls,
        ))?;
        let cost = sampler.finish(m.sessions)?;
        Ok(Row {
            name,
            m,
            cost: Some(cost),
        })
    }
}

pub fn run(a: BenchArgs) -> anyhow::Result<std::process::ExitCode> {
    let kofu = kofu_path(a.kofu.clone())?;
    let dir = tempfile_dir()?;
    let wanted = |t: Target| a.only.is_empty() || a.only.contains(&t);
    let with_redis = |t: Target| wanted(t) && !a.no_cluster;
    let bench = Bench {
        rt: tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
        fx: Arc::new(fixtures(&kofu, SEED, a.residents, a.kiosks)?),
        run_for: Duration::from_secs(a.seconds),
        concurrency: a.concurrency,
    };
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
    let mut rows = Vec::new();

    if wanted(Target::Ceiling) {
        eprintln!("{CEILING}: trivial actix-web endpoint, {} s", a.seconds);
        let sampler = cost::Sampler::start(&[], None)?;
        let m = bench
            .rt
            .block_on(drive::ceiling(a.concurrency, bench.run_for))?;
        // The endpoint runs inside this process: its CPU is the generator's column.
        let cost = sampler.finish(m.sessions)?;
        rows.push(Row {
            name: CEILING,
            m,
            cost: Some(cost),
        });
    }

    if with_redis(Target::Conventional) {
        eprintln!("{CONVENTIONAL}, {} s", a.seconds);
        let (_redis, url) = start_redis(&dir)?;
        let server = start_conventional(&spec("conventional"), &url)?;
        rows.push(bench.measure(
            CONVENTIONAL,
            vec![server.api.clone()],
            Tls::default(),
            &[&server.proc],
            Some(&url),
        )?);
    }

    if wanted(Target::Embedded) {
        eprintln!("(b) embedded kofu node, {} s", a.seconds);
        let node = start_node(&spec("embedded"))?;
        rows.push(bench.measure(
            "(b) kofu embedded node",
            vec![node.api.clone()],
            Tls::default(),
            &[&node.proc],
            None,
        )?);
    }

    if wanted(Target::Https) {
        eprintln!("(b) embedded kofu node over HTTPS, {} s", a.seconds);
        let node = start_node(&NodeSpec {
            tls: Some(&certs),
            https: true,
            ..spec("embedded-https")
        })?;
        let tls = Tls {
            ca_file: Some(certs.ca.clone()),
            client_cert: None,
        };
        rows.push(bench.measure(
            "(b) kofu embedded node, HTTPS",
            vec![node.api.clone()],
            tls,
            &[&node.proc],
            None,
        )?);
    }

    for (target, names, row) in [
        (Target::Redis1, &["solo-0"][..], "(c) kofu 1 node + Redis"),
        (
            Target::Redis3,
            &["node-0", "node-1", "node-2"][..],
            "(c) kofu 3-node cluster + Redis",
        ),
    ] {
        if !with_redis(target) {
            continue;
        }
        eprintln!("{row}, {} s", a.seconds);
        let (_redis, url) = start_redis(&dir)?;
        registry_load(&kofu, &url, SEED, a.residents, SHARDS)?;
        let mut nodes = Vec::new();
        for &name in names {
            nodes.push(start_node(&NodeSpec {
                cluster: Some((url.as_str(), SECRET, SHARDS)),
                tls: Some(&certs),
                ..spec(name)
            })?);
        }
        // Until every shard has one owner and the joins' handoffs are over: requests
        // would only wait, and the measurement would include the handoffs.
        let admins: Vec<String> = nodes.iter().map(|n| n.admin.clone()).collect();
        wait_shards_settled(&admins, u64::from(SHARDS))?;
        let apis = nodes.iter().map(|n| n.api.clone()).collect();
        let procs: Vec<&Proc> = nodes.iter().map(|n| &n.proc).collect();
        rows.push(bench.measure(row, apis, Tls::default(), &procs, Some(&url))?);
    }

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
        let opened =
            bench
                .rt
                .block_on(drive::open_idle(&idle_fx, &node.api, a.idle_sessions, 64))?;
        std::thread::sleep(Duration::from_secs(1));
        let (after, peak) = node.proc.rss()?;
        Some((opened, before, after, peak))
    };

    table::print(&rows, a.concurrency);
    let http = rows.iter().find(|r| r.name == "(b) kofu embedded node");
    let https = rows
        .iter()
        .find(|r| r.name == "(b) kofu embedded node, HTTPS");
    if let (Some(b), Some(tls)) = (http, https) {
        println!(
            "TLS cost (embedded, keep-alive connections): HTTPS serves {:.1} % of the HTTP sessions/s; p99 {:.2} ms vs {:.2} ms",
            tls.m.sessions_per_s / b.m.sessions_per_s.max(1e-9) * 100.0,
            tls.m.p99_ms,
            b.m.p99_ms
        );
    }
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
    let clean = (rows.iter())
        .filter(|r| r.name != CEILING)
        .all(|r| r.m.misdeliveries == 0 && r.m.errors == 0);
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
