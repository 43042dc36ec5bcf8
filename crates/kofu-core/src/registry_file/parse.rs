//! One registry line, read field by field over a JSON value rather than through serde's
//! derive: serde's messages quote the offending value ("invalid value: string ..."),
//! which here would be a name or an address (I6). Every check names the field's path
//! and says what is expected, nothing more.

use ed25519_dalek::VerifyingKey;
use kofu_proto::CardId;
use serde_json::{Map, Value};

use super::FieldError;
use crate::population::with_check_digit;
use crate::records::{Date, Member, Municipality, Relation, ResidentRecord, Seal, Sex, TaxRecord};

/// Longest line accepted: a household of 64 members fits several times over.
pub(super) const MAX_LINE: usize = 64 * 1024;
const MAX_MEMBERS: usize = 64;
const MAX_NAME: usize = 100;
const MAX_ADDRESS: usize = 256;
const MAX_ID: usize = 64;
const MAX_SEAL_NUMBER: usize = 32;
/// Amounts in yen up to a quadrillion: far above any income, far below `u64::MAX`.
const MAX_YEN: u64 = 1_000_000_000_000_000;

const RECORD_FIELDS: &[&str] = &[
    "card_id",
    "card_public_key",
    "full_name",
    "full_name_kana",
    "sex",
    "birth_date",
    "relation",
    "address",
    "municipality",
    "household_id",
    "household",
    "seal",
    "tax",
    "restricted",
    "card_revoked",
];
const MEMBER_FIELDS: &[&str] = &[
    "full_name",
    "full_name_kana",
    "sex",
    "birth_date",
    "relation",
];

fn fail(field: Option<String>, problem: impl Into<String>) -> FieldError {
    FieldError {
        field,
        problem: problem.into(),
    }
}

pub(super) fn record(text: &str) -> Result<ResidentRecord, FieldError> {
    record_with(text, true)
}

/// `record`, where `curve: false` skips the costly check that the card key is a usable
/// curve point: only for a line whose bytes already passed it.
pub(super) fn record_with(text: &str, curve: bool) -> Result<ResidentRecord, FieldError> {
    if text.len() > MAX_LINE {
        return Err(fail(None, format!("longer than {MAX_LINE} bytes")));
    }
    // serde_json's syntax errors name a position, never the text around it.
    let value: Value = serde_json::from_str(text)
        .map_err(|e| fail(None, format!("not JSON (column {})", e.column())))?;
    let Value::Object(map) = &value else {
        return Err(fail(None, "not a JSON object"));
    };
    let o = Obj::new(String::new(), map);
    o.only(RECORD_FIELDS)?;
    let card_id = CardId::parse(o.string("card_id", 16)?)
        .map_err(|_| o.err("card_id", "must be 16 upper-case hexadecimal digits"))?;
    let card_public_key = o.public_key("card_public_key", curve)?;
    let full_name = o.text("full_name", MAX_NAME)?.to_owned();
    let full_name_kana = o.kana("full_name_kana")?.to_owned();
    let birth_date = o.date("birth_date")?;
    let household = o.members("household")?;
    if !household
        .iter()
        .any(|m| m.full_name == full_name && m.birth_date == birth_date)
    {
        return Err(o.err(
            "household",
            "must list the resident (a member with the same full_name and birth_date)",
        ));
    }
    Ok(ResidentRecord {
        card_id,
        version: 1,
        full_name,
        full_name_kana,
        sex: o.sex("sex")?,
        birth_date,
        relation: o.relation("relation")?,
        address: o.text("address", MAX_ADDRESS)?.to_owned(),
        municipality: o.municipality("municipality")?,
        household_id: o.text("household_id", MAX_ID)?.to_owned(),
        household,
        seal: o.seal("seal")?,
        tax: o.tax("tax")?,
        restricted: o.flag("restricted")?,
        card_revoked: o.flag("card_revoked")?,
        card_public_key,
    })
}

/// An object of the line and its path (`""`, `"seal."`, `"household[2]."`).
struct Obj<'a> {
    prefix: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    fn new(prefix: String, map: &'a Map<String, Value>) -> Obj<'a> {
        Obj { prefix, map }
    }

    fn path(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    fn err(&self, field: &str, problem: impl Into<String>) -> FieldError {
        fail(Some(self.path(field)), problem)
    }

    /// Refuses fields the format does not have. The name is shown only when it looks
    /// like a field name: a key could be a value put in the wrong place.
    fn only(&self, allowed: &[&str]) -> Result<(), FieldError> {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) if is_identifier(k) => Err(self.err(k, "unknown field")),
            Some(_) => Err(fail(
                (!self.prefix.is_empty()).then(|| self.prefix.trim_end_matches('.').to_owned()),
                "unknown field (its name is not shown: not a plain field name)",
            )),
        }
    }

    /// A field that must be present; `null` counts as absent.
    fn required(&self, field: &str) -> Result<&'a Value, FieldError> {
        match self.map.get(field) {
            None | Some(Value::Null) => Err(self.err(field, "missing")),
            Some(v) => Ok(v),
        }
    }

    fn optional(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    fn string(&self, field: &str, max_chars: usize) -> Result<&'a str, FieldError> {
        let text = self
            .required(field)?
            .as_str()
            .ok_or_else(|| self.err(field, "must be a string"))?;
        if text.chars().count() > max_chars {
            return Err(self.err(field, format!("longer than {max_chars} characters")));
        }
        Ok(text)
    }

    /// Printable text: not blank, no control characters, no surrounding spaces.
    fn text(&self, field: &str, max_chars: usize) -> Result<&'a str, FieldError> {
        let text = self.string(field, max_chars)?;
        if text.trim().is_empty() {
            return Err(self.err(field, "must not be empty"));
        }
        if text.chars().any(char::is_control) {
            return Err(self.err(field, "must not contain control characters"));
        }
        if text.trim() != text {
            return Err(self.err(field, "must not begin or end with spaces"));
        }
        Ok(text)
    }

    /// A reading in katakana (ァ to ヶ, ー, ・), words separated by spaces.
    fn kana(&self, field: &str) -> Result<&'a str, FieldError> {
        let text = self.text(field, MAX_NAME)?;
        let ok = text
            .chars()
            .all(|c| ('ァ'..='ヶ').contains(&c) || matches!(c, 'ー' | '・' | ' ' | '\u{3000}'));
        if !ok {
            return Err(self.err(field, "must be katakana (words separated by spaces)"));
        }
        Ok(text)
    }

    fn flag(&self, field: &str) -> Result<bool, FieldError> {
        match self.optional(field) {
            None => Ok(false),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(field, "must be true or false")),
        }
    }

    fn number(&self, field: &str, min: u64, max: u64) -> Result<u64, FieldError> {
        self.required(field)?
            .as_u64()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| self.err(field, format!("must be a whole number from {min} to {max}")))
    }

    fn object(&self, field: &str) -> Result<Obj<'a>, FieldError> {
        match self.required(field)? {
            Value::Object(map) => Ok(Obj::new(format!("{}.", self.path(field)), map)),
            _ => Err(self.err(field, "must be an object")),
        }
    }

    fn public_key(&self, field: &str, curve: bool) -> Result<[u8; 32], FieldError> {
        let text = self.string(field, 64)?;
        let mut key = [0u8; 32];
        if text.len() != 64 || hex::decode_to_slice(text, &mut key).is_err() {
            return Err(self.err(field, "must be 64 hexadecimal digits"));
        }
        if !curve {
            return Ok(key);
        }
        match VerifyingKey::from_bytes(&key) {
            Ok(k) if !k.is_weak() => Ok(key),
            _ => Err(self.err(field, "not a usable Ed25519 public key")),
        }
    }

    /// `YYYY-MM-DD`, a real day of the Gregorian calendar from 1800 to 2999.
    fn date(&self, field: &str) -> Result<Date, FieldError> {
        let text = self.string(field, 10)?;
        parse_date(text).ok_or_else(|| self.err(field, "must be a date YYYY-MM-DD"))
    }

    fn sex(&self, field: &str) -> Result<Sex, FieldError> {
        match self.string(field, 16)? {
            "male" => Ok(Sex::Male),
            "female" => Ok(Sex::Female),
            _ => Err(self.err(field, "must be \"male\" or \"female\"")),
        }
    }

    fn relation(&self, field: &str) -> Result<Relation, FieldError> {
        match self.string(field, 16)? {
            "head" => Ok(Relation::Head),
            "spouse" => Ok(Relation::Spouse),
            "child" => Ok(Relation::Child),
            "parent" => Ok(Relation::Parent),
            "sibling" => Ok(Relation::Sibling),
            _ => Err(self.err(
                field,
                "must be one of \"head\", \"spouse\", \"child\", \"parent\", \"sibling\"",
            )),
        }
    }

    fn municipality(&self, field: &str) -> Result<Municipality, FieldError> {
        let m = self.object(field)?;
        m.only(&["code", "name"])?;
        let code = m.string("code", 6)?;
        let valid = code.len() == 6 && with_check_digit(&code[..5]).is_some_and(|c| c == code);
        if !valid {
            return Err(m.err(
                "code",
                "must be a 6-digit local government code with its check digit",
            ));
        }
        Ok(Municipality {
            code: code.to_owned(),
            name: m.text("name", MAX_NAME)?.to_owned(),
        })
    }

    fn members(&self, field: &str) -> Result<Vec<Member>, FieldError> {
        let Value::Array(items) = self.required(field)? else {
            return Err(self.err(field, "must be an array"));
        };
        if items.is_empty() || items.len() > MAX_MEMBERS {
            return Err(self.err(field, format!("must list 1 to {MAX_MEMBERS} members")));
        }
        let path = self.path(field);
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let Value::Object(map) = item else {
                    return Err(fail(Some(format!("{path}[{i}]")), "must be an object"));
                };
                let m = Obj::new(format!("{path}[{i}]."), map);
                m.only(MEMBER_FIELDS)?;
                Ok(Member {
                    full_name: m.text("full_name", MAX_NAME)?.to_owned(),
                    full_name_kana: m.kana("full_name_kana")?.to_owned(),
                    sex: m.sex("sex")?,
                    birth_date: m.date("birth_date")?,
                    relation: m.relation("relation")?,
                })
            })
            .collect()
    }

    fn seal(&self, field: &str) -> Result<Seal, FieldError> {
        let s = self.object(field)?;
        let status = s.string("status", 16)?;
        let (allowed, date_field): (&[&str], _) = match status {
            "not_registered" => (&["status"], None),
            "registered" => (
                &["status", "number", "registered_on"],
                Some("registered_on"),
            ),
            "revoked" => (&["status", "number", "revoked_on"], Some("revoked_on")),
            _ => {
                return Err(s.err(
                    "status",
                    "must be one of \"not_registered\", \"registered\", \"revoked\"",
                ));
            }
        };
        if let Some(k) = s.map.keys().find(|k| !allowed.contains(&k.as_str()))
            && ["number", "registered_on", "revoked_on"].contains(&k.as_str())
        {
            return Err(s.err(k, "not allowed with this status"));
        }
        s.only(allowed)?;
        let Some(date_field) = date_field else {
            return Ok(Seal::NotRegistered);
        };
        let number = s.text("number", MAX_SEAL_NUMBER)?;
        if !number
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(s.err("number", "must be ASCII letters, digits and hyphens"));
        }
        let number = number.to_owned();
        let on = s.date(date_field)?;
        Ok(if status == "registered" {
            Seal::Registered {
                number,
                registered_on: on,
            }
        } else {
            Seal::Revoked {
                number,
                revoked_on: on,
            }
        })
    }

    fn tax(&self, field: &str) -> Result<Option<TaxRecord>, FieldError> {
        if self.optional(field).is_none() {
            return Ok(None);
        }
        let t = self.object(field)?;
        t.only(&[
            "fiscal_year",
            "income_yen",
            "municipal_tax_yen",
            "prefectural_tax_yen",
        ])?;
        Ok(Some(TaxRecord {
            fiscal_year: t.number("fiscal_year", 1989, 2999)? as u16,
            income_yen: t.number("income_yen", 0, MAX_YEN)?,
            municipal_tax_yen: t.number("municipal_tax_yen", 0, MAX_YEN)?,
            prefectural_tax_yen: t.number("prefectural_tax_yen", 0, MAX_YEN)?,
        }))
    }
}

fn is_identifier(k: &str) -> bool {
    (1..=32).contains(&k.len())
        && k.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn parse_date(text: &str) -> Option<Date> {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u16> {
        b[r].iter().try_fold(0u16, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u16::from(c - b'0'))
        })
    };
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    if !(1800..=2999).contains(&year) || !(1..=12).contains(&month) {
        return None;
    }
    let (month, day) = (month as u8, day as u8);
    if day == 0 || day > Date::days_in_month(year, month) {
        return None;
    }
    Some(Date { year, month, day })
}
