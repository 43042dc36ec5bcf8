//! The kiosk's check before printing (API.md, endpoint 4), in one place so that the
//! demo, the tests and the load generator all verify documents the same strict way.

use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::api::IssuerKeyResponse;
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
    #[error("the binding names an issuer key id this kiosk does not trust")]
    UnknownKey,
}

/// What the kiosk knows about its own request.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub session_id: &'a str,
    pub kiosk_id: &'a str,
    pub kind: CertKind,
    pub copies: u8,
    pub card: &'a CardId,
}

/// Parses an issuer key as served by `GET /v1/issuer-key`.
pub fn issuer_key(public_key_b64: &str) -> Result<VerifyingKey, VerifyError> {
    let raw = crate::b64url_decode(public_key_b64).ok_or(VerifyError::IssuerKey)?;
    let bytes: [u8; 32] = raw.try_into().map_err(|_| VerifyError::IssuerKey)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| VerifyError::IssuerKey)
}

/// The id of an issuer key: the first 8 bytes of the SHA-256 of its 32 public-key
/// bytes, as 16 lower-case hex digits. Derived from the key, so every node computes the
/// same id for the same key without configuring one.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// The issuer keys a kiosk trusts, by key id: every key `GET /v1/issuer-key` lists
/// (current, next and retired alike), so that a document signed by either side of a
/// rotation verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerKeys {
    keys: Vec<(String, VerifyingKey)>,
}

impl IssuerKeys {
    /// Trusts exactly `key`.
    pub fn single(key: VerifyingKey) -> IssuerKeys {
        IssuerKeys {
            keys: vec![(key_id(&key), key)],
        }
    }

    /// Trusts `keys` (duplicates are kept once).
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> IssuerKeys {
        let mut set = IssuerKeys { keys: Vec::new() };
        for key in keys {
            set.insert(key);
        }
        set
    }

    fn insert(&mut self, key: VerifyingKey) {
        if !self.keys.iter().any(|(_, k)| *k == key) {
            self.keys.push((key_id(&key), key));
        }
    }

    /// The key set a node publishes; refused whole if a key is malformed or its `kid`
    /// is not the id of its key (a kiosk must not be told to trust a key by a wrong
    /// name).
    pub fn from_response(resp: &IssuerKeyResponse) -> Result<IssuerKeys, VerifyError> {
        let named = |kid: &str, public_key: &str| {
            let key = issuer_key(public_key)?;
            if key_id(&key) == kid {
                Ok(key)
            } else {
                Err(VerifyError::IssuerKey)
            }
        };
        let current = named(&resp.kid, &resp.public_key)?;
        let mut set = IssuerKeys::single(current);
        for k in &resp.keys {
            set.insert(named(&k.kid, &k.public_key)?);
        }
        Ok(set)
    }

    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|(id, _)| id == kid).map(|(_, k)| k)
    }

    /// The ids trusted, in the order they were added.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    /// Also trusts every key of `other` (a kiosk that refetched the key set keeps
    /// trusting what it knew, e.g. while documents signed before are checked).
    pub fn merge(&mut self, other: &IssuerKeys) {
        for (_, key) in &other.keys {
            self.insert(*key);
        }
    }
}

impl From<VerifyingKey> for IssuerKeys {
    fn from(key: VerifyingKey) -> IssuerKeys {
        IssuerKeys::single(key)
    }
}

/// The one field read from a binding before its signature is checked: it only selects
/// which trusted key must verify the signature, and is trusted by nothing else.
#[derive(Deserialize)]
struct KidOnly {
    kid: String,
}

/// Verifies a released document and returns its binding. Order matters: the signature
/// is checked over the exact header bytes, with the trusted key the binding's `kid`
/// names, before any field is trusted.
pub fn verify_release(
    issuer: &IssuerKeys,
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
    let kid: KidOnly =
        serde_json::from_slice(&binding_bytes).map_err(|_| VerifyError::BindingJson)?;
    let key = issuer.get(&kid.kid).ok_or(VerifyError::UnknownKey)?;
    key.verify_strict(&binding_bytes, &Signature::from_bytes(&sig_bytes))
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
    use crate::api::{KeyStatus, PublishedKey};
    use ed25519_dalek::{Signer, SigningKey};

    /// What the kiosk ordered in these tests (as [`binding_of`] binds it).
    fn expected(card: &CardId) -> Expected<'_> {
        Expected {
            session_id: "sess",
            kiosk_id: "K01",
            card,
            kind: CertKind::Tax,
            copies: 2,
        }
    }

    fn binding_of(key: &SigningKey, body: &[u8], card: &CardId) -> Binding {
        Binding {
            v: 1,
            kid: key_id(&key.verifying_key()),
            serial: "S".into(),
            session_id: "sess".into(),
            kiosk_id: "K01".into(),
            card_digest: card.digest(),
            kind: CertKind::Tax,
            copies: 2,
            record_version: 1,
            issued_at: "2026-11-21T09:00:00Z".into(),
            doc_sha256: hex::encode(Sha256::digest(body)),
        }
    }

    fn signed(key: &SigningKey, body: &[u8], card: &CardId) -> (Binding, String, String) {
        let binding = binding_of(key, body, card);
        let bytes = binding.to_bytes();
        let sig = key.sign(&bytes).to_bytes();
        (binding, crate::b64url(&bytes), crate::b64url(&sig))
    }

    #[test]
    fn key_ids_are_sixteen_hex_digits_of_the_key_hash() {
        let pk = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        let kid = key_id(&pk);
        assert_eq!(kid.len(), 16);
        assert!(
            kid.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_uppercase())
        );
        assert_eq!(kid, hex::encode(&Sha256::digest(pk.to_bytes())[..8]));
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert_ne!(key_id(&other), kid);
    }

    #[test]
    fn a_key_set_verifies_documents_of_each_key_and_no_other() {
        let (old, new) = (
            SigningKey::from_bytes(&[7u8; 32]),
            SigningKey::from_bytes(&[9u8; 32]),
        );
        let card = CardId::parse("00000000000000AA").expect("valid");
        let body = b"%PDF-1.7 body";
        let exp = expected(&card);
        let b64 = crate::b64url;
        let resp = IssuerKeyResponse {
            alg: "ed25519".into(),
            public_key: b64(old.verifying_key().as_bytes()),
            kid: key_id(&old.verifying_key()),
            keys: vec![
                PublishedKey {
                    kid: key_id(&old.verifying_key()),
                    public_key: b64(old.verifying_key().as_bytes()),
                    status: KeyStatus::Current,
                },
                PublishedKey {
                    kid: key_id(&new.verifying_key()),
                    public_key: b64(new.verifying_key().as_bytes()),
                    status: KeyStatus::Next,
                },
            ],
        };
        let both = IssuerKeys::from_response(&resp).expect("key set");
        assert_eq!(both.kids().count(), 2);
        for key in [&old, &new] {
            let (binding, bb, sb) = signed(key, body, &card);
            assert_eq!(verify_release(&both, body, &bb, &sb, &exp), Ok(binding));
        }
        // Only the old key trusted: the new key's documents name a key it does not know.
        let only_old = IssuerKeys::single(old.verifying_key());
        let (_, bb, sb) = signed(&new, body, &card);
        assert_eq!(
            verify_release(&only_old, body, &bb, &sb, &exp),
            Err(VerifyError::UnknownKey)
        );
        // A binding naming the old key but signed by the new one.
        let (mut binding, _, _) = signed(&new, body, &card);
        binding.kid = key_id(&old.verifying_key());
        let forged = binding.to_bytes();
        let sig = new.sign(&forged).to_bytes();
        assert_eq!(
            verify_release(&both, body, &b64(&forged), &b64(&sig), &exp),
            Err(VerifyError::Signature)
        );
        // A published kid that is not its key's id is refused whole.
        let mut lying = resp.clone();
        lying.keys[1].kid = key_id(&old.verifying_key());
        assert_eq!(
            IssuerKeys::from_response(&lying),
            Err(VerifyError::IssuerKey)
        );
        let mut merged = only_old.clone();
        merged.merge(&both);
        assert_eq!(merged, both);
    }

    #[test]
    fn accepts_the_genuine_and_refuses_every_alteration() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let card = CardId::parse("00000000000000AA").expect("valid");
        let body = b"%PDF-1.7 body".to_vec();
        let binding = binding_of(&key, &body, &card);
        let bytes = binding.to_bytes();
        let sig = key.sign(&bytes).to_bytes();
        let exp = expected(&card);
        let pk = IssuerKeys::single(key.verifying_key());
        let (b64b, b64s) = (crate::b64url(&bytes), crate::b64url(&sig));
        assert_eq!(
            verify_release(&pk, &body, &b64b, &b64s, &exp),
            Ok(binding.clone())
        );

        // A key set that holds another key under this key's id (never published so:
        // `from_response` refuses it) still does not verify.
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        let impostor = IssuerKeys {
            keys: vec![(key_id(&key.verifying_key()), other)],
        };
        assert_eq!(
            verify_release(&impostor, &body, &b64b, &b64s, &exp),
            Err(VerifyError::Signature)
        );
        assert_eq!(
            verify_release(&pk, b"%PDF-1.7 bodY", &b64b, &b64s, &exp),
            Err(VerifyError::Mismatch)
        );
        // The issue year altered: still a well-formed binding naming the right key.
        let at = bytes.windows(4).position(|w| w == b"2026").expect("year");
        let mut tampered = bytes.clone();
        tampered[at] ^= 1;
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
