//! The `kofu` binary: `serve` runs a node, `fixtures` prints the synthetic population a
//! node serves, `demo` runs an embedded node and drives kiosk sessions against it.

mod auth;
mod config;
mod demo;
mod http;
mod node;
mod record;
mod registry_cmd;
mod reload;
mod telemetry;
mod tls;

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kofu_core::{Population, PopulationSpec};

use crate::config::ServeConfig;
use crate::node::Node;

/// Sessions allocate many small, short-lived buffers across threads; mimalloc handles
/// that pattern markedly better than the system allocator (see the demo benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "kofu",
    version,
    about = "Routes certificate print sessions from store kiosks to their owner"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: kiosk API, admin API, actors.
    Serve(Box<ServeConfig>),
    /// Print the synthetic population as JSON lines (API.md, Fixtures).
    Fixtures {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 1000)]
        residents: u32,
        #[arg(long, default_value_t = 20)]
        kiosks: u32,
    },
    /// Manage a cluster's registry in Redis.
    #[command(subcommand)]
    Registry(registry_cmd::RegistryCommand),
    /// Start an embedded node in-process, drive concurrent kiosk sessions, verify every
    /// document and print a summary.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    // One crypto provider for every TLS user in the process (rustls, reqwest, redis).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(cfg) => serve(*cfg),
        Command::Fixtures {
            seed,
            residents,
            kiosks,
        } => fixtures(seed, residents, kiosks),
        Command::Demo(args) => demo::run(args),
        Command::Registry(cmd) => registry_cmd::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kofu: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cfg: ServeConfig) -> anyhow::Result<ExitCode> {
    if let Err(e) = cfg.validate() {
        eprintln!("kofu: invalid configuration: {e}");
        return Ok(ExitCode::from(2));
    }
    telemetry::init(cfg.log_format, &cfg.log_level)?;
    let spec = PopulationSpec {
        seed: cfg.fixture_seed,
        residents: cfg.fixture_residents,
        kiosks: cfg.fixture_kiosks,
    };
    let population = Population::generate(&spec);
    actix_rt::System::new().block_on(async move {
        let node = Node::start(&cfg, population).await?;
        let internal = node
            .internal_addr()
            .map_or_else(String::new, |a| a.to_string());
        tracing::info!(
            kiosk_api = %node.kiosk_addr,
            admin_api = %node.admin_addr,
            internal_api = %internal,
            mode = if cfg.redis_url.is_some() { "redis" } else { "embedded" },
            node_id = %cfg.node_id(),
            shards = cfg.shard_count,
            "kofu serving"
        );
        wait_for_signal(node.reloaders()).await?;
        tracing::info!("shutdown requested");
        node.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Waits for `SIGTERM` or `SIGINT`; every `SIGHUP` meanwhile re-reads the files.
async fn wait_for_signal(reloaders: &reload::Reloaders) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => {
                tracing::info!("SIGHUP: re-reading files");
                reloaders.reload_all();
            }
        }
    }
}

fn fixtures(seed: u64, residents: u32, kiosks: u32) -> anyhow::Result<ExitCode> {
    let spec = PopulationSpec {
        seed,
        residents,
        kiosks,
    };
    if let Err(e) = spec.validate() {
        eprintln!("kofu: invalid fixture arguments: {e}");
        return Ok(ExitCode::from(2));
    }
    let pop = Population::generate(&spec);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in pop.fixture_lines() {
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
