//! The JSON lines of `kofu fixtures` (API.md, Fixtures): how tests, the demo and the
//! load generator learn the synthetic population a node serves.

use serde::{Deserialize, Serialize};

/// One line of `kofu fixtures`. The fields after `seal_registered` are additions to
/// API.md's list, so clients can pick cards for every status code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FixtureLine {
    Card {
        card_id: String,
        /// base64url of the card's 32-byte Ed25519 seed.
        secret_key: String,
        /// Kanji: family name, a space, given name (API.md, "Japanese text").
        full_name: String,
        /// The name's reading in katakana, family and given name separated by a space.
        #[serde(default)]
        full_name_kana: String,
        municipality_code: String,
        household_id: String,
        seal_registered: bool,
        #[serde(default)]
        seal_revoked: bool,
        #[serde(default)]
        card_revoked: bool,
        #[serde(default)]
        restricted: bool,
        #[serde(default)]
        tax_record: bool,
    },
    Kiosk {
        kiosk_id: String,
        token: String,
    },
    Admin {
        token: String,
    },
}
