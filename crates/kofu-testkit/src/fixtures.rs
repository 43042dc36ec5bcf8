//! The synthetic population a node serves, read from `kofu fixtures` itself so tests
//! and server can never disagree about who exists, which kiosks exist and the admin token.

use std::process::Command;

use ed25519_dalek::SigningKey;
use kofu_proto::{CardId, FixtureLine};

use crate::kofu_bin;

/// One resident's card, with the fixture flags that decide which answers it gets.
#[derive(Clone)]
pub struct Card {
    pub card_id: String,
    pub card: CardId,
    pub signing_key: SigningKey,
    pub full_name: String,
    pub municipality_code: String,
    pub household_id: String,
    pub seal_registered: bool,
    pub seal_revoked: bool,
    pub card_revoked: bool,
    pub restricted: bool,
    pub tax_record: bool,
}

impl std::fmt::Debug for Card {
    // Test output may end up in CI logs; keep it as private as the server's.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Card({:?})", self.card)
    }
}

/// A kiosk credential as the fixtures print it (`token` = `<kiosk_id>.<secret>`).
#[derive(Debug, Clone)]
pub struct KioskCred {
    pub kiosk_id: String,
    pub token: String,
}

/// Everything `kofu fixtures --seed N --residents R --kiosks K` prints.
#[derive(Clone)]
pub struct Fixtures {
    pub seed: u64,
    pub cards: Vec<Card>,
    pub kiosks: Vec<KioskCred>,
    pub admin_token: String,
}

impl std::fmt::Debug for Fixtures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Fixtures(seed {}, {} cards, {} kiosks)",
            self.seed,
            self.cards.len(),
            self.kiosks.len()
        )
    }
}

impl Fixtures {
    /// Runs `kofu fixtures` and parses every line; panics on anything unexpected.
    pub fn load(seed: u64, residents: u32, kiosks: u32) -> Fixtures {
        let out = Command::new(kofu_bin())
            .args(["fixtures", "--seed", &seed.to_string()])
            .args(["--residents", &residents.to_string()])
            .args(["--kiosks", &kiosks.to_string()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run `kofu fixtures`: {e}"));
        assert!(
            out.status.success(),
            "`kofu fixtures` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let mut fx = Fixtures {
            seed,
            cards: Vec::new(),
            kiosks: Vec::new(),
            admin_token: String::new(),
        };
        for (n, line) in String::from_utf8_lossy(&out.stdout).lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let parsed: FixtureLine = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("fixture line {} is not a FixtureLine: {e}", n + 1));
            fx.push(parsed);
        }
        assert_eq!(fx.cards.len(), residents as usize, "card lines");
        assert_eq!(fx.kiosks.len(), kiosks as usize, "kiosk lines");
        assert!(!fx.admin_token.is_empty(), "no admin line");
        fx
    }

    fn push(&mut self, line: FixtureLine) {
        match line {
            FixtureLine::Card {
                card_id,
                secret_key,
                full_name,
                municipality_code,
                household_id,
                seal_registered,
                seal_revoked,
                card_revoked,
                restricted,
                tax_record,
                ..
            } => {
                let card = CardId::parse(&card_id)
                    .unwrap_or_else(|_| panic!("fixture card id is malformed"));
                let seed: [u8; 32] = kofu_proto::b64url_decode(&secret_key)
                    .and_then(|raw| raw.try_into().ok())
                    .unwrap_or_else(|| panic!("fixture secret_key is not a 32-byte seed"));
                self.cards.push(Card {
                    card_id,
                    card,
                    signing_key: SigningKey::from_bytes(&seed),
                    full_name,
                    municipality_code,
                    household_id,
                    seal_registered,
                    seal_revoked,
                    card_revoked,
                    restricted,
                    tax_record,
                });
            }
            FixtureLine::Kiosk { kiosk_id, token } => {
                self.kiosks.push(KioskCred { kiosk_id, token });
            }
            FixtureLine::Admin { token } => self.admin_token = token,
        }
    }

    /// Cards that can open a session and be issued something.
    pub fn ordinary(&self) -> impl Iterator<Item = &Card> {
        self.cards
            .iter()
            .filter(|c| !c.card_revoked && !c.restricted)
    }

    /// Full names of the members of a household (who may appear on each other's papers).
    pub fn household_names(&self, household_id: &str) -> Vec<&str> {
        self.cards
            .iter()
            .filter(|c| c.household_id == household_id)
            .map(|c| c.full_name.as_str())
            .collect()
    }

    /// Names of every resident NOT in this household: a document of this household must
    /// contain none of them (whole-word match).
    pub fn foreign_names(&self, household_id: &str) -> Vec<&str> {
        self.cards
            .iter()
            .filter(|c| c.household_id != household_id)
            .map(|c| c.full_name.as_str())
            .collect()
    }

    /// The card with this id, if the population has it.
    pub fn card(&self, card_id: &str) -> Option<&Card> {
        self.cards.iter().find(|c| c.card_id == card_id)
    }
}
