//! `kofu registry load`: writes the synthetic population into a cluster's Redis once, so
//! every node of that cluster reads the same authoritative records (and a revocation
//! made through any node holds everywhere). `kofu registry import` loads a registry file
//! instead (`registry_import.rs`).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use kofu_coord::redis::{ConnectOptions, RedisRegistry, connect_with, is_sentinel};
use kofu_core::{Population, PopulationSpec};

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Load the synthetic population (cards and records) into Redis.
    Load(LoadArgs),
    /// Import a registry file (docs/registry-format.md) into Redis: refused whole if a
    /// line is bad; only changed records are written, each as a new version.
    Import(crate::registry_import::ImportArgs),
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Redis URL of the cluster (never printed: it may hold a password).
    #[arg(long, env = "KOFU_REDIS_URL")]
    pub redis: String,
    #[arg(long, env = "KOFU_FIXTURE_SEED", default_value_t = 1)]
    pub fixture_seed: u64,
    #[arg(long, env = "KOFU_FIXTURE_RESIDENTS", default_value_t = 1000)]
    pub fixture_residents: u32,
    #[arg(long, env = "KOFU_SHARD_COUNT", default_value_t = kofu_proto::DEFAULT_SHARD_COUNT)]
    pub shard_count: u32,
    /// CA (PEM) of the Redis servers' certificates, for a `rediss` URL.
    #[arg(long, env = "KOFU_REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,
}

pub fn run(cmd: RegistryCommand) -> anyhow::Result<ExitCode> {
    let args = match cmd {
        RegistryCommand::Load(args) => args,
        RegistryCommand::Import(args) => return crate::registry_import::run(args),
    };
    if !(1..=65_536).contains(&args.shard_count) {
        eprintln!("kofu: invalid configuration: --shard-count must be between 1 and 65536");
        return Ok(ExitCode::from(2));
    }
    let spec = PopulationSpec {
        seed: args.fixture_seed,
        residents: args.fixture_residents,
        // Kiosks are not registry data; the population's records do not depend on them.
        kiosks: 1,
    };
    if spec.residents == 0 {
        eprintln!("kofu: invalid fixture arguments: --fixture-residents must be at least 1");
        return Ok(ExitCode::from(2));
    }
    if let Err(e) = spec.validate() {
        eprintln!("kofu: invalid fixture arguments: {e}");
        return Ok(ExitCode::from(2));
    }
    let label = format!("seed={}/residents={}", spec.seed, spec.residents);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let ca_pem = match &args.redis_ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|_| anyhow::anyhow!("cannot read {}", path.display()))?,
            ),
            None => None,
        };
        let conn = connect_with(&args.redis, &ConnectOptions { ca_pem }).await?;
        // Through Sentinel, the load is acknowledged only once a replica holds it.
        let replicas = u32::from(is_sentinel(&args.redis));
        let registry = RedisRegistry::new(conn, args.shard_count).with_replicas(replicas);
        match registry.loaded_population().await? {
            Some(stored) if stored == label => {
                println!("registry already holds population {label}; left as it is");
                return Ok(ExitCode::SUCCESS);
            }
            Some(stored) => {
                eprintln!(
                    "kofu: registry already holds population {stored}; refusing to load {label} over it"
                );
                return Ok(ExitCode::FAILURE);
            }
            None => {}
        }
        let population = Population::generate(&spec);
        let n = registry.load(population.residents).await?;
        registry.mark_population(&label).await?;
        println!("loaded {n} resident records of population {label}");
        Ok(ExitCode::SUCCESS)
    })
}
