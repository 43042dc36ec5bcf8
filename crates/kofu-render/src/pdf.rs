//! Turns a paginated body into PDF bytes with pdf-writer. Object numbers, fonts and the
//! file id depend only on the request, so the same request always yields the same bytes.

use pdf_writer::{Finish, Name, Pdf, Rect, Ref, TextStr};
use sha2::{Digest, Sha256};

use crate::RenderRequest;
use crate::content::{BOLD_FONT, REGULAR_FONT, Stream};
use crate::layout::{Flow, LEFT, TEXT_WIDTH};
use crate::text;

const PAGE_WIDTH: f32 = 595.28;
const PAGE_HEIGHT: f32 = 841.89;
/// Baseline of the first body line, and the lowest baseline a body line may take.
const BODY_TOP: u32 = 652;
const BODY_BOTTOM: u32 = 96;
/// Where the body's pen starts: one body leading above `BODY_TOP`.
const BODY_PEN_START: u32 = BODY_TOP + 15;

const CATALOG: Ref = Ref::new(1);
const PAGE_TREE: Ref = Ref::new(2);
const FONT_REGULAR: Ref = Ref::new(3);
const FONT_BOLD: Ref = Ref::new(4);
const INFO: Ref = Ref::new(5);

fn page_ref(index: usize) -> Ref {
    Ref::new(6 + 2 * index as i32)
}

fn content_ref(index: usize) -> Ref {
    Ref::new(7 + 2 * index as i32)
}

/// Writes the whole document: every page gets the same header and footer around its
/// share of the body. Returns the bytes and the page count.
pub(crate) fn write(req: &RenderRequest<'_>, flow: &Flow) -> (Vec<u8>, u32) {
    let pages = flow.paginate(BODY_PEN_START - BODY_BOTTOM);
    let n = pages.len();
    let mut pdf = Pdf::with_capacity(2048 + 2048 * n);

    let id = file_id(req).to_vec();
    pdf.set_file_id((id.clone(), id));
    pdf.catalog(CATALOG).pages(PAGE_TREE);
    pdf.pages(PAGE_TREE)
        .kids((0..n).map(page_ref))
        .count(i32::try_from(n).unwrap_or(i32::MAX));
    for (id, base) in [(FONT_REGULAR, "Helvetica"), (FONT_BOLD, "Helvetica-Bold")] {
        pdf.type1_font(id)
            .base_font(Name(base.as_bytes()))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    pdf.document_info(INFO)
        .title(TextStr(req.kind.title()))
        .producer(TextStr("kofu"));

    let header = Header::new(req);
    let mut stream = Stream::with_capacity(2048);
    let mut scratch = Vec::with_capacity(32);
    for (index, range) in pages.into_iter().enumerate() {
        stream.clear();
        stream.begin_text();
        header.draw(&mut stream, &mut scratch, index + 1, n);
        let mut y = BODY_PEN_START;
        for (line, advance) in flow.page_lines(range) {
            y = y.saturating_sub(advance);
            let style = line.style;
            stream.text(style.bold(), style.size(), LEFT, y, flow.text_of(line));
        }
        header.draw_footer(&mut stream);
        stream.end_text();
        for rule_y in [674, 80] {
            stream.rule(LEFT, LEFT + TEXT_WIDTH, rule_y);
        }

        let mut page = pdf.page(page_ref(index));
        page.parent(PAGE_TREE)
            .media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT))
            .contents(content_ref(index));
        page.resources()
            .fonts()
            .pair(Name(REGULAR_FONT), FONT_REGULAR)
            .pair(Name(BOLD_FONT), FONT_BOLD);
        page.finish();
        pdf.stream(content_ref(index), stream.as_bytes());
    }
    (pdf.finish(), u32::try_from(n).unwrap_or(u32::MAX))
}

/// The trailer /ID: stable for a (serial, record version), as a re-render must match.
fn file_id(req: &RenderRequest<'_>) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"kofu-doc-id-v1\0");
    h.update(req.serial.as_bytes());
    h.update(b"\0");
    h.update(req.record.version.to_be_bytes());
    let digest = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

/// The per-document part of every page's header and footer, encoded once.
struct Header {
    issuer: Vec<u8>,
    code: Vec<u8>,
    title: &'static str,
    requester: Vec<u8>,
    serial: Vec<u8>,
    issued: Vec<u8>,
    copies: Vec<u8>,
    footer: Vec<u8>,
}

impl Header {
    fn new(req: &RenderRequest<'_>) -> Header {
        let r = req.record;
        let enc = |prefix: &str, value: &str| {
            let mut v = Vec::with_capacity(prefix.len() + value.len());
            v.extend_from_slice(prefix.as_bytes());
            text::push_win_ansi(&mut v, value);
            v
        };
        // RFC 3339: the calendar date is everything before the `T`.
        let date = req
            .issued_at
            .split_once(['T', 't'])
            .map_or(req.issued_at, |(d, _)| d);
        let mut copies = b"Copies: ".to_vec();
        text::push_u64(&mut copies, u64::from(req.copies));
        let mut footer = enc("Serial ", req.serial);
        footer.extend_from_slice(b", record version ");
        text::push_u64(&mut footer, r.version);
        footer.extend_from_slice(b". Any alteration voids this certificate.");
        Header {
            issuer: enc("Issued by the Mayor of ", &r.municipality.name),
            code: enc("Municipality code: ", &r.municipality.code),
            title: req.kind.title(),
            requester: enc("Requested by ", &r.full_name),
            serial: enc("Serial: ", req.serial),
            issued: enc("Issued: ", date),
            copies,
            footer,
        }
    }

    fn draw(&self, s: &mut Stream, scratch: &mut Vec<u8>, page: usize, n: usize) {
        s.text(true, 11, LEFT, 800, &self.issuer);
        s.text(false, 9, LEFT, 787, &self.code);
        s.text(true, 18, LEFT, 758, self.title.as_bytes());
        s.text(false, 10, LEFT, 738, &self.requester);
        s.text(false, 10, LEFT, 724, &self.serial);
        s.text(false, 10, LEFT, 710, &self.issued);
        s.text(false, 10, LEFT, 696, &self.copies);
        scratch.clear();
        scratch.extend_from_slice(b"Page ");
        text::push_u64(scratch, page as u64);
        scratch.push(b'/');
        text::push_u64(scratch, n as u64);
        s.text(false, 10, LEFT, 682, scratch);
    }

    fn draw_footer(&self, s: &mut Stream) {
        s.text(
            false,
            8,
            LEFT,
            68,
            b"Valid only with the issuer's binding signature (Kofu-Binding, Kofu-Signature) over these exact bytes.",
        );
        s.text(false, 8, LEFT, 58, &self.footer);
    }
}
