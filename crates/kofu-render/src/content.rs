//! A minimal content-stream writer for the few operators a certificate uses. Profiling
//! showed pdf-writer's general `Content` builder (operand bookkeeping, float formatting)
//! costing half of the PDF time; certificates need only text, rules and frames. Every
//! string goes through `kofu_proto::doctext`, the encoding contract verifiers rely on.

use std::fmt::Write as _;

use kofu_proto::doctext;

use crate::text::Face;

/// Names under which every page's resources list the two fonts.
pub(crate) const MINCHO_FONT: &[u8] = b"F1";
pub(crate) const GOTHIC_FONT: &[u8] = b"F2";

/// The red of a municipality's official seal.
pub(crate) const SEAL_RED: (u8, u8, u8) = (80, 5, 5);

/// One page's content stream; the buffer is reused from page to page of a document.
#[derive(Debug)]
pub(crate) struct Stream {
    buf: Vec<u8>,
    font: Option<(Face, u32)>,
    in_text: bool,
}

impl Stream {
    pub(crate) fn with_capacity(capacity: usize) -> Stream {
        Stream {
            buf: Vec::with_capacity(capacity),
            font: None,
            in_text: false,
        }
    }

    /// Starts a new page: the text state does not carry over between content streams.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.font = None;
        self.in_text = false;
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    fn begin_text(&mut self) {
        if !self.in_text {
            self.buf.extend_from_slice(b"BT\n");
            self.in_text = true;
            // Tf is part of the text state but re-stated per text object for clarity.
            self.font = None;
        }
    }

    fn end_text(&mut self) {
        if self.in_text {
            self.buf.extend_from_slice(b"ET\n");
            self.in_text = false;
        }
    }

    /// Shows `text` (one string operand) with its baseline starting at (`x`, `y`).
    pub(crate) fn text(&mut self, face: Face, size: u32, x: u32, y: u32, text: &str) {
        self.begin_text();
        if self.font != Some((face, size)) {
            self.buf.push(b'/');
            self.buf.extend_from_slice(match face {
                Face::Mincho => MINCHO_FONT,
                Face::Gothic => GOTHIC_FONT,
            });
            self.push_num(size);
            self.buf.extend_from_slice(b" Tf\n");
            self.font = Some((face, size));
        }
        self.buf.extend_from_slice(b"1 0 0 1");
        self.push_num(x);
        self.push_num(y);
        self.buf.extend_from_slice(b" Tm\n");
        doctext::push_text(&mut self.buf, text);
        self.buf.extend_from_slice(b" Tj\n");
    }

    /// Sets the fill (text) and stroke colour, in percent of full intensity. Colour
    /// operators are allowed inside a text object, so an open one stays open.
    pub(crate) fn color(&mut self, (r, g, b): (u8, u8, u8)) {
        let (r, g, b) = (percent(r), percent(g), percent(b));
        let _ = write!(Buf(&mut self.buf), "{r}{g}{b}rg\n{r}{g}{b}RG\n");
    }

    /// A horizontal rule from `x0` to `x1` at height `y`.
    pub(crate) fn rule(&mut self, x0: u32, x1: u32, y: u32, width_tenths: u32) {
        self.end_text();
        self.push_line_width(width_tenths);
        self.push_num(x0);
        self.push_num(y);
        self.buf.extend_from_slice(b" m");
        self.push_num(x1);
        self.push_num(y);
        self.buf.extend_from_slice(b" l S\n");
    }

    /// A stroked rectangle with its lower left corner at (`x`, `y`).
    pub(crate) fn frame(&mut self, x: u32, y: u32, w: u32, h: u32, width_tenths: u32) {
        self.end_text();
        self.push_line_width(width_tenths);
        for v in [x, y, w, h] {
            self.push_num(v);
        }
        self.buf.extend_from_slice(b" re S\n");
    }

    /// Closes any open text object; call before handing the stream to the PDF.
    pub(crate) fn close(&mut self) {
        self.end_text();
    }

    fn push_line_width(&mut self, tenths: u32) {
        let _ = writeln!(Buf(&mut self.buf), "{}.{} w", tenths / 10, tenths % 10);
    }

    /// A space and the decimal digits of `v`, without the formatting machinery: a page
    /// writes a few hundred of them.
    fn push_num(&mut self, mut v: u32) {
        let mut digits = [0u8; 11];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        i -= 1;
        digits[i] = b' ';
        self.buf.extend_from_slice(&digits[i..]);
    }
}

/// `0.85` for 85 percent; `1` and `0` without decimals.
fn percent(v: u8) -> String {
    match v {
        0 => "0 ".to_owned(),
        100.. => "1 ".to_owned(),
        v => format!("0.{v:02} "),
    }
}

/// `fmt::Write` over a byte buffer, for numbers without a temporary String.
struct Buf<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Buf<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_a_hex_operand_and_fonts_change_only_when_needed() {
        let mut s = Stream::with_capacity(64);
        s.text(Face::Mincho, 11, 56, 700, "佐藤 太郎");
        s.text(Face::Mincho, 11, 56, 685, "y");
        s.text(Face::Gothic, 11, 56, 670, "z");
        s.close();
        let text = String::from_utf8_lossy(s.as_bytes()).into_owned();
        assert_eq!(text.matches(" Tf").count(), 2, "{text}");
        assert!(text.contains("<4F5085E40020592A90CE> Tj"), "{text}");
        assert!(
            text.starts_with("BT\n/F1 11 Tf\n1 0 0 1 56 700 Tm\n"),
            "{text}"
        );
        assert!(text.ends_with("ET\n"), "{text}");
    }

    #[test]
    fn shapes_close_the_text_object_and_colours_are_exact() {
        let mut s = Stream::with_capacity(64);
        s.text(Face::Mincho, 11, 56, 700, "x");
        s.frame(10, 20, 30, 40, 5);
        s.color(SEAL_RED);
        s.rule(56, 539, 80, 10);
        s.color((0, 0, 0));
        let text = String::from_utf8_lossy(s.as_bytes()).into_owned();
        assert!(text.contains("ET\n0.5 w\n 10 20 30 40 re S\n"), "{text}");
        assert!(
            text.contains("0.80 0.05 0.05 rg\n0.80 0.05 0.05 RG\n"),
            "{text}"
        );
        assert!(text.contains("1.0 w\n 56 80 m 539 80 l S\n"), "{text}");
        assert!(text.contains("0 0 0 rg\n0 0 0 RG\n"), "{text}");
    }
}
