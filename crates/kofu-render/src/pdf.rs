//! Turns a paginated body into PDF bytes with pdf-writer. Object numbers, fonts and the
//! file id depend only on the request, so the same request always yields the same bytes.
//! The fonts are predefined Adobe-Japan1 CID fonts, referenced and not embedded (see
//! FONTS.md for the measurements behind that choice).

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo};
use std::sync::LazyLock;

use pdf_writer::{Chunk, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use sha2::{Digest, Sha256};

use crate::RenderRequest;
use crate::content::{GOTHIC_FONT, MINCHO_FONT, SEAL_RED, Stream};
use crate::layout::{Decor, Flow, LEFT, RIGHT, VALUE_X};
use crate::text::{self, Face};

const PAGE_WIDTH: f32 = 595.28;
const PAGE_HEIGHT: f32 = 841.89;
/// The first body baseline's pen position and the lowest baseline a body line may take.
const BODY_PEN_START: u32 = 704;
const BODY_BOTTOM: u32 = 104;
/// Right-hand column of the header.
const HEADER_RIGHT_X: u32 = 330;

const CATALOG: Ref = Ref::new(1);
const PAGE_TREE: Ref = Ref::new(2);
const INFO: Ref = Ref::new(3);

/// A font's objects: the Type0 font pages refer to, its CID font and descriptor.
struct FontRefs {
    face: Face,
    base: &'static [u8],
    type0: Ref,
    cid: Ref,
    descriptor: Ref,
    /// Flags, bounding box, ascent, descent, cap height and stem of the resident font,
    /// which a viewer uses to pick a substitute when it lacks the font.
    serif: bool,
    bbox: [f32; 4],
    metrics: [f32; 4],
}

const FONTS: [FontRefs; 2] = [
    FontRefs {
        face: Face::Mincho,
        base: b"HeiseiMin-W3",
        type0: Ref::new(4),
        cid: Ref::new(5),
        descriptor: Ref::new(6),
        serif: true,
        bbox: [-123.0, -257.0, 1001.0, 910.0],
        metrics: [723.0, -241.0, 709.0, 69.0],
    },
    FontRefs {
        face: Face::Gothic,
        base: b"HeiseiKakuGo-W5",
        type0: Ref::new(7),
        cid: Ref::new(8),
        descriptor: Ref::new(9),
        serif: false,
        bbox: [-92.0, -250.0, 1010.0, 922.0],
        metrics: [752.0, -221.0, 737.0, 114.0],
    },
];

fn page_ref(index: usize) -> Ref {
    Ref::new(10 + 2 * index as i32)
}

fn content_ref(index: usize) -> Ref {
    Ref::new(11 + 2 * index as i32)
}

/// The font objects, the same in every document: written once per process (their
/// `/W` arrays are two hundred numbers) and copied into each PDF. Immutable after the
/// first use, so sharing them breaks no isolation between documents.
static FONT_OBJECTS: LazyLock<Chunk> = LazyLock::new(|| {
    let mut chunk = Chunk::with_capacity(2048);
    write_fonts(&mut chunk);
    chunk
});

fn write_fonts(pdf: &mut Chunk) {
    for f in &FONTS {
        pdf.type0_font(f.type0)
            .base_font(Name(f.base))
            .encoding_predefined(Name(b"UniJIS-UTF16-H"))
            .descendant_font(f.cid);
        let mut cid = pdf.cid_font(f.cid);
        cid.subtype(CidFontType::Type0)
            .base_font(Name(f.base))
            .system_info(SystemInfo {
                registry: Str(b"Adobe"),
                ordering: Str(b"Japan1"),
                // Supplement 2 is what every Heisei font carries; the population's
                // characters are checked to lie within it (tests/certificates.rs).
                supplement: 2,
            })
            .font_descriptor(f.descriptor)
            .default_width(1000.0);
        let mut w = cid.widths();
        w.consecutive(1, text::widths::of(f.face).iter().map(|&v| f32::from(v)));
        // Half-width katakana.
        w.same(327, 389, 500.0);
        w.finish();
        cid.finish();
        // CJK fonts are symbolic (bit 3); Mincho is also serif (bit 2).
        let mut flags = FontFlags::SYMBOLIC;
        if f.serif {
            flags |= FontFlags::SERIF;
        }
        let [ascent, descent, cap_height, stem_v] = f.metrics;
        let [x0, y0, x1, y1] = f.bbox;
        pdf.font_descriptor(f.descriptor)
            .name(Name(f.base))
            .flags(flags)
            .bbox(Rect::new(x0, y0, x1, y1))
            .italic_angle(0.0)
            .ascent(ascent)
            .descent(descent)
            .cap_height(cap_height)
            .stem_v(stem_v);
    }
}

/// Writes the whole document: every page gets the same header and footer around its
/// share of the body. Returns the bytes and the page count.
pub(crate) fn write(req: &RenderRequest<'_>, flow: &Flow) -> (Vec<u8>, u32) {
    let pages = flow.paginate(BODY_PEN_START - BODY_BOTTOM);
    let n = pages.len();
    let mut pdf = Pdf::with_capacity(4096 + 4096 * n);

    let id = file_id(req).to_vec();
    pdf.set_file_id((id.clone(), id));
    pdf.catalog(CATALOG).pages(PAGE_TREE);
    pdf.pages(PAGE_TREE)
        .kids((0..n).map(page_ref))
        .count(i32::try_from(n).unwrap_or(i32::MAX));
    pdf.extend(&FONT_OBJECTS);
    pdf.document_info(INFO)
        .title(TextStr(req.kind.title()))
        .producer(TextStr("kofu"));

    let header = Header::new(req);
    let mut stream = Stream::with_capacity(4096);
    for (index, range) in pages.into_iter().enumerate() {
        stream.clear();
        header.draw(&mut stream, index + 1, n);
        let mut y = BODY_PEN_START;
        for (line, advance) in flow.page_lines(range) {
            y = y.saturating_sub(advance);
            let mut last = None;
            for (piece, text) in flow.pieces_of(line) {
                stream.text(piece.face, piece.size, piece.x, y, text);
                last = Some((piece, text));
            }
            let end_x = || last.map_or(LEFT, |(p, t)| p.x + text::width_points(p.face, p.size, t));
            match line.decor {
                Decor::None => {}
                Decor::RuleAbove => stream.rule(LEFT, RIGHT, y + line.leading - 6, 5),
                Decor::ImpressionFrame => {
                    let side = line.leading - 12;
                    stream.frame(VALUE_X, y.saturating_sub(2), side, side, 8);
                }
                Decor::OfficeSeal => office_seal(&mut stream, end_x() + 10, y, &header.seal),
            }
        }
        header.draw_footer(&mut stream);
        stream.close();

        let mut page = pdf.page(page_ref(index));
        page.parent(PAGE_TREE)
            .media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT))
            .contents(content_ref(index));
        page.resources()
            .fonts()
            .pair(Name(MINCHO_FONT), FONTS[0].type0)
            .pair(Name(GOTHIC_FONT), FONTS[1].type0);
        page.finish();
        pdf.stream(content_ref(index), stream.as_bytes());
    }
    (pdf.finish(), u32::try_from(n).unwrap_or(u32::MAX))
}

/// The municipality's official seal (職印) in red: a square with `text` (e.g.
/// `新宿区長之印`) in columns of three read from the right, left edge at `x`, centred
/// on the baseline `y` of the office line.
fn office_seal(s: &mut Stream, x: u32, y: u32, text: &str) {
    const SIZE: u32 = 9;
    let chars: Vec<char> = text.chars().collect();
    let cols = chars.len().div_ceil(3).max(1) as u32;
    let side = (cols * (SIZE + 2)).max(3 * SIZE + 2) + 8;
    let bottom = (y + 4).saturating_sub(side / 2);
    s.color(SEAL_RED);
    s.frame(x, bottom, side, side, 15);
    let top = bottom + side - 4;
    let mut buf = [0u8; 4];
    for (i, c) in chars.iter().enumerate() {
        let (col, row) = (i as u32 / 3, i as u32 % 3);
        let cx = x + side - 4 - (col + 1) * (SIZE + 2) + 1;
        let cy = top.saturating_sub((row + 1) * SIZE + row);
        s.text(Face::Mincho, SIZE, cx, cy, c.encode_utf8(&mut buf));
    }
    s.color((0, 0, 0));
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

/// The per-document part of every page's header and footer, prepared once.
struct Header<'a> {
    req: &'a RenderRequest<'a>,
    title_x: u32,
    copies: String,
    footer: String,
    /// The official seal's legend: `新宿区長之印`.
    seal: String,
}

impl<'a> Header<'a> {
    fn new(req: &'a RenderRequest<'a>) -> Header<'a> {
        let title_width = text::width_points(Face::Gothic, 20, req.kind.title());
        let mut copies = String::with_capacity(8);
        text::push_u64(&mut copies, u64::from(req.copies));
        copies.push('通');
        let mut footer = String::from("記録版 ");
        text::push_u64(&mut footer, req.record.version);
        footer.push_str("　この証明書を改ざんしたものは無効です。");
        let mut seal = req.record.municipality.mayor();
        seal.push_str("之印");
        Header {
            req,
            title_x: ((PAGE_WIDTH as u32).saturating_sub(title_width)) / 2,
            copies,
            footer,
            seal,
        }
    }

    fn draw(&self, s: &mut Stream, page: usize, n: usize) {
        let r = self.req;
        s.text(Face::Gothic, 9, HEADER_RIGHT_X, 806, "証明書番号");
        s.text(Face::Mincho, 10, HEADER_RIGHT_X + 62, 806, r.serial);
        let mut mark = String::with_capacity(16);
        mark.push_str("頁 ");
        text::push_u64(&mut mark, page as u64);
        mark.push('/');
        text::push_u64(&mut mark, n as u64);
        s.text(Face::Gothic, 9, HEADER_RIGHT_X, 793, &mark);
        s.text(Face::Gothic, 20, self.title_x, 758, r.kind.title());
        s.text(Face::Gothic, 9, LEFT, 734, "請求者");
        s.text(Face::Mincho, 11, LEFT + 48, 734, &r.record.full_name);
        s.text(Face::Gothic, 9, HEADER_RIGHT_X, 734, "地方公共団体コード");
        s.text(
            Face::Mincho,
            10,
            HEADER_RIGHT_X + 90,
            734,
            &r.record.municipality.code,
        );
        s.text(Face::Gothic, 9, LEFT, 720, "交付部数");
        s.text(Face::Mincho, 10, LEFT + 48, 720, &self.copies);
        s.text(Face::Gothic, 9, HEADER_RIGHT_X, 720, "発行日時（UTC）");
        s.text(Face::Mincho, 10, HEADER_RIGHT_X + 90, 720, r.issued_at);
        s.rule(LEFT, RIGHT, 710, 10);
    }

    fn draw_footer(&self, s: &mut Stream) {
        s.rule(LEFT, RIGHT, 92, 5);
        s.text(
            Face::Mincho,
            8,
            LEFT,
            80,
            "この証明書は、発行者の電子署名（Kofu-Binding, Kofu-Signature）がこの内容と一致する場合に限り有効です。",
        );
        s.text(Face::Mincho, 8, LEFT, 68, &self.footer);
    }
}
