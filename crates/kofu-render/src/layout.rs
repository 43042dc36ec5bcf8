//! The body of a certificate as a flow of lines, each a few text pieces on one baseline,
//! wrapped and split into pages before any PDF is written, because every page header
//! must already know the page count `n`. Every piece is one string operand in the PDF,
//! so a person's name, given as one piece, is one operand (kofu_proto::doctext).

use std::ops::Range;

use crate::text::{self, Face};

/// Margins of an A4 page, in points. Positions are whole points so that content streams
/// need no float formatting.
pub(crate) const LEFT: u32 = 56;
pub(crate) const RIGHT: u32 = 539;
/// Where a field's label and its value start.
const LABEL_X: u32 = LEFT + 6;
pub(crate) const VALUE_X: u32 = LEFT + 112;

const LABEL_SIZE: u32 = 10;
const VALUE_SIZE: u32 = 11;
const ROW_LEADING: u32 = 21;
const WRAP_LEADING: u32 = 15;

/// One string operand: its face, size, left edge and text (a range of `Flow::text`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Piece {
    pub(crate) face: Face,
    pub(crate) size: u32,
    pub(crate) x: u32,
    start: u32,
    end: u32,
}

/// What a line draws besides its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decor {
    None,
    /// A table rule across the page above the line's text.
    RuleAbove,
    /// The frame where the registered seal's impression is printed, right of the value
    /// column's start, filling the line's height.
    ImpressionFrame,
    /// The municipality's official seal after the line's last piece.
    OfficeSeal,
}

#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// Vertical advance from the previous baseline.
    pub(crate) leading: u32,
    /// Extra space above, dropped at the top of a page.
    gap: u32,
    pieces: Range<u32>,
    pub(crate) decor: Decor,
}

#[derive(Debug, Clone)]
enum Item {
    Line(Line),
    Break,
}

/// Body lines of one document; all text lives in one buffer to keep allocations flat.
#[derive(Debug, Default)]
pub(crate) struct Flow {
    text: String,
    pieces: Vec<Piece>,
    items: Vec<Item>,
    pending_gap: u32,
}

impl Flow {
    pub(crate) fn with_capacity(lines: usize) -> Flow {
        Flow {
            text: String::with_capacity(lines * 48),
            pieces: Vec::with_capacity(lines * 2),
            items: Vec::with_capacity(lines),
            pending_gap: 0,
        }
    }

    fn piece(&mut self, face: Face, size: u32, x: u32, text: &str) -> u32 {
        let start = self.text.len() as u32;
        self.text.push_str(text);
        self.pieces.push(Piece {
            face,
            size,
            x,
            start,
            end: self.text.len() as u32,
        });
        self.pieces.len() as u32
    }

    fn push_line(&mut self, leading: u32, first_piece: u32, decor: Decor) {
        let gap = std::mem::take(&mut self.pending_gap);
        self.items.push(Item::Line(Line {
            leading,
            gap,
            pieces: first_piece..self.pieces.len() as u32,
            decor,
        }));
    }

    /// A table row: a Gothic label and a Mincho value that wraps within the value column.
    pub(crate) fn row(&mut self, label: &str, value: &str) {
        let first = self.pieces.len() as u32;
        self.piece(Face::Gothic, LABEL_SIZE, LABEL_X, label);
        self.wrapped_value(first, value);
    }

    /// A row whose value is a person's name: never wrapped (one operand), with its
    /// reading in small type on the line above, as register extracts print フリガナ.
    pub(crate) fn name_row(&mut self, label: &str, name: &str, reading: &str) {
        let first = self.pieces.len() as u32;
        if !reading.is_empty() {
            self.piece(Face::Mincho, 7, VALUE_X, reading);
            self.push_line(ROW_LEADING - 8, first, Decor::RuleAbove);
        }
        let first = self.pieces.len() as u32;
        self.piece(Face::Gothic, LABEL_SIZE, LABEL_X, label);
        self.piece(Face::Mincho, 12, VALUE_X, name);
        let decor = if reading.is_empty() {
            Decor::RuleAbove
        } else {
            Decor::None
        };
        self.push_line(15, first, decor);
    }

    fn wrapped_value(&mut self, first: u32, value: &str) {
        let max = (RIGHT - VALUE_X - 4) * 1000 / VALUE_SIZE;
        let (mut rest, mut first, mut leading, mut decor) =
            (value, first, ROW_LEADING, Decor::RuleAbove);
        loop {
            let (keep, eat) = text::wrap_point(Face::Mincho, rest, max);
            self.piece(Face::Mincho, VALUE_SIZE, VALUE_X, &rest[..keep]);
            self.push_line(leading, first, decor);
            rest = &rest[eat..];
            if rest.is_empty() {
                break;
            }
            (first, leading, decor) = (self.pieces.len() as u32, WRAP_LEADING, Decor::None);
        }
    }

    /// One table line of fixed columns: (x, face, size, text) each, no wrapping.
    pub(crate) fn cells(&mut self, leading: u32, ruled: bool, cells: &[(u32, Face, u32, &str)]) {
        let first = self.pieces.len() as u32;
        for &(x, face, size, text) in cells {
            if !text.is_empty() {
                self.piece(face, size, x, text);
            }
        }
        let decor = if ruled { Decor::RuleAbove } else { Decor::None };
        self.push_line(leading, first, decor);
    }

    /// A section heading in Gothic, set off from what precedes it.
    pub(crate) fn heading(&mut self, text: &str) {
        self.gap(8);
        let first = self.pieces.len() as u32;
        self.piece(Face::Gothic, 11, LEFT, text);
        self.push_line(18, first, Decor::None);
    }

    /// A paragraph in Mincho from `x` to the right margin, wrapped.
    pub(crate) fn para(&mut self, size: u32, x: u32, text: &str) {
        let max = (RIGHT - x) * 1000 / size;
        let mut rest = text;
        while !rest.is_empty() {
            let (keep, eat) = text::wrap_point(Face::Mincho, rest, max);
            let first = self.pieces.len() as u32;
            self.piece(Face::Mincho, size, x, &rest[..keep]);
            self.push_line(size + size / 2 + 2, first, Decor::None);
            rest = &rest[eat..];
        }
    }

    /// The closing rule of a table.
    pub(crate) fn close_table(&mut self) {
        let first = self.pieces.len() as u32;
        self.push_line(6, first, Decor::RuleAbove);
    }

    /// A line `height` points high holding the seal impression frame, labelled.
    pub(crate) fn impression(&mut self, label: &str, height: u32) {
        let first = self.pieces.len() as u32;
        self.piece(Face::Gothic, LABEL_SIZE, LABEL_X, label);
        self.push_line(height, first, Decor::ImpressionFrame);
    }

    /// The certifying office's line, `text` right of `x`, with the official seal.
    pub(crate) fn office(&mut self, x: u32, text: &str) {
        let first = self.pieces.len() as u32;
        self.piece(Face::Mincho, 14, x, text);
        self.push_line(34, first, Decor::OfficeSeal);
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

    pub(crate) fn pieces_of(&self, line: &Line) -> impl Iterator<Item = (&Piece, &str)> {
        self.pieces[line.pieces.start as usize..line.pieces.end as usize]
            .iter()
            .map(|p| (p, &self.text[p.start as usize..p.end as usize]))
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
                    let advance = gap + line.leading;
                    if lines_on_page > 0 && used + advance > height {
                        pages.push(first..i);
                        first = i;
                        (used, lines_on_page) = (line.leading, 1);
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
                (line, gap + line.leading)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(flow: &Flow, page: Range<usize>) -> Vec<String> {
        flow.page_lines(page)
            .map(|(l, _)| {
                flow.pieces_of(l)
                    .map(|(_, t)| t)
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    }

    #[test]
    fn long_values_wrap_inside_the_value_column() {
        let mut flow = Flow::default();
        let long = "東京都新宿区西新宿".repeat(6);
        flow.row("住所", &long);
        let lines = texts(&flow, 0..flow.items.len());
        assert!(lines.len() > 1, "{lines:?}");
        assert!(lines[0].starts_with("住所|"));
        let joined: String = lines
            .iter()
            .map(|l| l.trim_start_matches("住所|"))
            .collect();
        assert_eq!(joined, long);
        let max = (RIGHT - VALUE_X) * 1000 / VALUE_SIZE;
        for l in &lines {
            let v = l.trim_start_matches("住所|");
            assert!(text::width_milli_em(Face::Mincho, v) <= max, "{v}");
        }
    }

    #[test]
    fn names_are_single_pieces_with_their_reading_above() {
        let mut flow = Flow::default();
        flow.name_row("氏名", "長谷川 さくら", "ハセガワ サクラ");
        let lines = texts(&flow, 0..flow.items.len());
        assert_eq!(lines, vec!["ハセガワ サクラ", "氏名|長谷川 さくら"]);
    }

    #[test]
    fn pagination_respects_height_and_breaks() {
        let mut flow = Flow::default();
        for _ in 0..10 {
            flow.row("x", "y");
        }
        flow.page_break();
        flow.page_break();
        flow.row("z", "w");
        // 21 points per row: four fit into 84.
        let pages = flow.paginate(84);
        let counts: Vec<usize> = pages
            .iter()
            .map(|p| texts(&flow, p.clone()).len())
            .collect();
        assert_eq!(counts, vec![4, 4, 2, 1]);
        assert!(Flow::default().paginate(60).len() == 1);
    }
}
