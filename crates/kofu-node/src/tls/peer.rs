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

/// One DER element: tag, contents, and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    // High tag numbers (0x1f) never occur in the parts of a certificate read here.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// id-at-commonName, 2.5.4.3.
const CN_OID: &[u8] = &[0x55, 0x04, 0x03];

/// The subject CN of a certificate: exactly one, as a UTF8String, PrintableString or
/// IA5String. Two CNs, or another string type, give `None` (no kiosk matches), as does
/// anything malformed; rustls verified the certificate before this reads it.
pub fn common_name(cert: &[u8]) -> Option<String> {
    let (tag, certificate, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    // [0] version (optional), serial, signature algorithm, issuer, validity, subject.
    let mut rest = tbs;
    let (tag, _, after) = element(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (tag, subject, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut found = None;
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (tag, rdn, next) = element(rdns)?;
        if tag != SET {
            return None;
        }
        rdns = next;
        let mut attrs = rdn;
        while !attrs.is_empty() {
            let (tag, attr, next) = element(attrs)?;
            if tag != SEQUENCE {
                return None;
            }
            attrs = next;
            let (tag, oid, value) = element(attr)?;
            if tag != OID || oid != CN_OID {
                continue;
            }
            let (kind, text, _) = element(value)?;
            // UTF8String, PrintableString, IA5String.
            if !matches!(kind, 0x0c | 0x13 | 0x16) || found.is_some() {
                return None;
            }
            found = Some(String::from_utf8(text.to_vec()).ok()?);
        }
    }
    found
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
