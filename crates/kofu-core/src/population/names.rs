//! Romanized Japanese names for the synthetic population, and the allocator that keeps
//! every full name unique. Documents are checked for "no other person's name" by plain
//! text search, so uniqueness alone is not enough: the lists are shaped so that no full
//! name can appear inside another one or inside an address.

use std::collections::BTreeSet;

use rand::Rng;

/// Real given names, male. Disjoint from `GIVEN_FEMALE` so that a family's two
/// per-gender allocators can never hand out the same word.
#[rustfmt::skip]
const GIVEN_MALE: &[&str] = &[
    "Haruto", "Riku", "Sota", "Yuto", "Hinata", "Ren", "Yamato", "Kaito", "Asahi", "Sora",
    "Haruki", "Takumi", "Daiki", "Kenta", "Shota", "Hiroshi", "Takashi", "Makoto", "Kenji",
    "Satoshi", "Akira", "Kazuya", "Naoki", "Tetsuya", "Kazuo", "Shigeru", "Isamu", "Osamu",
    "Minoru", "Susumu", "Masaru", "Tadashi", "Koji", "Yoshio", "Hideki", "Ryota", "Yusuke",
    "Daisuke", "Kosuke", "Shun", "Tsubasa", "Yuma", "Kota", "Ryo", "Sho", "Jun", "Tomoya",
    "Yuya", "Keita", "Shinji", "Takeshi", "Hayato", "Kohei", "Kazuki", "Yuichi", "Shinichi",
    "Kenichi", "Koichi", "Junichi", "Ichiro", "Jiro", "Saburo", "Goro", "Hajime", "Mamoru",
    "Noboru", "Tsuyoshi", "Masato", "Masashi", "Toshiaki", "Hiroki", "Hiroto", "Naoto",
    "Tatsuya", "Takuya", "Kazuma", "Soma", "Itsuki", "Ritsu", "Arata", "Eita", "Genki", "Isao",
    "Kiyoshi", "Mitsuru", "Nobuo", "Tomohiro", "Toru", "Wataru", "Yasuo", "Yoshiaki", "Yuji",
    "Yutaka", "Kunio", "Teruo", "Fumio", "Haruo", "Tatsuo", "Akio", "Shinya", "Ryu", "Kei",
    "Gaku", "Yosuke", "Keisuke", "Shunsuke", "Ryosuke", "Kyosuke", "Sosuke", "Taichi", "Aoi",
    "Hikaru", "Ryunosuke", "Kanata", "Rento", "Yuki", "Shogo", "Kengo", "Daichi",
];

/// Real given names, female.
#[rustfmt::skip]
const GIVEN_FEMALE: &[&str] = &[
    "Himari", "Mei", "Tsumugi", "Yui", "Rio", "Sakura", "Yuna", "Hina", "Akari", "Ema", "Mio",
    "Koharu", "Riko", "Yuzuki", "Hana", "Mitsuki", "Honoka", "Misaki", "Nanami", "Ayaka",
    "Haruka", "Yuka", "Yoko", "Keiko", "Kazuko", "Sachiko", "Michiko", "Hiroko", "Kyoko",
    "Tomoko", "Yumiko", "Naoko", "Junko", "Akiko", "Noriko", "Masako", "Emiko", "Fumiko",
    "Hanako", "Yoshiko", "Setsuko", "Toshiko", "Chiyo", "Haru", "Kiyo", "Mai", "Ai", "Emi",
    "Eri", "Kana", "Mana", "Rina", "Saki", "Asuka", "Ayumi", "Chika", "Chihiro", "Erika",
    "Kaori", "Kumiko", "Mayumi", "Megumi", "Miho", "Miki", "Nana", "Nao", "Natsumi", "Rei",
    "Rie", "Risa", "Sayaka", "Shiori", "Yumi", "Yukiko", "Mariko", "Reiko", "Ryoko", "Satomi",
    "Shizuka", "Takako", "Tamaki", "Yasuko", "Yoshie", "Kanako", "Momoka", "Nozomi", "Airi",
    "Anna", "Hikari", "Kaede", "Karin", "Kokoro", "Miyu", "Moe", "Nene", "Sara", "Wakana",
    "Yuina", "Ayano", "Chinatsu", "Fuka", "Haruna", "Kotone", "Mahiro", "Manami", "Mizuki",
    "Rin", "Sana", "Suzu", "Tsubaki", "Aya", "Madoka", "Atsuko", "Etsuko", "Kimiko",
];

/// Syllable compounds that extend the given-name lists with plausible names, so that a
/// common family name can have hundreds of members before any overflow name is needed.
#[rustfmt::skip]
const MALE_HEADS: &[&str] = &[
    "Aki", "Atsu", "Fumi", "Hide", "Hiro", "Kazu", "Kiyo", "Kuni", "Masa", "Mitsu", "Nobu",
    "Nori", "Sada", "Shige", "Taka", "Tada", "Tami", "Tatsu", "Teru", "Tomo", "Toshi", "Tsune",
    "Yasu", "Yoshi", "Haru", "Shin", "Sei", "Ken", "Tetsu", "Michi", "Mune", "Naga", "Yori",
    "Sumi", "Chika", "Hisa", "Iku", "Kane", "Mori", "Sane", "Tane",
];
#[rustfmt::skip]
const MALE_TAILS: &[&str] = &[
    "hiro", "ki", "to", "ya", "nori", "o", "shi", "taka", "yuki", "hiko", "aki", "haru", "masa",
    "kazu",
];
#[rustfmt::skip]
const FEMALE_HEADS: &[&str] = &[
    "Aya", "Chi", "Emi", "Fumi", "Haru", "Hiro", "Kazu", "Kiyo", "Kyo", "Mari", "Masa", "Mayu",
    "Michi", "Mitsu", "Nao", "Nori", "Sachi", "Sae", "Saya", "Shizu", "Taka", "Tomo", "Toshi",
    "Yasu", "Yoshi", "Yuri", "Aki", "Miya", "Chiha", "Natsu", "Fuyu", "Ito", "Kimi", "Kuni",
    "Mine", "Sumi", "Teru", "Tsuru", "Yae", "Hide", "Ruri", "Kaho", "Riho",
];
#[rustfmt::skip]
const FEMALE_TAILS: &[&str] = &[
    "ko", "mi", "e", "yo", "ka", "na", "no", "ri", "ho", "ne", "ha", "sa",
];

/// Real family names, most common first: when two would clash (one a prefix of the
/// other) the earlier, more common one is kept.
#[rustfmt::skip]
const FAMILY_REAL: &[&str] = &[
    "Sato", "Suzuki", "Takahashi", "Tanaka", "Ito", "Watanabe", "Yamamoto", "Nakamura",
    "Kobayashi", "Kato", "Yoshida", "Yamada", "Sasaki", "Yamaguchi", "Matsumoto", "Inoue",
    "Kimura", "Hayashi", "Saito", "Shimizu", "Yamazaki", "Mori", "Abe", "Ikeda", "Hashimoto",
    "Yamashita", "Ishikawa", "Nakajima", "Maeda", "Fujita", "Ogawa", "Goto", "Okada",
    "Hasegawa", "Murakami", "Kondo", "Ishii", "Sakamoto", "Endo", "Aoki", "Fujii", "Nishimura",
    "Fukuda", "Ota", "Miura", "Fujiwara", "Okamoto", "Matsuda", "Nakagawa", "Nakano", "Harada",
    "Ono", "Tamura", "Takeuchi", "Kaneko", "Wada", "Nakayama", "Ishida", "Ueda", "Morita",
    "Hara", "Shibata", "Sakai", "Kudo", "Yokoyama", "Miyazaki", "Miyamoto", "Uchida", "Takagi",
    "Ando", "Taniguchi", "Ohno", "Maruyama", "Imai", "Takada", "Fujimoto", "Takeda", "Murata",
    "Ueno", "Sugiyama", "Masuda", "Sugawara", "Hirano", "Kojima", "Otsuka", "Chiba", "Kubo",
    "Matsui", "Iwasaki", "Sakurai", "Kinoshita", "Noguchi", "Matsuo", "Nomura", "Kikuchi",
    "Sano", "Onishi", "Sugimoto", "Arai", "Hamada", "Ichikawa", "Furukawa", "Mizuno", "Komatsu",
    "Shimada", "Igarashi", "Takano", "Yoshikawa", "Kawaguchi", "Mizutani", "Tsuji", "Higuchi",
    "Nishida", "Kitamura", "Azuma", "Hoshino", "Kawasaki", "Miyata", "Kurihara", "Horie",
    "Ebihara", "Hattori", "Yasuda", "Kawano", "Nagai", "Katayama", "Ogura", "Nakanishi",
    "Kuroda", "Tsuchiya", "Nagata", "Hirai", "Asano", "Hirata", "Yano", "Fukushima", "Kawamura",
    "Sakata", "Ozaki", "Nishikawa", "Tsuda", "Akiyama", "Ishihara", "Okumura", "Obata",
    "Minami", "Ohashi", "Amano", "Kubota", "Nozaki", "Seki", "Osawa", "Tomita", "Kanda", "Iida",
    "Kamata", "Oshima", "Matsushita", "Yoshimura", "Mochizuki", "Tachibana", "Iwata", "Sugita",
    "Kawashima", "Hayakawa", "Takayama", "Yamauchi", "Ishizuka", "Tsukamoto", "Mukai", "Hori",
    "Kuwahara", "Nishiyama", "Shirai", "Fukui", "Kanno", "Okabe", "Baba", "Kurita", "Takemoto",
    "Yamane", "Ishiguro", "Ogata", "Oda", "Kishi", "Toyoda", "Shimura", "Senda", "Komori",
    "Kuno", "Adachi", "Hosokawa", "Yamagishi", "Nakata", "Matsuoka", "Ikegami", "Kamiya",
    "Morimoto", "Tokunaga", "Shiraishi", "Ikeuchi", "Kawai", "Takase", "Iwamoto", "Uchiyama",
    "Kusano", "Yoshino", "Fujisawa", "Nishio", "Arakawa", "Kagawa", "Tanabe", "Sekiguchi",
    "Otake", "Miyake", "Takashima", "Sugano", "Hamaguchi", "Kawakami", "Umeda", "Mikami",
    "Noda", "Furuta", "Kohara", "Hiraoka", "Inagaki", "Enomoto", "Terada", "Shinohara",
    "Kumagai", "Ichihara", "Koike", "Saeki", "Hotta", "Onuki", "Tominaga", "Nagano", "Sawada",
    "Okubo", "Amemiya", "Wakabayashi",
];

/// Syllable compounds in the shape of real family names (Naka+mura, Ishi+kawa, ...).
#[rustfmt::skip]
const FAMILY_HEADS: &[&str] = &[
    "Aka", "Asa", "Ao", "Ara", "Fuku", "Furu", "Hama", "Hashi", "Higa", "Hira", "Hoshi", "Ichi",
    "Ike", "Ishi", "Iwa", "Kawa", "Kami", "Kane", "Kata", "Kita", "Kiyo", "Kuro", "Masu",
    "Matsu", "Miya", "Mizu", "Naga", "Naka", "Nishi", "Oka", "Saka", "Shima", "Shimo", "Sugi",
    "Taka", "Take", "Tama", "Tani", "Toku", "Tomi", "Tsuchi", "Uchi", "Ume", "Yama", "Yoshi",
    "Yoko", "Wata", "Kuma", "Kaji", "Ino",
];
#[rustfmt::skip]
const FAMILY_TAILS: &[&str] = &[
    "da", "ta", "moto", "mura", "kawa", "gawa", "yama", "shita", "saki", "zaki", "hara", "bara",
    "no", "uchi", "oka", "jima", "shima", "zawa", "sawa", "mori", "gami", "be", "tani", "hashi",
    "guchi", "kubo", "hata", "ue", "numa", "ishi",
];

/// Overflow given names end in these, which no list name does, so an overflow name can
/// never equal a list name.
const MALE_OVERFLOW_TAIL: &str = "zaemon";
const FEMALE_OVERFLOW_TAIL: &str = "hime";

/// One consonant (cluster) and one vowel each: a concatenation splits back uniquely
/// after every vowel, so distinct syllable sequences give distinct words.
#[rustfmt::skip]
const SYLLABLES: &[&str] = &[
    "ka", "ki", "ku", "ke", "ko", "sa", "shi", "su", "se", "so", "ta", "chi", "tsu", "te", "to",
    "na", "ni", "nu", "ne", "no", "ha", "hi", "fu", "he", "ho", "ma", "mi", "mu", "me", "mo",
    "ya", "yu", "yo", "ra", "ri", "ru", "re", "ro", "wa",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gender {
    Male,
    Female,
}

impl Gender {
    fn slot(self) -> usize {
        match self {
            Gender::Male => 0,
            Gender::Female => 1,
        }
    }

    pub(super) fn opposite(self) -> Gender {
        match self {
            Gender::Male => Gender::Female,
            Gender::Female => Gender::Male,
        }
    }
}

/// A pseudo-random walk through one gender's given names for one family: `a·i + b mod n`
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

/// The name lists plus, per family, how far each gender's walk has gone.
pub(super) struct NameBook {
    families: Vec<String>,
    real_families: usize,
    given: [Vec<String>; 2],
    /// How many of each `given` list are real names (the rest are compounds).
    real_given: [usize; 2],
    walks: Vec<[Option<Walk>; 2]>,
}

impl NameBook {
    /// Builds the lists. `forbidden` holds every word that appears in an address or a
    /// municipality name: no given name may be one of them, so that a full name can
    /// never be read out of an address.
    pub(super) fn new(forbidden: &BTreeSet<String>) -> NameBook {
        let mut families: BTreeSet<String> = BTreeSet::new();
        let mut family_list = Vec::new();
        let compounds = compounds(FAMILY_HEADS, FAMILY_TAILS);
        let real = FAMILY_REAL.iter().map(|s| (*s).to_owned());
        let mut real_families = 0;
        for (i, name) in real.chain(compounds).enumerate() {
            if prefix_clash(&families, &name) {
                continue;
            }
            families.insert(name.clone());
            family_list.push(name);
            if i < FAMILY_REAL.len() {
                real_families += 1;
            }
        }

        let mut taken: BTreeSet<String> = families.clone();
        taken.extend(forbidden.iter().cloned());
        let (male, real_male) = given_list(GIVEN_MALE, MALE_HEADS, MALE_TAILS, &mut taken);
        let (female, real_female) =
            given_list(GIVEN_FEMALE, FEMALE_HEADS, FEMALE_TAILS, &mut taken);
        let walks = vec![[None, None]; family_list.len()];
        NameBook {
            families: family_list,
            real_families,
            given: [male, female],
            real_given: [real_male, real_female],
            walks,
        }
    }

    pub(super) fn family(&self, index: usize) -> &str {
        &self.families[index]
    }

    #[cfg(test)]
    pub(super) fn families(&self) -> &[String] {
        &self.families
    }

    #[cfg(test)]
    pub(super) fn given_names(&self, gender: Gender) -> &[String] {
        &self.given[gender.slot()]
    }

    #[cfg(test)]
    pub(super) fn real_family_count(&self) -> usize {
        self.real_families
    }

    /// Common real names are drawn more often, like in a real registry.
    pub(super) fn pick_family<R: Rng>(&self, rng: &mut R) -> usize {
        let pool = if rng.random_bool(0.85) {
            self.real_families
        } else {
            self.families.len()
        };
        rng.random_range(0..pool as u64) as usize
    }

    /// The next unused given name of `gender` in `family`. Never repeats within a family,
    /// so every (given, family) pair — every full name — is handed out at most once.
    pub(super) fn next_given<R: Rng>(
        &mut self,
        family: usize,
        gender: Gender,
        rng: &mut R,
    ) -> String {
        let g = gender.slot();
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
            overflow_given(i - real - compound, gender)
        }
    }
}

fn compounds<'a>(heads: &'a [&str], tails: &'a [&str]) -> impl Iterator<Item = String> + 'a {
    heads
        .iter()
        .flat_map(move |h| tails.iter().map(move |t| format!("{h}{t}")))
}

/// Whether `name` is a prefix of an accepted name or has one as its prefix. Family
/// names are kept prefix-free so that "Yuki Mori" can never be found inside
/// "Yuki Morita".
fn prefix_clash(accepted: &BTreeSet<String>, name: &str) -> bool {
    let extends = accepted
        .range(name.to_owned()..)
        .next()
        .is_some_and(|next| next.starts_with(name));
    let extended = (1..name.len()).any(|cut| accepted.contains(&name[..cut]));
    extends || extended
}

/// The real names, then the compounds, minus anything taken; also says how many of the
/// result are real names.
fn given_list(
    real: &[&str],
    heads: &[&str],
    tails: &[&str],
    taken: &mut BTreeSet<String>,
) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut real_count = 0;
    let candidates = real.iter().map(|s| ((*s).to_owned(), true));
    let compounds = compounds(heads, tails).map(|s| (s, false));
    for (name, is_real) in candidates.chain(compounds) {
        let overflow_like =
            name.ends_with(MALE_OVERFLOW_TAIL) || name.ends_with(FEMALE_OVERFLOW_TAIL);
        if overflow_like || !taken.insert(name.clone()) {
            continue;
        }
        real_count += usize::from(is_real);
        out.push(name);
    }
    (out, real_count)
}

/// The `index`-th overflow given name: a bijective base-k syllable numeral (at least two
/// syllables) plus a gender tail. Only a family with more members of one gender than
/// that gender's list has names ever gets one.
fn overflow_given(index: u64, gender: Gender) -> String {
    let k = SYLLABLES.len() as u64;
    let mut n = index + k + 1;
    let mut parts = Vec::new();
    while n > 0 {
        let digit = (n - 1) % k;
        parts.push(SYLLABLES[digit as usize]);
        n = (n - 1) / k;
    }
    parts.reverse();
    let tail = match gender {
        Gender::Male => MALE_OVERFLOW_TAIL,
        Gender::Female => FEMALE_OVERFLOW_TAIL,
    };
    capitalize(&format!("{}{tail}", parts.concat()))
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
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
    use std::collections::HashSet;

    #[test]
    fn overflow_names_are_distinct_and_unlike_list_names() {
        let book = NameBook::new(&BTreeSet::new());
        let list: HashSet<&String> = book.given[0].iter().chain(&book.given[1]).collect();
        let mut seen = HashSet::new();
        for i in 0..5000 {
            for g in [Gender::Male, Gender::Female] {
                let w = overflow_given(i, g);
                assert!(w.chars().all(|c| c.is_ascii_alphabetic()), "{w}");
                assert!(!list.contains(&w), "{w}");
                assert!(seen.insert(w.clone()), "{w}");
            }
        }
    }

    #[test]
    fn a_family_never_repeats_a_given_name() {
        use rand::SeedableRng;
        let mut book = NameBook::new(&BTreeSet::new());
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let n = book.given[0].len() + 50;
        let names: HashSet<String> = (0..n)
            .map(|_| book.next_given(0, Gender::Male, &mut rng))
            .collect();
        assert_eq!(names.len(), n);
    }
}
