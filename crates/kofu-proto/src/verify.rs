//! The kiosk's check before printing (API.md, endpoint 4), in one place so that the
//! demo, the tests and the load generator all verify documents the same strict way.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::{Binding, CardId, CertKind};

/// Why a released document must not be printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("binding header is not base64url")]
    BindingEncoding,
    #[error("binding is not valid binding json")]
    BindingJson,
    #[error("signature header is not a base64url ed25519 signature")]
    SignatureEncoding,
    #[error("issuer signature does not verify")]
    Signature,
    #[error("binding does not match this session's request or the body")]
    Mismatch,
    #[error("issuer key is not a valid ed25519 public key")]
    IssuerKey,
}

/// What the kiosk knows about its own request.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub session_id: &'a str,
    pub kiosk_id: &'a str,
    pub card: &'a CardId,
    pub kind: CertKind,
    pub copies: u8,
}

/// Parses an issuer key as served by `GET /v1/issuer-key`.
pub fn issuer_key(public_key_b64: &str) -> Result<VerifyingKey, VerifyError> {
    let raw = crate::b64url_decode(public_key_b64).ok_or(VerifyError::IssuerKey)?;
    let bytes: [u8; 32] = raw.try_into().map_err(|_| VerifyError::IssuerKey)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| VerifyError::IssuerKey)
}

/// Verifies a released document and returns its binding. Order matters: the signature
/// is checked over the exact header bytes before any field is trusted.
pub fn verify_release(
    issuer: &VerifyingKey,
    body: &[u8],
    binding_b64: &str,
    signature_b64: &str,
    expected: &Expected<'_>,
) -> Result<Binding, VerifyError> {
    let binding_bytes = crate::b64url_decode(binding_b64).ok_or(VerifyError::BindingEncoding)?;
    let sig_raw = crate::b64url_decode(signature_b64).ok_or(VerifyError::SignatureEncoding)?;
    let sig_bytes: [u8; 64] = sig_raw
        .try_into()
        .map_err(|_| VerifyError::SignatureEncoding)?;
    issuer
        .verify_strict(&binding_bytes, &Signature::from_bytes(&sig_bytes))
        .map_err(|_| VerifyError::Signature)?;
    let binding = Binding::from_bytes(&binding_bytes).map_err(|_| VerifyError::BindingJson)?;
    if !binding.matches(
        body,
        expected.session_id,
        expected.kiosk_id,
        expected.card,
        expected.kind,
        expected.copies,
    ) {
        return Err(VerifyError::Mismatch);
    }
    Ok(binding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use sha2::{Digest, Sha256};

    #[test]
    fn accepts_the_genuine_and_refuses_every_alteration() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let card = CardId::parse("00000000000000AA").expect("valid");
        let body = b"%PDF-1.7 body".to_vec();
        let binding = Binding {
            v: 1,
            serial: "S".into(),
            session_id: "sess".into(),
            kiosk_id: "K01".into(),
            card_digest: card.digest(),
            kind: CertKind::Tax,
            copies: 2,
            record_version: 1,
            issued_at: "2026-11-21T09:00:00Z".into(),
            doc_sha256: hex::encode(Sha256::digest(&body)),
        };
        let bytes = binding.to_bytes();
        let sig = key.sign(&bytes).to_bytes();
        let exp = Expected {
            session_id: "sess",
            kiosk_id: "K01",
            card: &card,
            kind: CertKind::Tax,
            copies: 2,
        };
        let pk = key.verifying_key();
        let (b64b, b64s) = (crate::b64url(&bytes), crate::b64url(&sig));
        assert_eq!(
            verify_release(&pk, &body, &b64b, &b64s, &exp),
            Ok(binding.clone())
        );

        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert_eq!(
            verify_release(&other, &body, &b64b, &b64s, &exp),
            Err(VerifyError::Signature)
        );
        assert_eq!(
            verify_release(&pk, b"%PDF-1.7 bodY", &b64b, &b64s, &exp),
            Err(VerifyError::Mismatch)
        );
        let mut tampered = bytes.clone();
        tampered[10] ^= 1;
        assert_eq!(
            verify_release(&pk, &body, &crate::b64url(&tampered), &b64s, &exp),
            Err(VerifyError::Signature)
        );
        let wrong_session = Expected {
            session_id: "other",
            ..exp.clone()
        };
        assert_eq!(
            verify_release(&pk, &body, &b64b, &b64s, &wrong_session),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_release(&pk, &body, "***", &b64s, &exp),
            Err(VerifyError::BindingEncoding)
        );
    }
}
