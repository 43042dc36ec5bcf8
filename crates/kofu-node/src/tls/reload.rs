//! The TLS parts that `SIGHUP` swaps: a certificate with its key, and a CA's roots. Each
//! is handed to rustls once, as a resolver or a verifier, and answers every handshake
//! from the `Arc` it holds at that moment, so a reload takes effect with the next
//! handshake and never disturbs a connection already established. A file that fails to
//! load, or a key that does not match its certificate, is refused and the old stays.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::pem::{self, PemError};
use super::provider;
use crate::reload::Reloadable;

/// Something read from files and swapped whole on `SIGHUP`: what is in force is an
/// `Arc`, so a handshake holds the version it started with.
pub struct FromFiles<T> {
    what: &'static str,
    read: Box<dyn Fn() -> Result<Arc<T>, PemError> + Send + Sync>,
    current: RwLock<Arc<T>>,
}

impl<T> std::fmt::Debug for FromFiles<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FromFiles")
            .field("what", &self.what)
            .finish()
    }
}

impl<T> FromFiles<T> {
    /// Reads the files now (an error fails the start, naming the file), and again with
    /// `read` on every reload.
    fn load(
        what: &'static str,
        read: impl Fn() -> Result<Arc<T>, PemError> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, PemError> {
        let current = RwLock::new(read()?);
        Ok(Arc::new(FromFiles {
            what,
            read: Box::new(read),
            current,
        }))
    }

    fn current(&self) -> Arc<T> {
        self.current.read().clone()
    }
}

impl<T: Send + Sync> Reloadable for FromFiles<T> {
    fn what(&self) -> &'static str {
        self.what
    }

    fn reload(&self) -> Result<(), String> {
        let new = (self.read)().map_err(|e| e.to_string())?;
        *self.current.write() = new;
        Ok(())
    }
}

/// A certificate chain and its key from two files; presented by a listener (server) or
/// by this node when it calls a peer (client).
pub type CertResolver = FromFiles<CertifiedKey>;

impl CertResolver {
    pub fn certified(
        what: &'static str,
        cert: PathBuf,
        key: PathBuf,
    ) -> Result<Arc<Self>, PemError> {
        Self::load(what, move || read_certified(&cert, &key))
    }
}

fn read_certified(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<CertifiedKey>, PemError> {
    let chain = pem::certs(cert)?;
    let der = pem::key(key)?;
    // Also checks that the key belongs to the certificate.
    let certified =
        CertifiedKey::from_der(chain, der, &provider()).map_err(|e| PemError::Rejected {
            path: key.to_owned(),
            reason: format!("not a usable key for {}: {e}", cert.display()),
        })?;
    Ok(Arc::new(certified))
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for CertResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifiers built from one CA file: of client certificates (a listener that requires
/// them) and of server certificates (a node calling a peer).
pub struct Verifiers {
    client: Arc<dyn ClientCertVerifier>,
    server: Arc<dyn ServerCertVerifier>,
}

/// A CA whose certificates a listener demands from clients, and a node demands from
/// the peers it calls; certificates must chain to it and be valid now.
pub type TrustedCa = FromFiles<Verifiers>;

impl std::fmt::Debug for Verifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifiers(..)")
    }
}

impl TrustedCa {
    pub fn roots(what: &'static str, path: PathBuf) -> Result<Arc<Self>, PemError> {
        Self::load(what, move || read_verifiers(&path))
    }
}

fn read_verifiers(path: &std::path::Path) -> Result<Arc<Verifiers>, PemError> {
    let roots = Arc::new(pem::roots(path)?);
    let rejected = |e: &dyn std::fmt::Display| PemError::Rejected {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let client = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| rejected(&e))?;
    let server = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| rejected(&e))?;
    Ok(Arc::new(Verifiers { client, server }))
}

/// The signature checks are the same whichever side verifies: both verifiers answer
/// them from the verifier in force, as the certificate checks do.
macro_rules! signatures_from {
    ($side:ident) => {
        signatures_from!($side: verify_tls12_signature, verify_tls13_signature);

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.current().$side.supported_verify_schemes()
        }
    };
    ($side:ident: $($check:ident),*) => {$(
        fn $check(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.current().$side.$check(message, cert, dss)
        }
    )*};
}

impl ClientCertVerifier for TrustedCa {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: they would have to outlive a reload. Clients then offer the one
    /// certificate they have, which is all a kiosk or a node holds.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .client
            .verify_client_cert(end_entity, intermediates, now)
    }

    signatures_from!(client);
}

impl ServerCertVerifier for TrustedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.current().server.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    signatures_from!(server);
}
