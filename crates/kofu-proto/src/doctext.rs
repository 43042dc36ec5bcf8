//! How text is written into a kofu certificate PDF, in one place: the renderer writes
//! every string through [`push_text`], and verifiers that search the raw PDF for a
//! person's name (thousands of documents a second, no PDF parser) search for
//! [`name_pattern`]. Both must agree byte for byte, so both live here.
//!
//! A certificate's fonts are predefined Adobe-Japan1 CID fonts with the `UniJIS-UTF16-H`
//! encoding (see `kofu-render/FONTS.md`): a string operand is the text's UTF-16BE code
//! units, written as a PDF hex string `<...>` with upper-case digits. The renderer shows
//! every person's full name as one such operand on its own, so the name's pattern
//! includes the delimiters: it can only match a whole operand, never a part of a longer
//! name or of an address.

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The character a certificate shows for `c`: control characters and line or paragraph
/// separators become a space, because the layout decides where lines end and a control
/// code must never reach a content stream.
pub fn printable(c: char) -> char {
    if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}') {
        ' '
    } else {
        c
    }
}

/// Appends `text` as one PDF hex string operand (`<...>`) of its UTF-16BE code units,
/// each character passed through [`printable`].
pub fn push_text(out: &mut Vec<u8>, text: &str) {
    out.reserve(2 + 4 * text.len());
    out.push(b'<');
    let mut units = [0u16; 2];
    for c in text.chars() {
        for unit in printable(c).encode_utf16(&mut units) {
            let [hi, lo] = unit.to_be_bytes();
            out.extend_from_slice(&[
                HEX[usize::from(hi >> 4)],
                HEX[usize::from(hi & 15)],
                HEX[usize::from(lo >> 4)],
                HEX[usize::from(lo & 15)],
            ]);
        }
    }
    out.push(b'>');
}

/// The exact bytes under which a person's full name appears in every kofu certificate:
/// the string operand [`push_text`] writes for it. A raw byte search of a PDF for this
/// pattern finds the name if and only if the renderer printed it.
pub fn name_pattern(full_name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 4 * full_name.len());
    push_text(&mut out, full_name);
    out
}

/// Decodes a string operand written by [`push_text`] back to text; `None` if `operand`
/// is not one (tests and tools use it to read a content stream).
pub fn decode_text(operand: &[u8]) -> Option<String> {
    let hex = operand.strip_prefix(b"<")?.strip_suffix(b">")?;
    if hex.len() % 4 != 0 {
        return None;
    }
    let nibble = |b: u8| HEX.iter().position(|&h| h == b).map(|v| v as u16);
    let mut units = Vec::with_capacity(hex.len() / 4);
    for quad in hex.chunks_exact(4) {
        let mut unit = 0u16;
        for &b in quad {
            unit = unit << 4 | nibble(b)?;
        }
        units.push(unit);
    }
    String::from_utf16(&units).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_utf16be_hex_operands() {
        assert_eq!(
            name_pattern("佐藤 太郎"),
            b"<4F5085E40020592A90CE>".to_vec()
        );
        assert_eq!(name_pattern("A"), b"<0041>".to_vec());
        assert_eq!(name_pattern(""), b"<>".to_vec());
        // Outside the BMP: a surrogate pair, as UniJIS-UTF16-H expects.
        assert_eq!(name_pattern("𠮷"), b"<D842DFB7>".to_vec());
    }

    #[test]
    fn control_characters_print_as_spaces() {
        assert_eq!(name_pattern("a\nb\tc\u{2028}"), name_pattern("a b c "));
    }

    #[test]
    fn decoding_round_trips() {
        for s in ["髙橋 さくら", "ABC-123 (x)", "𠮷野", ""] {
            assert_eq!(decode_text(&name_pattern(s)).as_deref(), Some(s));
        }
        assert_eq!(decode_text(b"<00>"), None);
        assert_eq!(decode_text(b"(abc)"), None);
        assert_eq!(decode_text(b"<00zz>"), None);
    }

    #[test]
    fn a_name_never_matches_inside_a_longer_one() {
        let short = name_pattern("佐藤 翔");
        let long = name_pattern("佐藤 翔太");
        let found = long.windows(short.len()).any(|w| w == short.as_slice());
        assert!(!found);
    }
}
