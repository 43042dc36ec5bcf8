//! Byte-level text helpers: the standard Helvetica fonts only speak WinAnsiEncoding, and
//! building lines byte by byte keeps rendering free of `format!` and its allocations.

use kofu_core::records::Date;

/// Appends `s` as WinAnsiEncoding bytes. Registry data is romanized ASCII; anything else
/// degrades to a printable byte rather than failing, because rendering is infallible.
pub(crate) fn push_win_ansi(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    out.extend(s.chars().map(win_ansi));
}

fn win_ansi(c: char) -> u8 {
    match c {
        ' '..='~' => c as u8,
        // Latin-1 letters sit at the same code points in WinAnsiEncoding.
        '\u{a1}'..='\u{ff}' => c as u32 as u8,
        '\u{2018}' => 0x91,
        '\u{2019}' => 0x92,
        '\u{201c}' => 0x93,
        '\u{201d}' => 0x94,
        '\u{2013}' => 0x96,
        '\u{2014}' => 0x97,
        // Hepburn macrons are often dropped in romanized names (as in passports), which
        // reads better on paper than a replacement mark.
        '\u{100}' | '\u{102}' | '\u{104}' => b'A',
        '\u{101}' | '\u{103}' | '\u{105}' => b'a',
        '\u{112}' | '\u{114}' | '\u{116}' | '\u{118}' | '\u{11a}' => b'E',
        '\u{113}' | '\u{115}' | '\u{117}' | '\u{119}' | '\u{11b}' => b'e',
        '\u{12a}' | '\u{12c}' | '\u{12e}' => b'I',
        '\u{12b}' | '\u{12d}' | '\u{12f}' => b'i',
        '\u{14c}' | '\u{14e}' | '\u{150}' => b'O',
        '\u{14d}' | '\u{14f}' | '\u{151}' => b'o',
        '\u{16a}' | '\u{16c}' | '\u{16e}' | '\u{170}' | '\u{172}' => b'U',
        '\u{16b}' | '\u{16d}' | '\u{16f}' | '\u{171}' | '\u{173}' => b'u',
        // Line breaks or tabs inside a field must not leak into the content stream as
        // control characters; the layout decides where lines end.
        c if c.is_whitespace() || c.is_control() => b' ',
        _ => b'?',
    }
}

/// Appends the decimal digits of `v`.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `v` with thousands separators, as amounts of yen are printed.
pub(crate) fn push_grouped(out: &mut Vec<u8>, v: u64) {
    let start = out.len();
    push_u64(out, v);
    let len = out.len() - start;
    let commas = (len - 1) / 3;
    if commas == 0 {
        return;
    }
    // Spread the digits right to left in place, inserting a comma every three.
    out.resize(start + len + commas, 0);
    let (mut src, mut dst) = (start + len, out.len());
    let mut run = 0;
    while src > start {
        src -= 1;
        dst -= 1;
        out[dst] = out[src];
        run += 1;
        if run == 3 && src > start {
            dst -= 1;
            out[dst] = b',';
            run = 0;
        }
    }
}

fn push_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let start = out.len();
    push_u64(out, v);
    let len = out.len() - start;
    if len < width {
        let pad = width - len;
        out.splice(start..start, std::iter::repeat_n(b'0', pad));
    }
}

/// Appends `YYYY-MM-DD`, the same form as `Date`'s `Display`.
pub(crate) fn push_date(out: &mut Vec<u8>, d: Date) {
    push_padded(out, u64::from(d.year), 4);
    out.push(b'-');
    push_padded(out, u64::from(d.month), 2);
    out.push(b'-');
    push_padded(out, u64::from(d.day), 2);
}

/// Width of the text in thousandths of an em, from Helvetica's AFM metrics. Only used to
/// wrap lines, so bold is approximated as slightly wider regular text.
pub(crate) fn width_milli_em(bytes: &[u8], bold: bool) -> u32 {
    let regular: u32 = bytes.iter().map(|&b| glyph_width(b)).sum();
    if bold {
        regular + regular / 10
    } else {
        regular
    }
}

pub(crate) fn glyph_width(b: u8) -> u32 {
    const ASCII: [u16; 95] = [
        278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278,
        278, // ' '..'/'
        556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584,
        556, // '0'..'?'
        1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722,
        778, // '@'..'O'
        667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469,
        556, // 'P'..'_'
        333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556,
        556, // '`'..'o'
        556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // 'p'..'~'
    ];
    match b {
        0x20..=0x7e => u32::from(ASCII[usize::from(b - 0x20)]),
        // Accented capitals and symbols are at most this wide; erring wide only wraps early.
        _ => 1000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }

    #[test]
    fn numbers_and_dates() {
        assert_eq!(s(|o| push_u64(o, 0)), "0");
        assert_eq!(s(|o| push_u64(o, u64::MAX)), u64::MAX.to_string());
        assert_eq!(s(|o| push_grouped(o, 0)), "0");
        assert_eq!(s(|o| push_grouped(o, 999)), "999");
        assert_eq!(s(|o| push_grouped(o, 1000)), "1,000");
        assert_eq!(s(|o| push_grouped(o, 4_200_000)), "4,200,000");
        assert_eq!(s(|o| push_grouped(o, 12_345_678)), "12,345,678");
        assert_eq!(
            s(|o| push_grouped(o, u64::MAX)),
            "18,446,744,073,709,551,615"
        );
        let d = Date {
            year: 987,
            month: 3,
            day: 9,
        };
        assert_eq!(s(|o| push_date(o, d)), "0987-03-09");
        assert_eq!(s(|o| push_date(o, d)), d.to_string());
    }

    #[test]
    fn win_ansi_never_emits_control_bytes() {
        let mut v = Vec::new();
        push_win_ansi(&mut v, "Ōno\tYūki\n(é) 東京 ’");
        assert_eq!(v, b"Ono Yuki (\xe9) ?? \x92");
        assert!(v.iter().all(|&b| b >= 0x20));
    }

    #[test]
    fn widths_follow_the_metrics() {
        assert_eq!(width_milli_em(b"W i", false), 944 + 278 + 222);
        assert!(width_milli_em(b"Tanaka", true) > width_milli_em(b"Tanaka", false));
    }
}
