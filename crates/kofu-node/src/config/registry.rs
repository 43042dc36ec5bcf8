//! Settings of a real registry (issue 11, API.md "Real deployments", Registry): the
//! records an embedded node serves from a file instead of the synthetic population.
//! Kept apart from the rest of `ServeConfig` so that other settings merge around it.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct RegistryArgs {
    /// Resident records, JSON lines as `docs/registry-format.md` describes (embedded
    /// node; a cluster imports them with `kofu registry import`). Served instead of the
    /// fixture population's records; re-read on SIGHUP, each changed record becoming a
    /// new version. A file with a bad line is refused whole.
    #[arg(long, env = "KOFU_REGISTRY_FILE")]
    pub registry_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryConfigError {
    #[error(
        "--registry-file is for the embedded node; a cluster's records are imported into redis with `kofu registry import --redis URL FILE`"
    )]
    FileWithRedis,
}

impl RegistryArgs {
    pub fn validate(&self, redis_url: Option<&str>) -> Result<(), RegistryConfigError> {
        if self.registry_file.is_some() && redis_url.is_some() {
            return Err(RegistryConfigError::FileWithRedis);
        }
        Ok(())
    }
}
