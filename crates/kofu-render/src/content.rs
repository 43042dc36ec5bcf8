//! A minimal content-stream writer for the few operators a certificate uses. Profiling
//! showed pdf-writer's general `Content` builder (byte-wise string escaping, operand
//! bookkeeping) costing half of the PDF time; certificates need only text and rules.

use crate::text::push_u64;

/// Names under which every page's resources list the two fonts.
pub(crate) const REGULAR_FONT: &[u8] = b"F1";
pub(crate) const BOLD_FONT: &[u8] = b"F2";

/// One page's content stream; the buffer is reused from page to page of a document.
#[derive(Debug)]
pub(crate) struct Stream {
    buf: Vec<u8>,
    font: Option<(bool, u32)>,
}

impl Stream {
    pub(crate) fn with_capacity(capacity: usize) -> Stream {
        Stream {
            buf: Vec::with_capacity(capacity),
            font: None,
        }
    }

    /// Starts a new page: the text state does not carry over between content streams.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.font = None;
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn begin_text(&mut self) {
        self.buf.extend_from_slice(b"BT\n");
    }

    pub(crate) fn end_text(&mut self) {
        self.buf.extend_from_slice(b"ET\n");
    }

    /// Shows WinAnsi-encoded `text` with its baseline starting at (`x`, `y`).
    pub(crate) fn text(&mut self, bold: bool, size: u32, x: u32, y: u32, text: &[u8]) {
        if self.font != Some((bold, size)) {
            self.buf.push(b'/');
            self.buf
                .extend_from_slice(if bold { BOLD_FONT } else { REGULAR_FONT });
            self.buf.push(b' ');
            push_u64(&mut self.buf, u64::from(size));
            self.buf.extend_from_slice(b" Tf\n");
            self.font = Some((bold, size));
        }
        self.buf.extend_from_slice(b"1 0 0 1 ");
        push_u64(&mut self.buf, u64::from(x));
        self.buf.push(b' ');
        push_u64(&mut self.buf, u64::from(y));
        self.buf.extend_from_slice(b" Tm\n(");
        push_literal(&mut self.buf, text);
        self.buf.extend_from_slice(b") Tj\n");
    }

    /// A thin horizontal rule from `x0` to `x1` at height `y` (outside a text object).
    pub(crate) fn rule(&mut self, x0: u32, x1: u32, y: u32) {
        self.buf.extend_from_slice(b"0.5 w\n");
        for (x, op) in [(x0, b" m\n"), (x1, b" l\n")] {
            push_u64(&mut self.buf, u64::from(x));
            self.buf.push(b' ');
            push_u64(&mut self.buf, u64::from(y));
            self.buf.extend_from_slice(op);
        }
        self.buf.extend_from_slice(b"S\n");
    }
}

/// The body of a PDF literal string: delimiters and backslashes escaped, anything
/// outside printable ASCII written as an octal escape so the stream stays plain text.
fn push_literal(out: &mut Vec<u8>, text: &[u8]) {
    let mut run = 0;
    for (i, &b) in text.iter().enumerate() {
        let plain = matches!(b, b' '..=b'~') && !matches!(b, b'(' | b')' | b'\\');
        if plain {
            continue;
        }
        out.extend_from_slice(&text[run..i]);
        run = i + 1;
        out.push(b'\\');
        if matches!(b, b'(' | b')' | b'\\') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'0' + (b >> 6), b'0' + ((b >> 3) & 7), b'0' + (b & 7)]);
        }
    }
    out.extend_from_slice(&text[run..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_delimiters_and_high_bytes() {
        let mut out = Vec::new();
        push_literal(&mut out, b"a(b)c\\d\xe9\x01e");
        assert_eq!(out, br"a\(b\)c\\d\351\001e".to_vec());
    }

    #[test]
    fn font_is_set_only_when_it_changes() {
        let mut s = Stream::with_capacity(64);
        s.text(false, 11, 56, 700, b"x");
        s.text(false, 11, 56, 685, b"y");
        s.text(true, 11, 56, 670, b"z");
        let text = String::from_utf8_lossy(s.as_bytes()).into_owned();
        assert_eq!(text.matches(" Tf").count(), 2, "{text}");
        s.clear();
        s.text(true, 11, 56, 670, b"z");
        assert!(String::from_utf8_lossy(s.as_bytes()).starts_with("/F2 11 Tf\n"));
    }
}
