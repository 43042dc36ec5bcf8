//! The deterministic synthetic population: residents, card keys, kiosk credentials and
//! the admin token, all derived from one seed. Every node, test and load generator that
//! uses the same spec sees the same registry, which is what lets a cluster run on
//! fixtures without sharing a data file.

mod households;
mod name_lists;
mod names;
mod places;

use std::collections::{BTreeSet, HashSet};

use ed25519_dalek::SigningKey;
use kofu_proto::{CardId, FixtureLine, KioskId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use crate::records::{Member, Municipality, ResidentRecord, Seal};
use households::{HouseholdPlan, ORDINARY_PREFIX, Person, SealBook};
use names::NameBook;
use places::PLACES;
pub use places::with_check_digit;

/// What to generate. The same spec always yields the same population.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PopulationSpec {
    pub seed: u64,
    pub residents: u32,
    pub kiosks: u32,
}

/// Why a spec cannot be generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("at most {max} residents can be generated")]
    TooManyResidents { max: u32 },
    #[error("at most {max} kiosks can be generated")]
    TooManyKiosks { max: u32 },
}

impl PopulationSpec {
    /// Beyond this the population no longer fits comfortably in one process.
    pub const MAX_RESIDENTS: u32 = 10_000_000;
    /// Kiosk ids stay unique well past this (about 990,000 per chain and municipality).
    pub const MAX_KIOSKS: u32 = 100_000;

    /// Whether `Population::generate` accepts this spec; callers taking the numbers from
    /// a person should check this first.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.residents > Self::MAX_RESIDENTS {
            return Err(SpecError::TooManyResidents {
                max: Self::MAX_RESIDENTS,
            });
        }
        if self.kiosks > Self::MAX_KIOSKS {
            return Err(SpecError::TooManyKiosks {
                max: Self::MAX_KIOSKS,
            });
        }
        Ok(())
    }
}

/// A kiosk's id and its bearer secret.
#[derive(Clone, PartialEq, Eq)]
pub struct KioskCredential {
    pub kiosk_id: KioskId,
    pub secret: String,
}

impl KioskCredential {
    /// The bearer token a kiosk sends: `<kiosk_id>.<secret>`.
    pub fn token(&self) -> String {
        format!("{}.{}", self.kiosk_id, self.secret)
    }

    /// What a node stores instead of the secret.
    pub fn secret_hash(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_bytes()).into()
    }
}

impl std::fmt::Debug for KioskCredential {
    // The secret is a credential: it must not reach a log through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KioskCredential")
            .field("kiosk_id", &self.kiosk_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The whole synthetic registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Population {
    pub municipalities: Vec<Municipality>,
    /// Every record starts at version 1.
    pub residents: Vec<ResidentRecord>,
    /// Parallel to `residents`: each card's Ed25519 seed.
    pub card_secrets: Vec<[u8; 32]>,
    pub kiosks: Vec<KioskCredential>,
    pub admin_token: String,
}

impl std::fmt::Debug for Population {
    // Residents are personal data and the rest are credentials: show sizes only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Population")
            .field("municipalities", &self.municipalities.len())
            .field("residents", &self.residents.len())
            .field("kiosks", &self.kiosks.len())
            .finish_non_exhaustive()
    }
}

/// The issuer's Ed25519 seed when running on fixtures without a key file: all nodes
/// with the same seed agree.
pub fn issuer_seed(seed: u64) -> [u8; 32] {
    derive(b"kofu-issuer-key-v1", seed, &[])
}

/// Every character a synthetic name, reading or address can contain, so that tests can
/// check the certificate fonts print all of them.
pub fn characters() -> BTreeSet<char> {
    names::characters()
        .into_iter()
        .chain(places::characters())
        .collect()
}

/// sha256(domain || seed || extra): independent values per purpose and index, so adding
/// a field to the population never shifts any existing one.
fn derive(domain: &[u8], seed: u64, extra: &[u64]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(domain);
    h.update(seed.to_le_bytes());
    for x in extra {
        h.update(x.to_le_bytes());
    }
    h.finalize().into()
}

fn rng_for(domain: &[u8], seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::from_seed(derive(domain, seed, &[]))
}

impl Population {
    /// Generates the population of `spec`, deterministically.
    ///
    /// # Panics
    /// If `spec.validate()` fails.
    pub fn generate(spec: &PopulationSpec) -> Population {
        if let Err(e) = spec.validate() {
            panic!("invalid population spec: {e}");
        }
        let count = spec.residents as usize;
        let Draft {
            people,
            household_of,
            households,
        } = draft(spec.seed, count);
        let municipalities: Vec<Municipality> =
            PLACES.iter().map(places::Place::municipality).collect();

        let mut card_secrets = Vec::with_capacity(count);
        let mut residents = Vec::with_capacity(count);
        let mut card_ids = HashSet::with_capacity(count);
        for (index, (person, h)) in people.into_iter().zip(household_of).enumerate() {
            let index = index as u64;
            let secret = derive(b"kofu-card-key-v1", spec.seed, &[index]);
            let household = &households[h];
            residents.push(ResidentRecord {
                card_id: card_id(spec.seed, index, &mut card_ids),
                version: 1,
                full_name: person.full_name,
                full_name_kana: person.full_name_kana,
                sex: person.sex,
                birth_date: person.birth_date,
                relation: person.relation,
                address: household.address.clone(),
                municipality: municipalities[household.place].clone(),
                household_id: household.id.clone(),
                household: household.members.clone(),
                seal: person.seal,
                tax: person.tax,
                restricted: person.restricted,
                card_revoked: person.card_revoked,
                card_public_key: SigningKey::from_bytes(&secret).verifying_key().to_bytes(),
            });
            card_secrets.push(secret);
        }

        let admin = derive(b"kofu-admin-token-v1", spec.seed, &[]);
        Population {
            municipalities,
            residents,
            card_secrets,
            kiosks: kiosks(spec.seed, spec.kiosks),
            // 30 bytes are exactly 40 base64url characters.
            admin_token: format!("adm-{}", kofu_proto::b64url(&admin[..30])),
        }
    }

    /// The `kofu fixtures` lines: one card per resident in order, then the kiosks, then
    /// the admin token.
    pub fn fixture_lines(&self) -> Vec<FixtureLine> {
        let cards = self
            .residents
            .iter()
            .zip(&self.card_secrets)
            .map(|(r, secret)| FixtureLine::Card {
                card_id: r.card_id.expose().to_owned(),
                secret_key: kofu_proto::b64url(secret),
                full_name: r.full_name.clone(),
                full_name_kana: r.full_name_kana.clone(),
                municipality_code: r.municipality.code.clone(),
                household_id: r.household_id.clone(),
                seal_registered: matches!(r.seal, Seal::Registered { .. }),
                seal_revoked: matches!(r.seal, Seal::Revoked { .. }),
                card_revoked: r.card_revoked,
                restricted: r.restricted,
                tax_record: r.tax.is_some(),
            });
        let kiosks = self.kiosks.iter().map(|k| FixtureLine::Kiosk {
            kiosk_id: k.kiosk_id.to_string(),
            token: k.token(),
        });
        let admin = FixtureLine::Admin {
            token: self.admin_token.clone(),
        };
        cards.chain(kiosks).chain([admin]).collect()
    }
}

/// What the members of one household share.
struct Household {
    id: String,
    place: usize,
    address: String,
    members: Vec<Member>,
}

/// Residents in household order, before cards are issued.
struct Draft {
    people: Vec<Person>,
    /// Parallel to `people`: index into `households`.
    household_of: Vec<usize>,
    households: Vec<Household>,
}

/// Household sizes 1..=6, weighted like Japanese households (many singles and couples).
fn household_size<R: Rng>(rng: &mut R) -> usize {
    const WEIGHTS: [u32; 6] = [35, 28, 17, 13, 5, 2];
    let mut x = rng.random_range(0..WEIGHTS.iter().sum::<u32>());
    for (i, w) in WEIGHTS.iter().enumerate() {
        if x < *w {
            return i + 1;
        }
        x -= w;
    }
    1
}

fn draft(seed: u64, count: usize) -> Draft {
    let mut rng = rng_for(b"kofu-population-v1", seed);
    let mut names = NameBook::new(&places::municipality_names());
    let mut seals = SealBook::new(PLACES.len());
    let lg_codes: Vec<String> = PLACES.iter().map(|p| p.municipality().code).collect();

    let mut d = Draft {
        people: Vec::with_capacity(count),
        household_of: Vec::with_capacity(count),
        households: Vec::new(),
    };
    while d.people.len() < count {
        let size = household_size(&mut rng).min(count - d.people.len());
        let place = places::pick_place(&mut rng);
        let plan = HouseholdPlan {
            size,
            family: names.pick_family(&mut rng),
            place,
            lg_code: &lg_codes[place],
            first: d.people.len(),
        };
        let members = households::people(&plan, &mut names, &mut seals, &mut rng);
        let number = d.households.len() + 1;
        d.households.push(Household {
            id: format!("H{number:07}"),
            place,
            address: PLACES[place].address(&mut rng),
            members: members
                .iter()
                .map(|p| Member {
                    full_name: p.full_name.clone(),
                    full_name_kana: p.full_name_kana.clone(),
                    sex: p.sex,
                    birth_date: p.birth_date,
                    relation: p.relation,
                })
                .collect(),
        });
        d.household_of
            .extend(std::iter::repeat_n(number - 1, members.len()));
        d.people.extend(members);
    }
    ensure_spread(&mut d, &mut seals, &lg_codes, &mut rng);
    d
}

/// Statuses every population of at least this many residents contains, so that tests
/// can find a card for every error path.
const SPREAD_MIN_RESIDENTS: usize = 50;

#[derive(Debug, Clone, Copy)]
enum Need {
    CardRevoked,
    Restricted,
    SealRevoked,
    SealNotRegistered,
    NoTax,
}

impl Need {
    const ALL: [Need; 5] = [
        Need::CardRevoked,
        Need::Restricted,
        Need::SealRevoked,
        Need::SealNotRegistered,
        Need::NoTax,
    ];

    fn met_by(self, p: &Person) -> bool {
        match self {
            Need::CardRevoked => p.card_revoked,
            Need::Restricted => p.restricted,
            Need::SealRevoked => matches!(p.seal, Seal::Revoked { .. }),
            Need::SealNotRegistered => matches!(p.seal, Seal::NotRegistered),
            Need::NoTax => p.tax.is_none(),
        }
    }

    /// Whether giving `p` this status cannot take away another status that only `p`
    /// had: seal changes only touch registered seals, flags only unflagged cards.
    fn may_take(self, p: &Person) -> bool {
        match self {
            Need::CardRevoked | Need::Restricted => !p.card_revoked && !p.restricted,
            Need::SealRevoked | Need::SealNotRegistered => {
                matches!(p.seal, Seal::Registered { .. })
            }
            Need::NoTax => p.tax.is_some(),
        }
    }
}

/// A card with nothing special about it: the best one to give a single status to.
fn plain(p: &Person) -> bool {
    !p.card_revoked && !p.restricted && matches!(p.seal, Seal::Registered { .. }) && p.tax.is_some()
}

/// Small populations are mostly ordinary by chance; give each missing status to a
/// distinct card beyond the ordinary prefix (otherwise-plain cards first).
fn ensure_spread(d: &mut Draft, seals: &mut SealBook, lg_codes: &[String], rng: &mut ChaCha8Rng) {
    if d.people.len() < SPREAD_MIN_RESIDENTS {
        return;
    }
    let mut used = BTreeSet::new();
    for need in Need::ALL {
        if d.people.iter().any(|p| need.met_by(p)) {
            continue;
        }
        let open = |i: &usize| *i >= ORDINARY_PREFIX && !used.contains(i);
        let range = 0..d.people.len();
        let pick = range
            .clone()
            .filter(open)
            .find(|&i| plain(&d.people[i]))
            .or_else(|| {
                range
                    .clone()
                    .filter(open)
                    .find(|&i| need.may_take(&d.people[i]))
            })
            // The first household beyond the prefix has an adult head, and only the
            // seal statuses need one.
            .or_else(|| {
                range
                    .clone()
                    .filter(open)
                    .find(|&i| d.people[i].age() >= 20)
            });
        let Some(i) = pick else { continue };
        used.insert(i);
        let place = d.households[d.household_of[i]].place;
        let p = &mut d.people[i];
        match need {
            Need::CardRevoked => p.card_revoked = true,
            Need::Restricted => p.restricted = true,
            Need::NoTax => p.tax = None,
            Need::SealNotRegistered => p.seal = Seal::NotRegistered,
            Need::SealRevoked => {
                let seal = match std::mem::replace(&mut p.seal, Seal::NotRegistered) {
                    registered @ Seal::Registered { .. } => registered,
                    _ => seals.register(place, &lg_codes[place], p.birth_date, rng),
                };
                p.seal = households::revoke(seal, rng);
            }
        }
    }
}

/// 16 upper-case hex digits from the seed and index; a (vanishingly rare) collision is
/// resolved by deriving again with an attempt counter, which keeps it deterministic.
fn card_id(seed: u64, index: u64, taken: &mut HashSet<[u8; 8]>) -> CardId {
    let mut attempt = 0u64;
    loop {
        let d = derive(b"kofu-card-id-v1", seed, &[index, attempt]);
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&d[..8]);
        if taken.insert(raw) {
            return CardId::parse(&hex::encode_upper(raw))
                .expect("16 upper-case hex digits are a valid card id");
        }
        attempt += 1;
    }
}

const CHAINS: [&str; 4] = ["SEJ", "LAW", "FMT", "MSP"];

/// `<chain>-<5-digit municipality code>-<store>-<terminal>`, e.g. `SEJ-13104-0042-01`.
fn kiosks(seed: u64, count: u32) -> Vec<KioskCredential> {
    let mut rng = rng_for(b"kofu-kiosks-v1", seed);
    let mut taken = HashSet::new();
    let mut out = Vec::with_capacity(count as usize);
    for k in 0..u64::from(count) {
        let chain = CHAINS[rng.random_range(0..CHAINS.len() as u32) as usize];
        let place = PLACES[places::pick_place(&mut rng)].code5;
        let mut store = rng.random_range(1..=9999u32);
        let mut terminal = 1u32;
        // Another terminal of the same store, then the next store: unique ids without
        // redrawing, and room for MAX_KIOSKS within any one chain and municipality.
        let id = loop {
            let id = format!("{chain}-{place}-{store:04}-{terminal:02}");
            if !taken.contains(&id) {
                break id;
            }
            terminal += 1;
            if terminal > 99 {
                terminal = 1;
                store = store % 9999 + 1;
            }
        };
        let kiosk_id =
            KioskId::parse(&id).expect("chain, digits and dashes match the kiosk id pattern");
        taken.insert(id);
        let secret = kofu_proto::b64url(&derive(b"kofu-kiosk-secret-v1", seed, &[k])[..24]);
        out.push(KioskCredential { kiosk_id, secret });
    }
    out
}

#[cfg(test)]
mod tests;
