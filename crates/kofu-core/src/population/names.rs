//! Japanese names for the synthetic population (kanji or kana, with katakana readings),
//! and the allocator that keeps every full name unique. Documents are checked for "no
//! other person's name" by text search, so uniqueness alone is not enough: the lists are
//! shaped so that no full name can be read out of another one or out of a municipality's
//! name — family names never end one another, given names never start one another.

use std::collections::HashSet;

use rand::Rng;

use super::name_lists::{
    FAMILY_HEADS, FAMILY_REAL, FAMILY_TAILS, FEMALE_HEADS, FEMALE_OVERFLOW, FEMALE_TAILS,
    GIVEN_FEMALE, GIVEN_MALE, MALE_HEADS, MALE_OVERFLOW, MALE_TAILS, SYLLABLES,
};
use crate::records::Sex;

/// A name or a part of one, as written and as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Name {
    pub(super) written: String,
    /// Katakana.
    pub(super) reading: String,
}

impl Name {
    fn new(written: &str, reading: &str) -> Name {
        Name {
            written: written.to_owned(),
            reading: reading.to_owned(),
        }
    }
}

fn slot(sex: Sex) -> usize {
    match sex {
        Sex::Male => 0,
        Sex::Female => 1,
    }
}

/// A pseudo-random walk through one sex's given names for one family: `a·i + b mod n`
/// with `a` coprime to `n` visits every name exactly once, so a family never repeats a
/// given name and no lookup table of taken names is needed. Real names are walked
/// first, compounds after them, so small populations look like a real registry.
#[derive(Debug, Clone, Copy)]
struct Walk {
    real: Affine,
    compound: Affine,
    used: u64,
}

#[derive(Debug, Clone, Copy)]
struct Affine {
    a: u64,
    b: u64,
}

impl Affine {
    fn new<R: Rng>(n: u64, rng: &mut R) -> Affine {
        if n < 2 {
            return Affine { a: 1, b: 0 };
        }
        let mut a = rng.random_range(1..n);
        while gcd(a, n) != 1 {
            a = a % (n - 1) + 1;
        }
        Affine {
            a,
            b: rng.random_range(0..n),
        }
    }

    fn at(self, i: u64, n: u64) -> u64 {
        (self.a * i + self.b) % n
    }
}

/// The name lists plus, per family, how far each sex's walk has gone.
pub(super) struct NameBook {
    families: Vec<Name>,
    /// Cumulative draw weights of the real families (Zipf-like by rank), which come
    /// first in `families`.
    family_cdf: Vec<u64>,
    given: [Vec<Name>; 2],
    /// How many of each `given` list are real names (the rest are compounds).
    real_given: [usize; 2],
    walks: Vec<[Option<Walk>; 2]>,
}

/// Accepts names so that none is a prefix (or, mirrored, a suffix) of another.
struct AffixFree {
    accepted: HashSet<String>,
    /// Every proper prefix (or suffix) of an accepted name.
    parts: HashSet<String>,
    suffixes: bool,
}

impl AffixFree {
    fn new(suffixes: bool) -> AffixFree {
        AffixFree {
            accepted: HashSet::new(),
            parts: HashSet::new(),
            suffixes,
        }
    }

    /// The proper prefixes (or suffixes) of `name`, shortest first.
    fn proper_parts(&self, name: &str) -> Vec<String> {
        let bounds: Vec<usize> = name.char_indices().map(|(i, _)| i).skip(1).collect();
        if self.suffixes {
            bounds.iter().rev().map(|&i| name[i..].to_owned()).collect()
        } else {
            bounds.iter().map(|&i| name[..i].to_owned()).collect()
        }
    }

    /// Takes `name` unless it equals, extends or is extended by an accepted name.
    fn insert(&mut self, name: &str) -> bool {
        let parts = self.proper_parts(name);
        let clash = self.accepted.contains(name)
            || self.parts.contains(name)
            || parts.iter().any(|p| self.accepted.contains(p));
        if clash {
            return false;
        }
        self.accepted.insert(name.to_owned());
        self.parts.extend(parts);
        true
    }
}

impl NameBook {
    /// Builds the lists. No name may occur inside a `forbidden` text (the municipalities'
    /// names, which kiosks show next to the holder's masked name).
    pub(super) fn new(forbidden: &[String]) -> NameBook {
        let allowed = |n: &str| !forbidden.iter().any(|t| t.contains(n));
        let mut suffix_free = AffixFree::new(true);
        let mut families = Vec::new();
        let mut real_families = 0;
        let real = FAMILY_REAL.iter().map(|(w, r)| Name::new(w, r));
        for (i, name) in real
            .chain(compounds(FAMILY_HEADS, FAMILY_TAILS))
            .enumerate()
        {
            if !allowed(&name.written) || !suffix_free.insert(&name.written) {
                continue;
            }
            families.push(name);
            real_families += usize::from(i < FAMILY_REAL.len());
        }
        let mut total = 0;
        let family_cdf = (0..real_families as u64)
            .map(|rank| {
                total += 1_000_000 / (rank + 20);
                total
            })
            .collect();

        // The kiosk screen shows a family name's first character (records::mask_name):
        // a one-character given name equal to it would be shown whole.
        let initials: HashSet<char> = families
            .iter()
            .filter_map(|n| n.written.chars().next())
            .collect();
        let given_allowed = |n: &str| {
            let mut chars = n.chars();
            let shown = match (chars.next(), chars.next()) {
                (Some(only), None) => initials.contains(&only),
                _ => false,
            };
            allowed(n) && !shown
        };
        // One prefix-free set across both sexes, so the two lists never share a name.
        let mut prefix_free = AffixFree::new(false);
        let (male, real_male) = given_list(
            GIVEN_MALE,
            MALE_HEADS,
            MALE_TAILS,
            &mut prefix_free,
            &given_allowed,
        );
        let (female, real_female) = given_list(
            GIVEN_FEMALE,
            FEMALE_HEADS,
            FEMALE_TAILS,
            &mut prefix_free,
            &given_allowed,
        );
        let walks = vec![[None, None]; families.len()];
        NameBook {
            families,
            family_cdf,
            given: [male, female],
            real_given: [real_male, real_female],
            walks,
        }
    }

    pub(super) fn family(&self, index: usize) -> &Name {
        &self.families[index]
    }

    #[cfg(test)]
    pub(super) fn families(&self) -> &[Name] {
        &self.families
    }

    #[cfg(test)]
    pub(super) fn given_names(&self, sex: Sex) -> &[Name] {
        &self.given[slot(sex)]
    }

    #[cfg(test)]
    pub(super) fn real_family_count(&self) -> usize {
        self.family_cdf.len()
    }

    /// Common real names are drawn far more often, the way 佐藤 and 鈴木 fill a real
    /// registry (about 1.5 % of residents each); compounds form the rare tail.
    pub(super) fn pick_family<R: Rng>(&self, rng: &mut R) -> usize {
        let total = self.family_cdf.last().copied().unwrap_or(0);
        if total == 0 || !rng.random_bool(0.85) {
            return rng.random_range(0..self.families.len() as u64) as usize;
        }
        let x = rng.random_range(0..total);
        self.family_cdf.partition_point(|&c| c <= x)
    }

    /// The next unused given name of `sex` in `family`. Never repeats within a family,
    /// so every (family, given) pair — every full name — is handed out at most once.
    pub(super) fn next_given<R: Rng>(&mut self, family: usize, sex: Sex, rng: &mut R) -> Name {
        let g = slot(sex);
        let list = &self.given[g];
        let real = self.real_given[g] as u64;
        let compound = list.len() as u64 - real;
        let walk = self.walks[family][g].get_or_insert_with(|| Walk {
            real: Affine::new(real, rng),
            compound: Affine::new(compound, rng),
            used: 0,
        });
        let i = walk.used;
        walk.used += 1;
        if i < real {
            list[walk.real.at(i, real) as usize].clone()
        } else if i < real + compound {
            list[(real + walk.compound.at(i - real, compound)) as usize].clone()
        } else {
            overflow_given(i - real - compound, sex)
        }
    }
}

/// Every character the name material can produce (for font coverage checks).
pub(super) fn characters() -> Vec<char> {
    let lists = [
        FAMILY_REAL,
        FAMILY_HEADS,
        FAMILY_TAILS,
        GIVEN_MALE,
        GIVEN_FEMALE,
        MALE_HEADS,
        MALE_TAILS,
        FEMALE_HEADS,
        FEMALE_TAILS,
    ];
    let mut out = Vec::new();
    for (written, reading) in lists.into_iter().flatten() {
        out.extend(written.chars().chain(reading.chars()));
    }
    for ((hw, hr), (tw, tr)) in [MALE_OVERFLOW, FEMALE_OVERFLOW] {
        out.extend(
            hw.chars()
                .chain(hr.chars())
                .chain(tw.chars())
                .chain(tr.chars()),
        );
    }
    for s in SYLLABLES {
        out.extend(s.chars().chain(s.chars().map(katakana)));
    }
    out
}

fn compounds<'a>(
    heads: &'a [(&str, &str)],
    tails: &'a [(&str, &str)],
) -> impl Iterator<Item = Name> + 'a {
    heads.iter().flat_map(move |(hw, hr)| {
        tails
            .iter()
            .filter(move |(tw, _)| tw != hw)
            .map(move |(tw, tr)| Name {
                written: format!("{hw}{tw}"),
                reading: format!("{hr}{tr}"),
            })
    })
}

/// The real names, then the compounds, minus what is not allowed or clashes with an
/// accepted name; also says how many of the result are real names.
fn given_list(
    real: &[(&str, &str)],
    heads: &[(&str, &str)],
    tails: &[(&str, &str)],
    accepted: &mut AffixFree,
    allowed: &dyn Fn(&str) -> bool,
) -> (Vec<Name>, usize) {
    let mut out = Vec::new();
    let mut real_count = 0;
    let candidates = real.iter().map(|(w, r)| (Name::new(w, r), true));
    let compounds = compounds(heads, tails).map(|n| (n, false));
    for (name, is_real) in candidates.chain(compounds) {
        let overflow_like = [MALE_OVERFLOW, FEMALE_OVERFLOW]
            .iter()
            .any(|((head, _), _)| name.written.starts_with(head));
        if overflow_like || !allowed(&name.written) || !accepted.insert(&name.written) {
            continue;
        }
        real_count += usize::from(is_real);
        out.push(name);
    }
    (out, real_count)
}

/// The `index`-th overflow given name: the sex's head, a bijective base-k syllable
/// numeral (at least two syllables), the sex's tail.
fn overflow_given(index: u64, sex: Sex) -> Name {
    let k = SYLLABLES.len() as u64;
    let mut n = index + k + 1;
    let mut parts = Vec::new();
    while n > 0 {
        let digit = (n - 1) % k;
        parts.push(SYLLABLES[digit as usize]);
        n = (n - 1) / k;
    }
    parts.reverse();
    let ((hw, hr), (tw, tr)) = match sex {
        Sex::Male => MALE_OVERFLOW,
        Sex::Female => FEMALE_OVERFLOW,
    };
    let numeral = parts.concat();
    let reading: String = numeral.chars().map(katakana).collect();
    Name {
        written: format!("{hw}{numeral}{tw}"),
        reading: format!("{hr}{reading}{tr}"),
    }
}

/// Hiragana to katakana (the blocks are 0x60 apart); anything else unchanged.
pub(super) fn katakana(c: char) -> char {
    match c {
        'ぁ'..='ゖ' => char::from_u32(c as u32 + 0x60).unwrap_or(c),
        _ => c,
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_names_are_distinct_and_unlike_list_names() {
        let book = NameBook::new(&[]);
        let list: HashSet<&String> = book.given[0]
            .iter()
            .chain(&book.given[1])
            .map(|n| &n.written)
            .collect();
        let mut seen = HashSet::new();
        for i in 0..5000 {
            for sex in [Sex::Male, Sex::Female] {
                let n = overflow_given(i, sex);
                assert!(!list.contains(&n.written), "{n:?}");
                assert!(
                    n.reading.chars().all(|c| ('ァ'..='ヶ').contains(&c)),
                    "{n:?}"
                );
                assert!(list.iter().all(|l| !n.written.starts_with(l.as_str())));
                assert!(seen.insert(n.written.clone()), "{n:?}");
            }
        }
    }

    #[test]
    fn a_family_never_repeats_a_given_name() {
        use rand::SeedableRng;
        let mut book = NameBook::new(&[]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let n = book.given[0].len() + 50;
        let names: HashSet<String> = (0..n)
            .map(|_| book.next_given(0, Sex::Male, &mut rng).written)
            .collect();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn readings_are_katakana() {
        let book = NameBook::new(&[]);
        let all = book
            .families
            .iter()
            .chain(&book.given[0])
            .chain(&book.given[1]);
        for n in all {
            assert!(
                n.reading
                    .chars()
                    .all(|c| ('ァ'..='ヶ').contains(&c) || c == 'ー'),
                "{n:?}"
            );
        }
        assert_eq!(katakana('さ'), 'サ');
        assert_eq!(katakana('漢'), '漢');
    }
}
