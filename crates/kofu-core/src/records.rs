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
    /// Romanized name, e.g. `Shinjuku City, Tokyo`.
    pub name: String,
}

/// A calendar date, kept as plain numbers so the pure crates need no time library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
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

impl Relation {
    pub fn label(self) -> &'static str {
        match self {
            Relation::Head => "Head of household",
            Relation::Spouse => "Spouse",
            Relation::Child => "Child",
            Relation::Parent => "Parent",
            Relation::Sibling => "Sibling",
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
    pub birth_date: Date,
    pub relation: Relation,
}

/// One resident's authoritative record, as read at render and at release time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidentRecord {
    pub card_id: CardId,
    /// Increases on every change; a document names the version it was rendered from.
    pub version: u64,
    pub full_name: String,
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

    /// `Y*** T***`: initials only, for the kiosk screen.
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

    /// The record after a change of address (a moving-in notification).
    pub fn with_address(&self, address: String) -> ResidentRecord {
        ResidentRecord {
            version: self.version + 1,
            address,
            ..self.clone()
        }
    }
}

/// Masks every word of a name to its initial followed by `***`.
pub fn mask_name(full_name: &str) -> String {
    full_name
        .split_whitespace()
        .map(|w| {
            let initial: String = w.chars().take(1).collect();
            format!("{initial}***")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_names() {
        assert_eq!(mask_name("Yuki Tanaka"), "Y*** T***");
        assert_eq!(mask_name("  Ren  "), "R***");
        assert_eq!(mask_name(""), "");
    }
}
