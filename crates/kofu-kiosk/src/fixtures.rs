//! The synthetic population a node serves, read from the JSON lines of `kofu fixtures`
//! (API.md, Fixtures): the one parser the demo, the load generator and the tests share,
//! so none of them can disagree with the node about who exists.

use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::Path;
use std::sync::OnceLock;

use ed25519_dalek::{Signer as _, SigningKey};
use kofu_proto::{CardId, FixtureLine};

use crate::names::NameIndex;

/// Why a fixture file cannot be used. Carries line numbers, never a line's content (a
/// fixture line holds a card id and a card's secret key).
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("cannot read the fixtures: {0}")]
    Io(#[from] std::io::Error),
    #[error("fixtures line {line} is not a fixture line: {source}")]
    Line {
        line: usize,
        source: serde_json::Error,
    },
    #[error("a fixture card id is malformed")]
    CardId,
    #[error("a fixture card key is malformed")]
    CardKey,
    #[error("a fixture card has no name")]
    NoName,
    #[error("the fixtures hold no card")]
    NoCard,
    #[error("the fixtures hold no kiosk")]
    NoKiosk,
}

/// One resident's card: its key (the card signs challenges) and the fixture flags that
/// decide which answers it gets.
#[derive(Clone)]
pub struct Card {
    pub id: CardId,
    pub signing_key: SigningKey,
    pub full_name: String,
    pub municipality_code: String,
    pub household_id: String,
    /// Dense number of the household (order of first appearance), for cheap comparisons.
    pub household: u32,
    pub seal_registered: bool,
    pub seal_revoked: bool,
    pub card_revoked: bool,
    pub restricted: bool,
    pub tax_record: bool,
}

impl std::fmt::Debug for Card {
    // Output of tests and tools ends up in CI logs: as private as the server's.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Card({:?})", self.id)
    }
}

impl Card {
    /// The card id as the protocol sends it (personal data: never log it).
    pub fn card_id(&self) -> &str {
        self.id.expose()
    }

    /// Whether the card may open a session and be issued something.
    pub fn usable(&self) -> bool {
        !self.card_revoked && !self.restricted
    }

    /// Whether a seal certificate may be issued to the holder.
    pub fn seal_issuable(&self) -> bool {
        self.seal_registered && !self.seal_revoked
    }

    /// The card's signature over a session's challenge (API.md endpoint 2).
    pub fn signature(&self, session_id: &str, kiosk_id: &str, challenge: &[u8]) -> [u8; 64] {
        let msg = kofu_proto::auth_message(session_id, kiosk_id, challenge);
        self.signing_key.sign(&msg).to_bytes()
    }

    /// [`Card::signature`] in base64url, as the auth request carries it.
    pub fn sign(&self, session_id: &str, kiosk_id: &str, challenge: &[u8]) -> String {
        kofu_proto::b64url(&self.signature(session_id, kiosk_id, challenge))
    }

    /// [`Card::sign`] over a challenge as `POST /v1/sessions` sends it (base64url). A
    /// challenge that does not decode is signed as empty, which no node accepts.
    pub fn sign_challenge(&self, session_id: &str, kiosk_id: &str, challenge_b64: &str) -> String {
        let challenge = kofu_proto::b64url_decode(challenge_b64).unwrap_or_default();
        self.sign(session_id, kiosk_id, &challenge)
    }
}

/// A kiosk credential as the fixtures print it (`token` = `<kiosk_id>.<secret>`).
#[derive(Clone, PartialEq, Eq)]
pub struct KioskCred {
    pub kiosk_id: String,
    pub token: String,
}

impl std::fmt::Debug for KioskCred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KioskCred({})", self.kiosk_id)
    }
}

/// Everything `kofu fixtures --seed N --residents R --kiosks K` prints.
#[derive(Clone)]
pub struct Fixtures {
    pub cards: Vec<Card>,
    pub kiosks: Vec<KioskCred>,
    /// Empty when the lines hold no admin token.
    pub admin_token: String,
    by_id: HashMap<CardId, usize>,
    /// Built on first use: only byte-level document checks need it.
    names: OnceLock<NameIndex>,
}

impl std::fmt::Debug for Fixtures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Fixtures({} cards, {} kiosks)",
            self.cards.len(),
            self.kiosks.len()
        )
    }
}

impl Fixtures {
    /// Reads a file of fixture lines (`kofu fixtures … > FILE`).
    pub fn read(path: &Path) -> Result<Fixtures, FixtureError> {
        let file = std::fs::File::open(path)?;
        let mut lines = Vec::new();
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            if let Some(parsed) = parse_line(n, &line?)? {
                lines.push(parsed);
            }
        }
        Fixtures::from_lines(lines)
    }

    /// Parses the text `kofu fixtures` prints.
    pub fn parse(text: &str) -> Result<Fixtures, FixtureError> {
        let mut lines = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if let Some(parsed) = parse_line(n, line)? {
                lines.push(parsed);
            }
        }
        Fixtures::from_lines(lines)
    }

    /// The population from already parsed lines (`Population::fixture_lines`, say).
    pub fn from_lines(
        lines: impl IntoIterator<Item = FixtureLine>,
    ) -> Result<Fixtures, FixtureError> {
        let mut fx = Fixtures {
            cards: Vec::new(),
            kiosks: Vec::new(),
            admin_token: String::new(),
            by_id: HashMap::new(),
            names: OnceLock::new(),
        };
        let mut households: HashMap<String, u32> = HashMap::new();
        for line in lines {
            match line {
                FixtureLine::Card {
                    secret_key,
                    card_id,
                    card_revoked,
                    restricted,
                    full_name,
                    household_id,
                    municipality_code,
                    seal_registered,
                    seal_revoked,
                    tax_record,
                    ..
                } => {
                    let id = CardId::parse(&card_id).map_err(|_| FixtureError::CardId)?;
                    if full_name.trim().is_empty() {
                        return Err(FixtureError::NoName);
                    }
                    let seed: [u8; 32] = kofu_proto::b64url_decode(&secret_key)
                        .and_then(|raw| raw.try_into().ok())
                        .ok_or(FixtureError::CardKey)?;
                    let next = u32::try_from(households.len()).unwrap_or(u32::MAX);
                    let household = *households.entry(household_id.clone()).or_insert(next);
                    fx.by_id.insert(id.clone(), fx.cards.len());
                    fx.cards.push(Card {
                        id,
                        signing_key: SigningKey::from_bytes(&seed),
                        full_name,
                        municipality_code,
                        household_id,
                        household,
                        seal_registered,
                        seal_revoked,
                        card_revoked,
                        restricted,
                        tax_record,
                    });
                }
                FixtureLine::Kiosk { kiosk_id, token } => {
                    fx.kiosks.push(KioskCred { kiosk_id, token });
                }
                FixtureLine::Admin { token } => fx.admin_token = token,
            }
        }
        if fx.cards.is_empty() {
            return Err(FixtureError::NoCard);
        }
        if fx.kiosks.is_empty() {
            return Err(FixtureError::NoKiosk);
        }
        Ok(fx)
    }

    /// The card with this id, if the population has it.
    pub fn card(&self, card_id: &str) -> Option<&Card> {
        let id = CardId::parse(card_id).ok()?;
        self.index_of(&id).map(|i| &self.cards[i])
    }

    /// Position of a card in `cards`.
    pub fn index_of(&self, id: &CardId) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Cards that can open a session and be issued something.
    pub fn ordinary(&self) -> impl DoubleEndedIterator<Item = &Card> {
        self.cards.iter().filter(|c| c.usable())
    }

    /// Positions in `cards` of [`Fixtures::ordinary`] cards.
    pub fn ordinary_indices(&self) -> impl DoubleEndedIterator<Item = usize> + '_ {
        (0..self.cards.len()).filter(|&i| self.cards[i].usable())
    }

    /// Full names of the members of a household (who may appear on each other's papers).
    pub fn household_names(&self, household_id: &str) -> Vec<&str> {
        self.cards
            .iter()
            .filter(|c| c.household_id == household_id)
            .map(|c| c.full_name.as_str())
            .collect()
    }

    /// Every resident's name at once, for byte-level document checks.
    pub(crate) fn names(&self) -> &NameIndex {
        self.names.get_or_init(|| NameIndex::new(&self.cards))
    }
}

/// One line; `None` for a blank one. The error names the line number only.
fn parse_line(n: usize, line: &str) -> Result<Option<FixtureLine>, FixtureError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(line)
        .map(Some)
        .map_err(|source| FixtureError::Line {
            line: n + 1,
            source,
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn card(id: &str, name: &str, household: &str) -> FixtureLine {
        FixtureLine::Card {
            card_id: id.into(),
            secret_key: kofu_proto::b64url(&[7u8; 32]),
            full_name: name.into(),
            full_name_kana: String::new(),
            municipality_code: "131041".into(),
            household_id: household.into(),
            seal_registered: true,
            seal_revoked: false,
            card_revoked: false,
            restricted: false,
            tax_record: true,
        }
    }

    pub(crate) fn kiosk() -> FixtureLine {
        FixtureLine::Kiosk {
            kiosk_id: "SEJ-13104-0042-01".into(),
            token: "SEJ-13104-0042-01.secret".into(),
        }
    }

    /// Two households (`YAMADA Taro` and `YAMADA Hanako`; `SATO Jiro`), `more` cards,
    /// one kiosk.
    pub(crate) fn sample(more: impl IntoIterator<Item = FixtureLine>) -> Fixtures {
        let lines = [
            card("0123456789ABCDEF", "YAMADA Taro", "h1"),
            card("0123456789ABCDE0", "YAMADA Hanako", "h1"),
            card("0123456789ABCDE1", "SATO Jiro", "h2"),
        ];
        Fixtures::from_lines(lines.into_iter().chain(more).chain([kiosk()])).expect("fixtures")
    }

    #[test]
    fn lines_become_cards_kiosks_and_the_admin_token() {
        let text = [
            serde_json::to_string(&card("0123456789ABCDEF", "YAMADA Taro", "h1")),
            serde_json::to_string(&card("0123456789ABCDE0", "YAMADA Hanako", "h1")),
            serde_json::to_string(&card("0123456789ABCDE1", "SATO Jiro", "h2")),
            serde_json::to_string(&kiosk()),
            serde_json::to_string(&FixtureLine::Admin {
                token: "adm".into(),
            }),
        ]
        .into_iter()
        .map(|l| l.expect("serialize"))
        .collect::<Vec<_>>()
        .join("\n\n");
        let fx = Fixtures::parse(&text).expect("fixtures");
        assert_eq!((fx.cards.len(), fx.kiosks.len()), (3, 1));
        assert_eq!(fx.admin_token, "adm");
        assert_eq!(fx.cards[0].household, fx.cards[1].household);
        assert_ne!(fx.cards[0].household, fx.cards[2].household);
        assert_eq!(
            fx.card("0123456789ABCDE1").map(|c| c.full_name.as_str()),
            Some("SATO Jiro")
        );
        assert!(fx.card("0123456789ABCDE2").is_none() && fx.card("nope").is_none());
        assert_eq!(fx.household_names("h1"), ["YAMADA Taro", "YAMADA Hanako"]);
        // Debug output never holds a card id or a name.
        let shown = format!("{:?} {:?} {:?}", fx, fx.cards[0], fx.kiosks[0]);
        assert!(!shown.contains("0123456789ABCDEF") && !shown.contains("YAMADA"));
        assert!(!shown.contains("secret"));
    }

    #[test]
    fn bad_lines_are_refused_by_number_only() {
        let err = Fixtures::parse("\n{\"type\":\"card\",\"card_id\":\"0123456789ABCDEF\"}")
            .expect_err("refused");
        assert!(err.to_string().starts_with("fixtures line 2 "), "{err}");
        assert!(!err.to_string().contains("0123456789ABCDEF"));
        let no_kiosk = serde_json::to_string(&card("0123456789ABCDEF", "A B", "h")).expect("json");
        assert!(matches!(
            Fixtures::parse(&no_kiosk),
            Err(FixtureError::NoKiosk)
        ));
    }

    #[test]
    fn the_card_signs_what_the_node_verifies() {
        let fx = Fixtures::from_lines([card("0123456789ABCDEF", "A B", "h"), kiosk()])
            .expect("fixtures");
        let c = &fx.cards[0];
        let challenge = [9u8; 32];
        let sig = c.sign_challenge("S", "K", &kofu_proto::b64url(&challenge));
        assert_eq!(sig, c.sign("S", "K", &challenge));
        let raw: [u8; 64] = kofu_proto::b64url_decode(&sig)
            .and_then(|s| s.try_into().ok())
            .expect("64 bytes");
        let msg = kofu_proto::auth_message("S", "K", &challenge);
        c.signing_key
            .verifying_key()
            .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&raw))
            .expect("verifies");
    }
}
