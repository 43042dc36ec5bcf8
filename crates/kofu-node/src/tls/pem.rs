//! Reading certificates, keys and CA roots from PEM files. Errors name the file and what
//! is wrong with it, never its contents (a key file's bytes are secret).

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("cannot read {}", .0.display())]
    Read(PathBuf),
    #[error("{} holds no certificate (PEM \"CERTIFICATE\" blocks expected)", .0.display())]
    NoCertificate(PathBuf),
    #[error("{} is not valid PEM", .0.display())]
    Malformed(PathBuf),
    #[error("{} holds no private key (PEM PKCS#8, PKCS#1 or SEC1 expected)", .0.display())]
    NoKey(PathBuf),
    #[error("{}: {reason}", .path.display())]
    Rejected { path: PathBuf, reason: String },
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|_| PemError::Read(path.to_owned()))
}

/// Every certificate in the file, in order (leaf first for a chain).
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| PemError::Malformed(path.to_owned()))?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

/// The first private key in the file.
pub fn key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => PemError::NoKey(path.to_owned()),
        _ => PemError::Malformed(path.to_owned()),
    })
}

/// Every certificate in the file as a trust anchor.
pub fn roots(path: &Path) -> Result<RootCertStore, PemError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(path)? {
        roots.add(cert).map_err(|e| PemError::Rejected {
            path: path.to_owned(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}
