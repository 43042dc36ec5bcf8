//! The registry format: every population record survives a round trip, each kind of bad
//! line is refused with its line and field and without its value, and an import never
//! undoes a revocation.

use serde_json::{Value, json};

use super::*;
use crate::records::Date;
use crate::{Population, PopulationSpec};

fn population(residents: u32) -> Population {
    Population::generate(&PopulationSpec {
        seed: 11,
        residents,
        kiosks: 1,
    })
}

fn line_of(r: &ResidentRecord) -> Value {
    serde_json::from_str(&to_line(r)).expect("a line is JSON")
}

#[test]
fn every_population_record_round_trips() {
    let pop = population(2_000);
    let text: String = pop.residents.iter().map(|r| to_line(r) + "\n").collect();
    assert!(
        !text.contains("\\u"),
        "japanese text written as is, not escaped"
    );
    let back = parse_file(&text).expect("the population's own file reads");
    assert_eq!(back, pop.residents);
}

/// A file with `bad` as its third line, the others good.
fn refused(bad: &str) -> LineError {
    let pop = population(5);
    let text = format!(
        "{}\n\n{bad}\n{}\n",
        to_line(&pop.residents[0]),
        to_line(&pop.residents[1])
    );
    parse_file(&text).expect_err("a bad line refuses the file")
}

fn edited(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let pop = population(5);
    let mut v = line_of(&pop.residents[3]);
    edit(v.as_object_mut().expect("object"));
    v.to_string()
}

fn assert_refused(bad: &str, field: Option<&str>, needle: &str) {
    let e = refused(bad);
    assert_eq!(e.line, 3, "{e}");
    assert_eq!(e.field.as_deref(), field, "{e}");
    assert!(e.to_string().contains(needle), "{e}");
}

#[test]
fn bad_lines_name_their_line_and_field() {
    assert_refused("{\"card_id\": ", None, "not JSON");
    assert_refused("[1, 2]", None, "not a JSON object");
    assert_refused(
        &edited(|o| {
            o.insert("nickname".into(), json!("x"));
        }),
        Some("nickname"),
        "unknown field",
    );
    assert_refused(
        &edited(|o| {
            o.remove("birth_date");
        }),
        Some("birth_date"),
        "missing",
    );
    assert_refused(
        &edited(|o| {
            o.insert("card_id".into(), json!("abcdef0123456789"));
        }),
        Some("card_id"),
        "16 upper-case hexadecimal digits",
    );
    assert_refused(
        &edited(|o| {
            o.insert("card_public_key".into(), json!("zz"));
        }),
        Some("card_public_key"),
        "64 hexadecimal digits",
    );
    // The identity point has small order: a key nobody's signature can be checked with.
    let weak = format!("01{}", "00".repeat(31));
    assert_refused(
        &edited(|o| {
            o.insert("card_public_key".into(), json!(weak));
        }),
        Some("card_public_key"),
        "not a usable Ed25519 public key",
    );
    assert_refused(
        &edited(|o| {
            o.insert("birth_date".into(), json!("2023-02-29"));
        }),
        Some("birth_date"),
        "YYYY-MM-DD",
    );
    assert_refused(
        &edited(|o| {
            o["household"][0]["birth_date"] = json!("1990/01/01");
        }),
        Some("household[0].birth_date"),
        "YYYY-MM-DD",
    );
    assert_refused(
        &edited(|o| {
            o["municipality"]["code"] = json!("131040");
        }),
        Some("municipality.code"),
        "check digit",
    );
    assert_refused(
        &edited(|o| {
            o.insert(
                "seal".into(),
                json!({"status": "not_registered", "number": "1"}),
            );
        }),
        Some("seal.number"),
        "not allowed",
    );
    assert_refused(
        &edited(|o| {
            o.insert("full_name_kana".into(), json!("やまだ たろう"));
        }),
        Some("full_name_kana"),
        "katakana",
    );
    assert_refused(
        &edited(|o| {
            o.insert(
                "tax".into(),
                json!({"fiscal_year": 2025, "income_yen": -1,
                "municipal_tax_yen": 0, "prefectural_tax_yen": 0}),
            );
        }),
        Some("tax.income_yen"),
        "whole number",
    );
}

#[test]
fn a_card_listed_twice_is_refused_on_its_second_line() {
    let pop = population(5);
    let text = format!(
        "{}\n{}\n{}\n",
        to_line(&pop.residents[0]),
        to_line(&pop.residents[1]),
        to_line(&pop.residents[0])
    );
    let e = parse_file(&text).expect_err("duplicate");
    assert_eq!((e.line, e.field.as_deref()), (3, Some("card_id")), "{e}");
    assert!(e.to_string().contains("first on line 1"), "{e}");
}

/// I6: whatever was wrong, the message never carries what the line held.
#[test]
fn errors_never_quote_a_value() {
    let pop = population(5);
    let r = &pop.residents[3];
    let secret_key = "山田 花子";
    let bad = [
        edited(|o| {
            o.insert("sex".into(), json!(secret_key));
        }),
        edited(|o| {
            o.insert(secret_key.into(), json!(1));
        }),
        edited(|o| {
            o.insert("full_name".into(), json!(1));
            o.insert("address".into(), json!(secret_key));
        }),
        edited(|o| {
            o.insert("birth_date".into(), json!(format!("{secret_key}-01")));
        }),
        format!("{{\"full_name\": \"{secret_key}\", oops}}"),
    ];
    for line in bad {
        let message = refused(&line).to_string();
        for leaked in [secret_key, "山田", r.card_id.expose(), r.full_name.as_str()] {
            assert!(!message.contains(leaked), "{message}");
        }
    }
}

fn on(year: u16, month: u8, day: u8) -> Date {
    Date { year, month, day }
}

#[test]
fn imports_change_what_the_file_changes_and_never_undo_a_revocation() {
    let pop = population(200);
    let sealed = pop
        .residents
        .iter()
        .find(|r| matches!(r.seal, Seal::Registered { .. }))
        .expect("a registered seal");
    assert_eq!(
        sealed.imported(sealed),
        None,
        "same content, no new version"
    );

    let moved = sealed.with_address("〒100-0001 東京都千代田区千代田1番1号".into());
    let next = sealed.imported(&moved).expect("an address change");
    assert_eq!(next.version, sealed.version + 1);
    assert_eq!(next.address, moved.address);

    // Revoked at the counter (admin API); the next file still says registered.
    let revoked = sealed
        .with_seal_revoked(on(2026, 11, 1))
        .expect("revocable");
    assert_eq!(revoked.imported(sealed), None, "revocation stays");
    let stale_moved = revoked.imported(&moved).expect("the address still applies");
    assert_eq!(stale_moved.seal, revoked.seal);
    assert_eq!(stale_moved.address, moved.address);
    let unregistered = ResidentRecord {
        seal: Seal::NotRegistered,
        ..sealed.clone()
    };
    assert_eq!(revoked.imported(&unregistered), None);
    // A new registration, under a new number, replaces the revoked one.
    let renewed = ResidentRecord {
        seal: Seal::Registered {
            number: "SEAL-131041-999999".into(),
            registered_on: on(2026, 11, 20),
        },
        ..sealed.clone()
    };
    assert_eq!(
        revoked.imported(&renewed).map(|r| r.seal),
        Some(renewed.seal)
    );

    let card_revoked = ResidentRecord {
        card_revoked: true,
        version: sealed.version + 1,
        ..sealed.clone()
    };
    assert_eq!(
        card_revoked.imported(sealed),
        None,
        "a revoked card stays revoked"
    );
    // Restriction is not a revocation: it follows the file both ways.
    let restricted = ResidentRecord {
        restricted: true,
        ..sealed.clone()
    };
    let lifted = sealed.imported(&restricted).expect("restricted");
    assert!(lifted.imported(sealed).is_some_and(|r| !r.restricted));
}

/// The example in `docs/registry-format.md` is a valid line, and writes back the same.
#[test]
fn the_documented_example_reads() {
    let doc = include_str!("../../../../docs/registry-format.md");
    let example = doc
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .expect("an example line");
    let record = parse_line(example).expect("the example parses");
    assert_eq!(record.full_name, "佐藤 花子");
    assert_eq!(to_line(&record), example);
}
