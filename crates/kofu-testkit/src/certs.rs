//! Throwaway certificate authorities for TLS tests, made in-process with rcgen: a CA,
//! and certificates it issues for a server (names and IP addresses) or a client (a
//! subject CN, the kiosk id for a kiosk), as PEM text and as files in a temp directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};

/// Serial numbers unique within a test process, so a test can tell two certificates
/// apart by serial (the reload test does).
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(0x4b_4f46_5500);

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    /// The certificate's DER (for comparing with what a peer presented).
    pub cert_der: Vec<u8>,
    /// The key as PKCS#8 DER.
    pub key_der: Vec<u8>,
    pub serial: u64,
}

impl Issued {
    /// Writes `<name>.crt` and `<name>.key` into `dir`; their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap_or_else(|e| panic!("write cert: {e}"));
        std::fs::write(&key, &self.key_pem).unwrap_or_else(|e| panic!("write key: {e}"));
        (cert, key)
    }
}

/// A certificate authority that lives as long as the test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert: Issued,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("serial", &self.cert.serial)
            .finish_non_exhaustive()
    }
}

fn next_serial() -> u64 {
    NEXT_SERIAL.fetch_add(1, Ordering::Relaxed)
}

impl TestCa {
    /// A new CA whose subject CN is `name`.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("ca key: {e}"));
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let serial = next_serial();
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("ca cert: {e}"));
        let issued = Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            serial,
        };
        TestCa {
            issuer: Issuer::new(params, key),
            cert: issued,
        }
    }

    /// The CA's own certificate, PEM (what a verifier trusts).
    pub fn cert_pem(&self) -> &str {
        &self.cert.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert.cert_der
    }

    /// Writes the CA certificate as `<name>.crt` into `dir`; its path.
    pub fn write_cert(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.crt"));
        std::fs::write(&path, &self.cert.cert_pem).unwrap_or_else(|e| panic!("write ca: {e}"));
        path
    }

    /// A certificate for servers and clients alike (both extended key usages), with
    /// subject CN `cn` and `names` as subject alternative names (IP addresses become IP
    /// SANs, everything else DNS names).
    pub fn issue(&self, cn: &str, names: &[&str]) -> Issued {
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("leaf key: {e}"));
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    (*n).try_into()
                        .unwrap_or_else(|e| panic!("bad dns name {n:?}: {e}")),
                ),
            })
            .collect();
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let serial = next_serial();
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params
            .signed_by(&key, &self.issuer)
            .unwrap_or_else(|e| panic!("leaf cert: {e}"));
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            serial,
        }
    }

    /// A server certificate for a node on loopback: `localhost`, `127.0.0.1`, and the
    /// cluster's fixed name, so the same one serves the kiosk, admin and internal
    /// listeners.
    pub fn node_cert(&self) -> Issued {
        self.issue(
            "kofu node",
            &["localhost", "127.0.0.1", CLUSTER_SERVER_NAME],
        )
    }
}

/// The name nodes verify each other's certificates against (kofu-wire's
/// `CLUSTER_SERVER_NAME`; the testkit does not depend on kofu-wire, a test checks they
/// agree).
pub const CLUSTER_SERVER_NAME: &str = "kofu-internal";

/// A CA and one certificate it issued ([`TestCa::node_cert`]) as PEM files in a temp
/// directory that lives as long as this: what a node is started with, for its kiosk and
/// admin listeners (HTTPS) or for the link between nodes (the cluster CA).
#[derive(Debug)]
pub struct CertFiles {
    pub ca: TestCa,
    pub cert: Issued,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    dir: tempfile::TempDir,
}

impl CertFiles {
    pub fn new(ca_name: &str) -> CertFiles {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
        let ca = TestCa::new(ca_name);
        let cert = ca.node_cert();
        let ca_file = ca.write_cert(dir.path(), "ca");
        let (cert_file, key_file) = cert.write(dir.path(), "node");
        CertFiles {
            ca,
            cert,
            ca_file,
            cert_file,
            key_file,
            dir,
        }
    }

    /// Where the files are (a test may write more there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `kofu serve` arguments: the link between nodes over mutual TLS with these.
    pub fn cluster_args(&self) -> Vec<String> {
        crate::file_args(&[
            ("--cluster-ca-file", self.ca_file.as_path()),
            ("--cluster-cert-file", self.cert_file.as_path()),
            ("--cluster-key-file", self.key_file.as_path()),
        ])
    }

    /// `kofu serve` arguments: HTTPS on the kiosk and the admin listener.
    pub fn https_args(&self) -> Vec<String> {
        crate::file_args(&[
            ("--tls-cert-file", self.cert_file.as_path()),
            ("--tls-key-file", self.key_file.as_path()),
            ("--admin-tls-cert-file", self.cert_file.as_path()),
            ("--admin-tls-key-file", self.key_file.as_path()),
        ])
    }

    /// A blocking rustls client configuration trusting this CA only (and presenting
    /// `client`'s certificate when given).
    pub fn client_config(&self, client: Option<&Issued>) -> std::sync::Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(
                self.ca.cert_der().to_vec(),
            ))
            .unwrap_or_else(|e| panic!("test ca: {e}"));
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|e| panic!("tls versions: {e}"))
            .with_root_certificates(roots);
        let config = match client {
            None => config.with_no_client_auth(),
            Some(issued) => {
                let chain = vec![rustls::pki_types::CertificateDer::from(
                    issued.cert_der.clone(),
                )];
                let key = rustls::pki_types::PrivateKeyDer::Pkcs8(issued.key_der.clone().into());
                config
                    .with_client_auth_cert(chain, key)
                    .unwrap_or_else(|e| panic!("client certificate: {e}"))
            }
        };
        std::sync::Arc::new(config)
    }
}
