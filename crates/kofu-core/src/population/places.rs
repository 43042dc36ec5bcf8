//! Real municipalities, towns and postal codes for synthetic addresses, and the JIS
//! check digit that turns a 5-digit local government code into the 6-digit one printed
//! on certificates.

use std::collections::BTreeSet;

use rand::Rng;

use crate::records::Municipality;

/// A municipality with a rough size (draw weight) and a few of its towns.
pub(super) struct Place {
    /// The 5-digit local government code, without check digit.
    pub(super) code5: &'static str,
    pub(super) name: &'static str,
    weight: u32,
    /// (town, postal code)
    towns: &'static [(&'static str, &'static str)],
}

macro_rules! place {
    ($code:literal, $name:literal, $w:literal, [$(($t:literal, $p:literal)),+ $(,)?]) => {
        Place { code5: $code, name: $name, weight: $w, towns: &[$(($t, $p)),+] }
    };
}

#[rustfmt::skip]
pub(super) const PLACES: &[Place] = &[
    place!("01100", "Sapporo City, Hokkaido", 8, [
        ("Odori-Nishi", "060-0042"), ("Kita-Gojo-Nishi", "060-0005"),
        ("Minami-Shijo-Nishi", "064-0804"),
    ]),
    place!("01202", "Hakodate City, Hokkaido", 2, [
        ("Motomachi", "040-0054"), ("Goryokaku-cho", "040-0001"), ("Suehiro-cho", "040-0053"),
    ]),
    place!("02201", "Aomori City, Aomori", 2, [
        ("Shinmachi", "030-0801"), ("Yasukata", "030-0803"), ("Tsutsumi-machi", "030-0812"),
    ]),
    place!("04100", "Sendai City, Miyagi", 5, [
        ("Ichibancho", "980-0811"), ("Kokubuncho", "980-0803"), ("Izumi-Chuo", "981-3133"),
    ]),
    place!("11100", "Saitama City, Saitama", 5, [
        ("Kishiki-cho", "330-0843"), ("Takasago", "330-0063"), ("Sakuragi-cho", "330-0854"),
    ]),
    place!("12100", "Chiba City, Chiba", 4, [
        ("Chuo", "260-0013"), ("Makuhari-Hongo", "262-0033"), ("Inage-cho", "263-0035"),
    ]),
    place!("12204", "Funabashi City, Chiba", 3, [
        ("Honcho", "273-0005"), ("Maebara-Nishi", "274-0825"), ("Maebara-Higashi", "274-0824"),
    ]),
    place!("13101", "Chiyoda City, Tokyo", 1, [
        ("Marunouchi", "100-0005"), ("Kanda-Jimbocho", "101-0051"), ("Kojimachi", "102-0083"),
    ]),
    place!("13102", "Chuo City, Tokyo", 2, [
        ("Nihonbashi", "103-0027"), ("Ginza", "104-0061"), ("Tsukishima", "104-0052"),
    ]),
    place!("13103", "Minato City, Tokyo", 2, [
        ("Roppongi", "106-0032"), ("Shiba", "105-0014"), ("Akasaka", "107-0052"),
        ("Takanawa", "108-0074"),
    ]),
    place!("13104", "Shinjuku City, Tokyo", 3, [
        ("Nishi-Shinjuku", "160-0023"), ("Kabukicho", "160-0021"), ("Yotsuya", "160-0004"),
        ("Takadanobaba", "169-0075"),
    ]),
    place!("13105", "Bunkyo City, Tokyo", 2, [
        ("Hongo", "113-0033"), ("Koishikawa", "112-0002"), ("Sengoku", "112-0011"),
    ]),
    place!("13106", "Taito City, Tokyo", 2, [
        ("Asakusa", "111-0032"), ("Ueno-Koen", "110-0007"), ("Yanaka", "110-0001"),
    ]),
    place!("13107", "Sumida City, Tokyo", 2, [
        ("Oshiage", "131-0045"), ("Ryogoku", "130-0026"), ("Kinshi", "130-0013"),
    ]),
    place!("13108", "Koto City, Tokyo", 3, [
        ("Toyosu", "135-0061"), ("Kiba", "135-0042"), ("Kameido", "136-0071"),
    ]),
    place!("13109", "Shinagawa City, Tokyo", 3, [
        ("Osaki", "141-0032"), ("Higashi-Gotanda", "141-0022"), ("Oi", "140-0014"),
    ]),
    place!("13110", "Meguro City, Tokyo", 2, [
        ("Jiyugaoka", "152-0035"), ("Kamimeguro", "153-0051"), ("Himonya", "152-0003"),
    ]),
    place!("13111", "Ota City, Tokyo", 4, [
        ("Kamata", "144-0052"), ("Denenchofu", "145-0071"), ("Omori-Kita", "143-0016"),
    ]),
    place!("13112", "Setagaya City, Tokyo", 5, [
        ("Sangenjaya", "154-0024"), ("Kitazawa", "155-0031"), ("Tamagawa", "158-0094"),
        ("Kyodo", "156-0052"),
    ]),
    place!("13113", "Shibuya City, Tokyo", 2, [
        ("Jingumae", "150-0001"), ("Ebisu", "150-0013"), ("Yoyogi", "151-0053"),
        ("Hiroo", "150-0012"),
    ]),
    place!("13114", "Nakano City, Tokyo", 2, [
        ("Nogata", "165-0027"), ("Arai", "165-0026"), ("Chuo", "164-0011"),
    ]),
    place!("13115", "Suginami City, Tokyo", 3, [
        ("Asagaya-Minami", "166-0004"), ("Ogikubo", "167-0051"), ("Koenji-Kita", "166-0002"),
    ]),
    place!("13116", "Toshima City, Tokyo", 2, [
        ("Higashi-Ikebukuro", "170-0013"), ("Komagome", "170-0003"), ("Mejiro", "171-0031"),
    ]),
    place!("13120", "Nerima City, Tokyo", 4, [
        ("Hikarigaoka", "179-0072"), ("Shakujii-machi", "177-0041"),
        ("Oizumi-gakuen-cho", "178-0061"),
    ]),
    place!("13121", "Adachi City, Tokyo", 3, [
        ("Senju", "120-0034"), ("Ayase", "120-0005"), ("Takenotsuka", "121-0813"),
    ]),
    place!("13123", "Edogawa City, Tokyo", 3, [
        ("Nishi-Kasai", "134-0088"), ("Minami-Koiwa", "133-0056"), ("Funabori", "134-0091"),
    ]),
    place!("13201", "Hachioji City, Tokyo", 3, [
        ("Yokoyama-cho", "192-0081"), ("Minami-Osawa", "192-0364"), ("Takao-machi", "193-0844"),
    ]),
    place!("13203", "Musashino City, Tokyo", 1, [
        ("Kichijoji-Honcho", "180-0004"), ("Naka-cho", "180-0006"), ("Sakai", "180-0022"),
    ]),
    place!("14100", "Yokohama City, Kanagawa", 9, [
        ("Minatomirai", "220-0012"), ("Motomachi", "231-0861"),
        ("Tsunashima-Nishi", "223-0053"), ("Aobadai", "227-0062"),
    ]),
    place!("14130", "Kawasaki City, Kanagawa", 5, [
        ("Kosugi-machi", "211-0063"), ("Mizonokuchi", "213-0001"),
        ("Ekimae-Honcho", "210-0007"),
    ]),
    place!("14204", "Kamakura City, Kanagawa", 1, [
        ("Yukinoshita", "248-0005"), ("Hase", "248-0016"), ("Ofuna", "247-0056"),
    ]),
    place!("15100", "Niigata City, Niigata", 3, [
        ("Furumachi-dori", "951-8063"), ("Bandai", "950-0088"), ("Sekiya", "951-8161"),
    ]),
    place!("17201", "Kanazawa City, Ishikawa", 2, [
        ("Korinbo", "920-0981"), ("Higashiyama", "920-0831"), ("Hirosaka", "920-0962"),
    ]),
    place!("20201", "Nagano City, Nagano", 2, [
        ("Tsuruga", "380-0813"), ("Gondo-cho", "380-0833"), ("Minami-Chitose", "380-0823"),
    ]),
    place!("21201", "Gifu City, Gifu", 2, [
        ("Kanazono-cho", "500-8842"), ("Nagara", "502-0071"), ("Yanagase-dori", "500-8875"),
    ]),
    place!("22100", "Shizuoka City, Shizuoka", 3, [
        ("Otemachi", "420-0853"), ("Gofukucho", "420-0031"), ("Tokiwacho", "420-0034"),
    ]),
    place!("22130", "Hamamatsu City, Shizuoka", 3, [
        ("Sunayama-cho", "430-0926"), ("Kajimachi", "430-0933"), ("Sukenobu-cho", "432-8013"),
    ]),
    place!("23100", "Nagoya City, Aichi", 7, [
        ("Sakae", "460-0008"), ("Meieki", "450-0002"), ("Osu", "460-0011"),
        ("Kanayama", "456-0002"),
    ]),
    place!("25201", "Otsu City, Shiga", 2, [
        ("Hamaotsu", "520-0047"), ("Ishiyamadera", "520-0861"), ("Zeze", "520-0815"),
    ]),
    place!("26100", "Kyoto City, Kyoto", 5, [
        ("Gionmachi-Minamigawa", "605-0074"), ("Kitashirakawa", "606-8266"),
        ("Sagatenryuji", "616-8385"),
    ]),
    place!("27100", "Osaka City, Osaka", 8, [
        ("Umeda", "530-0001"), ("Namba", "542-0076"), ("Tenjinbashi", "530-0041"),
        ("Kyutaromachi", "541-0056"),
    ]),
    place!("27140", "Sakai City, Osaka", 3, [
        ("Mikunigaoka-Miyukidori", "590-0028"), ("Nakamozu-cho", "591-8023"),
        ("Fukai-Kitamachi", "599-8272"),
    ]),
    place!("28100", "Kobe City, Hyogo", 5, [
        ("Sannomiya-cho", "650-0021"), ("Motomachi-dori", "650-0022"),
        ("Kitano-cho", "650-0002"), ("Rokkodai-cho", "657-0013"),
    ]),
    place!("28201", "Himeji City, Hyogo", 2, [
        ("Honmachi", "670-0012"), ("Ekimae-cho", "670-0927"), ("Nozato", "670-0811"),
    ]),
    place!("29201", "Nara City, Nara", 2, [
        ("Noborioji-cho", "630-8213"), ("Sanjo-machi", "630-8122"),
        ("Gakuen-Minami", "631-0034"),
    ]),
    place!("33100", "Okayama City, Okayama", 3, [
        ("Ekimae-cho", "700-0023"), ("Omote-cho", "700-0822"), ("Tsushima-Naka", "700-0082"),
    ]),
    place!("34100", "Hiroshima City, Hiroshima", 4, [
        ("Kamiya-cho", "730-0031"), ("Hondori", "730-0035"), ("Ujina-Kaigan", "734-0011"),
    ]),
    place!("37201", "Takamatsu City, Kagawa", 2, [
        ("Kawaramachi", "760-0052"), ("Marugame-machi", "760-0029"),
        ("Yashima-Nishimachi", "761-0113"),
    ]),
    place!("38201", "Matsuyama City, Ehime", 2, [
        ("Okaido", "790-0004"), ("Dogo-Yunomachi", "790-0842"), ("Ichibancho", "790-0001"),
    ]),
    place!("40100", "Kitakyushu City, Fukuoka", 3, [
        ("Kyomachi", "802-0002"), ("Minatomachi", "801-0852"), ("Uomachi", "802-0006"),
    ]),
    place!("40130", "Fukuoka City, Fukuoka", 5, [
        ("Tenjin", "810-0001"), ("Hakata-Ekimae", "812-0011"), ("Ohori", "810-0052"),
        ("Momochihama", "814-0001"),
    ]),
    place!("42201", "Nagasaki City, Nagasaki", 2, [
        ("Hamano-machi", "850-0853"), ("Dejima-machi", "850-0862"),
        ("Minamiyamate-machi", "850-0931"),
    ]),
    place!("43100", "Kumamoto City, Kumamoto", 3, [
        ("Shimotori", "860-0807"), ("Kamitori-cho", "860-0845"), ("Suizenji", "862-0950"),
    ]),
    place!("44201", "Oita City, Oita", 2, [
        ("Funai-machi", "870-0021"), ("Chuo-machi", "870-0035"), ("Miyako-machi", "870-0034"),
    ]),
    place!("46201", "Kagoshima City, Kagoshima", 2, [
        ("Sennichi-cho", "892-0843"), ("Chuo-cho", "890-0053"), ("Kamoike", "890-0063"),
    ]),
    place!("47201", "Naha City, Okinawa", 2, [
        ("Makishi", "900-0013"), ("Kumoji", "900-0015"), ("Shuri-Kinjo-cho", "903-0815"),
        ("Omoromachi", "900-0006"),
    ]),
];

/// The 6-digit local government code: the 5-digit code plus the JIS X 0401 check digit
/// (weights 6,5,4,3,2; check = last digit of 11 − (sum mod 11)). `None` unless the
/// input is exactly five ASCII digits.
pub fn with_check_digit(code5: &str) -> Option<String> {
    let b = code5.as_bytes();
    if b.len() != 5 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = b
        .iter()
        .zip([6u32, 5, 4, 3, 2])
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    let check = (11 - sum % 11) % 10;
    Some(format!("{code5}{check}"))
}

impl Place {
    pub(super) fn municipality(&self) -> Municipality {
        Municipality {
            // The table holds only 5-digit codes; a malformed entry would fail the tests.
            code: with_check_digit(self.code5).unwrap_or_else(|| self.code5.to_owned()),
            name: self.name.to_owned(),
        }
    }

    /// A street address in this municipality: `chome-ban-go town, municipality postal`.
    pub(super) fn address<R: Rng>(&self, rng: &mut R) -> String {
        let (town, postal) = self.towns[rng.random_range(0..self.towns.len() as u32) as usize];
        let chome = rng.random_range(1..=5u32);
        let ban = rng.random_range(1..=30u32);
        let go = rng.random_range(1..=20u32);
        let room = if rng.random_bool(0.3) {
            format!(
                "-{}{:02}",
                rng.random_range(1..=12u32),
                rng.random_range(1..=10u32)
            )
        } else {
            String::new()
        };
        format!("{chome}-{ban}-{go}{room} {town}, {} {postal}", self.name)
    }
}

/// Draws a municipality index, bigger cities more often.
pub(super) fn pick_place<R: Rng>(rng: &mut R) -> usize {
    let total: u32 = PLACES.iter().map(|p| p.weight).sum();
    let mut x = rng.random_range(0..total);
    for (i, p) in PLACES.iter().enumerate() {
        if x < p.weight {
            return i;
        }
        x -= p.weight;
    }
    PLACES.len() - 1
}

/// Every word an address or municipality name can contain.
pub(super) fn address_words() -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    for p in PLACES {
        let towns = p.towns.iter().map(|(t, _)| *t);
        for text in towns.chain([p.name]) {
            for w in text.split(|c: char| !c.is_ascii_alphanumeric()) {
                if !w.is_empty() {
                    words.insert(w.to_owned());
                }
            }
        }
    }
    words
}
