//! Transport security settings (API.md, "Real deployments (v1.1)", issue 11), kept in
//! one block of their own: certificates for the kiosk and admin listeners, mutual TLS
//! between nodes, the Redis CA, and the one explicit way to run a cluster in clear.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// Certificate chain (PEM) of the kiosk listener, which then speaks HTTPS only.
    #[arg(long, env = "KOFU_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of the kiosk listener's certificate.
    #[arg(long, env = "KOFU_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// CA (PEM) whose client certificates kiosks must present; the subject CN must be
    /// the kiosk id of the bearer token. Needs --tls-cert-file.
    #[arg(long, env = "KOFU_TLS_CLIENT_CA_FILE", requires = "tls_cert_file")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// Certificate chain (PEM) of the admin listener, which then speaks HTTPS only.
    #[arg(
        long,
        env = "KOFU_ADMIN_TLS_CERT_FILE",
        requires = "admin_tls_key_file"
    )]
    pub admin_tls_cert_file: Option<PathBuf>,
    #[arg(
        long,
        env = "KOFU_ADMIN_TLS_KEY_FILE",
        requires = "admin_tls_cert_file"
    )]
    pub admin_tls_key_file: Option<PathBuf>,
    /// The cluster CA (PEM): nodes accept and call only peers with a certificate from
    /// it, carrying the DNS name `kofu-internal` (README "TLS").
    #[arg(
        long,
        env = "KOFU_CLUSTER_CA_FILE",
        requires_all = ["cluster_cert_file", "cluster_key_file"]
    )]
    pub cluster_ca_file: Option<PathBuf>,
    /// This node's certificate chain (PEM) for the internal link, usable for both
    /// server and client authentication.
    #[arg(long, env = "KOFU_CLUSTER_CERT_FILE", requires = "cluster_ca_file")]
    pub cluster_cert_file: Option<PathBuf>,
    #[arg(long, env = "KOFU_CLUSTER_KEY_FILE", requires = "cluster_ca_file")]
    pub cluster_key_file: Option<PathBuf>,
    /// CA (PEM) that issued the Redis servers' (and Sentinels') certificates, for a
    /// `rediss://` or `rediss+sentinel://` URL; without it the system roots are used.
    #[arg(long, env = "KOFU_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// Local development only: lets a cluster node link to its peers without TLS (the
    /// node logs a warning). Without it, cluster mode needs the cluster CA settings.
    #[arg(long, env = "KOFU_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error(
        "cluster mode needs mutual TLS between nodes (--cluster-ca-file, --cluster-cert-file, \
         --cluster-key-file); for local development only, --insecure-plaintext runs the link in clear"
    )]
    PlaintextCluster,
    #[error("--redis-ca-file needs a rediss:// or rediss+sentinel:// redis url")]
    RedisCaWithoutTls,
}

impl TlsArgs {
    /// Whether the internal link runs inside mutual TLS.
    pub fn cluster_tls(&self) -> bool {
        self.cluster_ca_file.is_some()
    }

    /// Checks what clap's `requires` cannot: how the settings fit the mode.
    pub fn validate(&self, redis_url: Option<&str>) -> Result<(), TlsConfigError> {
        let Some(url) = redis_url else {
            return Ok(());
        };
        if !self.cluster_tls() && !self.insecure_plaintext {
            return Err(TlsConfigError::PlaintextCluster);
        }
        if self.redis_ca_file.is_some() && !url.starts_with("rediss") {
            return Err(TlsConfigError::RedisCaWithoutTls);
        }
        Ok(())
    }
}
