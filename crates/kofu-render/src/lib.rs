//! kofu's certificate renderer: turns one resident record into a deterministic PDF and
//! the issuer-signed binding that ties it to one session, kiosk and card (invariant I1).
//! Pure CPU: no I/O, no clocks, no shared buffers — each call owns everything it writes.

mod content;
mod kinds;
mod layout;
mod pdf;
mod text;

use bytes::Bytes;
use std::sync::{Arc, RwLock};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use kofu_core::records::{Date, ResidentRecord};
use kofu_proto::verify::{Expected, IssuerKeys, key_id, verify_release};
use kofu_proto::{Binding, CertKind, Document};
use sha2::{Digest, Sha256};

/// The municipality's issuing key, which signs every document binding, and its key id
/// (`kofu_proto::verify::key_id`). The key can be replaced while documents render (a
/// rotation, `rotate_to`); a render takes the key once, so a binding's `kid` and its
/// signature always come from the same key.
pub struct Issuer {
    current: RwLock<Arc<SigningIdentity>>,
}

struct SigningIdentity {
    key: SigningKey,
    kid: String,
}

impl SigningIdentity {
    fn from_seed(seed: [u8; 32]) -> SigningIdentity {
        let key = SigningKey::from_bytes(&seed);
        SigningIdentity {
            kid: key_id(&key.verifying_key()),
            key,
        }
    }
}

impl Issuer {
    pub fn from_seed(seed: [u8; 32]) -> Issuer {
        Issuer {
            current: RwLock::new(Arc::new(SigningIdentity::from_seed(seed))),
        }
    }

    fn current(&self) -> Arc<SigningIdentity> {
        // A writer never panics while holding the lock; a poisoned one still holds a
        // whole key.
        match self.current.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Signs with the key of `seed` from now on (documents rendering keep the key
    /// they took).
    pub fn rotate_to(&self, seed: [u8; 32]) {
        let next = Arc::new(SigningIdentity::from_seed(seed));
        match self.current.write() {
            Ok(mut k) => *k = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }

    /// The id of the key signing now.
    pub fn kid(&self) -> String {
        self.current().kid.clone()
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.verifying_key().to_bytes()
    }

    /// The key as served by `GET /v1/issuer-key`.
    pub fn public_key_b64(&self) -> String {
        kofu_proto::b64url(&self.public_key())
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.current().key.verifying_key()
    }

    /// The key signing now, as the one key a verifier trusts.
    pub fn keys(&self) -> IssuerKeys {
        IssuerKeys::single(self.verifying_key())
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.current().key.sign(msg).to_bytes()
    }
}

impl std::fmt::Debug for Issuer {
    // The secret half must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("kid", &self.kid())
            .field("public_key", &self.public_key_b64())
            .finish()
    }
}

/// Everything a document depends on; rendering is a pure function of it.
#[derive(Clone, Copy)]
pub struct RenderRequest<'a> {
    pub record: &'a ResidentRecord,
    pub kind: CertKind,
    pub copies: u8,
    pub serial: &'a str,
    /// RFC 3339 UTC, e.g. `2026-11-21T09:00:00Z`; the page shows its date part.
    pub issued_at: &'a str,
    pub session_id: &'a str,
    pub kiosk_id: &'a str,
}

impl std::fmt::Debug for RenderRequest<'_> {
    // The record is personal data (I6); the rest identifies the job.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderRequest")
            .field("kind", &self.kind)
            .field("copies", &self.copies)
            .field("serial", &self.serial)
            .field("record_version", &self.record.version)
            .finish_non_exhaustive()
    }
}

/// A rendered, signed certificate: the [`Document`] a kiosk receives, plus what the
/// renderer knows about it and a kiosk would have to parse out again: the binding it
/// signed (for the session's check before release) and the page count. Reads of the
/// document's fields go through to it.
#[derive(Clone)]
pub struct Rendered {
    pub document: Document,
    pub binding: Binding,
    pub pages: u32,
}

impl std::ops::Deref for Rendered {
    type Target = Document;

    fn deref(&self) -> &Document {
        &self.document
    }
}

impl std::fmt::Debug for Rendered {
    // The body holds names and addresses (I6); show only what identifies the document.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered")
            .field("serial", &self.binding.serial)
            .field("kind", &self.binding.kind)
            .field("pages", &self.pages)
            .field("bytes", &self.pdf.len())
            .field("doc_sha256", &self.binding.doc_sha256)
            .finish_non_exhaustive()
    }
}

/// Renders the PDF, binds it to the request and signs the binding.
pub fn render(issuer: &Issuer, req: &RenderRequest<'_>) -> Rendered {
    let (pdf, pages) = render_pages(req);
    let signer = issuer.current();
    let binding = Binding {
        v: 1,
        kid: signer.kid.clone(),
        serial: req.serial.to_owned(),
        session_id: req.session_id.to_owned(),
        kiosk_id: req.kiosk_id.to_owned(),
        card_digest: req.record.card_id.digest(),
        kind: req.kind,
        copies: req.copies,
        record_version: req.record.version,
        issued_at: req.issued_at.to_owned(),
        doc_sha256: hex::encode(Sha256::digest(&pdf)),
    };
    let bytes = binding.to_bytes();
    let signature = signer.key.sign(&bytes).to_bytes();
    Rendered {
        document: Document {
            pdf: Bytes::from(pdf),
            binding_b64: kofu_proto::b64url(&bytes),
            signature_b64: kofu_proto::b64url(&signature),
        },
        binding,
        pages,
    }
}

/// The PDF alone, byte-identical to the body `render` signs for the same request.
pub fn render_pdf(req: &RenderRequest<'_>) -> Vec<u8> {
    render_pages(req).0
}

fn render_pages(req: &RenderRequest<'_>) -> (Vec<u8>, u32) {
    let issued = match issue_date_jst(req.issued_at) {
        Some(d) => kofu_core::wareki::date(d),
        // Unparsable: print the request's own date part rather than guess one.
        None => req
            .issued_at
            .split_once(['T', 't'])
            .map_or(req.issued_at, |(d, _)| d)
            .to_owned(),
    };
    let flow = kinds::body(req.record, req.kind, &issued);
    pdf::write(req, &flow)
}

/// The calendar date in Japan (UTC+9, no daylight saving) of an RFC 3339 UTC instant,
/// which is the date a municipality prints as the issue date.
fn issue_date_jst(issued_at: &str) -> Option<Date> {
    let b = issued_at.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u16> {
        let s = issued_at.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 13 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let (year, month, day, hour) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?);
    let month = u8::try_from(month).ok().filter(|m| (1..=12).contains(m))?;
    let day = u8::try_from(day).ok()?;
    if day == 0 || day > Date::days_in_month(year, month) || hour > 23 {
        return None;
    }
    if hour + 9 < 24 {
        return Some(Date { year, month, day });
    }
    Some(if day < Date::days_in_month(year, month) {
        Date {
            year,
            month,
            day: day + 1,
        }
    } else if month < 12 {
        Date {
            year,
            month: month + 1,
            day: 1,
        }
    } else {
        Date::ymd(year.checked_add(1)?, 1, 1)
    })
}

/// Self-check before release: verifies the document exactly as a kiosk will (signature
/// over the header bytes, body digest, session, kiosk, card, kind, copies) and that the
/// signed binding is the one this document carries. False on any mismatch.
pub fn self_check(issuer_public: &IssuerKeys, doc: &Rendered, expected: &Expected<'_>) -> bool {
    match verify_release(
        issuer_public,
        &doc.pdf,
        &doc.binding_b64,
        &doc.signature_b64,
        expected,
    ) {
        Ok(signed) => signed == doc.binding,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(year: u16, month: u8, day: u8) -> Option<Date> {
        Some(Date { year, month, day })
    }

    #[test]
    fn issue_dates_are_japanese_calendar_days() {
        assert_eq!(issue_date_jst("2026-11-21T09:00:00Z"), d(2026, 11, 21));
        assert_eq!(issue_date_jst("2026-11-21T14:59:59Z"), d(2026, 11, 21));
        assert_eq!(issue_date_jst("2026-11-21T15:00:00Z"), d(2026, 11, 22));
        assert_eq!(issue_date_jst("2026-11-30T20:00:00Z"), d(2026, 12, 1));
        assert_eq!(issue_date_jst("2026-12-31T23:00:00Z"), d(2027, 1, 1));
        assert_eq!(issue_date_jst("2028-02-28T16:00:00Z"), d(2028, 2, 29));
        for bad in [
            "",
            "2026-11-21",
            "2026-13-01T00:00Z",
            "2026-02-30T00:00Z",
            "x026-11-21T09",
        ] {
            assert_eq!(issue_date_jst(bad), None, "{bad}");
        }
    }
}
