//! The registry file: resident records as JSON lines, one per line, the way a
//! municipality's system hands them to kofu (`docs/registry-format.md`). Read strictly:
//! a line that does not follow the format fails with its line number and the field,
//! never the field's value (I6), and the caller refuses the whole file. Pure: text in,
//! records out; reading the file is the caller's.

mod parse;

use std::collections::HashMap;

use serde::Serialize;

use crate::records::{Date, Member, Relation, ResidentRecord, Seal, Sex, TaxRecord};

/// Why a registry file was refused: the line (1-based) and the field (a path such as
/// `household[2].birth_date`), never the value found there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {problem}", field.as_ref().map(|f| format!(", field {f}")).unwrap_or_default())]
pub struct LineError {
    pub line: usize,
    pub field: Option<String>,
    pub problem: String,
}

/// A field that does not follow the format: its path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: Option<String>,
    pub problem: String,
}

impl FieldError {
    fn at(self, line: usize) -> LineError {
        LineError {
            line,
            field: self.field,
            problem: self.problem,
        }
    }
}

/// One line as a record (at version 1: kofu numbers versions itself).
pub fn parse_line(text: &str) -> Result<ResidentRecord, FieldError> {
    parse::record(text)
}

/// One line of a file (without its `\n`; a `\r` before it is dropped) checked on its
/// own: `Ok(None)` for a blank line. Needs nothing of the other lines, so lines may be
/// checked on any thread, in any order; [`Reader::admit`] then takes the results in
/// file order, numbering lines and checking that no card id appears twice.
pub fn check_line(bytes: &[u8]) -> Result<Option<ResidentRecord>, FieldError> {
    check_line_with(bytes, true)
}

/// [`check_line`] for a line whose very bytes passed it before (the importer's second
/// read of a file, block digests compared): every rule but the costly curve check of
/// the card's public key, which those bytes passed.
pub fn recheck_line(bytes: &[u8]) -> Result<Option<ResidentRecord>, FieldError> {
    check_line_with(bytes, false)
}

fn check_line_with(bytes: &[u8], curve: bool) -> Result<Option<ResidentRecord>, FieldError> {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|_| FieldError {
        field: None,
        problem: "not UTF-8".to_owned(),
    })?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    parse::record_with(text, curve).map(Some)
}

/// Reads a registry file line by line, checking each line and that no card id appears
/// twice. Blank lines are skipped. Keeps one digest per card seen (32 bytes each), so a
/// file of any size is checked in bounded memory per record.
#[derive(Debug, Default)]
pub struct Reader {
    /// Card digest → the line it was first seen on.
    seen: HashMap<[u8; 32], usize>,
    line: usize,
}

impl Reader {
    pub fn new() -> Reader {
        Reader::default()
    }

    /// The next line of the file as read (without its `\n`; a `\r` before it is
    /// dropped): `Ok(None)` for a blank line.
    pub fn line_bytes(&mut self, bytes: &[u8]) -> Result<Option<ResidentRecord>, LineError> {
        match check_line(bytes) {
            Ok(Some(record)) => {
                self.admit(Ok(Some(record.card_id.digest_bytes())))?;
                Ok(Some(record))
            }
            Ok(None) => self.admit(Ok(None)).map(|_| None),
            Err(e) => self.admit(Err(e)).map(|_| None),
        }
    }

    /// The next line of the file: `Ok(None)` for a blank line.
    pub fn line(&mut self, text: &str) -> Result<Option<ResidentRecord>, LineError> {
        self.line_bytes(text.as_bytes())
    }

    /// The next line of the file as [`check_line`] found it, reduced to the card's
    /// digest (`Ok(None)`: a blank line): numbers the line and refuses a card id seen
    /// on an earlier line. `Ok(true)` for a record.
    pub fn admit(
        &mut self,
        checked: Result<Option<[u8; 32]>, FieldError>,
    ) -> Result<bool, LineError> {
        self.line += 1;
        let n = self.line;
        let Some(digest) = checked.map_err(|e| e.at(n))? else {
            return Ok(false);
        };
        if let Some(first) = self.seen.insert(digest, n) {
            return Err(LineError {
                line: n,
                field: Some("card_id".to_owned()),
                problem: format!("duplicate card id (first on line {first})"),
            });
        }
        Ok(true)
    }

    /// Lines read so far.
    pub fn lines(&self) -> usize {
        self.line
    }

    /// Records read so far.
    pub fn records(&self) -> usize {
        self.seen.len()
    }
}

/// Every record of a whole file's text, or the first bad line.
pub fn parse_file(text: &str) -> Result<Vec<ResidentRecord>, LineError> {
    parse_file_bytes(text.as_bytes())
}

/// Every record of a whole file's bytes, or the first bad line (a line that is not
/// UTF-8 too).
pub fn parse_file_bytes(bytes: &[u8]) -> Result<Vec<ResidentRecord>, LineError> {
    let mut reader = Reader::new();
    let mut out = Vec::new();
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if bytes.is_empty() {
        return Ok(out);
    }
    for line in bytes.split(|b| *b == b'\n') {
        if let Some(r) = reader.line_bytes(line)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// The line for `record`, without a trailing newline (`kofu fixtures --registry`).
pub fn to_line(record: &ResidentRecord) -> String {
    // Every field is a plain string, number or bool: serialization cannot fail.
    serde_json::to_string(&Line::from(record)).unwrap_or_default()
}

#[derive(Serialize)]
struct Line<'a> {
    card_id: &'a str,
    card_public_key: String,
    full_name: &'a str,
    full_name_kana: &'a str,
    sex: &'static str,
    birth_date: String,
    relation: &'static str,
    address: &'a str,
    municipality: MunicipalityLine<'a>,
    household_id: &'a str,
    household: Vec<MemberLine<'a>>,
    seal: SealLine<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tax: Option<&'a TaxRecord>,
    restricted: bool,
    card_revoked: bool,
}

#[derive(Serialize)]
struct MunicipalityLine<'a> {
    code: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct MemberLine<'a> {
    full_name: &'a str,
    full_name_kana: &'a str,
    sex: &'static str,
    birth_date: String,
    relation: &'static str,
}

#[derive(Serialize)]
struct SealLine<'a> {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    registered_on: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_on: Option<String>,
}

fn sex_name(s: Sex) -> &'static str {
    match s {
        Sex::Male => "male",
        Sex::Female => "female",
    }
}

fn relation_name(r: Relation) -> &'static str {
    match r {
        Relation::Head => "head",
        Relation::Spouse => "spouse",
        Relation::Child => "child",
        Relation::Parent => "parent",
        Relation::Sibling => "sibling",
    }
}

fn date(d: Date) -> String {
    d.to_string()
}

impl<'a> From<&'a ResidentRecord> for Line<'a> {
    fn from(r: &'a ResidentRecord) -> Line<'a> {
        let seal = match &r.seal {
            Seal::NotRegistered => SealLine {
                status: "not_registered",
                number: None,
                registered_on: None,
                revoked_on: None,
            },
            Seal::Registered {
                number,
                registered_on,
            } => SealLine {
                status: "registered",
                number: Some(number),
                registered_on: Some(date(*registered_on)),
                revoked_on: None,
            },
            Seal::Revoked { number, revoked_on } => SealLine {
                status: "revoked",
                number: Some(number),
                registered_on: None,
                revoked_on: Some(date(*revoked_on)),
            },
        };
        Line {
            card_id: r.card_id.expose(),
            card_public_key: hex::encode(r.card_public_key),
            full_name: &r.full_name,
            full_name_kana: &r.full_name_kana,
            sex: sex_name(r.sex),
            birth_date: date(r.birth_date),
            relation: relation_name(r.relation),
            address: &r.address,
            municipality: MunicipalityLine {
                code: &r.municipality.code,
                name: &r.municipality.name,
            },
            household_id: &r.household_id,
            household: r.household.iter().map(MemberLine::from).collect(),
            seal,
            tax: r.tax.as_ref(),
            restricted: r.restricted,
            card_revoked: r.card_revoked,
        }
    }
}

impl<'a> From<&'a Member> for MemberLine<'a> {
    fn from(m: &'a Member) -> MemberLine<'a> {
        MemberLine {
            full_name: &m.full_name,
            full_name_kana: &m.full_name_kana,
            sex: sex_name(m.sex),
            birth_date: date(m.birth_date),
            relation: relation_name(m.relation),
        }
    }
}

#[cfg(test)]
mod tests;
