//! One synthetic household at a time: who lives together, how old they are, and what
//! the registry knows about each of them (seal, tax, flags). Only plausibility matters
//! here; the guarantees tests rely on are enforced afterwards in `population.rs`.

use rand::Rng;

use super::names::NameBook;
use crate::records::{Date, Relation, Seal, Sex, TaxRecord};

/// Ages are whole years before this year: "head 20–90 years old relative to 2026".
pub(super) const REFERENCE_YEAR: u16 = 2026;
/// The fiscal year of every tax record.
pub(super) const FISCAL_YEAR: u16 = 2025;
/// No tax record below this age.
pub(super) const TAX_MIN_AGE: u16 = 16;
/// Seal registration is possible from this age.
const SEAL_MIN_AGE: u16 = 15;

/// A resident before it gets a card: everything but the card id and key.
#[derive(Debug, Clone)]
pub(super) struct Person {
    pub(super) full_name: String,
    pub(super) full_name_kana: String,
    pub(super) sex: Sex,
    pub(super) birth_date: Date,
    pub(super) relation: Relation,
    pub(super) seal: Seal,
    pub(super) tax: Option<TaxRecord>,
    pub(super) restricted: bool,
    pub(super) card_revoked: bool,
}

impl Person {
    /// Whole years before the reference year, the way ages are drawn.
    pub(super) fn age(&self) -> u16 {
        REFERENCE_YEAR.saturating_sub(self.birth_date.year)
    }
}

/// Numbers seal registrations per municipality, like a real register would.
pub(super) struct SealBook {
    next: Vec<u32>,
}

impl SealBook {
    pub(super) fn new(places: usize) -> SealBook {
        SealBook {
            next: vec![0; places],
        }
    }

    /// `SEAL-<6-digit municipality code>-<6-digit number>`, registered at a plausible
    /// date after the holder turned 15.
    pub(super) fn register<R: Rng>(
        &mut self,
        place: usize,
        lg_code: &str,
        birth: Date,
        rng: &mut R,
    ) -> Seal {
        self.next[place] += 1;
        let number = format!("SEAL-{lg_code}-{:06}", self.next[place]);
        let first = (birth.year + SEAL_MIN_AGE).clamp(1980, FISCAL_YEAR);
        let registered_on = random_date(rng, first, FISCAL_YEAR);
        Seal::Registered {
            number,
            registered_on,
        }
    }
}

/// The seal registration revoked: same number, revoked some time after registering.
pub(super) fn revoke<R: Rng>(seal: Seal, rng: &mut R) -> Seal {
    match seal {
        Seal::Registered {
            number,
            registered_on,
        } => {
            let mut revoked_on = random_date(rng, registered_on.year, FISCAL_YEAR);
            if revoked_on < registered_on {
                revoked_on = registered_on;
            }
            Seal::Revoked { number, revoked_on }
        }
        other => other,
    }
}

/// Relations and ages of one household of `size` members, head first.
fn shape<R: Rng>(size: usize, rng: &mut R) -> Vec<(Relation, u16, Sex)> {
    let head_age = rng.random_range(20..=90u16);
    let head_sex = if rng.random_bool(0.5) {
        Sex::Male
    } else {
        Sex::Female
    };
    let mut out = vec![(Relation::Head, head_age, head_sex)];
    let mut parents = 0;
    for slot in 1..size {
        let r: f64 = rng.random();
        let parent_ok = parents < 2 && head_age <= 70;
        let relation = if slot == 1 && r < 0.75 {
            Relation::Spouse
        } else if r < 0.85 || (r < 0.95 && !parent_ok) {
            Relation::Child
        } else if r < 0.95 {
            Relation::Parent
        } else {
            Relation::Sibling
        };
        let age = match relation {
            Relation::Spouse => head_age
                .saturating_add_signed(rng.random_range(-8..=8i16))
                .clamp(18, 95),
            Relation::Child => {
                // At least one year old: nobody is born in the future of the reference.
                let oldest = head_age - 18;
                let youngest = head_age.saturating_sub(45).max(1);
                rng.random_range(youngest..=oldest)
            }
            Relation::Parent => {
                parents += 1;
                (head_age + rng.random_range(20..=35u16)).min(105)
            }
            Relation::Sibling | Relation::Head => head_age
                .saturating_add_signed(rng.random_range(-10..=10i16))
                .clamp(18, 95),
        };
        let sex = match relation {
            Relation::Spouse => opposite(head_sex),
            _ if rng.random_bool(0.5) => Sex::Male,
            _ => Sex::Female,
        };
        out.push((relation, age, sex));
    }
    // Register order: head, spouse, parents, children, siblings; the older first.
    out.sort_by_key(|&(rel, age, _)| (rank(rel), std::cmp::Reverse(age)));
    out
}

fn opposite(sex: Sex) -> Sex {
    match sex {
        Sex::Male => Sex::Female,
        Sex::Female => Sex::Male,
    }
}

fn rank(relation: Relation) -> u8 {
    match relation {
        Relation::Head => 0,
        Relation::Spouse => 1,
        Relation::Parent => 2,
        Relation::Child => 3,
        Relation::Sibling => 4,
    }
}

/// What the population decided about a household before its members are drawn.
pub(super) struct HouseholdPlan<'a> {
    pub(super) size: usize,
    /// Index into the name book's family names.
    pub(super) family: usize,
    /// Index into `PLACES`.
    pub(super) place: usize,
    /// The municipality's 6-digit code, for seal numbers.
    pub(super) lg_code: &'a str,
    /// Population index of the first member: the first residents of every population
    /// are kept ordinary so that tests can simply take them.
    pub(super) first: usize,
}

/// Residents who are kept free of flags, so tests find ordinary cards at the front.
pub(super) const ORDINARY_PREFIX: usize = 10;

/// Draws the members of one household, in register order, with their registry data.
pub(super) fn people<R: Rng>(
    plan: &HouseholdPlan<'_>,
    names: &mut NameBook,
    seals: &mut SealBook,
    rng: &mut R,
) -> Vec<Person> {
    let family = names.family(plan.family).clone();
    shape(plan.size, rng)
        .into_iter()
        .enumerate()
        .map(|(i, (relation, age, sex))| {
            let given = names.next_given(plan.family, sex, rng);
            // Family name first, as the register writes it.
            let full_name = format!("{} {}", family.written, given.written);
            let full_name_kana = format!("{} {}", family.reading, given.reading);
            let birth_date = random_date(rng, REFERENCE_YEAR - age, REFERENCE_YEAR - age);
            let index = plan.first + i;
            let seal = if age < SEAL_MIN_AGE {
                Seal::NotRegistered
            } else {
                let r: f64 = rng.random();
                if index == 0 || r < 0.76 {
                    seals.register(plan.place, plan.lg_code, birth_date, rng)
                } else if r < 0.88 {
                    Seal::NotRegistered
                } else {
                    let seal = seals.register(plan.place, plan.lg_code, birth_date, rng);
                    revoke(seal, rng)
                }
            };
            let tax = if age >= TAX_MIN_AGE && (index == 0 || rng.random_bool(0.96)) {
                Some(tax_record(age, rng))
            } else {
                None
            };
            let ordinary = index < ORDINARY_PREFIX;
            let restricted = !ordinary && rng.random_bool(0.02);
            let card_revoked = !ordinary && rng.random_bool(0.02);
            Person {
                full_name,
                full_name_kana,
                sex,
                birth_date,
                relation,
                seal,
                tax,
                restricted,
                card_revoked,
            }
        })
        .collect()
}

/// Income by stage of life, taxes as a flat local rate above a basic deduction (about
/// 6% municipal and 4% prefectural plus the per-capita levies), rounded to 100 yen.
fn tax_record<R: Rng>(age: u16, rng: &mut R) -> TaxRecord {
    let income_yen: u64 = if rng.random_bool(0.1) {
        0
    } else {
        match age {
            0..=22 => rng.random_range(0..=1_800u64) * 1_000,
            23..=64 => {
                let base = rng.random_range(2_000..=7_000u64);
                let high = if rng.random_bool(0.1) {
                    rng.random_range(0..=9_000u64)
                } else {
                    0
                };
                (base + high) * 1_000
            }
            _ => rng.random_range(1_200..=3_800u64) * 1_000,
        }
    };
    let taxable = income_yen.saturating_sub(1_100_000);
    let (municipal_tax_yen, prefectural_tax_yen) = if taxable == 0 {
        (0, 0)
    } else {
        (
            round100(taxable * 6 / 100) + 3_500,
            round100(taxable * 4 / 100) + 1_500,
        )
    };
    TaxRecord {
        fiscal_year: FISCAL_YEAR,
        income_yen,
        municipal_tax_yen,
        prefectural_tax_yen,
    }
}

fn round100(yen: u64) -> u64 {
    yen / 100 * 100
}

/// A valid calendar date with the year in `from..=to`.
pub(super) fn random_date<R: Rng>(rng: &mut R, from: u16, to: u16) -> Date {
    let year = rng.random_range(from.min(to)..=to);
    let month = rng.random_range(1..=12u8);
    let day = rng.random_range(1..=Date::days_in_month(year, month));
    Date { year, month, day }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn dates_are_valid() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..10_000 {
            let d = random_date(&mut rng, 1900, 2026);
            assert!(
                (1..=Date::days_in_month(d.year, d.month)).contains(&d.day),
                "{d}"
            );
        }
        assert_eq!(Date::days_in_month(2024, 2), 29);
        assert_eq!(Date::days_in_month(2100, 2), 28);
        assert_eq!(Date::days_in_month(2000, 2), 29);
    }

    #[test]
    fn households_are_plausible() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        for _ in 0..5_000 {
            let size = rng.random_range(1..=6usize);
            let members = shape(size, &mut rng);
            assert_eq!(members.len(), size);
            let (rel, head_age, _) = members[0];
            assert_eq!(rel, Relation::Head);
            assert!((20..=90).contains(&head_age));
            for &(rel, age, _) in &members[1..] {
                match rel {
                    Relation::Head => panic!("two heads"),
                    Relation::Child => {
                        assert!(age >= 1 && age + 18 <= head_age && age + 45 >= head_age)
                    }
                    Relation::Parent => assert!(age >= head_age + 20 || age == 105),
                    Relation::Spouse | Relation::Sibling => assert!((18..=95).contains(&age)),
                }
            }
        }
    }

    #[test]
    fn revoking_keeps_the_number_and_follows_registration() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut seals = SealBook::new(1);
        let birth = Date::ymd(1980, 5, 1);
        for _ in 0..1_000 {
            let seal = seals.register(0, "131041", birth, &mut rng);
            let Seal::Registered {
                number,
                registered_on,
            } = seal.clone()
            else {
                panic!("registered");
            };
            assert!(registered_on.year >= 1995);
            match revoke(seal, &mut rng) {
                Seal::Revoked {
                    number: n,
                    revoked_on,
                } => {
                    assert_eq!(n, number);
                    assert!(revoked_on >= registered_on);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
