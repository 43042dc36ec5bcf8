//! The `kofu` binary: `serve` runs a node, `fixtures` prints the synthetic population a
//! node serves, `demo` runs an embedded node and drives kiosk sessions against it,
//! `credentials` mints tokens and issuer keys for real deployments, `audit export` hands
//! the confirmed prints to an auditor.

mod audit_cmd;
mod auth;
mod config;
mod credentials_cmd;
mod demo;
mod http;
mod issuer_keys;
mod node;
mod process_metrics;
mod record;
mod registry_blocks;
mod registry_cmd;
mod registry_import;
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
        /// Print the residents' records in the registry file format instead
        /// (`docs/registry-format.md`: public keys only, no kiosks, no admin token).
        #[arg(long)]
        registry: bool,
    },
    /// Manage a cluster's registry in Redis.
    #[command(subcommand)]
    Registry(registry_cmd::RegistryCommand),
    /// Start an embedded node in-process, drive concurrent kiosk sessions, verify every
    /// document and print a summary.
    Demo(demo::DemoArgs),
    /// Mint credentials for real deployments: kiosk and admin tokens, issuer keys.
    #[command(subcommand)]
    Credentials(credentials_cmd::CredentialsCommand),
    /// The confirmed prints, for auditors: export (and trim what was exported).
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
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
            registry,
        } => fixtures(seed, residents, kiosks, registry),
        Command::Demo(args) => demo::run(args),
        Command::Registry(cmd) => registry_cmd::run(cmd),
        Command::Credentials(cmd) => credentials_cmd::run(cmd),
        Command::Audit(cmd) => audit_cmd::run(cmd),
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
    let _telemetry = telemetry::init(cfg.log_format, &cfg.log_level, cfg.otlp_endpoint.as_deref())?;
    let spec = PopulationSpec {
        seed: cfg.fixture_seed(),
        // With a registry file the records come from it; the population still gives
        // the fixture kiosks and admin token when no credentials files are set.
        residents: match cfg.registry.registry_file {
            Some(_) => 0,
            None => cfg.fixture_residents,
        },
        kiosks: cfg.fixture_kiosks,
    };
    let population = Population::generate(&spec);
    actix_rt::System::new().block_on(async move {
        // Before anything can be ready: SIGHUP's default action would end the process.
        let mut signals = Signals::new()?;
        let node = match Node::start(&cfg, population).await {
            Ok(node) => node,
            Err(e) if e.downcast_ref::<node::BadConfig>().is_some() => {
                eprintln!("kofu: {e:#}");
                return Ok(ExitCode::from(2));
            }
            Err(e) => return Err(e),
        };
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
        while signals.next().await == Signal::Reload {
            tracing::info!("SIGHUP: reading configuration files again");
            node.reload();
        }
        tracing::info!("shutdown requested");
        node.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Signal {
    /// SIGTERM or SIGINT.
    Stop,
    /// SIGHUP.
    Reload,
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}

fn fixtures(seed: u64, residents: u32, kiosks: u32, registry: bool) -> anyhow::Result<ExitCode> {
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
    if registry {
        for r in &pop.residents {
            out.write_all(kofu_core::registry_file::to_line(r).as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    for line in pop.fixture_lines() {
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
