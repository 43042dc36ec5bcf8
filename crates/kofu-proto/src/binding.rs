//! The signed binding of API.md: the statement that ties a document to exactly one
//! session, kiosk and card holder, and that every kiosk checks before printing.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{CardId, CertKind};

/// Binding JSON. Field order is the wire order; serde_json writes it compactly, which is
/// exactly the canonical form of API.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    pub v: u32,
    /// The id of the issuer key that signed it (`verify::key_id`): a kiosk picks the
    /// key by it from `GET /v1/issuer-key`'s `keys`, so keys can rotate without a gap.
    pub kid: String,
    pub serial: String,
    pub session_id: String,
    pub kiosk_id: String,
    pub card_digest: String,
    pub kind: CertKind,
    pub copies: u8,
    pub record_version: u64,
    pub issued_at: String,
    pub doc_sha256: String,
}

impl Binding {
    /// The exact bytes the issuer signs.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing a struct of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Binding, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// What a kiosk checks besides the signature: the binding names its own session,
    /// kiosk, card and order, and the body is the one that was signed.
    pub fn matches(
        &self,
        body: &[u8],
        session_id: &str,
        kiosk_id: &str,
        card: &CardId,
        kind: CertKind,
        copies: u8,
    ) -> bool {
        self.v == 1
            && self.doc_sha256 == hex::encode(Sha256::digest(body))
            && self.session_id == session_id
            && self.kiosk_id == kiosk_id
            && self.card_digest == card.digest()
            && self.kind == kind
            && self.copies == copies
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Binding {
        Binding {
            v: 1,
            kid: "0011223344556677".into(),
            serial: "S1".into(),
            session_id: "sess".into(),
            kiosk_id: "SEJ-1".into(),
            card_digest: "ab".into(),
            kind: CertKind::Residence,
            copies: 1,
            record_version: 7,
            issued_at: "2026-11-21T09:00:00Z".into(),
            doc_sha256: "cd".into(),
        }
    }

    #[test]
    fn canonical_bytes_have_fixed_order_and_no_whitespace() {
        let text = String::from_utf8(sample().to_bytes()).expect("utf8");
        assert_eq!(
            text,
            r#"{"v":1,"kid":"0011223344556677","serial":"S1","session_id":"sess","kiosk_id":"SEJ-1","card_digest":"ab","kind":"residence","copies":1,"record_version":7,"issued_at":"2026-11-21T09:00:00Z","doc_sha256":"cd"}"#
        );
        assert_eq!(
            Binding::from_bytes(text.as_bytes()).expect("parse"),
            sample()
        );
    }

    #[test]
    fn matches_checks_every_field() {
        let card = CardId::parse("0123456789ABCDEF").expect("valid");
        let body = b"%PDF-1.7";
        let mut b = sample();
        b.card_digest = card.digest();
        b.doc_sha256 = hex::encode(Sha256::digest(body));
        assert!(b.matches(body, "sess", "SEJ-1", &card, CertKind::Residence, 1));
        assert!(!b.matches(b"%PDF-1.6", "sess", "SEJ-1", &card, CertKind::Residence, 1));
        assert!(!b.matches(body, "other", "SEJ-1", &card, CertKind::Residence, 1));
        assert!(!b.matches(body, "sess", "SEJ-2", &card, CertKind::Residence, 1));
        assert!(!b.matches(body, "sess", "SEJ-1", &card, CertKind::Seal, 1));
        assert!(!b.matches(body, "sess", "SEJ-1", &card, CertKind::Residence, 2));
        let other = CardId::parse("0123456789ABCDEE").expect("valid");
        assert!(!b.matches(body, "sess", "SEJ-1", &other, CertKind::Residence, 1));
    }
}
