//! The one typed configuration of `kofu serve`: every setting is a flag and a `KOFU_*`
//! variable, validated before anything starts so bad config exits with a clear message.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

mod admission;
mod credentials;
mod registry;
mod tls;

pub use admission::{AdmissionConfig, AdmissionError};
pub use credentials::CredentialsConfig;
pub use registry::{RegistryArgs, RegistryConfigError};
pub use tls::TlsArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Kiosk API listener.
    #[arg(long, env = "KOFU_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Admin and metrics listener.
    #[arg(long, env = "KOFU_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
    /// Redis URL of the cluster; unset runs the embedded single node. `redis://host:port`
    /// for one Redis, `redis+sentinel://host:port[,host:port...]/<master name>` to follow
    /// a Sentinel-managed primary; `rediss://` and `rediss+sentinel://` for TLS, and
    /// `user:password@` before the host(s) for ACL credentials.
    #[arg(long, env = "KOFU_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Listener for requests forwarded by other nodes (cluster mode).
    #[arg(long, env = "KOFU_INTERNAL_LISTEN", default_value = "127.0.0.1:7070")]
    pub internal_listen: SocketAddr,
    /// Address other nodes reach the internal listener at (default: the bound address).
    #[arg(long, env = "KOFU_INTERNAL_ADVERTISE")]
    pub internal_advertise: Option<String>,
    /// File holding the cluster secret that authenticates nodes to each other (at
    /// least 16 bytes); `KOFU_CLUSTER_SECRET` may carry it directly instead.
    #[arg(long, env = "KOFU_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    #[arg(long, env = "KOFU_CLUSTER_SECRET", hide_env_values = true, hide = true)]
    pub cluster_secret: Option<String>,
    /// During a secret rotation: a second secret whose proofs are accepted too
    /// (`KOFU_CLUSTER_SECRET_OTHER` may carry it directly). README "Operations".
    #[arg(long, env = "KOFU_CLUSTER_SECRET_OTHER_FILE")]
    pub cluster_secret_other_file: Option<PathBuf>,
    #[arg(
        long,
        env = "KOFU_CLUSTER_SECRET_OTHER",
        hide_env_values = true,
        hide = true
    )]
    pub cluster_secret_other: Option<String>,
    /// How long the Redis audit stream keeps a confirmed print (cluster mode): older
    /// entries are trimmed, so Redis memory follows the prints of this period, not all
    /// ever made. Export the stream within it. A number with a unit: `s`, `m`, `h`, `d`.
    #[arg(long, env = "KOFU_AUDIT_RETENTION", default_value = "30d", value_parser = parse_retention)]
    pub audit_retention: Duration,
    /// Shard lease time to live; a crashed node's shards move after at most this long.
    #[arg(long, env = "KOFU_LEASE_TTL_MS", default_value_t = 3_000)]
    pub lease_ttl_ms: u64,
    /// How long a request may wait for a moving shard's new owner before `503`.
    #[arg(long, env = "KOFU_MOVE_WAIT_MS", default_value_t = 5_000)]
    pub move_wait_ms: u64,
    /// This node's name (default: host name + listen port).
    #[arg(long, env = "KOFU_NODE_ID")]
    pub node_id: Option<String>,
    #[arg(long, env = "KOFU_SHARD_COUNT", default_value_t = kofu_proto::DEFAULT_SHARD_COUNT)]
    pub shard_count: u32,
    /// Seed of the synthetic population, kiosks and admin token served (1 when unset).
    /// A cluster node started without it also accepts a registry imported with
    /// `kofu registry import`.
    #[arg(long, env = "KOFU_FIXTURE_SEED")]
    pub fixture_seed: Option<u64>,
    #[arg(long, env = "KOFU_FIXTURE_RESIDENTS", default_value_t = 1000)]
    pub fixture_residents: u32,
    #[arg(long, env = "KOFU_FIXTURE_KIOSKS", default_value_t = 20)]
    pub fixture_kiosks: u32,
    /// The issuer's Ed25519 key: 32 raw bytes, or 64 hex digits / base64url text.
    #[arg(long, env = "KOFU_ISSUER_KEY_FILE")]
    pub issuer_key_file: Option<PathBuf>,
    /// Append every confirmed print to this file (JSON lines) before answering.
    #[arg(long, env = "KOFU_AUDIT_FILE")]
    pub audit_file: Option<PathBuf>,
    /// Record the kiosk sessions served into this file (kofu-load's trace format,
    /// written when the node stops; cards and kiosks as fixture indices, never ids).
    #[arg(long, env = "KOFU_RECORD_TRAFFIC")]
    pub record_traffic: Option<PathBuf>,
    #[arg(long, env = "KOFU_IDLE_TIMEOUT_MS", default_value_t = 180_000)]
    pub idle_timeout_ms: u64,
    #[arg(long, env = "KOFU_HARD_LIMIT_MS", default_value_t = 900_000)]
    pub hard_limit_ms: u64,
    #[arg(long, env = "KOFU_RENDER_DEADLINE_MS", default_value_t = 30_000)]
    pub render_deadline_ms: u64,
    /// Fault injection for drills: delay rendering of every n-th job by this much.
    #[arg(long, env = "KOFU_RENDER_DELAY_MS", default_value_t = 0)]
    pub render_delay_ms: u64,
    #[arg(long, env = "KOFU_RENDER_DELAY_EVERY", default_value_t = 1)]
    pub render_delay_every: u64,
    /// How long a shutdown waits for open sessions before closing them.
    #[arg(long, env = "KOFU_DRAIN_TIMEOUT_MS", default_value_t = 30_000)]
    pub drain_timeout_ms: u64,
    /// HTTP worker threads for the kiosk API, which also run the shard hosts and their
    /// sessions (default: one per core).
    #[arg(long, env = "KOFU_HTTP_WORKERS")]
    pub http_workers: Option<usize>,
    #[arg(long, env = "KOFU_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `kofu_actors=debug`.
    #[arg(long, env = "KOFU_LOG", default_value = "info")]
    pub log_level: String,
    /// Export spans over OTLP/HTTP to this collector URL (e.g.
    /// `http://127.0.0.1:4318/v1/traces`); needs a build with the `otlp` feature.
    #[arg(long, env = "KOFU_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    // --- Real deployments (issue 11): credentials and admission control, each in its
    // own file under `config/`.
    #[command(flatten)]
    pub credentials: CredentialsConfig,
    #[command(flatten)]
    pub admission: AdmissionConfig,
    /// Transport security: TLS certificates and the insecure mode (README "TLS").
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The records served: a registry file instead of the fixture population.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `30d`, `12h`, `90m`, `3600s`: at least a minute, at most ten years.
fn parse_retention(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 30d, 12h, 90m or 3600s");
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(bad)?;
    if !(60..=10 * 365 * 86_400).contains(&seconds) {
        return Err(format!(
            "{text:?} is out of range: keep audit records between a minute and ten years"
        ));
    }
    Ok(Duration::from_secs(seconds))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--shard-count must be between 1 and 65536, got {0}")]
    ShardCount(u32),
    #[error("--fixture-residents must be between 1 and 5000000, got {0}")]
    Residents(u32),
    #[error("--fixture-kiosks must be between 1 and 100000, got {0}")]
    Kiosks(u32),
    #[error("--{0} must be greater than zero")]
    Zero(&'static str),
    #[error("--listen and --admin-listen must differ")]
    SameListener,
    #[error(
        "--redis-url must start with redis://, rediss://, redis+sentinel:// or rediss+sentinel://"
    )]
    RedisUrl,
    #[error(transparent)]
    Tls(#[from] tls::TlsConfigError),
    #[error(
        "cluster mode needs a cluster secret of at least 16 bytes (--cluster-secret-file or KOFU_CLUSTER_SECRET)"
    )]
    ClusterSecret,
    #[error("cannot read the cluster secret file {0}")]
    ClusterSecretFile(PathBuf),
    #[error("--lease-ttl-ms must be between 300 and 60000, got {0}")]
    LeaseTtl(u64),
    #[error("--render-delay-every must be at least 1")]
    DelayEvery,
    #[error("--{0} must be at least 1")]
    Threads(&'static str),
    // --- Real deployments (issue 11).
    #[error(
        "an issuer key file is required (--issuer-key-file or KOFU_ISSUER_KEY_FILE) unless the node runs on fixtures: with a kiosks or admin tokens file, no key may derive from the fixture seed"
    )]
    IssuerKeyRequired,
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    #[error(transparent)]
    Registry(#[from] RegistryConfigError),
}

impl ServeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=65_536).contains(&self.shard_count) {
            return Err(ConfigError::ShardCount(self.shard_count));
        }
        if !(1..=5_000_000).contains(&self.fixture_residents) {
            return Err(ConfigError::Residents(self.fixture_residents));
        }
        if !(1..=100_000).contains(&self.fixture_kiosks) {
            return Err(ConfigError::Kiosks(self.fixture_kiosks));
        }
        for (name, v) in [
            ("idle-timeout-ms", self.idle_timeout_ms),
            ("hard-limit-ms", self.hard_limit_ms),
            ("render-deadline-ms", self.render_deadline_ms),
            ("drain-timeout-ms", self.drain_timeout_ms),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.render_delay_every == 0 {
            return Err(ConfigError::DelayEvery);
        }
        if self.http_workers == Some(0) {
            return Err(ConfigError::Threads("http-workers"));
        }
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return Err(ConfigError::SameListener);
        }
        if let Some(url) = &self.redis_url {
            let schemes = [
                "redis://",
                "rediss://",
                "redis+sentinel://",
                "rediss+sentinel://",
            ];
            if !schemes.iter().any(|s| url.starts_with(s)) {
                return Err(ConfigError::RedisUrl);
            }
            self.secret()?;
            self.other_secret()?;
            if !(300..=60_000).contains(&self.lease_ttl_ms) {
                return Err(ConfigError::LeaseTtl(self.lease_ttl_ms));
            }
        }
        if self.move_wait_ms == 0 {
            return Err(ConfigError::Zero("move-wait-ms"));
        }
        // --- Real deployments (issue 11).
        if !self.credentials.on_fixtures() && self.issuer_key_file.is_none() {
            return Err(ConfigError::IssuerKeyRequired);
        }
        self.admission.validate()?;
        self.tls.validate(self.redis_url.as_deref())?;
        self.registry.validate(self.redis_url.as_deref())?;
        Ok(())
    }

    /// The fixture seed in force: the one given, or 1.
    pub fn fixture_seed(&self) -> u64 {
        self.fixture_seed.unwrap_or(1)
    }

    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default();
            let host = if host.is_empty() {
                "kofu".to_owned()
            } else {
                host
            };
            format!("{host}-{}", self.listen.port())
        })
    }

    /// The cluster secret, from the file or the environment.
    pub fn secret(&self) -> Result<Vec<u8>, ConfigError> {
        Self::read_secret(&self.cluster_secret_file, &self.cluster_secret)
    }

    /// The second secret accepted during a rotation, if one is set.
    pub fn other_secret(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        if self.cluster_secret_other_file.is_none() && self.cluster_secret_other.is_none() {
            return Ok(None);
        }
        Self::read_secret(&self.cluster_secret_other_file, &self.cluster_secret_other).map(Some)
    }

    fn read_secret(file: &Option<PathBuf>, text: &Option<String>) -> Result<Vec<u8>, ConfigError> {
        let secret = match (file, text) {
            (Some(path), _) => {
                let raw = std::fs::read(path)
                    .map_err(|_| ConfigError::ClusterSecretFile(path.clone()))?;
                raw.trim_ascii().to_vec()
            }
            (None, Some(text)) => text.trim().as_bytes().to_vec(),
            (None, None) => Vec::new(),
        };
        if secret.len() < 16 {
            return Err(ConfigError::ClusterSecret);
        }
        Ok(secret)
    }

    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }

    pub fn cores() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_retention_takes_a_number_and_a_unit() {
        let days = |n: u64| Duration::from_secs(n * 86_400);
        assert_eq!(parse_retention("30d"), Ok(days(30)));
        assert_eq!(parse_retention("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_retention("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_retention("3600s"), Ok(Duration::from_secs(3600)));
        for bad in ["", "d", "30", "30 d", "-1d", "1.5d", "30w", "59s", "3651d"] {
            assert!(parse_retention(bad).is_err(), "{bad:?} accepted");
        }
    }
}
