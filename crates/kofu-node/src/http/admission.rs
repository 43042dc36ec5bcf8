//! Admission control (issue 11): a token bucket per kiosk on this node (`429
//! too_many_requests`), a cap on the requests the kiosk listener handles at once (`503`),
//! and a jittered `Retry-After` on every `503` and `429 too_many_requests` of either
//! listener, so that thousands of refused kiosks do not come back in the same second.
//! The per-kiosk open-session limit is counted by the shard hosts (kofu-actors); its
//! refusals are counted here. Memory for the buckets stays bounded: only authenticated
//! kiosks get one, and a bucket that has refilled is dropped (it is the same as none).

use foldhash::HashMap;
use std::hash::{BuildHasher as _, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::middleware::Next;
use actix_web::web;
use kofu_proto::{ErrorCode, KioskId};
use prometheus::{IntCounterVec, Opts, Registry};

use super::{AppState, Listener};
use crate::config::AdmissionConfig;

/// Why a request was refused, the label of `kofu_admission_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the kiosk's request rate.
    KioskRate,
    /// Over the kiosk's open sessions.
    KioskSessions,
    /// The kiosk listener had too many requests in flight.
    InFlight,
}

impl Refusal {
    const ALL: [Refusal; 3] = [
        Refusal::KioskRate,
        Refusal::KioskSessions,
        Refusal::InFlight,
    ];

    fn label(self) -> &'static str {
        match self {
            Refusal::KioskRate => "kiosk_rate",
            Refusal::KioskSessions => "kiosk_sessions",
            Refusal::InFlight => "in_flight",
        }
    }
}

pub struct Admission {
    rate: Option<RateLimit>,
    in_flight: AtomicUsize,
    max_in_flight: usize,
    retry_after_s: u32,
    body_timeout: Duration,
    refusals: IntCounterVec,
}

impl Admission {
    pub fn new(cfg: &AdmissionConfig, reg: &Registry) -> prometheus::Result<Admission> {
        let refusals = IntCounterVec::new(
            Opts::new(
                "kofu_admission_refusals_total",
                "Requests refused by admission control, by reason (kiosk_rate, kiosk_sessions, in_flight).",
            ),
            &["reason"],
        )?;
        reg.register(Box::new(refusals.clone()))?;
        for r in Refusal::ALL {
            refusals.with_label_values(&[r.label()]);
        }
        Ok(Admission {
            rate: (cfg.kiosk_rate > 0.0)
                .then(|| RateLimit::new(cfg.kiosk_rate, f64::from(cfg.kiosk_burst))),
            in_flight: AtomicUsize::new(0),
            max_in_flight: cfg.max_in_flight as usize,
            retry_after_s: cfg.retry_after_s,
            body_timeout: cfg.body_timeout(),
            refusals,
        })
    }

    pub fn refused(&self, why: Refusal) {
        self.refusals.with_label_values(&[why.label()]).inc();
    }

    /// Takes one request from `kiosk`'s bucket.
    pub fn check_rate(&self, kiosk: &KioskId) -> Result<(), ErrorCode> {
        match &self.rate {
            Some(rate) if !rate.take(kiosk, Instant::now()) => {
                self.refused(Refusal::KioskRate);
                Err(ErrorCode::TooManyRequests)
            }
            _ => Ok(()),
        }
    }

    /// How long a request's body may take to arrive.
    pub fn body_timeout(&self) -> Duration {
        self.body_timeout
    }

    /// A `Retry-After` in seconds, drawn uniformly from ±50 % of the configured value.
    pub fn retry_after(&self) -> u32 {
        jitter(self.retry_after_s, &mut rand::rng())
    }

    /// Kiosks with a bucket (what the map holds).
    #[cfg(test)]
    fn buckets(&self) -> usize {
        self.rate.as_ref().map_or(0, RateLimit::len)
    }
}

fn jitter(base: u32, rng: &mut impl rand::Rng) -> u32 {
    let half = base / 2;
    rng.random_range(base - half..=base + half).max(1)
}

/// Counts a request in flight until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Middleware of both listeners: the in-flight cap on the kiosk listener, and the
/// jittered `Retry-After` of every answer that carries one.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let admission = &state.admission;
    let kiosk_listener = req.app_data::<Listener>() == Some(&Listener::Kiosk);
    let _counted = if kiosk_listener {
        let before = admission.in_flight.fetch_add(1, Ordering::AcqRel);
        let counted = InFlight(&admission.in_flight);
        if before >= admission.max_in_flight {
            admission.refused(Refusal::InFlight);
            let mut resp = super::error::code(ErrorCode::Unavailable);
            set_retry_after(admission, resp.headers_mut());
            return Ok(req.into_response(resp).map_into_right_body());
        }
        Some(counted)
    } else {
        None
    };
    let mut res = next.call(req).await?;
    if res.headers().contains_key(RETRY_AFTER) {
        set_retry_after(admission, res.headers_mut());
    }
    Ok(res.map_into_left_body())
}

fn set_retry_after(admission: &Admission, headers: &mut actix_web::http::header::HeaderMap) {
    headers.insert(RETRY_AFTER, HeaderValue::from(admission.retry_after()));
}

/// How often (requests to one part of the map) the part drops refilled buckets.
const SWEEP_EVERY: u32 = 4096;
const PARTS: usize = 16;

struct RateLimit {
    /// Requests per second a kiosk may sustain.
    rate: f64,
    /// Requests a kiosk may send at once.
    burst: f64,
    hasher: RandomState,
    parts: Box<[Mutex<Part>]>,
}

#[derive(Default)]
struct Part {
    buckets: HashMap<KioskId, Bucket>,
    since_sweep: u32,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    fn new(rate: f64, burst: f64) -> RateLimit {
        RateLimit {
            rate,
            burst,
            hasher: RandomState::new(),
            parts: (0..PARTS).map(|_| Mutex::new(Part::default())).collect(),
        }
    }

    fn level(&self, b: &Bucket, now: Instant) -> f64 {
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * self.rate;
        (b.tokens + refill).min(self.burst)
    }

    /// Takes a token from `kiosk`'s bucket at `now`, if it has one.
    fn take(&self, kiosk: &KioskId, now: Instant) -> bool {
        let i = (self.hasher.hash_one(kiosk) as usize) % PARTS;
        // Nothing panics while holding the lock; a poisoned map is still consistent.
        let mut part = self.parts[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        part.since_sweep += 1;
        if part.since_sweep >= SWEEP_EVERY {
            part.since_sweep = 0;
            part.buckets.retain(|_, b| self.level(b, now) < self.burst);
        }
        if let Some(b) = part.buckets.get_mut(kiosk) {
            let level = self.level(b, now);
            *b = Bucket {
                tokens: if level >= 1.0 { level - 1.0 } else { level },
                at: now,
            };
            return level >= 1.0;
        }
        part.buckets.insert(
            kiosk.clone(),
            Bucket {
                tokens: self.burst - 1.0,
                at: now,
            },
        );
        true
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.parts
            .iter()
            .map(|p| p.lock().map(|p| p.buckets.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;

    fn kiosk(n: u32) -> KioskId {
        KioskId::parse(&format!("K-{n:05}")).expect("valid")
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limit = RateLimit::new(5.0, 20.0);
        let (k, t0) = (kiosk(1), Instant::now());
        let passed = (0..30).filter(|_| limit.take(&k, t0)).count();
        assert_eq!(passed, 20, "the burst");
        assert!(
            limit.take(&kiosk(2), t0),
            "another kiosk has its own bucket"
        );
        // 5 r/s: one more token every 200 ms.
        assert!(!limit.take(&k, t0 + Duration::from_millis(150)));
        assert!(limit.take(&k, t0 + Duration::from_millis(210)));
        assert!(!limit.take(&k, t0 + Duration::from_millis(220)));
        // 0.1 left at 220 ms, plus 2.28 s at 5 r/s.
        let later = t0 + Duration::from_millis(2500);
        assert_eq!((0..30).filter(|_| limit.take(&k, later)).count(), 11);
        // Idle long enough, the bucket is full again, never fuller.
        let much_later = t0 + Duration::from_secs(3600);
        assert_eq!((0..30).filter(|_| limit.take(&k, much_later)).count(), 20);
    }

    #[test]
    fn refilled_buckets_are_dropped() {
        let limit = RateLimit::new(5.0, 20.0);
        let t0 = Instant::now();
        for n in 0..10_000 {
            limit.take(&kiosk(n), t0);
        }
        assert_eq!(limit.len(), 10_000);
        // Four seconds later every one of those buckets is full again; the sweeps drop
        // them as other kiosks' requests keep coming (each part sweeps every
        // `SWEEP_EVERY` of its requests), and keep the buckets in use.
        let later = t0 + Duration::from_secs(5);
        for _ in 0..200 {
            for n in 20_000..21_000 {
                limit.take(&kiosk(n), later);
            }
        }
        assert!(limit.len() <= 1000, "{} buckets kept", limit.len());
    }

    #[test]
    fn retry_after_values_spread_around_the_base() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let values: std::collections::BTreeSet<u32> =
            (0..200).map(|_| jitter(2, &mut rng)).collect();
        assert_eq!(values.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
        let wide: Vec<u32> = (0..1000).map(|_| jitter(10, &mut rng)).collect();
        assert!(wide.iter().all(|v| (5..=15).contains(v)));
        assert!(wide.iter().min() == Some(&5) && wide.iter().max() == Some(&15));
    }

    #[test]
    fn rate_off_admits_everything_and_keeps_nothing() {
        let cfg = <crate::config::AdmissionConfig as clap::FromArgMatches>::from_arg_matches(
            &<crate::config::AdmissionConfig as clap::Args>::augment_args(clap::Command::new("t"))
                .get_matches_from(["t", "--kiosk-rate", "0"]),
        )
        .expect("config");
        let a = Admission::new(&cfg, &Registry::new()).expect("admission");
        for _ in 0..1000 {
            assert_eq!(a.check_rate(&kiosk(1)), Ok(()));
        }
        assert_eq!(a.buckets(), 0);
    }
}
