//! Finding residents' names in a document: the holder's must be there and nobody's from
//! outside the household (I1). Two ways, one rule: in a document's extracted text (whole
//! names, spaces normalised, any script) and in the raw PDF bytes (every resident's name
//! at once, no child process, for the load generator).

use aho_corasick::AhoCorasick;

use crate::fixtures::Card;

/// Horizontal spaces as text extraction produces them (column padding, ideographic space).
fn is_hspace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{a0}' | '\u{3000}')
}

/// Characters of scripts written without spaces between words (kanji, kana, full-width
/// forms): spaces next to them carry no meaning, and text extraction may insert them
/// between any two glyphs.
fn is_unspaced(c: char) -> bool {
    matches!(c,
        '\u{2e80}'..='\u{2fdf}'      // CJK radicals
        | '\u{3001}'..='\u{30ff}'    // CJK punctuation, hiragana, katakana
        | '\u{3190}'..='\u{31ff}'    // kanbun, katakana extensions
        | '\u{3400}'..='\u{4dbf}'    // CJK extension A
        | '\u{4e00}'..='\u{9fff}'    // CJK unified ideographs
        | '\u{f900}'..='\u{faff}'    // CJK compatibility ideographs
        | '\u{ff01}'..='\u{ffef}'    // full-width and half-width forms
        | '\u{20000}'..='\u{3134f}' // CJK extensions B..G
    )
}

/// A character that makes a word longer in scripts that separate words by spaces: a name
/// found next to one is part of a longer word ("Ai Ito" inside "Mai Ito").
fn is_spaced_word(c: char) -> bool {
    c.is_alphanumeric() && !is_unspaced(c)
}

/// Text as names are compared in it: runs of horizontal space become one space (so
/// `pdftotext -layout` column padding does not matter) and disappear next to kanji or
/// kana (so `山田 太郎`, `山田太郎` and `山 田 太 郎` compare equal). Line breaks and form
/// feeds stay. Latin text only has its space runs collapsed.
pub fn normalize_spaces(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending = false;
    for c in text.chars() {
        if is_hspace(c) {
            pending = true;
            continue;
        }
        if pending {
            let before = out.chars().next_back();
            if !(before.is_some_and(is_unspaced) || is_unspaced(c)) {
                out.push(' ');
            }
            pending = false;
        }
        out.push(c);
    }
    if pending && !out.chars().next_back().is_some_and(is_unspaced) {
        out.push(' ');
    }
    out
}

/// Whether `text` (already [`normalize_spaces`]d) names `name`: the whole name, case
/// sensitive, not as part of a longer word ("Ai Ito" is not in "Mai Ito").
pub fn contains_name(text: &str, name: &str) -> bool {
    let name = normalize_spaces(name.trim());
    if name.is_empty() {
        return false;
    }
    let mut from = 0;
    while let Some(pos) = text[from..].find(&name) {
        let start = from + pos;
        if stands_alone(text, start, start + name.len()) {
            return true;
        }
        // Advance by one char so overlapping candidates are still seen.
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

/// Which of `names` [`contains_name`] finds in `text`, in one pass over `text` however
/// many names there are: a whole node log against a whole population costs what one
/// name would (a loop of `contains_name` costs names × log).
pub fn names_in(text: &str, names: &[&str]) -> Vec<bool> {
    let patterns: Vec<String> = names.iter().map(|n| normalize_spaces(n.trim())).collect();
    let mut found = vec![false; names.len()];
    // Empty names are never found (as in `contains_name`); the automaton skips them.
    let live: Vec<usize> = (0..patterns.len())
        .filter(|&i| !patterns[i].is_empty())
        .collect();
    let Ok(matcher) = AhoCorasick::new(live.iter().map(|&i| &patterns[i])) else {
        // Only past the automaton's size limits: fall back to one name at a time.
        for (hit, name) in found.iter_mut().zip(names) {
            *hit = contains_name(text, name);
        }
        return found;
    };
    for m in matcher.find_overlapping_iter(text) {
        let ix = live[m.pattern().as_usize()];
        if !found[ix] && stands_alone(text, m.start(), m.end()) {
            found[ix] = true;
        }
    }
    found
}

/// Whether the name at `text[start..end]` is whole, not the inside of a longer word.
fn stands_alone(text: &str, start: usize, end: usize) -> bool {
    let name = &text[start..end];
    let (Some(first), Some(last)) = (name.chars().next(), name.chars().next_back()) else {
        return false;
    };
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let joined = |edge: char, outside: Option<char>| {
        is_spaced_word(edge) && outside.is_some_and(is_spaced_word)
    };
    !joined(first, before) && !joined(last, after)
}

/// Every resident's name in one automaton: one pass over a document finds the holder's
/// name and any name of another household.
#[derive(Clone)]
pub(crate) struct NameIndex {
    matcher: Option<AhoCorasick>,
    /// Pattern `i` is the name of the households in `owners[i]`.
    owners: Vec<Vec<u32>>,
    /// Card `i`'s name is pattern `card_pattern[i]`.
    card_pattern: Vec<usize>,
}

/// What one pass over a document found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NameScan {
    pub(crate) holder: bool,
    /// Distinct names of residents outside the holder's household.
    pub(crate) foreign: usize,
}

impl NameIndex {
    pub(crate) fn new(cards: &[Card]) -> NameIndex {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut owners: Vec<Vec<u32>> = Vec::new();
        let mut by_pattern: std::collections::HashMap<Vec<u8>, usize> =
            std::collections::HashMap::new();
        let mut card_pattern = Vec::with_capacity(cards.len());
        for c in cards {
            let pattern = kofu_proto::doctext::name_pattern(&c.full_name);
            let ix = *by_pattern.entry(pattern.clone()).or_insert_with(|| {
                patterns.push(pattern);
                owners.push(Vec::new());
                patterns.len() - 1
            });
            if !owners[ix].contains(&c.household) {
                owners[ix].push(c.household);
            }
            card_pattern.push(ix);
        }
        // Building fails only past the automaton's size limits; no name is found then,
        // so every holder check fails loudly instead of passing.
        NameIndex {
            matcher: AhoCorasick::new(&patterns).ok(),
            owners,
            card_pattern,
        }
    }

    /// Scans `doc` for the name of card `card` and for names outside its household.
    pub(crate) fn scan(&self, doc: &[u8], card: usize, household: u32) -> NameScan {
        let mut found = NameScan {
            holder: false,
            foreign: 0,
        };
        let (Some(matcher), Some(&own)) = (&self.matcher, self.card_pattern.get(card)) else {
            return found;
        };
        let mut seen: Vec<usize> = Vec::new();
        for m in matcher.find_overlapping_iter(doc) {
            let p = m.pattern().as_usize();
            if p == own {
                found.holder = true;
            } else if !self.owners[p].contains(&household) && !seen.contains(&p) {
                seen.push(p);
            }
        }
        found.foreign = seen.len();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::tests::{card, sample};

    #[test]
    fn whole_words_only() {
        assert!(contains_name("Name: Ai Ito\n", "Ai Ito"));
        assert!(!contains_name("Name: Mai Ito\n", "Ai Ito"));
        assert!(!contains_name("Ai Itoh", "Ai Ito"));
        assert!(contains_name("Mai Ito, Ai Ito", "Ai Ito"));
        assert!(!contains_name("ai ito", "Ai Ito"));
        assert!(contains_name("Ai Ito", "Ai Ito"));
        assert!(!contains_name("", "Ai Ito"));
        assert!(!contains_name("anything", ""));
    }

    #[test]
    fn names_in_agrees_with_contains_name() {
        let names = [
            "Ai Ito",
            "Mai Ito",
            "",
            "山田 太郎",
            "Ito",
            "Ai Itoh",
            "Kenji Ono",
        ];
        for text in [
            "Name: Mai Ito\n",
            "Mai Ito, Ai Ito",
            "Ai Itoh",
            "山 田 太 郎",
            "x山田太郎x Ito",
            "",
            "Kenji  Ono",
            "ai ito",
        ] {
            let text = normalize_spaces(text);
            let want: Vec<bool> = names.iter().map(|n| contains_name(&text, n)).collect();
            assert_eq!(names_in(&text, &names), want, "{text:?}");
        }
    }

    #[test]
    fn collapses_column_padding_and_keeps_lines() {
        assert_eq!(normalize_spaces("Ai   Ito\n  x"), "Ai Ito\n x");
        assert_eq!(normalize_spaces("a\t\tb "), "a b ");
    }

    #[test]
    fn japanese_names_match_whatever_the_spacing() {
        for text in [
            "氏名 山田 太郎\n",
            "氏名　山田太郎　生年月日",
            "氏 名  山 田  太 郎",
            "世帯主:山田太郎(昭和60年)",
        ] {
            let text = normalize_spaces(text);
            assert!(contains_name(&text, "山田 太郎"), "{text:?}");
            assert!(contains_name(&text, "山田太郎"), "{text:?}");
        }
        let text = normalize_spaces("氏名 山田 花子");
        assert!(!contains_name(&text, "山田 太郎"));
        // Mixed: a Latin name beside kanji still needs its own word boundaries.
        let text = normalize_spaces("氏名 Ai Ito 様");
        assert!(contains_name(&text, "Ai Ito") && !contains_name(&text, "i Ito"));
    }

    #[test]
    fn one_pass_finds_the_holder_and_foreign_names() {
        let fx = sample([
            card("0123456789ABCDE2", "山田 太郎", "h3"),
            card("0123456789ABCDE3", "山田 太", "h4"),
        ]);
        let names = fx.names();
        let h1 = fx.cards[0].household;
        let scan = |doc: &[u8], card: usize| names.scan(doc, card, fx.cards[card].household);
        // A document as the renderer writes it: every name one string operand.
        let doc = |names: &[&str]| -> Vec<u8> {
            names
                .iter()
                .flat_map(|n| kofu_proto::doctext::name_pattern(n))
                .collect()
        };
        let (holder, housemate, other) = (
            fx.cards[0].full_name.as_str(),
            fx.cards[1].full_name.as_str(),
            fx.cards[2].full_name.as_str(),
        );
        assert_eq!(
            scan(&doc(&[holder, housemate]), 0),
            NameScan {
                holder: true,
                foreign: 0
            }
        );
        assert!(!scan(&doc(&[housemate]), 0).holder);
        let mixed = scan(&doc(&[holder, other, other]), 0);
        assert_eq!((mixed.holder, mixed.foreign), (true, 1));
        assert_eq!(names.scan(b"x", 0, h1).foreign, 0);
        // 山田 太 is written inside 山田 太郎 but is never an operand of its own there.
        let kanji = scan(&doc(&["山田 太郎"]), 3);
        assert!(kanji.holder && kanji.foreign == 0);
        // Plain UTF-8 is not how a name is written: it is not found.
        assert!(!scan("氏名 山田 太郎".as_bytes(), 3).holder);
    }
}
