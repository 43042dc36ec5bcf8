//! BENCH-ONLY: the conventional design's document: a minimal one-page PDF (the kind's
//! title, the holder's name, the serial and the issue date) and the issuer-signed
//! binding of API.md over it. Text goes through `kofu_proto::doctext` so that a kiosk's
//! byte-level name check reads it as it reads kofu's; the font is a predefined Japanese
//! CID font, referenced and not embedded.

use ed25519_dalek::Signer as _;
use kofu_core::records::ResidentRecord;
use kofu_proto::doctext::push_text;
use kofu_proto::{ApiError, Binding, CertKind, ErrorCode};
use pdf_writer::types::{CidFontType, FontFlags, SystemInfo};
use pdf_writer::{Finish as _, Name, Pdf, Rect, Ref, Str};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::Reference;

/// A released document as the conventional design keeps it in Redis: the headers
/// already encoded, so a fetch only copies.
#[derive(Serialize, Deserialize)]
pub(crate) struct Doc {
    #[serde(with = "serde_bytes")]
    pub(crate) pdf: Vec<u8>,
    pub(crate) binding: String,
    pub(crate) signature: String,
}

/// What a job asks for.
pub(crate) struct Order<'a> {
    pub(crate) session_id: &'a str,
    pub(crate) kiosk_id: &'a str,
    pub(crate) kind: CertKind,
    pub(crate) copies: u8,
    pub(crate) serial: &'a str,
}

/// Renders and signs the document of `order` for `record`.
pub(crate) fn issue(
    r: &Reference,
    record: &ResidentRecord,
    order: &Order<'_>,
) -> Result<Doc, ApiError> {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    let issued_at = (time::OffsetDateTime::now_utc().format(format))
        .map_err(|_| ApiError::new(ErrorCode::Internal))?;
    let date = issued_at.get(..10).unwrap_or(&issued_at);
    let pdf = render(&record.full_name, order.kind.title(), order.serial, date);
    let binding = Binding {
        v: 1,
        kid: r.kid.clone(),
        serial: order.serial.to_owned(),
        session_id: order.session_id.to_owned(),
        kiosk_id: order.kiosk_id.to_owned(),
        card_digest: record.card_id.digest(),
        kind: order.kind,
        copies: order.copies,
        record_version: record.version,
        issued_at: issued_at.clone(),
        doc_sha256: hex::encode(Sha256::digest(&pdf)),
    };
    let bytes = binding.to_bytes();
    let signature = r.issuer.sign(&bytes).to_bytes();
    Ok(Doc {
        pdf,
        binding: kofu_proto::b64url(&bytes),
        signature: kofu_proto::b64url(&signature),
    })
}

const FONT: &[u8] = b"HeiseiMin-W3";

fn render(name: &str, title: &str, serial: &str, date: &str) -> Vec<u8> {
    let [catalog, pages, page, font, cid, descriptor, content] =
        [1, 2, 3, 4, 5, 6, 7].map(Ref::new);
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(pages);
    pdf.pages(pages).kids([page]).count(1);
    let mut p = pdf.page(page);
    p.parent(pages)
        .media_box(Rect::new(0.0, 0.0, 595.28, 841.89))
        .contents(content);
    p.resources().fonts().pair(Name(b"F1"), font);
    p.finish();
    pdf.type0_font(font)
        .base_font(Name(FONT))
        .encoding_predefined(Name(b"UniJIS-UTF16-H"))
        .descendant_font(cid);
    pdf.cid_font(cid)
        .subtype(CidFontType::Type0)
        .base_font(Name(FONT))
        .system_info(SystemInfo {
            registry: Str(b"Adobe"),
            ordering: Str(b"Japan1"),
            supplement: 2,
        })
        .font_descriptor(descriptor)
        .default_width(1000.0);
    pdf.font_descriptor(descriptor)
        .name(Name(FONT))
        .flags(FontFlags::SYMBOLIC | FontFlags::SERIF)
        .bbox(Rect::new(-123.0, -257.0, 1001.0, 910.0))
        .italic_angle(0.0)
        .ascent(723.0)
        .descent(-241.0)
        .cap_height(709.0)
        .stem_v(69.0);
    let mut c = Vec::with_capacity(512);
    c.extend_from_slice(b"BT\n/F1 18 Tf\n72 760 Td\n");
    for (text, next) in [
        (title, &b" Tj\n/F1 14 Tf\n0 -36 Td\n"[..]),
        (name, b" Tj\n0 -24 Td\n"),
        (serial, b" Tj\n0 -24 Td\n"),
        (date, b" Tj\nET\n"),
    ] {
        push_text(&mut c, text);
        c.extend_from_slice(next);
    }
    pdf.stream(content, &c);
    pdf.finish()
}
