//! The credentials files of API.md "Real deployments": JSON lines, read strictly. A file
//! with one bad line is refused whole, and the error names the file, the line and the
//! field (never a token or its hash), so an operator can fix it; blank lines are
//! skipped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use kofu_proto::KioskId;
use serde::Serialize;
use serde_json::{Map, Value};

/// Why a credentials file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{}: {problem}", file.display(), line.map(|n| format!(" line {n}")).unwrap_or_default(), field.as_ref().map(|f| format!(", field {f}")).unwrap_or_default())]
pub struct FileError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub field: Option<String>,
    pub problem: String,
}

/// What an admin token may do (API.md): each admin endpoint needs one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The cluster view.
    Read,
    /// Revocations and record updates.
    Registry,
    /// Draining the node.
    Drain,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Read, Role::Registry, Role::Drain];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Registry => "registry",
            Role::Drain => "drain",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// One line of `KOFU_KIOSKS_FILE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KioskLine {
    #[serde(serialize_with = "kiosk_str")]
    pub kiosk_id: KioskId,
    #[serde(serialize_with = "hex_hash")]
    pub token_sha256: [u8; 32],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

/// One line of `KOFU_ADMIN_TOKENS_FILE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminLine {
    pub name: String,
    #[serde(serialize_with = "hex_hash")]
    pub token_sha256: [u8; 32],
    pub roles: Vec<Role>,
}

fn kiosk_str<S: serde::Serializer>(kiosk: &KioskId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kiosk.as_str())
}

fn hex_hash<S: serde::Serializer>(hash: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(hash))
}

/// Longest admin token name: it appears in log lines.
const MAX_NAME: usize = 64;

pub fn read(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|e| FileError {
        file: path.to_owned(),
        line: None,
        field: None,
        problem: format!("cannot read: {e}"),
    })
}

/// A line's object and how to name its errors.
struct Line<'a> {
    file: &'a Path,
    n: usize,
    obj: Map<String, Value>,
}

impl Line<'_> {
    fn error(&self, field: Option<&str>, problem: impl Into<String>) -> FileError {
        FileError {
            file: self.file.to_owned(),
            line: Some(self.n),
            field: field.map(str::to_owned),
            problem: problem.into(),
        }
    }

    fn only(&self, allowed: &[&str]) -> Result<(), FileError> {
        match self.obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(self.error(Some(k), "unknown field")),
            None => Ok(()),
        }
    }

    fn required(&self, field: &str) -> Result<&Value, FileError> {
        self.obj
            .get(field)
            .ok_or_else(|| self.error(Some(field), "missing"))
    }

    fn string(&self, field: &str) -> Result<&str, FileError> {
        self.required(field)?
            .as_str()
            .ok_or_else(|| self.error(Some(field), "must be a string"))
    }

    fn hash(&self, field: &str) -> Result<[u8; 32], FileError> {
        let text = self.string(field)?;
        let bad = || self.error(Some(field), "must be 64 hexadecimal digits (a SHA-256)");
        if text.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(|_| bad())?;
        Ok(out)
    }
}

/// Each non-blank line of `text` as a JSON object.
fn lines<'a>(text: &'a str, file: &'a Path) -> impl Iterator<Item = Result<Line<'a>, FileError>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(move |(i, l)| {
            let n = i + 1;
            let error = |problem: String| FileError {
                file: file.to_owned(),
                line: Some(n),
                field: None,
                problem,
            };
            match serde_json::from_str::<Value>(l) {
                Ok(Value::Object(obj)) => Ok(Line { file, n, obj }),
                Ok(_) => Err(error("not a JSON object".to_owned())),
                // The position, not serde's text: it may quote the line's content.
                Err(e) => Err(error(format!("not JSON (column {})", e.column()))),
            }
        })
}

pub fn parse_kiosks(text: &str, file: &Path) -> Result<Vec<KioskLine>, FileError> {
    let mut out = Vec::new();
    for line in lines(text, file) {
        let line = line?;
        line.only(&["kiosk_id", "token_sha256", "disabled"])?;
        let kiosk_id = KioskId::parse(line.string("kiosk_id")?)
            .map_err(|_| line.error(Some("kiosk_id"), "must match ^[A-Z0-9][A-Z0-9-]{2,31}$"))?;
        let token_sha256 = line.hash("token_sha256")?;
        let disabled = match line.obj.get("disabled") {
            None => false,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| line.error(Some("disabled"), "must be true or false"))?,
        };
        out.push(KioskLine {
            kiosk_id,
            token_sha256,
            disabled,
        });
    }
    Ok(out)
}

pub fn parse_admin_tokens(text: &str, file: &Path) -> Result<Vec<AdminLine>, FileError> {
    let mut out = Vec::new();
    let (mut names, mut hashes) = (HashSet::new(), HashSet::new());
    for line in lines(text, file) {
        let line = line?;
        line.only(&["name", "token_sha256", "roles"])?;
        let name = line.string("name")?;
        if !acceptable_name(name) {
            return Err(line.error(
                Some("name"),
                format!("must be 1 to {MAX_NAME} characters of A-Z a-z 0-9 . _ @ -"),
            ));
        }
        if !names.insert(name.to_owned()) {
            return Err(line.error(Some("name"), "appears on an earlier line"));
        }
        let token_sha256 = line.hash("token_sha256")?;
        if !hashes.insert(token_sha256) {
            return Err(line.error(
                Some("token_sha256"),
                "the same token is listed on an earlier line",
            ));
        }
        let roles = line
            .required("roles")?
            .as_array()
            .ok_or_else(|| line.error(Some("roles"), "must be an array"))?
            .iter()
            .map(|r| r.as_str().and_then(Role::parse))
            .collect::<Option<Vec<Role>>>()
            .ok_or_else(|| {
                line.error(
                    Some("roles"),
                    "each role must be \"read\", \"registry\" or \"drain\"",
                )
            })?;
        out.push(AdminLine {
            name: name.to_owned(),
            token_sha256,
            roles,
        });
    }
    Ok(out)
}

fn acceptable_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

    fn kiosks(text: &str) -> Result<Vec<KioskLine>, FileError> {
        parse_kiosks(text, Path::new("kiosks.jsonl"))
    }

    fn admins(text: &str) -> Result<Vec<AdminLine>, FileError> {
        parse_admin_tokens(text, Path::new("admins.jsonl"))
    }

    fn refusal(r: Result<impl std::fmt::Debug, FileError>) -> (Option<usize>, Option<String>) {
        let e = r.expect_err("refused");
        (e.line, e.field)
    }

    #[test]
    fn kiosk_lines_parse_and_bad_ones_are_named_by_line_and_field() {
        let ok = kiosks(&format!(
            "{{\"kiosk_id\":\"SEJ-1\",\"token_sha256\":\"{HASH}\"}}\n\n{{\"kiosk_id\":\"LAW-2\",\"token_sha256\":\"{HASH}\",\"disabled\":true}}\n"
        ))
        .expect("parses");
        assert_eq!(ok.len(), 2);
        assert!(!ok[0].disabled && ok[1].disabled);
        assert_eq!(ok[0].token_sha256[31], 0xff);
        let good = format!("{{\"kiosk_id\":\"SEJ-1\",\"token_sha256\":\"{HASH}\"}}");
        for (line2, field) in [
            ("{\"kiosk_id\":\"SEJ-1\"}".to_owned(), Some("token_sha256")),
            (
                format!("{{\"kiosk_id\":\"bad id\",\"token_sha256\":\"{HASH}\"}}"),
                Some("kiosk_id"),
            ),
            (
                "{\"kiosk_id\":\"SEJ-1\",\"token_sha256\":\"abc\"}".to_owned(),
                Some("token_sha256"),
            ),
            (
                format!("{{\"kiosk_id\":\"SEJ-1\",\"token_sha256\":\"{HASH}\",\"disabled\":1}}"),
                Some("disabled"),
            ),
            (
                format!("{{\"kiosk_id\":\"SEJ-1\",\"token_sha256\":\"{HASH}\",\"x\":1}}"),
                Some("x"),
            ),
            ("{\"kiosk_id\": 5".to_owned(), None),
            ("[1]".to_owned(), None),
        ] {
            assert_eq!(
                refusal(kiosks(&format!("{good}\n{line2}\n"))),
                (Some(2), field.map(str::to_owned)),
                "{line2}"
            );
        }
        let e = kiosks("{\"kiosk_id\":\"SEJ-1\",\"token_sha256\":\"zz\"}").expect_err("refused");
        assert_eq!(
            e.to_string(),
            "kiosks.jsonl line 1, field token_sha256: must be 64 hexadecimal digits (a SHA-256)"
        );
    }

    #[test]
    fn admin_lines_parse_with_roles_and_refuse_duplicates() {
        let line = |name: &str, hash: &str, roles: &str| {
            format!("{{\"name\":\"{name}\",\"token_sha256\":\"{hash}\",\"roles\":{roles}}}\n")
        };
        let other = "ff".repeat(32);
        let ok = admins(&(line("ops", HASH, "[\"read\",\"drain\"]") + &line("ro", &other, "[]")))
            .expect("parses");
        assert_eq!(ok[0].roles, vec![Role::Read, Role::Drain]);
        assert!(ok[1].roles.is_empty());
        for (text, at, field) in [
            (line("ops", HASH, "[\"root\"]"), 1, "roles"),
            (line("ops", HASH, "\"read\""), 1, "roles"),
            (line("o p", HASH, "[]"), 1, "name"),
            (
                line("ops", HASH, "[]") + &line("ops", &other, "[]"),
                2,
                "name",
            ),
            (
                line("a", HASH, "[]") + &line("b", HASH, "[]"),
                2,
                "token_sha256",
            ),
        ] {
            assert_eq!(
                refusal(admins(&text)),
                (Some(at), Some(field.to_owned())),
                "{text}"
            );
        }
    }

    #[test]
    fn lines_written_are_lines_read() {
        let k = KioskLine {
            kiosk_id: KioskId::parse("SEJ-1").expect("valid"),
            token_sha256: [7; 32],
            disabled: false,
        };
        let text = serde_json::to_string(&k).expect("serializes");
        assert_eq!(kiosks(&text).expect("parses"), vec![k]);
        let a = AdminLine {
            name: "ops".into(),
            token_sha256: [9; 32],
            roles: vec![Role::Registry],
        };
        let text = serde_json::to_string(&a).expect("serializes");
        assert!(text.starts_with("{\"name\":\"ops\",\"token_sha256\":"));
        assert_eq!(admins(&text).expect("parses"), vec![a]);
    }
}
