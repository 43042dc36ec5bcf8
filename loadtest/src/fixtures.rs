//! The population a trace is replayed against, read from `kofu fixtures` output (JSON
//! lines): cards with their signing keys and statuses, kiosks with their tokens, and a
//! matcher that finds every resident's name in a document at once.

use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::Path;

use aho_corasick::AhoCorasick;
use anyhow::Context as _;
use ed25519_dalek::SigningKey;
use kofu_proto::CardId;
use kofu_proto::fixtures::FixtureLine;

pub struct Card {
    pub card: CardId,
    pub key: SigningKey,
    pub full_name: String,
    pub municipality_code: String,
    pub household: u32,
    pub seal_issuable: bool,
    pub tax_record: bool,
    pub usable: bool,
}

pub struct Kiosk {
    pub kiosk_id: String,
    pub auth: String,
}

pub struct Fixtures {
    pub cards: Vec<Card>,
    pub kiosks: Vec<Kiosk>,
    /// Every distinct full name; pattern `i` belongs to the households in `owners[i]`.
    names: AhoCorasick,
    owners: Vec<Vec<u32>>,
}

impl std::fmt::Debug for Fixtures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixtures")
            .field("cards", &self.cards.len())
            .field("kiosks", &self.kiosks.len())
            .finish()
    }
}

impl Fixtures {
    pub fn read(path: &Path) -> anyhow::Result<Fixtures> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open fixtures {}", path.display()))?;
        let mut lines = Vec::new();
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            // The line number only: a fixture line holds card ids and secrets.
            let parsed: FixtureLine = serde_json::from_str(&line)
                .with_context(|| format!("fixtures line {} is not a fixture line", n + 1))?;
            lines.push(parsed);
        }
        Fixtures::from_lines(lines)
    }

    pub fn from_lines(lines: Vec<FixtureLine>) -> anyhow::Result<Fixtures> {
        let mut cards = Vec::new();
        let mut kiosks = Vec::new();
        let mut households: HashMap<String, u32> = HashMap::new();
        for line in lines {
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
                        .map_err(|_| anyhow::anyhow!("a fixture card id is malformed"))?;
                    let seed: [u8; 32] = kofu_proto::b64url_decode(&secret_key)
                        .and_then(|b| b.try_into().ok())
                        .context("a fixture card key is malformed")?;
                    let next = households.len() as u32;
                    let household = *households.entry(household_id).or_insert(next);
                    cards.push(Card {
                        card,
                        key: SigningKey::from_bytes(&seed),
                        full_name,
                        municipality_code,
                        household,
                        seal_issuable: seal_registered && !seal_revoked,
                        tax_record,
                        usable: !card_revoked && !restricted,
                    });
                }
                FixtureLine::Kiosk { kiosk_id, token } => kiosks.push(Kiosk {
                    kiosk_id,
                    auth: format!("Bearer {token}"),
                }),
                FixtureLine::Admin { .. } => {}
            }
        }
        anyhow::ensure!(!cards.is_empty(), "the fixtures hold no card");
        anyhow::ensure!(!kiosks.is_empty(), "the fixtures hold no kiosk");
        let mut by_name: HashMap<&str, Vec<u32>> = HashMap::new();
        for c in &cards {
            by_name
                .entry(c.full_name.as_str())
                .or_default()
                .push(c.household);
        }
        // The bytes under which the renderer writes each name (one string operand).
        let (patterns, owners): (Vec<Vec<u8>>, Vec<Vec<u32>>) = by_name
            .into_iter()
            .map(|(n, h)| (kofu_proto::doctext::name_pattern(n), h))
            .unzip();
        let names = AhoCorasick::new(&patterns).context("building the name matcher")?;
        Ok(Fixtures {
            cards,
            kiosks,
            names,
            owners,
        })
    }

    /// Whether `doc` names a resident from outside `household` (a misdelivery even if
    /// the binding were right). Family-register certificates name the whole household.
    pub fn foreign_name_in(&self, doc: &[u8], household: u32) -> bool {
        self.names
            .find_overlapping_iter(doc)
            .any(|m| !self.owners[m.pattern().as_usize()].contains(&household))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(id: &str, name: &str, household: &str) -> FixtureLine {
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

    #[test]
    fn names_outside_the_household_are_found() {
        let fx = Fixtures::from_lines(vec![
            card("0123456789ABCDEF", "山田 太郎", "h1"),
            card("0123456789ABCDE0", "山田 花子", "h1"),
            card("0123456789ABCDE1", "佐藤 次郎", "h2"),
            card("0123456789ABCDE2", "山田 太", "h3"),
            FixtureLine::Kiosk {
                kiosk_id: "SEJ-13104-0042-01".into(),
                token: "t".into(),
            },
        ])
        .expect("fixtures");
        let h1 = fx.cards[0].household;
        let doc = |names: &[&str]| -> Vec<u8> {
            names
                .iter()
                .flat_map(|n| kofu_proto::doctext::name_pattern(n))
                .collect()
        };
        assert!(!fx.foreign_name_in(&doc(&["山田 太郎", "山田 花子"]), h1));
        assert!(fx.foreign_name_in(&doc(&["山田 太郎", "佐藤 次郎"]), h1));
        // 山田 太 is written inside 山田 太郎 but is never an operand of its own there.
        assert!(!fx.foreign_name_in(&doc(&["山田 太郎"]), h1));
    }
}
