//! The body of a certificate as a flow of lines, wrapped and split into pages before any
//! PDF is written, because every page header must already know the page count `n`.

use std::ops::Range;

use kofu_core::records::Date;

use crate::text;

/// Left margin and usable width of an A4 page, in points. Positions are whole points so
/// that content streams need no float formatting.
pub(crate) const LEFT: u32 = 56;
pub(crate) const TEXT_WIDTH: u32 = 483;

/// The typographic roles of body lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// A bold section heading.
    Section,
    /// A field or a paragraph.
    Body,
}

impl Style {
    pub(crate) fn bold(self) -> bool {
        matches!(self, Style::Section)
    }

    pub(crate) fn size(self) -> u32 {
        match self {
            Style::Section => 12,
            Style::Body => 11,
        }
    }

    /// Vertical advance before the baseline of a line in this style.
    fn leading(self) -> u32 {
        match self {
            Style::Section => 22,
            Style::Body => 15,
        }
    }

    /// Widest line in thousandths of an em at this size.
    fn max_milli_em(self) -> u32 {
        TEXT_WIDTH * 1000 / self.size()
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Line {
    pub(crate) style: Style,
    /// Extra space above this line, on top of the style's leading.
    pub(crate) gap: u32,
    start: u32,
    end: u32,
}

#[derive(Debug, Clone, Copy)]
enum Item {
    Line(Line),
    Break,
}

/// Body lines of one document; all text lives in one buffer to keep allocations flat.
#[derive(Debug, Default)]
pub(crate) struct Flow {
    text: Vec<u8>,
    items: Vec<Item>,
    pending_gap: u32,
}

/// Appends the pieces of one line.
#[derive(Debug)]
pub(crate) struct Text<'a>(&'a mut Vec<u8>);

impl Text<'_> {
    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        text::push_win_ansi(self.0, s);
        self
    }

    pub(crate) fn num(&mut self, v: u64) -> &mut Self {
        text::push_u64(self.0, v);
        self
    }

    pub(crate) fn yen(&mut self, v: u64) -> &mut Self {
        text::push_grouped(self.0, v);
        self.0.extend_from_slice(b" yen");
        self
    }

    pub(crate) fn date(&mut self, d: Date) -> &mut Self {
        text::push_date(self.0, d);
        self
    }
}

impl Flow {
    pub(crate) fn with_capacity(lines: usize) -> Flow {
        Flow {
            text: Vec::with_capacity(lines * 48),
            items: Vec::with_capacity(lines),
            pending_gap: 0,
        }
    }

    /// Adds one logical line; if it is wider than the page it continues on further lines.
    pub(crate) fn line(&mut self, style: Style, build: impl FnOnce(&mut Text<'_>)) {
        let start = self.text.len();
        build(&mut Text(&mut self.text));
        let mut gap = std::mem::take(&mut self.pending_gap);
        let mut from = start;
        let end = self.text.len();
        loop {
            let cut = wrap_point(&self.text[from..end], style);
            self.items.push(Item::Line(Line {
                style,
                gap,
                start: from as u32,
                end: (from + cut.0) as u32,
            }));
            gap = 0;
            from += cut.1;
            if from >= end {
                break;
            }
        }
    }

    /// Adds vertical space before the next line (dropped at the top of a page).
    pub(crate) fn gap(&mut self, points: u32) {
        self.pending_gap += points;
    }

    /// Starts the next line on a new page.
    pub(crate) fn page_break(&mut self) {
        self.pending_gap = 0;
        self.items.push(Item::Break);
    }

    pub(crate) fn text_of(&self, line: &Line) -> &[u8] {
        &self.text[line.start as usize..line.end as usize]
    }

    /// Splits the items into pages whose lines fit in `height` points; every document has
    /// at least one page, even an empty one.
    pub(crate) fn paginate(&self, height: u32) -> Vec<Range<usize>> {
        let mut pages = Vec::with_capacity(4);
        let (mut first, mut used, mut lines_on_page) = (0, 0, 0usize);
        for (i, item) in self.items.iter().enumerate() {
            match item {
                Item::Break => {
                    if lines_on_page > 0 {
                        pages.push(first..i);
                        (used, lines_on_page) = (0, 0);
                    }
                    first = i + 1;
                }
                Item::Line(line) => {
                    let gap = if lines_on_page == 0 { 0 } else { line.gap };
                    let advance = gap + line.style.leading();
                    if lines_on_page > 0 && used + advance > height {
                        pages.push(first..i);
                        first = i;
                        (used, lines_on_page) = (line.style.leading(), 1);
                    } else {
                        used += advance;
                        lines_on_page += 1;
                    }
                }
            }
        }
        if lines_on_page > 0 || pages.is_empty() {
            pages.push(first..self.items.len());
        }
        pages
    }

    /// The lines of one page with the vertical advance of each, top to bottom.
    pub(crate) fn page_lines(&self, page: Range<usize>) -> impl Iterator<Item = (&Line, u32)> {
        self.items[page]
            .iter()
            .filter_map(|item| match item {
                Item::Line(line) => Some(line),
                Item::Break => None,
            })
            .enumerate()
            .map(|(i, line)| {
                let gap = if i == 0 { 0 } else { line.gap };
                (line, gap + line.style.leading())
            })
    }
}

/// Where to end the first visual line of `text`: (bytes kept, bytes consumed). Breaks at
/// the last space that fits, or mid-word if a single word is wider than the page.
fn wrap_point(text: &[u8], style: Style) -> (usize, usize) {
    let max = style.max_milli_em();
    let bold = style.bold();
    if text::width_milli_em(text, bold) <= max {
        return (text.len(), text.len());
    }
    let mut width = 0;
    let mut last_space = None;
    for (i, &b) in text.iter().enumerate() {
        let w = text::glyph_width(b);
        let w = if bold { w + w / 10 } else { w };
        if width + w > max {
            return match last_space {
                Some(s) if s > 0 => (s, s + 1),
                _ => (i.max(1), i.max(1)),
            };
        }
        if b == b' ' {
            last_space = Some(i);
        }
        width += w;
    }
    (text.len(), text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(flow: &Flow, page: Range<usize>) -> Vec<String> {
        flow.page_lines(page)
            .map(|(l, _)| String::from_utf8_lossy(flow.text_of(l)).into_owned())
            .collect()
    }

    #[test]
    fn long_lines_wrap_at_spaces() {
        let mut flow = Flow::default();
        let long = "word ".repeat(60);
        flow.line(Style::Body, |t| {
            t.str(long.trim_end());
        });
        let pages = flow.paginate(600);
        assert_eq!(pages.len(), 1);
        let lines = texts(&flow, pages[0].clone());
        assert!(lines.len() > 1);
        assert!(
            lines
                .iter()
                .all(|l| text::width_milli_em(l.as_bytes(), false) <= Style::Body.max_milli_em())
        );
        assert_eq!(lines.join(" "), long.trim_end());
    }

    #[test]
    fn an_unbreakable_word_is_cut() {
        let mut flow = Flow::default();
        flow.line(Style::Body, |t| {
            t.str(&"W".repeat(100));
        });
        let lines = texts(&flow, 0..flow.items.len());
        assert!(lines.len() > 1);
        assert_eq!(lines.concat(), "W".repeat(100));
    }

    #[test]
    fn pagination_respects_height_and_breaks() {
        let mut flow = Flow::default();
        for _ in 0..10 {
            flow.line(Style::Body, |t| {
                t.str("x");
            });
        }
        flow.page_break();
        flow.page_break();
        flow.line(Style::Body, |t| {
            t.str("y");
        });
        // 15 points per body line: four fit into 60.
        let pages = flow.paginate(60);
        let counts: Vec<usize> = pages
            .iter()
            .map(|p| texts(&flow, p.clone()).len())
            .collect();
        assert_eq!(counts, vec![4, 4, 2, 1]);
        assert!(Flow::default().paginate(60).len() == 1);
    }
}
