//! The kiosk's check before printing (API.md endpoint 4, I1): the issuer's signature over
//! the binding, the binding against the kiosk's own order, then the document's text: the
//! holder's name present and no name from outside the holder's household. The text is
//! read either from the PDF's bytes in-process (cheap enough for every document of a load
//! run) or, strictly, as `pdftotext` extracts it (what a person would read).

use kofu_proto::Binding;
pub use kofu_proto::verify::Expected;
use kofu_proto::verify::{IssuerKeys, VerifyError, verify_release};

use crate::fixtures::{Card, Fixtures};
use crate::kiosk::Released;
use crate::names::normalize_spaces;

/// How a document's text is read for the name checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextCheck {
    /// A search of the raw PDF bytes for every resident's name at once, in-process.
    Bytes,
    /// The text `pdftotext -layout` extracts (one child process per document): the
    /// holder's name as a whole word, the kind's title, the serial, the issue date, and
    /// no other household's name.
    Pdftotext,
}

/// A document that passed the check.
#[derive(Clone)]
pub struct Verified {
    pub binding: Binding,
    /// The extracted text, with [`TextCheck::Pdftotext`].
    pub text: Option<String>,
}

impl std::fmt::Debug for Verified {
    // The text names people: the serial only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verified({} {})", self.binding.kind, self.binding.serial)
    }
}

/// Pages of an extracted text, as `pdftotext` separates them (a form feed after each).
pub(crate) fn pages(text: &str) -> u32 {
    let feeds = text.matches('\u{c}').count();
    u32::try_from(feeds.max(1)).unwrap_or(u32::MAX)
}

/// Why a document must not be printed. Never names a person: counts and fixed texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("document content-type is {0:?}")]
    NotPdf(String),
    #[error("document without {0} header")]
    MissingHeader(&'static str),
    #[error("document refused by the kiosk check: {0}")]
    Release(VerifyError),
    #[error("the card is not one of the fixtures")]
    UnknownCard,
    #[error("{what}: the holder's name is missing from the text")]
    HolderMissing { what: String },
    #[error("{what}: {part} missing from the text")]
    Missing { what: String, part: String },
    #[error(
        "{what}: CROSS-DELIVERY: the text names {count} person(s) outside the holder's household"
    )]
    ForeignNames { what: String, count: usize },
    #[error("cannot read the document's text: {0}")]
    Extract(String),
}

/// The check of a released document against the kiosk's order (`Expected`: session,
/// kiosk, card, kind, copies) and the population.
#[derive(Debug, Clone, Copy)]
pub struct Verifier<'a> {
    pub fixtures: &'a Fixtures,
    /// Every issuer key the kiosk trusts (`GET /v1/issuer-key`'s `keys`); a document
    /// is verified with the one its binding's `kid` names.
    pub issuer: &'a IssuerKeys,
    pub text: TextCheck,
}

impl Verifier<'_> {
    /// Checks `doc`; a `pdftotext` child process does not block the async runtime.
    pub async fn verify(&self, doc: &Released, order: &Expected<'_>) -> Result<Verified, Refusal> {
        let binding = self.signed(doc, order)?;
        let card = self
            .fixtures
            .index_of(order.card)
            .ok_or(Refusal::UnknownCard)?;
        match self.text {
            TextCheck::Bytes => self.bytes(doc, card, binding),
            TextCheck::Pdftotext => {
                let text = crate::pdftotext::pdf_text(&doc.body)
                    .await
                    .map_err(|e| Refusal::Extract(e.to_string()))?;
                self.text(&self.fixtures.cards[card], binding, text)
            }
        }
    }

    /// The binding, trusted only once the issuer's signature over it verified and every
    /// field matched the order and the body.
    fn signed(&self, doc: &Released, order: &Expected<'_>) -> Result<Binding, Refusal> {
        let ctype = doc.content_type().unwrap_or_default();
        if !ctype.starts_with("application/pdf") {
            return Err(Refusal::NotPdf(ctype.to_owned()));
        }
        let binding = doc
            .binding()
            .ok_or(Refusal::MissingHeader(kofu_proto::api::BINDING_HEADER))?;
        let signature = doc
            .signature()
            .ok_or(Refusal::MissingHeader(kofu_proto::api::SIGNATURE_HEADER))?;
        verify_release(self.issuer, &doc.body, binding, signature, order).map_err(Refusal::Release)
    }

    /// `card` is the holder's position in the fixtures.
    fn bytes(&self, doc: &Released, card: usize, binding: Binding) -> Result<Verified, Refusal> {
        let household = self.fixtures.cards[card].household;
        let found = self.fixtures.names().scan(&doc.body, card, household);
        let what = || describe(&binding);
        if !found.holder {
            return Err(Refusal::HolderMissing { what: what() });
        }
        if found.foreign > 0 {
            return Err(Refusal::ForeignNames {
                what: what(),
                count: found.foreign,
            });
        }
        Ok(Verified {
            binding,
            text: None,
        })
    }

    fn text(&self, card: &Card, binding: Binding, raw: String) -> Result<Verified, Refusal> {
        let text = normalize_spaces(&raw);
        let what = describe(&binding);
        let missing = |part: String| Refusal::Missing {
            what: what.clone(),
            part,
        };
        check_names(self.fixtures, card, &text).map_err(|e| match e {
            NameFault::Holder => Refusal::HolderMissing { what: what.clone() },
            NameFault::Foreign(count) => Refusal::ForeignNames {
                what: what.clone(),
                count,
            },
        })?;
        let title = binding.kind.title();
        if !text.contains(title) {
            return Err(missing(format!("title {title:?}")));
        }
        if !text.contains(&binding.serial) {
            return Err(missing("serial".to_owned()));
        }
        let date = binding.issued_at.get(..10).unwrap_or(&binding.issued_at);
        if !text.contains(date) {
            return Err(missing(format!("issue date {date}")));
        }
        Ok(Verified {
            binding,
            text: Some(raw),
        })
    }
}

fn describe(binding: &Binding) -> String {
    format!("{} document {}", binding.kind, binding.serial)
}

/// What the household rule found wrong in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameFault {
    /// The holder is not named.
    Holder,
    /// This many residents of other households are named.
    Foreign(usize),
}

/// The household rule on extracted text (already [`normalize_spaces`]d), page by page if
/// the caller wishes: the holder is named, and no resident outside the holder's
/// household is (members may appear on each other's residence and family-register
/// certificates).
///
/// [`normalize_spaces`]: crate::normalize_spaces
pub fn check_names(fx: &Fixtures, card: &Card, text: &str) -> Result<(), NameFault> {
    if !crate::names::contains_name(text, &card.full_name) {
        return Err(NameFault::Holder);
    }
    let foreign = fx
        .cards
        .iter()
        // A namesake in another household cannot be told apart from the holder.
        .filter(|c| c.household != card.household && c.full_name != card.full_name)
        .filter(|c| crate::names::contains_name(text, &c.full_name))
        .count();
    if foreign > 0 {
        return Err(NameFault::Foreign(foreign));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resp;
    use crate::fixtures::tests::sample;
    use ed25519_dalek::{Signer as _, SigningKey};
    use kofu_proto::CertKind;
    use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
    use sha2::{Digest as _, Sha256};

    /// A document for card 0's session, signed by `issuer`, as the kiosk receives it.
    fn released(issuer: &SigningKey, fx: &Fixtures, body: &[u8], ctype: &str) -> Released {
        let binding = Binding {
            v: 1,
            kid: kofu_proto::verify::key_id(&issuer.verifying_key()),
            serial: "S-1".into(),
            session_id: "sess".into(),
            kiosk_id: "SEJ-13104-0042-01".into(),
            card_digest: fx.cards[0].id.digest(),
            kind: CertKind::Residence,
            copies: 1,
            record_version: 1,
            issued_at: "2026-11-21T09:00:00Z".into(),
            doc_sha256: hex_sha256(body),
        };
        let bytes = binding.to_bytes();
        let mut headers = HeaderMap::new();
        let header = |v: String| HeaderValue::from_str(&v).expect("header");
        headers.insert(CONTENT_TYPE, header(ctype.to_owned()));
        headers.insert(
            kofu_proto::api::BINDING_HEADER,
            header(kofu_proto::b64url(&bytes)),
        );
        headers.insert(
            kofu_proto::api::SIGNATURE_HEADER,
            header(kofu_proto::b64url(&issuer.sign(&bytes).to_bytes())),
        );
        let resp = Resp {
            status: 200,
            headers,
            body: bytes::Bytes::copy_from_slice(body),
        };
        Released::from_resp(&resp).expect("a 200 answer")
    }

    fn hex_sha256(body: &[u8]) -> String {
        Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn check(fx: &Fixtures, issuer: &SigningKey, doc: &Released) -> Result<Verified, Refusal> {
        let key = IssuerKeys::single(issuer.verifying_key());
        let verifier = Verifier {
            fixtures: fx,
            issuer: &key,
            text: TextCheck::Bytes,
        };
        let expected = Expected {
            session_id: "sess",
            kiosk_id: "SEJ-13104-0042-01",
            card: &fx.cards[0].id,
            kind: CertKind::Residence,
            copies: 1,
        };
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(verifier.verify(doc, &expected))
    }

    /// A PDF's bytes as the renderer writes names: one string operand each.
    fn pdf(names: &[&str]) -> Vec<u8> {
        let mut out = b"%PDF ".to_vec();
        for n in names {
            out.extend(kofu_proto::doctext::name_pattern(n));
        }
        out
    }

    #[test]
    fn the_household_rule_on_the_bytes() {
        let (fx, issuer) = (sample([]), SigningKey::from_bytes(&[3u8; 32]));
        let ok = released(
            &issuer,
            &fx,
            &pdf(&["YAMADA Taro", "YAMADA Hanako"]),
            "application/pdf",
        );
        assert_eq!(
            check(&fx, &issuer, &ok).map(|v| v.binding.serial),
            Ok("S-1".into())
        );
        let foreign = released(
            &issuer,
            &fx,
            &pdf(&["YAMADA Taro", "SATO Jiro"]),
            "application/pdf",
        );
        assert!(matches!(
            check(&fx, &issuer, &foreign),
            Err(Refusal::ForeignNames { count: 1, .. })
        ));
        let nobody = released(&issuer, &fx, &pdf(&["YAMADA Hanako"]), "application/pdf");
        assert!(matches!(
            check(&fx, &issuer, &nobody),
            Err(Refusal::HolderMissing { .. })
        ));
        // Personal data never reaches the refusal's text.
        let why = check(&fx, &issuer, &foreign)
            .expect_err("refused")
            .to_string();
        assert!(!why.contains("SATO") && !why.contains("YAMADA"), "{why}");
    }

    #[test]
    fn signature_and_envelope_come_first() {
        let (fx, issuer) = (sample([]), SigningKey::from_bytes(&[3u8; 32]));
        let html = released(&issuer, &fx, &pdf(&["YAMADA Taro"]), "text/html");
        assert!(matches!(
            check(&fx, &issuer, &html),
            Err(Refusal::NotPdf(_))
        ));
        let forged = released(
            &SigningKey::from_bytes(&[4u8; 32]),
            &fx,
            &pdf(&["YAMADA Taro"]),
            "application/pdf",
        );
        // Signed by a key the kiosk does not trust, under that key's own id.
        assert!(matches!(
            check(&fx, &issuer, &forged),
            Err(Refusal::Release(VerifyError::UnknownKey))
        ));
    }
}
