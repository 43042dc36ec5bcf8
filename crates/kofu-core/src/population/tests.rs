//! Tests of the synthetic population: the properties other crates' tests lean on
//! (determinism, uniqueness, household consistency, keys that verify, a card for every
//! status) and the plausibility of what it generates.

mod credentials;

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::{Signer, Verifier, VerifyingKey};
use kofu_proto::CertKind;

use super::*;
use crate::records::{Relation, Sex};

fn spec(seed: u64, residents: u32, kiosks: u32) -> PopulationSpec {
    PopulationSpec {
        seed,
        residents,
        kiosks,
    }
}

fn make(seed: u64, residents: u32, kiosks: u32) -> Population {
    Population::generate(&spec(seed, residents, kiosks))
}

#[test]
fn same_spec_same_population() {
    let a = make(42, 500, 20);
    let b = make(42, 500, 20);
    assert!(a == b, "same spec must give the same population");
    assert_eq!(a.fixture_lines(), b.fixture_lines());
}

#[test]
fn different_seeds_differ_everywhere() {
    let a = make(1, 200, 5);
    let b = make(2, 200, 5);
    assert_ne!(a.admin_token, b.admin_token);
    assert_ne!(issuer_seed(1), issuer_seed(2));
    assert_eq!(issuer_seed(1), issuer_seed(1));
    let ids_a: HashSet<&str> = a.residents.iter().map(|r| r.card_id.expose()).collect();
    assert!(
        b.residents
            .iter()
            .all(|r| !ids_a.contains(r.card_id.expose()))
    );
    assert!(
        a.card_secrets
            .iter()
            .zip(&b.card_secrets)
            .all(|(x, y)| x != y)
    );
    let tokens_a: HashSet<String> = a.kiosks.iter().map(KioskCredential::token).collect();
    assert!(b.kiosks.iter().all(|k| !tokens_a.contains(&k.token())));
    let names_a: Vec<&str> = a.residents.iter().map(|r| r.full_name.as_str()).collect();
    let names_b: Vec<&str> = b.residents.iter().map(|r| r.full_name.as_str()).collect();
    assert_ne!(names_a, names_b);
}

#[test]
fn issuer_seed_is_not_a_card_or_kiosk_value() {
    let p = make(5, 100, 5);
    let issuer = issuer_seed(5);
    assert!(!p.card_secrets.contains(&issuer));
    assert!(!p.admin_token.contains(&kofu_proto::b64url(&issuer[..30])));
}

#[test]
fn exact_counts_and_version_one() {
    for n in [0u32, 1, 2, 7, 20, 50, 333] {
        let p = make(9, n, 3);
        assert_eq!(p.residents.len(), n as usize);
        assert_eq!(p.card_secrets.len(), n as usize);
        assert_eq!(p.kiosks.len(), 3);
        assert!(p.residents.iter().all(|r| r.version == 1));
    }
}

#[test]
fn card_ids_are_unique_upper_hex() {
    let p = make(3, 20_000, 0);
    let mut seen = HashSet::new();
    for r in &p.residents {
        let id = r.card_id.expose();
        assert_eq!(id.len(), 16);
        assert!(
            id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'A'..=b'F')),
            "{id}"
        );
        assert!(seen.insert(id.to_owned()));
    }
}

#[test]
fn card_keys_sign_and_verify() {
    let p = make(11, 300, 0);
    let lines = p.fixture_lines();
    for (i, r) in p.residents.iter().enumerate() {
        let key = SigningKey::from_bytes(&p.card_secrets[i]);
        let msg = kofu_proto::auth_message("session", "SEJ-13104-0042-01", &[7; 32]);
        let sig = key.sign(&msg);
        let public = VerifyingKey::from_bytes(&r.card_public_key).expect("valid point");
        assert!(public.verify(&msg, &sig).is_ok(), "resident {i}");
        let FixtureLine::Card { secret_key, .. } = &lines[i] else {
            panic!("line {i} is not a card");
        };
        let decoded = kofu_proto::b64url_decode(secret_key).expect("base64url");
        assert_eq!(decoded, p.card_secrets[i]);
    }
    let distinct: HashSet<[u8; 32]> = p.residents.iter().map(|r| r.card_public_key).collect();
    assert_eq!(distinct.len(), p.residents.len());
}

fn is_kana(c: char) -> bool {
    ('ぁ'..='ゖ').contains(&c) || ('ァ'..='ヶ').contains(&c) || c == 'ー'
}

#[test]
fn full_names_are_unique_family_then_given_with_readings() {
    let p = make(4, 30_000, 0);
    let mut seen = HashSet::new();
    let mut kana_given = 0;
    for r in &p.residents {
        let words: Vec<&str> = r.full_name.split(' ').collect();
        assert_eq!(words.len(), 2, "{}", r.full_name);
        // Family names are written in kanji; given names in kanji or kana.
        assert!(
            words[0].chars().all(|c| !c.is_ascii() && !is_kana(c)),
            "{}",
            r.full_name
        );
        assert!(words[1].chars().all(|c| !c.is_ascii()), "{}", r.full_name);
        kana_given += usize::from(words[1].chars().all(is_kana));
        let reading: Vec<&str> = r.full_name_kana.split(' ').collect();
        assert_eq!(reading.len(), 2, "{}", r.full_name_kana);
        assert!(
            reading.iter().all(
                |w| !w.is_empty() && w.chars().all(|c| ('ァ'..='ヶ').contains(&c) || c == 'ー')
            ),
            "{}",
            r.full_name_kana
        );
        assert!(
            seen.insert(r.full_name.clone()),
            "duplicate {}",
            r.full_name
        );
    }
    // Some given names are written in hiragana or katakana, most are not.
    let share = kana_given as f64 / p.residents.len() as f64;
    assert!((0.02..0.3).contains(&share), "{share}");
}

/// Common surnames are common: a real registry has about 1.5 % 佐藤 and the ten most
/// common names cover about a tenth of the people; rare variants stay rare.
#[test]
fn family_names_follow_realistic_frequencies() {
    let p = make(31, 60_000, 0);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in &p.residents {
        let family = r.full_name.split(' ').next().expect("family name");
        *counts.entry(family).or_default() += 1;
    }
    let n = p.residents.len() as f64;
    let share = |name: &str| counts.get(name).copied().unwrap_or(0) as f64 / n;
    let report = format!(
        "佐藤 {:.4} 鈴木 {:.4} 髙橋 {:.4}",
        share("佐藤"),
        share("鈴木"),
        share("髙橋")
    );
    assert!((0.008..0.04).contains(&share("佐藤")), "{report}");
    assert!(share("鈴木") > share("髙橋") * 3.0, "{report}");
    assert!(share("髙橋") > 0.0, "{report}");
    let mut sorted: Vec<usize> = counts.values().copied().collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let top10 = sorted.iter().take(10).sum::<usize>() as f64 / n;
    assert!(
        (0.06..0.25).contains(&top10),
        "top ten {top10:.3}; {report}"
    );
    assert!(counts.len() > 300, "{} family names", counts.len());
}

/// A document is checked by searching its text for every other resident's name, so no
/// name may occur inside another name, an address or a municipality name, even with
/// the spaces removed (pdftotext may set CJK text without them).
#[test]
fn no_name_can_be_found_inside_other_text() {
    let p = make(8, 1_500, 0);
    let squeeze = |s: &str| s.replace(' ', "");
    let mut texts: Vec<String> = p.residents.iter().map(|r| squeeze(&r.address)).collect();
    texts.extend(p.municipalities.iter().map(|m| squeeze(&m.name)));
    texts.sort_unstable();
    texts.dedup();
    let names: Vec<String> = p.residents.iter().map(|r| squeeze(&r.full_name)).collect();
    for (i, a) in names.iter().enumerate() {
        for (j, b) in names.iter().enumerate() {
            if i != j {
                assert!(!b.contains(a.as_str()), "{a} in {b}");
            }
        }
        for t in &texts {
            assert!(!t.contains(a.as_str()), "{a} in {t}");
        }
    }
}

/// Within `names`, no name overlaps another the way `overlaps(b, a)` tests (`b` ends or
/// starts with `a`, reported as "a {at} b"), and none is part of a municipality name.
fn assert_apart(names: &[&str], forbidden: &[String], at: &str, overlaps: fn(&str, &str) -> bool) {
    for a in names {
        for b in names {
            assert!(a == b || !overlaps(b, a), "{a} {at} {b}");
        }
        assert!(
            forbidden.iter().all(|t| !t.contains(a)),
            "{a} is in a municipality name"
        );
    }
}

/// The structural reasons the brute-force test above holds for any population size.
#[test]
fn name_lists_are_shaped_against_false_matches() {
    let forbidden = places::municipality_names();
    let book = NameBook::new(&forbidden);
    let families: Vec<&str> = book.families().iter().map(|n| n.written.as_str()).collect();
    assert!(
        book.real_family_count() >= 180,
        "{}",
        book.real_family_count()
    );
    assert!(families.len() >= 1_000, "{}", families.len());
    assert_apart(&families, &forbidden, "ends", |b, a| b.ends_with(a));
    let male = book.given_names(Sex::Male);
    let female = book.given_names(Sex::Female);
    assert!(
        male.len() >= 300 && female.len() >= 300,
        "{} {}",
        male.len(),
        female.len()
    );
    let given: Vec<&str> = male
        .iter()
        .chain(female)
        .map(|n| n.written.as_str())
        .collect();
    assert_apart(&given, &forbidden, "starts", |b, a| b.starts_with(a));
    let initials: HashSet<char> = families.iter().filter_map(|f| f.chars().next()).collect();
    for g in &given {
        let chars: Vec<char> = g.chars().collect();
        assert!(
            !(chars.len() == 1 && initials.contains(&chars[0])),
            "{g} would show whole in a masked name"
        );
    }
    let mut unique = given.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), given.len(), "a given name is in both lists");
}

#[test]
fn three_hundred_thousand_names_stay_unique() {
    let d = draft(12, 300_000);
    assert_eq!(d.people.len(), 300_000);
    let names: HashSet<&str> = d.people.iter().map(|p| p.full_name.as_str()).collect();
    assert_eq!(names.len(), 300_000);
}

#[test]
fn households_are_consistent() {
    let p = make(6, 5_000, 0);
    let mut by_household: BTreeMap<&str, Vec<&ResidentRecord>> = BTreeMap::new();
    for r in &p.residents {
        by_household
            .entry(r.household_id.as_str())
            .or_default()
            .push(r);
    }
    for (id, members) in &by_household {
        assert!(id.len() == 8 && id.starts_with('H'), "{id}");
        assert!((1..=6).contains(&members.len()), "{id}: {}", members.len());
        let expected: Vec<Member> = members
            .iter()
            .map(|r| Member {
                full_name: r.full_name.clone(),
                full_name_kana: r.full_name_kana.clone(),
                sex: r.sex,
                birth_date: r.birth_date,
                relation: r.relation,
            })
            .collect();
        let head = members[0];
        assert_eq!(head.relation, Relation::Head, "{id}");
        let family = head.full_name.split(' ').next();
        let family_reading = head.full_name_kana.split(' ').next();
        for r in members {
            assert_eq!(r.household, expected, "{id}");
            assert_eq!(r.address, head.address);
            assert_eq!(r.municipality, head.municipality);
            assert_eq!(r.full_name.split(' ').next(), family);
            assert_eq!(r.full_name_kana.split(' ').next(), family_reading);
        }
        // Spouses are of the other sex, as the relation labels (妻, 夫) assume.
        for r in members.iter().filter(|r| r.relation == Relation::Spouse) {
            assert_ne!(r.sex, head.sex, "{id}");
        }
        let heads = members
            .iter()
            .filter(|r| r.relation == Relation::Head)
            .count();
        assert_eq!(heads, 1, "{id}");
        let head_age = 2026 - i32::from(head.birth_date.year);
        assert!((20..=90).contains(&head_age), "{id}");
        for r in members.iter().filter(|r| r.relation == Relation::Child) {
            assert!(r.birth_date > head.birth_date, "{id}");
        }
    }
    // Households are contiguous and numbered in order.
    let mut last = String::new();
    for r in &p.residents {
        assert!(r.household_id >= last);
        last.clone_from(&r.household_id);
    }
}

#[test]
fn addresses_look_japanese() {
    let p = make(13, 300, 0);
    for r in &p.residents {
        // 〒160-0023 東京都新宿区西新宿二丁目8番1号 (or 8番1-305号 for a flat)
        let (postal, rest) = r.address.split_once(' ').expect("postal code first");
        let digits = postal.strip_prefix('〒').expect("〒");
        let b = digits.as_bytes();
        assert!(b.len() == 8 && b[3] == b'-', "{}", r.address);
        assert!(rest.starts_with(&r.municipality.name), "{}", r.address);
        let (_, numbers) = rest.split_once("丁目").expect("丁目");
        let (ban, go) = numbers.split_once('番').expect("番");
        assert!(ban.parse::<u32>().is_ok(), "{}", r.address);
        let go = go.strip_suffix('号').expect("号");
        assert!(
            go.split('-').all(|n| n.parse::<u32>().is_ok()),
            "{}",
            r.address
        );
        assert!(!rest.contains(' '), "{}", r.address);
    }
}

#[test]
fn check_digits() {
    assert_eq!(with_check_digit("13104").as_deref(), Some("131041"));
    assert_eq!(with_check_digit("13101").as_deref(), Some("131016"));
    assert_eq!(with_check_digit("01100").as_deref(), Some("011002"));
    assert_eq!(with_check_digit("47201").as_deref(), Some("472018"));
    for bad in ["1310", "131041", "1310a", ""] {
        assert_eq!(with_check_digit(bad), None, "{bad}");
    }
}

#[test]
fn municipalities_are_well_formed() {
    let p = make(1, 10, 0);
    assert!(p.municipalities.len() >= 40);
    let codes: HashSet<&str> = p.municipalities.iter().map(|m| m.code.as_str()).collect();
    let names: HashSet<&str> = p.municipalities.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(codes.len(), p.municipalities.len());
    assert_eq!(names.len(), p.municipalities.len());
    for m in &p.municipalities {
        assert_eq!(
            with_check_digit(&m.code[..5]).as_deref(),
            Some(m.code.as_str())
        );
        assert!(
            ["都", "道", "府", "県"].iter().any(|p| m.name.contains(p))
                && ["市", "区", "町", "村"].iter().any(|s| m.name.ends_with(s)),
            "{}",
            m.name
        );
    }
    assert!(names.contains("東京都新宿区"));
    assert!(names.contains("北海道札幌市"));
    assert!(names.contains("沖縄県那覇市"));
}

fn first_ordinary(p: &Population) -> Option<&ResidentRecord> {
    p.residents.iter().find(|r| {
        !r.card_revoked && !r.restricted && r.issuable_kinds().len() == CertKind::ALL.len()
    })
}

#[test]
fn small_populations_start_with_ordinary_cards() {
    for seed in 0..40 {
        for n in [1u32, 2, 5, 20] {
            let p = make(seed, n, 1);
            let first = &p.residents[0];
            assert!(matches!(first.seal, Seal::Registered { .. }), "seed {seed}");
            assert!(first.tax.is_some(), "seed {seed}");
            assert_eq!(first_ordinary(&p).map(|r| &r.card_id), Some(&first.card_id));
            for r in p.residents.iter().take(households::ORDINARY_PREFIX) {
                assert!(!r.card_revoked && !r.restricted, "seed {seed}");
            }
        }
    }
}

#[test]
fn every_status_exists_from_fifty_residents() {
    for seed in 0..60 {
        for n in [50u32, 51, 64, 120] {
            let p = make(seed, n, 0);
            let r = &p.residents;
            let ctx = format!("seed {seed}, {n} residents");
            assert!(r.iter().any(|r| r.card_revoked), "card_revoked, {ctx}");
            assert!(r.iter().any(|r| r.restricted), "restricted, {ctx}");
            assert!(
                r.iter().any(|r| matches!(r.seal, Seal::Revoked { .. })),
                "revoked, {ctx}"
            );
            assert!(
                r.iter().any(|r| r.seal == Seal::NotRegistered),
                "unregistered, {ctx}"
            );
            assert!(r.iter().any(|r| r.tax.is_none()), "no tax, {ctx}");
            assert!(first_ordinary(&p).is_some(), "{ctx}");
        }
    }
}

#[test]
fn distribution_is_plausible() {
    let p = make(21, 40_000, 0);
    let n = p.residents.len() as f64;
    let share = |f: &dyn Fn(&ResidentRecord) -> bool| {
        p.residents.iter().filter(|r| f(r)).count() as f64 / n
    };
    let registered = share(&|r| matches!(r.seal, Seal::Registered { .. }));
    let unregistered = share(&|r| r.seal == Seal::NotRegistered);
    let revoked = share(&|r| matches!(r.seal, Seal::Revoked { .. }));
    let taxed = share(&|r| r.tax.is_some());
    let restricted = share(&|r| r.restricted);
    let card_revoked = share(&|r| r.card_revoked);
    let report = format!(
        "registered {registered:.3} unregistered {unregistered:.3} revoked {revoked:.3} \
         taxed {taxed:.3} restricted {restricted:.3} card_revoked {card_revoked:.3}"
    );
    assert!((0.62..=0.78).contains(&registered), "{report}");
    assert!((0.14..=0.28).contains(&unregistered), "{report}");
    assert!((0.06..=0.14).contains(&revoked), "{report}");
    assert!((0.78..=0.92).contains(&taxed), "{report}");
    assert!((0.01..=0.03).contains(&restricted), "{report}");
    assert!((0.01..=0.03).contains(&card_revoked), "{report}");

    let mut sizes: HashMap<&str, usize> = HashMap::new();
    for r in &p.residents {
        *sizes.entry(r.household_id.as_str()).or_default() += 1;
        let age = 2026 - i32::from(r.birth_date.year);
        if age < i32::from(households::TAX_MIN_AGE) {
            assert!(r.tax.is_none(), "a child has a tax record");
        }
        if let Some(t) = &r.tax {
            assert_eq!(t.fiscal_year, 2025);
            assert!(t.municipal_tax_yen <= t.income_yen / 10 + 3_500);
            assert!(t.prefectural_tax_yen <= t.income_yen / 10 + 1_500);
        }
        match &r.seal {
            Seal::Registered {
                number,
                registered_on,
            } => {
                assert!(number.starts_with(&format!("SEAL-{}-", r.municipality.code)));
                assert!(*registered_on > r.birth_date);
            }
            Seal::Revoked { number, revoked_on } => {
                assert!(number.starts_with("SEAL-") && *revoked_on > r.birth_date);
            }
            Seal::NotRegistered => {}
        }
    }
    for size in 1..=6 {
        assert!(sizes.values().any(|s| *s == size), "no household of {size}");
    }
    let municipalities: HashSet<&str> = p
        .residents
        .iter()
        .map(|r| r.municipality.code.as_str())
        .collect();
    assert_eq!(municipalities.len(), p.municipalities.len());
}

#[test]
fn seal_numbers_are_unique() {
    let p = make(22, 10_000, 0);
    let mut seen = HashSet::new();
    for r in &p.residents {
        if let Seal::Registered { number, .. } | Seal::Revoked { number, .. } = &r.seal {
            assert!(seen.insert(number.clone()), "{number}");
        }
    }
}

/// Performance is measured by benchmarks; this only proves the size works.
#[test]
fn a_hundred_thousand_residents() {
    let p = make(19, 100_000, 100);
    assert_eq!(p.residents.len(), 100_000);
    let ids: HashSet<&str> = p.residents.iter().map(|r| r.card_id.expose()).collect();
    assert_eq!(ids.len(), 100_000);
    let names: HashSet<&str> = p.residents.iter().map(|r| r.full_name.as_str()).collect();
    assert_eq!(names.len(), 100_000);
}
