//! Text measurement and number formatting for certificates. Fonts are the predefined
//! Adobe-Japan1 CID fonts (see FONTS.md): ideographs and kana are one em wide, Latin
//! letters and digits are proportional with the widths the PDF's `/W` arrays declare,
//! and those same tables drive line wrapping here.

use std::fmt::Write as _;

/// The two faces a certificate uses: Mincho for data and sentences, as municipalities
/// print them, Gothic for titles and field labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Face {
    Mincho,
    Gothic,
}

/// Widths in thousandths of an em of CIDs 1..=100 (proportional Latin), per face, as
/// the resident HeiseiMin-W3 and HeiseiKakuGo-W5 fonts define them. Written into the
/// PDF as the `/W` arrays, so a viewer's advance and the wrapping here agree.
pub(crate) mod widths {
    const MINCHO: [u16; 100] = [
        250, 333, 408, 500, 500, 833, 778, 180, 333, 333, 500, 564, 250, 333, 250, 278, 500, 500,
        500, 500, 500, 500, 500, 500, 500, 500, 278, 278, 564, 564, 564, 444, 921, 722, 667, 667,
        722, 611, 556, 722, 722, 333, 389, 722, 611, 889, 722, 722, 556, 722, 667, 556, 611, 722,
        722, 944, 722, 722, 611, 333, 500, 333, 469, 500, 333, 444, 500, 444, 500, 444, 333, 500,
        500, 278, 278, 500, 278, 778, 500, 500, 500, 500, 333, 389, 278, 500, 500, 722, 500, 500,
        444, 480, 200, 480, 333, 500, 278, 500, 200, 500,
    ];
    const GOTHIC: [u16; 100] = [
        277, 305, 500, 668, 668, 906, 727, 305, 445, 445, 508, 668, 305, 379, 305, 539, 668, 668,
        668, 668, 668, 668, 668, 668, 668, 668, 305, 305, 668, 668, 668, 566, 871, 727, 637, 652,
        699, 574, 555, 676, 687, 242, 492, 664, 582, 789, 707, 734, 582, 734, 605, 605, 641, 668,
        727, 945, 609, 609, 574, 445, 668, 445, 668, 668, 590, 555, 609, 547, 602, 574, 391, 609,
        582, 234, 277, 539, 234, 895, 582, 605, 602, 602, 387, 508, 441, 582, 562, 781, 531, 570,
        555, 449, 246, 449, 668, 500, 500, 500, 500, 500,
    ];
    pub(crate) fn of(face: super::Face) -> &'static [u16; 100] {
        match face {
            super::Face::Mincho => &MINCHO,
            super::Face::Gothic => &GOTHIC,
        }
    }
}

/// The CID that `UniJIS-UTF16-H` maps an ASCII character to (its proportional form).
fn ascii_cid(c: u8) -> Option<usize> {
    match c {
        0x5c => Some(97),
        0x7c => Some(99),
        0x7d => Some(94),
        0x7e => Some(100),
        0x20..=0x7b => Some(usize::from(c - 0x1f)),
        _ => None,
    }
}

/// Width of one character in thousandths of an em.
pub(crate) fn char_width(face: Face, c: char) -> u32 {
    match c {
        ' '..='~' => ascii_cid(c as u8).map_or(500, |cid| u32::from(widths::of(face)[cid - 1])),
        // Half-width katakana: CIDs 327..=389, half an em.
        '\u{ff61}'..='\u{ff9f}' => 500,
        // Control characters print as spaces (kofu_proto::doctext::printable).
        c if c.is_control() => u32::from(widths::of(face)[0]),
        _ => 1000,
    }
}

/// Width of `text` in thousandths of an em.
pub(crate) fn width_milli_em(face: Face, text: &str) -> u32 {
    text.chars().map(|c| char_width(face, c)).sum()
}

/// Width of `text` set at `size` points, in points (rounded up).
pub(crate) fn width_points(face: Face, size: u32, text: &str) -> u32 {
    (width_milli_em(face, text) * size).div_ceil(1000)
}

/// Characters a line may not start with (Japanese line-breaking rules, 禁則).
fn no_line_start(c: char) -> bool {
    matches!(
        c,
        '、' | '。'
            | '，'
            | '．'
            | '）'
            | '」'
            | '』'
            | '】'
            | '〕'
            | 'ー'
            | '々'
            | ')'
            | ','
            | '.'
    )
}

/// Where to end the first visual line of `text` no wider than `max` milli-em: (bytes
/// kept, bytes consumed). Japanese text breaks between any two characters except
/// before closing punctuation; Latin text breaks at the last space.
pub(crate) fn wrap_point(face: Face, text: &str, max: u32) -> (usize, usize) {
    let mut width = 0;
    let mut last_break: Option<(usize, usize)> = None;
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        if i > 0 && !no_line_start(c) {
            if c == ' ' {
                last_break = Some((i, i + 1));
            } else if !c.is_ascii() || prev.is_some_and(|p| !p.is_ascii()) {
                last_break = Some((i, i));
            }
        }
        width += char_width(face, c);
        if width > max {
            return match last_break {
                Some(b) if b.0 > 0 => b,
                // One unbreakable run wider than the line: cut it where it overflows.
                _ => {
                    let cut = if i == 0 { c.len_utf8() } else { i };
                    (cut, cut)
                }
            };
        }
        prev = Some(c);
    }
    (text.len(), text.len())
}

/// Appends `v` with thousands separators, as amounts of yen are printed.
pub(crate) fn push_grouped(out: &mut String, v: u64) {
    let digits = v.to_string();
    let lead = digits.len() % 3;
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (i + 3 - lead) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
}

/// Appends `v` in yen as certificates print amounts: `5,230,000円`.
pub(crate) fn push_yen(out: &mut String, v: u64) {
    push_grouped(out, v);
    out.push('円');
}

/// Appends the decimal digits of `v`.
pub(crate) fn push_u64(out: &mut String, v: u64) {
    let _ = write!(out, "{v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut String)) -> String {
        let mut v = String::new();
        f(&mut v);
        v
    }

    #[test]
    fn grouped_numbers() {
        assert_eq!(s(|o| push_grouped(o, 0)), "0");
        assert_eq!(s(|o| push_grouped(o, 999)), "999");
        assert_eq!(s(|o| push_grouped(o, 1000)), "1,000");
        assert_eq!(s(|o| push_grouped(o, 4_200_000)), "4,200,000");
        assert_eq!(s(|o| push_grouped(o, 12_345_678)), "12,345,678");
        assert_eq!(
            s(|o| push_grouped(o, u64::MAX)),
            "18,446,744,073,709,551,615"
        );
        assert_eq!(s(|o| push_yen(o, 214_300)), "214,300円");
    }

    #[test]
    fn widths_follow_the_cid_metrics() {
        assert_eq!(width_milli_em(Face::Mincho, "佐藤 太郎"), 4000 + 250);
        assert_eq!(width_milli_em(Face::Gothic, "1"), 668);
        assert_eq!(width_milli_em(Face::Mincho, "1-2"), 500 + 333 + 500);
        assert_eq!(char_width(Face::Mincho, 'ｱ'), 500);
        assert_eq!(width_points(Face::Mincho, 10, "住民票"), 30);
    }

    #[test]
    fn wrapping_keeps_punctuation_and_latin_words() {
        // Ten ideographs fit in 10 em; the comma may not start the next line.
        let text = "一二三四五六七八九十、次";
        let (keep, eat) = wrap_point(Face::Mincho, text, 10_000);
        assert_eq!(&text[..keep], "一二三四五六七八九");
        assert_eq!(keep, eat);
        let latin = "word word word";
        let (keep, eat) = wrap_point(Face::Mincho, latin, 2_600);
        assert_eq!((&latin[..keep], &latin[eat..]), ("word", "word word"));
        assert_eq!(wrap_point(Face::Mincho, "短い", 10_000), (6, 6));
        let long = "W".repeat(40);
        assert_eq!(wrap_point(Face::Mincho, &long, 9_440), (10, 10));
    }
}
