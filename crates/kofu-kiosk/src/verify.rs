//! The kiosk's check before printing (API.md endpoint 4, I1): the issuer's signature over
//! the binding, the binding against the kiosk's own order, then the document's text: the
//! holder's name present and no name from outside the holder's household. The text is
//! read either from the PDF's bytes in-process (cheap enough for every document of a load
//! run) or, strictly, as `pdftotext` extracts it (what a person would read).

use ed25519_dalek::VerifyingKey;
use kofu_proto::verify::{Expected, VerifyError, verify_release};
use kofu_proto::{Binding, CertKind};

use crate::fixtures::{Card, Fixtures};
use crate::kiosk::Released;
#[cfg(feature = "pdftotext")]
use crate::names::normalize_spaces;

/// How a document's text is read for the name checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextCheck {
    /// A search of the raw PDF bytes for every resident's name at once, in-process.
    Bytes,
    /// The text `pdftotext -layout` extracts (one child process per document): the
    /// holder's name as a whole word, the kind's title, the serial, the issue date, and
    /// no other household's name.
    #[cfg(feature = "pdftotext")]
    Pdftotext,
}

/// What the kiosk ordered: the binding must say exactly this.
#[derive(Debug, Clone, Copy)]
pub struct Order<'a> {
    pub session_id: &'a str,
    pub kiosk_id: &'a str,
    pub card: &'a Card,
    pub kind: CertKind,
    pub copies: u8,
}

/// A document that passed the check.
#[derive(Debug, Clone)]
pub struct Verified {
    pub binding: Binding,
    /// The extracted text, with [`TextCheck::Pdftotext`].
    pub text: Option<String>,
}

impl Verified {
    /// Pages, as `pdftotext` separates them (a form feed after each); with text only.
    pub fn pages(&self) -> Option<u32> {
        let feeds = self.text.as_ref()?.matches('\u{c}').count();
        Some(u32::try_from(feeds.max(1)).unwrap_or(u32::MAX))
    }
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

/// The check of a released document against its order and the population.
#[derive(Debug, Clone, Copy)]
pub struct Verifier<'a> {
    pub fixtures: &'a Fixtures,
    pub issuer: &'a VerifyingKey,
    pub text: TextCheck,
}

impl Verifier<'_> {
    /// Checks `doc`; a `pdftotext` child process does not block the async runtime.
    pub async fn verify(&self, doc: &Released, order: &Order<'_>) -> Result<Verified, Refusal> {
        let binding = self.signed(doc, order)?;
        match self.text {
            TextCheck::Bytes => self.bytes(doc, order, binding),
            #[cfg(feature = "pdftotext")]
            TextCheck::Pdftotext => {
                let text = crate::pdftotext::pdf_text_async(&doc.body)
                    .await
                    .map_err(|e| Refusal::Extract(e.to_string()))?;
                self.text(order.card, binding, text)
            }
        }
    }

    /// [`Verifier::verify`] for callers without a runtime (a `pdftotext` run blocks).
    pub fn verify_blocking(&self, doc: &Released, order: &Order<'_>) -> Result<Verified, Refusal> {
        let binding = self.signed(doc, order)?;
        match self.text {
            TextCheck::Bytes => self.bytes(doc, order, binding),
            #[cfg(feature = "pdftotext")]
            TextCheck::Pdftotext => {
                let text = crate::pdftotext::pdf_text(&doc.body)
                    .map_err(|e| Refusal::Extract(e.to_string()))?;
                self.text(order.card, binding, text)
            }
        }
    }

    /// The binding, trusted only once the issuer's signature over it verified and every
    /// field matched the order and the body.
    fn signed(&self, doc: &Released, order: &Order<'_>) -> Result<Binding, Refusal> {
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
        let expected = Expected {
            session_id: order.session_id,
            kiosk_id: order.kiosk_id,
            card: &order.card.id,
            kind: order.kind,
            copies: order.copies,
        };
        verify_release(self.issuer, &doc.body, binding, signature, &expected)
            .map_err(Refusal::Release)
    }

    fn bytes(
        &self,
        doc: &Released,
        order: &Order<'_>,
        binding: Binding,
    ) -> Result<Verified, Refusal> {
        let card = self
            .fixtures
            .index_of(&order.card.id)
            .ok_or(Refusal::UnknownCard)?;
        let found = self
            .fixtures
            .names()
            .scan(&doc.body, card, order.card.household);
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

    #[cfg(feature = "pdftotext")]
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
