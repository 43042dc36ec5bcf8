//! The nationwide model behind `kofu-load synth`: arrivals over the service day
//! (06:30–23:00) following a diurnal curve, scaled by season and by spike profiles,
//! each arrival a resident at a kiosk (usually one of their own municipality), with the
//! kind mix, copies, and the error behaviours kiosks really show. Deterministic by seed.

use std::collections::HashMap;

use kofu_proto::CertKind;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use kofu_kiosk::Fixtures;
use kofu_proto::trace::{Action, Meta, SessionTrace, Step, Trace};

const SERVICE_START_MIN: u32 = 6 * 60 + 30;
const SERVICE_END_MIN: u32 = 23 * 60;
const US_PER_S: u64 = 1_000_000;

/// Relative demand per hour of the day (service hours only): a morning peak before
/// work, lunch, and the evening commute; the shape of municipal counter statistics.
const DIURNAL: [(u32, f64); 17] = [
    (6, 0.3),
    (7, 0.8),
    (8, 1.6),
    (9, 1.3),
    (10, 1.0),
    (11, 1.1),
    (12, 1.7),
    (13, 1.3),
    (14, 0.9),
    (15, 0.9),
    (16, 1.0),
    (17, 1.5),
    (18, 1.8),
    (19, 1.4),
    (20, 0.9),
    (21, 0.6),
    (22, 0.3),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Season {
    /// An ordinary month.
    Normal,
    /// Fiscal-year end and the moving season (March/April): about 2.5× the demand.
    Peak,
}

/// A burst: demand times `factor` for `minutes` from `at_min` (minutes after midnight).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spike {
    pub at_min: u32,
    pub factor: f64,
    pub minutes: u32,
}

impl std::str::FromStr for Spike {
    type Err = String;

    /// `HH:MM[xFACTOR[/MINUTES]]`, e.g. `12:00x10/1`.
    fn from_str(s: &str) -> Result<Spike, String> {
        let bad = || format!("spike {s:?} is not HH:MM[xFACTOR[/MINUTES]]");
        let (time, rest) = s.split_once('x').unwrap_or((s, "10"));
        let (factor, minutes) = rest.split_once('/').unwrap_or((rest, "1"));
        let at_min = parse_hhmm(time).ok_or_else(bad)?;
        let factor: f64 = factor.parse().map_err(|_| bad())?;
        let minutes: u32 = minutes.parse().map_err(|_| bad())?;
        if !(factor > 0.0 && minutes > 0) {
            return Err(bad());
        }
        Ok(Spike {
            at_min,
            factor,
            minutes,
        })
    }
}

pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// The model's parameters (every one a command-line flag).
#[derive(Debug, Clone)]
pub struct Model {
    pub seed: u64,
    /// Sessions over a whole normal-season service day.
    pub sessions_per_day: u32,
    pub season: Season,
    pub spikes: Vec<Spike>,
    /// The part of the day to emit, in minutes after midnight.
    pub from_min: u32,
    pub to_min: u32,
    /// Probability that a resident uses a kiosk of their own municipality.
    pub local_share: f64,
    pub abandon: f64,
    pub wrong_signature: f64,
    pub retry: f64,
    pub duplicate_card: f64,
    /// Think times are multiplied by this (1 = a person at a real kiosk).
    pub think: f64,
}

impl Model {
    fn demand(&self, minute: u32) -> f64 {
        if !(SERVICE_START_MIN..SERVICE_END_MIN).contains(&minute) {
            return 0.0;
        }
        let hour = minute / 60;
        let base = DIURNAL
            .iter()
            .find(|(h, _)| *h == hour)
            .map_or(0.0, |(_, d)| *d);
        let season = match self.season {
            Season::Normal => 1.0,
            Season::Peak => 2.5,
        };
        let spike: f64 = self
            .spikes
            .iter()
            .filter(|s| (s.at_min..s.at_min + s.minutes).contains(&minute))
            .map(|s| s.factor)
            .product();
        base * season * spike
    }

    /// Expected sessions starting in `minute`.
    fn per_minute(&self, minute: u32) -> f64 {
        let total: f64 = (SERVICE_START_MIN..SERVICE_END_MIN)
            .map(|m| {
                DIURNAL
                    .iter()
                    .find(|(h, _)| *h == m / 60)
                    .map_or(0.0, |(_, d)| *d)
            })
            .sum();
        f64::from(self.sessions_per_day) * self.demand(minute) / total
    }
}

/// The kinds a card may be issued, for the mix.
fn pick_kind(rng: &mut ChaCha8Rng, seal: bool, tax: bool) -> CertKind {
    let r: f64 = rng.random();
    let kind = if r < 0.55 {
        CertKind::Residence
    } else if r < 0.75 {
        CertKind::Seal
    } else if r < 0.88 {
        CertKind::Tax
    } else {
        CertKind::FamilyRegister
    };
    match kind {
        CertKind::Seal if !seal => CertKind::Residence,
        CertKind::Tax if !tax => CertKind::Residence,
        k => k,
    }
}

fn secs(rng: &mut ChaCha8Rng, lo: f64, hi: f64, think: f64) -> u64 {
    (rng.random_range(lo..hi) * think * US_PER_S as f64) as u64
}

/// Kiosks by the municipality prefix of their id (`SEJ-13104-…` → `13104`).
pub(crate) struct LocalKiosks(HashMap<String, Vec<u32>>);

impl LocalKiosks {
    pub(crate) fn new(fx: &Fixtures) -> LocalKiosks {
        let mut local: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, k) in fx.kiosks.iter().enumerate() {
            if let Some(m) = k.kiosk_id.split('-').nth(1) {
                local.entry(m.to_owned()).or_default().push(i as u32);
            }
        }
        LocalKiosks(local)
    }

    /// The kiosk the holder of `card` uses: usually one of their own municipality.
    pub(crate) fn pick(
        &self,
        model: &Model,
        rng: &mut ChaCha8Rng,
        fx: &Fixtures,
        card: usize,
    ) -> u32 {
        let prefix = fx.cards[card]
            .municipality_code
            .get(..5)
            .unwrap_or_default();
        match self.0.get(prefix) {
            Some(ks) if rng.random_bool(model.local_share) => ks[rng.random_range(0..ks.len())],
            _ => rng.random_range(0..fx.kiosks.len() as u32),
        }
    }
}

/// Generates the trace of `model` over the population in `fx`.
pub fn synthesize(model: &Model, fx: &Fixtures, fixture_seed: u64) -> Trace {
    let mut rng = ChaCha8Rng::seed_from_u64(model.seed);
    let usable: Vec<u32> = (0..fx.cards.len() as u32)
        .filter(|&i| fx.cards[i as usize].usable())
        .collect();
    let local = LocalKiosks::new(fx);
    let mut card_free: HashMap<u32, u64> = HashMap::new();
    let mut kiosk_free: Vec<u64> = vec![0; fx.kiosks.len()];
    let mut sessions = Vec::new();
    let origin_us = u64::from(model.from_min) * 60 * US_PER_S;
    for minute in model.from_min..model.to_min {
        let expected = model.per_minute(minute);
        // Poisson arrivals within the minute, by exponential gaps.
        let mut t = 0.0f64;
        loop {
            let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
            t += -u.ln() / expected.max(1e-9) * 60.0;
            if t >= 60.0 || usable.is_empty() {
                break;
            }
            let arrival = u64::from(minute) * 60 * US_PER_S + (t * US_PER_S as f64) as u64;
            // A resident who is not in a session already.
            let mut card = usable[rng.random_range(0..usable.len())];
            for _ in 0..8 {
                if card_free.get(&card).is_none_or(|&free| free <= arrival) {
                    break;
                }
                card = usable[rng.random_range(0..usable.len())];
            }
            if card_free.get(&card).is_some_and(|&free| free > arrival) {
                continue;
            }
            let c = &fx.cards[card as usize];
            let kiosk = local.pick(model, &mut rng, fx, card as usize);
            // One resident at a time per kiosk: a queue forms at a busy one.
            let start = arrival.max(kiosk_free[kiosk as usize]);
            let steps = session_steps(
                model,
                &mut rng,
                fx,
                kiosk,
                (c.seal_issuable(), c.tax_record),
            );
            let end = start + steps.last().map_or(0, |s| s.at_us) + US_PER_S;
            kiosk_free[kiosk as usize] = end;
            // An abandoned session holds the card until the node's idle timeout, which
            // runs in real time whatever the replay speed: that card is not used again.
            let abandoned = steps.last().is_some_and(|s| s.action == Action::Abandon);
            card_free.insert(card, if abandoned { u64::MAX } else { end });
            sessions.push(SessionTrace {
                start_us: start.saturating_sub(origin_us),
                kiosk,
                card,
                steps,
            });
        }
    }
    let meta = Meta {
        source: "synth".to_owned(),
        seed: Some(model.seed),
        fixture_seed,
        residents: fx.cards.len() as u32,
        kiosks: fx.kiosks.len() as u32,
        description: format!(
            "{} sessions/day, {:?} season, {:02}:{:02}-{:02}:{:02}, spikes [{}]",
            model.sessions_per_day,
            model.season,
            model.from_min / 60,
            model.from_min % 60,
            model.to_min / 60,
            model.to_min % 60,
            model
                .spikes
                .iter()
                .map(|s| format!(
                    "{:02}:{:02}x{}/{}",
                    s.at_min / 60,
                    s.at_min % 60,
                    s.factor,
                    s.minutes
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Trace::new(meta, sessions)
}

/// A session's steps as they are drawn, each a think time after the one before.
struct Timeline<'r> {
    rng: &'r mut ChaCha8Rng,
    think: f64,
    at: u64,
    steps: Vec<Step>,
}

impl Timeline<'_> {
    /// `action` after a think time of `lo..hi` seconds (scaled by `--think`).
    fn then(&mut self, lo: f64, hi: f64, action: Action) {
        self.at += secs(self.rng, lo, hi, self.think);
        self.steps.push(Step {
            at_us: self.at,
            action,
        });
    }
}

/// One session's steps as the model draws them: card insertion, the error behaviours,
/// the chosen kind, fetch, print, close, each after a think time.
pub(crate) fn session_steps(
    model: &Model,
    rng: &mut ChaCha8Rng,
    fx: &Fixtures,
    kiosk: u32,
    (seal, tax): (bool, bool),
) -> Vec<Step> {
    let mut t = Timeline {
        rng,
        think: model.think,
        at: 0,
        steps: vec![Step {
            at_us: 0,
            action: Action::Create,
        }],
    };
    let n = fx.kiosks.len() as u32;
    if n > 1 && t.rng.random_bool(model.duplicate_card) {
        // Another kiosk: the same kiosk inserting the card again would replace the session.
        let other = (kiosk + 1 + t.rng.random_range(0..n - 1)) % n;
        t.then(0.5, 2.0, Action::DuplicateCard { kiosk: other });
    }
    if t.rng.random_bool(model.wrong_signature) {
        t.then(2.0, 5.0, Action::Auth { valid: false });
    }
    t.then(2.0, 5.0, Action::Auth { valid: true });
    if t.rng.random_bool(model.abandon / 2.0) {
        t.then(1.0, 3.0, Action::Abandon);
        return t.steps;
    }
    let kind = pick_kind(t.rng, seal, tax);
    let copies = match t.rng.random_range(0..100) {
        0..80 => 1,
        80..95 => 2,
        _ => 3,
    };
    t.then(5.0, 20.0, Action::Job { kind, copies });
    if t.rng.random_bool(model.abandon / 2.0) {
        t.then(1.0, 3.0, Action::Abandon);
        return t.steps;
    }
    t.then(0.1, 0.3, Action::Fetch { wait_ms: 5_000 });
    if t.rng.random_bool(model.retry) {
        t.then(0.5, 1.5, Action::Retry);
    }
    // The printer runs before the kiosk confirms.
    t.then(8.0, 15.0, Action::Printed);
    if t.rng.random_bool(model.retry) {
        t.then(0.5, 1.5, Action::Retry);
    }
    t.then(1.0, 3.0, Action::Close);
    t.steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spikes_parse() {
        let s: Spike = "12:00x10/1".parse().expect("spike");
        assert_eq!(
            s,
            Spike {
                at_min: 720,
                factor: 10.0,
                minutes: 1
            }
        );
        assert_eq!("8:30".parse::<Spike>().map(|s| s.at_min), Ok(510));
        assert!("25:00x2".parse::<Spike>().is_err());
        assert!("12:00x0".parse::<Spike>().is_err());
    }

    #[test]
    fn demand_follows_the_service_day_and_the_spike() {
        let m = Model {
            seed: 1,
            sessions_per_day: 100_000,
            season: Season::Normal,
            spikes: vec!["12:00x10/1".parse().expect("spike")],
            from_min: 0,
            to_min: 24 * 60,
            local_share: 0.8,
            abandon: 0.0,
            wrong_signature: 0.0,
            retry: 0.0,
            duplicate_card: 0.0,
            think: 1.0,
        };
        assert_eq!(m.per_minute(5 * 60), 0.0, "closed before 06:30");
        assert_eq!(m.per_minute(23 * 60 + 1), 0.0, "closed after 23:00");
        let noon = m.per_minute(12 * 60);
        let after = m.per_minute(12 * 60 + 1);
        assert!((noon / after - 10.0).abs() < 1e-9, "x10 for one minute");
        let day: f64 = (0..24 * 60).map(|mi| m.per_minute(mi)).sum();
        assert!(
            (day - 100_000.0 - 9.0 * after).abs() < 1.0,
            "daily total {day}"
        );
        let peak = Model {
            season: Season::Peak,
            ..m.clone()
        };
        assert!((peak.per_minute(600) / m.per_minute(600) - 2.5).abs() < 1e-9);
    }
}
