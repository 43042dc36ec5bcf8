//! Transport security of a node (issue 11), built once at start from `TlsArgs`: the
//! kiosk listener's and the admin listener's rustls configurations, the cluster's
//! mutual TLS for kofu-wire, and the parts `SIGHUP` re-reads. Policy: the kiosk and
//! admin listeners take TLS 1.2 and 1.3 (kiosks in stores update slowly), the link
//! between nodes TLS 1.3 only; ring is the one crypto provider.

mod peer;
mod pem;
mod reload;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use kofu_wire::ClusterTls;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;

use crate::config::TlsArgs;
use crate::reload::Reloadable;
pub use peer::{check_kiosk_cert, on_connect};
use reload::{CertResolver, TrustedCa};

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What the node's listeners and links use; `None` parts run in clear.
pub struct NodeTls {
    /// The kiosk listener, and whether it requires client certificates.
    pub kiosk: Option<(ServerConfig, bool)>,
    pub admin: Option<ServerConfig>,
    pub cluster: Option<ClusterTls>,
    /// The Redis CA, PEM, for `rediss://`.
    pub redis_ca: Option<Vec<u8>>,
    pub reloaders: Vec<Arc<dyn Reloadable>>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("kiosk", &self.kiosk.is_some())
            .field("admin", &self.admin.is_some())
            .field("cluster", &self.cluster.is_some())
            .finish_non_exhaustive()
    }
}

/// A listener's TLS configuration, before its client and certificate policy.
fn server_config() -> anyhow::Result<rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier>> {
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("tls versions")
}

fn pair(cert: &Option<PathBuf>, key: &Option<PathBuf>) -> Option<(PathBuf, PathBuf)> {
    Some((cert.clone()?, key.clone()?))
}

impl NodeTls {
    /// Reads every configured file; a missing or bad one fails the start, naming it.
    pub fn load(args: &TlsArgs) -> anyhow::Result<NodeTls> {
        let mut reloaders: Vec<Arc<dyn Reloadable>> = Vec::new();
        let kiosk = match pair(&args.tls_cert_file, &args.tls_key_file) {
            None => None,
            Some((cert, key)) => {
                let resolver = CertResolver::certified("kiosk listener certificate", cert, key)?;
                reloaders.push(resolver.clone());
                let builder = server_config()?;
                let (config, required) = match &args.tls_client_ca_file {
                    Some(ca) => {
                        let ca = TrustedCa::roots("kiosk client ca", ca.clone())?;
                        reloaders.push(ca.clone());
                        let config = builder
                            .with_client_cert_verifier(ca)
                            .with_cert_resolver(resolver);
                        (config, true)
                    }
                    None => (
                        builder.with_no_client_auth().with_cert_resolver(resolver),
                        false,
                    ),
                };
                Some((config, required))
            }
        };
        let admin = match pair(&args.admin_tls_cert_file, &args.admin_tls_key_file) {
            None => None,
            Some((cert, key)) => {
                let resolver = CertResolver::certified("admin listener certificate", cert, key)?;
                reloaders.push(resolver.clone());
                let config = server_config()?
                    .with_no_client_auth()
                    .with_cert_resolver(resolver);
                Some(config)
            }
        };
        let cluster = match (
            &args.cluster_ca_file,
            pair(&args.cluster_cert_file, &args.cluster_key_file),
        ) {
            (Some(ca), Some((cert, key))) => {
                let identity = CertResolver::certified("cluster certificate", cert, key)?;
                let ca = TrustedCa::roots("cluster ca", ca.clone())?;
                reloaders.push(identity.clone());
                reloaders.push(ca.clone());
                let tls = ClusterTls::new(identity.clone(), identity, ca.clone(), ca)
                    .context("cluster tls")?;
                Some(tls)
            }
            _ => None,
        };
        let redis_ca = match &args.redis_ca_file {
            None => None,
            Some(path) => {
                // Checked here so a bad file fails the start with its name.
                pem::roots(path)?;
                Some(
                    std::fs::read(path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                )
            }
        };
        Ok(NodeTls {
            kiosk,
            admin,
            cluster,
            redis_ca,
            reloaders,
        })
    }
}
