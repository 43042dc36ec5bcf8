//! The registry's record model: what a municipality knows about a resident. Records are
//! immutable values with a version; an update produces a new value with version + 1.

pub use kofu_proto::NotIssuable;
use kofu_proto::{CardId, CertKind};
use serde::{Deserialize, Serialize};

/// A municipality (city, ward, town or village) with its 6-digit local government code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Municipality {
    /// Local government code with check digit, e.g. `131041`.
    pub code: String,
    /// Prefecture and municipality as written in Japanese, e.g. `東京都新宿区`; its last
    /// character (市, 区, 町, 村) names the mayor's office (`Municipality::mayor`).
    pub name: String,
}

impl Municipality {
    /// The certifying office as printed under a certificate: `新宿区長`, `横浜市長`. The
    /// prefecture (東京都, 北海道, 京都府, 大阪府 or a 県) is left out.
    pub fn mayor(&self) -> String {
        let local = ["東京都", "北海道", "京都府", "大阪府"]
            .iter()
            .find_map(|p| self.name.strip_prefix(p))
            .or_else(|| self.name.split_once('県').map(|(_, rest)| rest))
            .filter(|rest| !rest.is_empty())
            .unwrap_or(&self.name);
        format!("{local}長")
    }
}

/// A calendar date, kept as plain numbers so the pure crates need no time library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// The date `year`-`month`-`day` (not checked: the parsers check what comes in).
    pub const fn ymd(year: u16, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }

    /// Days in `month` (1 to 12) of the Gregorian `year`.
    pub fn days_in_month(year: u16, month: u8) -> u8 {
        match month {
            2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Relation {
    Head,
    Spouse,
    Child,
    Parent,
    Sibling,
}

/// Sex as the resident register records it (a residence certificate prints it, and the
/// relation to the head of household depends on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sex {
    Male,
    Female,
}

impl Sex {
    /// As printed in the 性別 column.
    pub fn label(self) -> &'static str {
        match self {
            Sex::Male => "男",
            Sex::Female => "女",
        }
    }
}

impl Relation {
    /// The 続柄 (relation to the head of household) a residence certificate prints:
    /// spouses, parents and siblings by sex, siblings also by age; every child is `子`,
    /// as resident registers write since 1995.
    pub fn label(self, sex: Sex, elder_than_head: bool) -> &'static str {
        match (self, sex) {
            (Relation::Head, _) => "世帯主",
            (Relation::Spouse, Sex::Female) => "妻",
            (Relation::Spouse, Sex::Male) => "夫",
            (Relation::Child, _) => "子",
            (Relation::Parent, Sex::Male) => "父",
            (Relation::Parent, Sex::Female) => "母",
            (Relation::Sibling, Sex::Male) if elder_than_head => "兄",
            (Relation::Sibling, Sex::Male) => "弟",
            (Relation::Sibling, Sex::Female) if elder_than_head => "姉",
            (Relation::Sibling, Sex::Female) => "妹",
        }
    }
}

/// Seal registration status: the revoked state is what incident 5 is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Seal {
    NotRegistered,
    Registered { number: String, registered_on: Date },
    Revoked { number: String, revoked_on: Date },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxRecord {
    pub fiscal_year: u16,
    pub income_yen: u64,
    pub municipal_tax_yen: u64,
    pub prefectural_tax_yen: u64,
}

/// A member as printed on a household's residence or family-register certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub full_name: String,
    /// The reading in katakana (フリガナ), family and given name separated by a space.
    #[serde(default)]
    pub full_name_kana: String,
    pub sex: Sex,
    pub birth_date: Date,
    pub relation: Relation,
}

/// One resident's authoritative record, as read at render and at release time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidentRecord {
    pub card_id: CardId,
    /// Increases on every change; a document names the version it was rendered from.
    pub version: u64,
    /// Family name, a space, given name: `山田 太郎` (kanji, sometimes kana).
    pub full_name: String,
    /// The reading in katakana: `ヤマダ タロウ`.
    #[serde(default)]
    pub full_name_kana: String,
    pub sex: Sex,
    pub birth_date: Date,
    pub relation: Relation,
    pub address: String,
    pub municipality: Municipality,
    pub household_id: String,
    /// Members of the same household (including this resident), in household order.
    /// Only they may appear on this resident's residence and family-register certificates.
    pub household: Vec<Member>,
    pub seal: Seal,
    pub tax: Option<TaxRecord>,
    /// Access restricted (e.g. protection order): no kiosk issuance at all.
    pub restricted: bool,
    /// The card's user certificate is revoked: no session may be opened.
    pub card_revoked: bool,
    /// Ed25519 public key of the card.
    pub card_public_key: [u8; 32],
}

impl ResidentRecord {
    /// Whether this record allows issuing `kind` now. Checked at job creation and again
    /// at every release (invariant I4).
    pub fn issuable(&self, kind: CertKind) -> Result<(), NotIssuable> {
        if self.restricted {
            return Err(NotIssuable::RecordRestricted);
        }
        match kind {
            CertKind::Residence | CertKind::FamilyRegister => Ok(()),
            CertKind::Seal => match self.seal {
                Seal::Registered { .. } => Ok(()),
                Seal::NotRegistered => Err(NotIssuable::SealNotRegistered),
                Seal::Revoked { .. } => Err(NotIssuable::SealRevoked),
            },
            CertKind::Tax => match self.tax {
                Some(_) => Ok(()),
                None => Err(NotIssuable::NoTaxRecord),
            },
        }
    }

    /// The kinds listed in the auth answer.
    pub fn issuable_kinds(&self) -> Vec<CertKind> {
        CertKind::ALL
            .into_iter()
            .filter(|k| self.issuable(*k).is_ok())
            .collect()
    }

    /// The masked name for the kiosk screen (see [`mask_name`]).
    pub fn display_name(&self) -> String {
        mask_name(&self.full_name)
    }

    /// The record after a seal revocation acknowledged on `on`; `None` if there was no
    /// registration to revoke.
    pub fn with_seal_revoked(&self, on: Date) -> Option<ResidentRecord> {
        match &self.seal {
            Seal::Registered { number, .. } => Some(ResidentRecord {
                version: self.version + 1,
                seal: Seal::Revoked {
                    number: number.clone(),
                    revoked_on: on,
                },
                ..self.clone()
            }),
            Seal::Revoked { .. } | Seal::NotRegistered => None,
        }
    }

    /// What importing `incoming` (a registry file's line for this card) makes of this
    /// stored record: `None` when nothing changes, else the next version. The file wins
    /// on every field except revocations, which an import never undoes
    /// (`docs/registry-format.md`, "Re-import"):
    /// - a revoked card stays revoked (a reissued card has a new card id);
    /// - a revoked seal registration stays revoked: a file that still lists that seal
    ///   number as registered, or no seal at all, leaves the revocation in force; only a
    ///   registration under another number replaces it.
    pub fn imported(&self, incoming: &ResidentRecord) -> Option<ResidentRecord> {
        let mut next = ResidentRecord {
            version: self.version,
            ..incoming.clone()
        };
        next.card_revoked |= self.card_revoked;
        if let Seal::Revoked { number, .. } = &self.seal {
            let replaced = match &incoming.seal {
                Seal::NotRegistered => false,
                Seal::Registered { number: n, .. } | Seal::Revoked { number: n, .. } => n != number,
            };
            if !replaced {
                next.seal = self.seal.clone();
            }
        }
        if next == *self {
            return None;
        }
        next.version = self.version + 1;
        Some(next)
    }

    /// The record after a change of address (a moving-in notification).
    pub fn with_address(&self, address: String) -> ResidentRecord {
        ResidentRecord {
            version: self.version + 1,
            address,
            ..self.clone()
        }
    }
}

/// The name as a kiosk screen may show it before printing: enough for holders to
/// recognise their own card, too little to learn a stranger's name.
///
/// - A Japanese name (any non-ASCII character; family name first) shows only the first
///   character of the family name followed by `＊＊`, and `＊＊` for every other part:
///   `佐藤 太郎` → `佐＊＊ ＊＊`. A one-character family name (`林`) is masked whole,
///   since its first character would be all of it. The masks have a fixed length, so
///   the screen does not tell how long the name is.
/// - A romanized name (ASCII only, e.g. a foreign resident's) keeps the initial of every
///   word followed by `***`: `Yuki Tanaka` → `Y*** T***`.
pub fn mask_name(full_name: &str) -> String {
    let mut parts = full_name.split_whitespace();
    if full_name.is_ascii() {
        return parts
            .map(|w| {
                let initial: String = w.chars().take(1).collect();
                format!("{initial}***")
            })
            .collect::<Vec<_>>()
            .join(" ");
    }
    let mut out = String::new();
    if let Some(family) = parts.next() {
        let mut chars = family.chars();
        if let (Some(first), Some(_)) = (chars.next(), chars.next()) {
            out.push(first);
        }
        out.push_str("＊＊");
    }
    for _ in parts {
        out.push_str(" ＊＊");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_names() {
        assert_eq!(mask_name("Yuki Tanaka"), "Y*** T***");
        assert_eq!(mask_name("  Ren  "), "R***");
        assert_eq!(mask_name(""), "");
        assert_eq!(mask_name("佐藤 太郎"), "佐＊＊ ＊＊");
        assert_eq!(mask_name("長谷川 さくら"), "長＊＊ ＊＊");
        assert_eq!(mask_name("林 翔"), "＊＊ ＊＊");
        assert_eq!(mask_name("髙橋"), "髙＊＊");
    }

    #[test]
    fn relations_follow_sex_and_age() {
        assert_eq!(Relation::Head.label(Sex::Female, false), "世帯主");
        assert_eq!(Relation::Spouse.label(Sex::Female, false), "妻");
        assert_eq!(Relation::Spouse.label(Sex::Male, true), "夫");
        assert_eq!(Relation::Child.label(Sex::Male, false), "子");
        assert_eq!(Relation::Parent.label(Sex::Female, true), "母");
        assert_eq!(Relation::Sibling.label(Sex::Male, true), "兄");
        assert_eq!(Relation::Sibling.label(Sex::Female, false), "妹");
    }

    #[test]
    fn mayors() {
        let m = |name: &str| {
            Municipality {
                code: "000000".to_owned(),
                name: name.to_owned(),
            }
            .mayor()
        };
        assert_eq!(m("東京都新宿区"), "新宿区長");
        assert_eq!(m("神奈川県横浜市"), "横浜市長");
        assert_eq!(m("北海道札幌市"), "札幌市長");
        assert_eq!(m("京都府京都市"), "京都市長");
        assert_eq!(m("大阪府大阪市"), "大阪市長");
        assert_eq!(m("新宿区"), "新宿区長");
    }
}
