//! Mutual TLS under the link (issue 11): every byte between nodes is encrypted, and
//! both ends prove with a certificate from the cluster CA who they are before a single
//! frame is read. The HMAC handshake still runs inside, as a second factor: a stolen
//! node certificate alone does not let anyone in, and neither does the secret alone.
//!
//! The policy lives here, the key material does not: the node hands in what presents
//! its certificate and what verifies the peer's (so it can swap both on `SIGHUP`), and
//! this module fixes TLS 1.3, a mandatory client certificate, the ALPN name, and the
//! name every node's certificate must carry: nodes are reached at addresses that change
//! (pod IPs), so a peer is verified against [`CLUSTER_SERVER_NAME`], not its address.

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::LinkError;

/// The DNS name (subject alternative name) every node certificate carries and every
/// node verifies its peer's certificate against, whatever address it dialled.
pub const CLUSTER_SERVER_NAME: &str = "kofu-internal";
/// ALPN protocol of the link: a TLS endpoint of another protocol (a kiosk listener with
/// a certificate from the same CA, say) cannot be mistaken for a node.
const ALPN: &[u8] = b"kofu-wire/1";

/// The ring provider, the one crypto provider of the whole build.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn setup(e: impl std::fmt::Display) -> LinkError {
    LinkError::TlsSetup(e.to_string())
}

/// Both ends of mutual TLS between nodes: the acceptor for the internal listener, the
/// connector for the links to peers. Cheap to clone.
#[derive(Clone)]
pub struct ClusterTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterTls(..)")
    }
}

impl ClusterTls {
    /// Mutual TLS 1.3 with the given parts. `client_verifier` must demand a certificate
    /// (refused otherwise: a node must never accept an anonymous peer); `server_verifier`
    /// checks a peer against [`CLUSTER_SERVER_NAME`].
    pub fn new(
        server_cert: Arc<dyn ResolvesServerCert>,
        client_cert: Arc<dyn ResolvesClientCert>,
        client_verifier: Arc<dyn ClientCertVerifier>,
        server_verifier: Arc<dyn ServerCertVerifier>,
    ) -> Result<ClusterTls, LinkError> {
        if !(client_verifier.offer_client_auth() && client_verifier.client_auth_mandatory()) {
            return Err(LinkError::TlsSetup(
                "the cluster listener must require a client certificate".into(),
            ));
        }
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(setup)?
            .with_client_cert_verifier(client_verifier)
            .with_cert_resolver(server_cert);
        server.alpn_protocols = vec![ALPN.to_vec()];
        // No resumption: every connection proves its certificate again, and a link is
        // long-lived, so a full handshake per connection costs nothing that matters.
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        let mut client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(setup)?
            .dangerous()
            .with_custom_certificate_verifier(server_verifier)
            .with_client_cert_resolver(client_cert);
        client.alpn_protocols = vec![ALPN.to_vec()];
        client.resumption = rustls::client::Resumption::disabled();
        Ok(ClusterTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// Fixed parts: this node's certificate chain and key, and the cluster CA's roots.
    pub fn from_parts(
        roots: RootCertStore,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<ClusterTls, LinkError> {
        let provider = provider();
        let roots = Arc::new(roots);
        let key = CertifiedKey::from_der(chain, key, &provider).map_err(setup)?;
        let identity = Arc::new(SingleCertAndKey::from(key));
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(setup)?;
        let server_verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(setup)?;
        ClusterTls::new(identity.clone(), identity, client_verifier, server_verifier)
    }

    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
    ) -> Result<tokio_rustls::server::TlsStream<TcpStream>, LinkError> {
        self.acceptor
            .accept(stream)
            .await
            .map_err(|e| tls_failed(&e))
    }

    pub(crate) async fn connect(
        &self,
        stream: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, LinkError> {
        let name = ServerName::try_from(CLUSTER_SERVER_NAME).map_err(setup)?;
        self.connector
            .connect(name, stream)
            .await
            .map_err(|e| tls_failed(&e))
    }
}

/// A failed TLS handshake, named by what rustls says went wrong (no peer data in it).
fn tls_failed(e: &std::io::Error) -> LinkError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => LinkError::Tls(tls.to_string()),
        None => LinkError::Tls(e.kind().to_string()),
    }
}
