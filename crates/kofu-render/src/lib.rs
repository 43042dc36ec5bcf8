//! kofu's certificate renderer: turns one resident record into a deterministic PDF and
//! the issuer-signed binding that ties it to one session, kiosk and card (invariant I1).
//! Pure CPU: no I/O, no clocks, no shared buffers — each call owns everything it writes.

mod content;
mod kinds;
mod layout;
mod pdf;
mod text;

use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use kofu_core::records::ResidentRecord;
use kofu_proto::verify::{Expected, verify_release};
use kofu_proto::{Binding, CertKind, Document};
use sha2::{Digest, Sha256};

/// The municipality's issuing key, which signs every document binding.
#[derive(Clone)]
pub struct Issuer {
    key: SigningKey,
}

impl Issuer {
    pub fn from_seed(seed: [u8; 32]) -> Issuer {
        Issuer {
            key: SigningKey::from_bytes(&seed),
        }
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The key as served by `GET /v1/issuer-key`.
    pub fn public_key_b64(&self) -> String {
        kofu_proto::b64url(&self.public_key())
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

impl std::fmt::Debug for Issuer {
    // The secret half must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
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
    let binding = Binding {
        v: 1,
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
    let signature = issuer.sign(&bytes);
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
    let flow = kinds::body(req.record, req.kind);
    pdf::write(req, &flow)
}

/// Self-check before release: verifies the document exactly as a kiosk will (signature
/// over the header bytes, body digest, session, kiosk, card, kind, copies) and that the
/// signed binding is the one this document carries. False on any mismatch.
pub fn self_check(issuer_public: &VerifyingKey, doc: &Rendered, expected: &Expected<'_>) -> bool {
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
