//! Japanese era dates (和暦), as certificates print them: `昭和60年4月1日`, `令和元年5月1日`.
//! Pure calendar arithmetic on `Date`, so the renderer and tests agree on one table.

use crate::records::Date;

/// Era names with their first day; an era runs until the day before the next one starts.
const ERAS: [(&str, Date); 5] = [
    ("明治", d(1868, 10, 23)),
    ("大正", d(1912, 7, 30)),
    ("昭和", d(1926, 12, 25)),
    ("平成", d(1989, 1, 8)),
    ("令和", d(2019, 5, 1)),
];

const fn d(year: u16, month: u8, day: u8) -> Date {
    Date { year, month, day }
}

/// The era and the year within it (1 for the first, partial year), or `None` before
/// the Meiji era, where certificates print the Western year.
pub fn era(date: Date) -> Option<(&'static str, u16)> {
    let (name, start) = ERAS.iter().rev().find(|(_, start)| *start <= date)?;
    Some((name, date.year - start.year + 1))
}

/// Appends the era year: `令和8年`, `令和元年` (the first year is written 元年), or the
/// Western `1850年` before Meiji.
pub fn push_year(out: &mut String, date: Date) {
    use std::fmt::Write as _;
    match era(date) {
        Some((name, 1)) => {
            out.push_str(name);
            out.push_str("元年");
        }
        Some((name, year)) => {
            let _ = write!(out, "{name}{year}年");
        }
        None => {
            let _ = write!(out, "{}年", date.year);
        }
    }
}

/// Appends the full date: `昭和60年4月1日`.
pub fn push_date(out: &mut String, date: Date) {
    use std::fmt::Write as _;
    push_year(out, date);
    let _ = write!(out, "{}月{}日", date.month, date.day);
}

/// The full date as a new string.
pub fn date(date: Date) -> String {
    let mut out = String::with_capacity(24);
    push_date(&mut out, date);
    out
}

/// A fiscal year (April to March) by the era of its end: fiscal 2019 is `令和元年度`,
/// fiscal 2025 `令和7年度`.
pub fn fiscal_year(year: u16) -> String {
    let mut out = String::with_capacity(16);
    push_year(&mut out, d(year, 12, 31));
    out.push('度');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn era_boundaries() {
        assert_eq!(date(d(1985, 4, 1)), "昭和60年4月1日");
        assert_eq!(date(d(2026, 11, 21)), "令和8年11月21日");
        assert_eq!(date(d(2019, 4, 30)), "平成31年4月30日");
        assert_eq!(date(d(2019, 5, 1)), "令和元年5月1日");
        assert_eq!(date(d(1989, 1, 7)), "昭和64年1月7日");
        assert_eq!(date(d(1989, 1, 8)), "平成元年1月8日");
        assert_eq!(date(d(1926, 12, 24)), "大正15年12月24日");
        assert_eq!(date(d(1926, 12, 25)), "昭和元年12月25日");
        assert_eq!(date(d(1912, 7, 29)), "明治45年7月29日");
        assert_eq!(date(d(1850, 1, 2)), "1850年1月2日");
    }

    #[test]
    fn fiscal_years() {
        assert_eq!(fiscal_year(2025), "令和7年度");
        assert_eq!(fiscal_year(2019), "令和元年度");
        assert_eq!(fiscal_year(2018), "平成30年度");
    }
}
