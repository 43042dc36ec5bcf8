//! Certificate kinds and their fixed per-copy fees, shared by the API and the renderer.

use serde::{Deserialize, Serialize};

/// A certificate a kiosk can print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum CertKind {
    Residence,
    Seal,
    Tax,
    FamilyRegister,
}

impl CertKind {
    pub const ALL: [CertKind; 4] = [
        CertKind::Residence,
        CertKind::Seal,
        CertKind::Tax,
        CertKind::FamilyRegister,
    ];

    /// The protocol name (`"residence"`, ...), as in JSON and the binding.
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::Residence => "residence",
            CertKind::Seal => "seal",
            CertKind::Tax => "tax",
            CertKind::FamilyRegister => "family_register",
        }
    }

    /// Fee per copy in yen, as charged at convenience-store kiosks.
    pub fn fee_yen(self) -> u32 {
        match self {
            CertKind::Residence => 200,
            CertKind::Seal => 200,
            CertKind::Tax => 300,
            CertKind::FamilyRegister => 450,
        }
    }

    /// The title printed on the certificate, as municipalities name them (and as
    /// `pdftotext` extracts it; the parentheses of the tax title are full-width).
    pub fn title(self) -> &'static str {
        match self {
            CertKind::Residence => "住民票の写し",
            CertKind::Seal => "印鑑登録証明書",
            CertKind::Tax => "課税（所得）証明書",
            CertKind::FamilyRegister => "戸籍全部事項証明書",
        }
    }

    pub fn parse(text: &str) -> Option<CertKind> {
        CertKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl std::fmt::Display for CertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_json_and_parse() {
        for k in CertKind::ALL {
            let json = serde_json::to_string(&k).expect("serialize");
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(CertKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(CertKind::parse("Residence"), None);
    }
}
