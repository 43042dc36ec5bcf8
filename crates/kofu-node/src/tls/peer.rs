//! The kiosk's client certificate, when the kiosk listener requires one: its subject CN
//! must be the kiosk id of the bearer token, so a stolen token is useless without the
//! kiosk's key and one kiosk's certificate cannot carry another's token. The CN is read
//! once per connection (after rustls verified the chain) and kept with the connection.

use std::any::Any;

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::HttpRequest;
use actix_web::dev::Extensions;
use kofu_proto::{ErrorCode, KioskId};
use tokio::net::TcpStream;

/// What a connection of a listener that requires client certificates proved.
#[derive(Debug, Clone)]
pub struct KioskCert {
    /// The subject CN of the verified certificate; `None` when it has none (or none
    /// that is one plain string), which matches no kiosk.
    cn: Option<String>,
}

/// The kiosk listener's `on_connect`: when client certificates are required, every
/// connection gets a [`KioskCert`], even one whose certificate cannot be read, so the
/// check below fails closed.
pub fn on_connect(required: bool) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
    move |conn, ext| {
        if !required {
            return;
        }
        let cn = conn
            .downcast_ref::<TlsStream<TcpStream>>()
            .and_then(|tls| tls.get_ref().1.peer_certificates())
            .and_then(|chain| chain.first())
            .and_then(|leaf| common_name(leaf));
        ext.insert(KioskCert { cn });
    }
}

/// On a listener that requires client certificates, the bearer token's kiosk must be
/// the certificate's subject; elsewhere there is nothing to check.
pub fn check_kiosk_cert(req: &HttpRequest, kiosk: &KioskId) -> Result<(), ErrorCode> {
    match req.conn_data::<KioskCert>() {
        None => Ok(()),
        Some(KioskCert { cn: Some(cn) }) if cn == kiosk.as_str() => Ok(()),
        Some(_) => Err(ErrorCode::UnauthorizedKiosk),
    }
}

/// The subject CN of a certificate: exactly one, as a string. Two CNs, or one that is
/// not a string, give `None` (no kiosk matches), as does anything malformed; rustls
/// verified the certificate before this reads it.
pub fn common_name(cert: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    let mut names = cert.subject().iter_common_name();
    let name = names.next()?;
    if names.next().is_some() {
        return None;
    }
    name.as_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_subject_cn_and_only_it() {
        let ca = kofu_testkit::TestCa::new("kiosk ca");
        let cert = ca.issue("SEJ-13104-0042-01", &["kiosk.example"]);
        assert_eq!(
            common_name(&cert.cert_der).as_deref(),
            Some("SEJ-13104-0042-01")
        );
        // The CA's own certificate: its CN, not the issuer's of a leaf.
        assert_eq!(common_name(ca.cert_der()).as_deref(), Some("kiosk ca"));
    }

    #[test]
    fn garbage_and_truncation_give_none_not_a_panic() {
        let ca = kofu_testkit::TestCa::new("kiosk ca");
        let der = ca.issue("K0001", &[]).cert_der;
        for cut in 0..der.len() {
            let _ = common_name(&der[..cut]);
        }
        assert_eq!(common_name(&[]), None);
        assert_eq!(common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        let mut flipped = der.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = common_name(&flipped);
            flipped[i] ^= 0xff;
        }
    }
}
