//! The chaos run's workload: an open model (sessions arrive as a Poisson stream at the
//! chosen rate whatever the cluster does), each session shaped by `synth`'s nationwide
//! model (kind mix, copies, wrong signatures, duplicate cards, walk-aways, repeated
//! fetches and confirmations) and driven by the replay's session code with patient
//! kiosks and a history; a card is never in two of the run's sessions at once. Beside
//! it, the admin revokes seal registrations and updates addresses through random nodes
//! (aimed at holders in a session, where a mistake would show). After the run, a probe
//! session for every card used tells whether its lock is free.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kofu_kiosk::{Client, Method};
use kofu_proto::trace::{Action, SessionTrace};
use kofu_proto::{ApiError, CertKind};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::history::{Event, NO_SESSION, Op, Tap};
use crate::replay::Shared;
use crate::replay::call::{Caller, Note};
use crate::replay::session;
use crate::synth::{LocalKiosks, Model, session_steps};

/// Session indices of the probes start here (kiosk sessions count from 0).
pub const PROBE_BASE: u32 = 1 << 30;

/// Which cards are in a session, and until when a card that was left open stays locked.
struct Pool {
    usable: Vec<u32>,
    /// Card → when it may be used again (far future while its session runs).
    busy: HashMap<u32, Instant>,
    /// Card → the kiosk of its latest session (a probe uses another one).
    last_kiosk: HashMap<u32, u32>,
    /// Cards in a session now → the kind the session orders.
    active: HashMap<u32, Option<CertKind>>,
}

/// The workload's shared state.
pub struct Workload {
    pub shared: Arc<Shared>,
    model: Model,
    local: LocalKiosks,
    pool: Mutex<Pool>,
    /// How long a card whose session was not closed stays locked (idle timeout + 2 TTL
    /// and a margin).
    hold: Duration,
}

impl Workload {
    pub fn new(shared: Arc<Shared>, model: Model, hold: Duration) -> Workload {
        let fx = &shared.fx;
        let usable = (0..fx.cards.len() as u32)
            .filter(|&i| fx.cards[i as usize].usable())
            .collect();
        Workload {
            local: LocalKiosks::new(fx),
            model,
            pool: Mutex::new(Pool {
                usable,
                busy: HashMap::new(),
                last_kiosk: HashMap::new(),
                active: HashMap::new(),
            }),
            hold,
            shared,
        }
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A usable card in no session, if one is found in a few draws.
    fn take_card(&self, rng: &mut ChaCha8Rng) -> Option<u32> {
        let mut pool = self.pool();
        let now = Instant::now();
        if pool.usable.is_empty() {
            return None;
        }
        for _ in 0..16 {
            let card = pool.usable[rng.random_range(0..pool.usable.len())];
            if pool.busy.get(&card).is_none_or(|free| *free <= now) {
                pool.busy.insert(card, now + Duration::from_secs(86_400));
                return Some(card);
            }
        }
        None
    }

    fn release(&self, card: u32, closed: bool) {
        let mut pool = self.pool();
        let free = if closed {
            Instant::now()
        } else {
            Instant::now() + self.hold
        };
        pool.busy.insert(card, free);
        pool.active.remove(&card);
    }

    /// Sessions arriving at `rate` per second until `until`; the running sessions are
    /// returned to be awaited.
    pub async fn arrivals(self: &Arc<Self>, rate: f64, seed: u64, until: Instant) -> JoinSet<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut tasks = JoinSet::new();
        let mut next = Instant::now();
        let mut index = 0u32;
        let fx = self.shared.fx.clone();
        let history = self.shared.history.clone();
        loop {
            let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
            next += Duration::from_secs_f64(-u.ln() / rate.max(1e-6));
            if next >= until {
                break;
            }
            tokio::time::sleep_until(next).await;
            while tasks.try_join_next().is_some() {}
            let Some(card) = self.take_card(&mut rng) else {
                continue;
            };
            let c = &fx.cards[card as usize];
            let kiosk = self.local.pick(&self.model, &mut rng, &fx, card as usize);
            let revoked = history
                .as_ref()
                .is_some_and(|h| h.seal_revocation_sent(card));
            let steps = session_steps(
                &self.model,
                &mut rng,
                &fx,
                kiosk,
                (c.seal_issuable() && !revoked, c.tax_record),
            );
            let kind = steps.iter().find_map(|s| match s.action {
                Action::Job { kind, .. } => Some(kind),
                _ => None,
            });
            {
                let mut pool = self.pool();
                pool.active.insert(card, kind);
                pool.last_kiosk.insert(card, kiosk);
            }
            let trace = SessionTrace {
                start_us: next
                    .saturating_duration_since(self.shared.origin)
                    .as_micros() as u64,
                kiosk,
                card,
                steps,
            };
            self.shared.with(|c| c.counts.sessions_started += 1);
            let (w, i) = (self.clone(), index);
            tasks.spawn(async move {
                let ended = session::run(&w.shared, i as usize, &trace).await;
                w.release(card, ended.closed);
            });
            index += 1;
        }
        tasks
    }

    /// Seal revocations and address updates through random nodes' admin API until
    /// `until`, about one every `every` on average.
    pub async fn admin(
        &self,
        admin: &[String],
        token: &str,
        seed: u64,
        every: Duration,
        until: Instant,
    ) {
        let Some(history) = self.shared.history.clone() else {
            return;
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xad31);
        let client = match Client::builder()
            .timeout(self.shared.config.request_timeout)
            .build()
        {
            Ok(c) => c,
            Err(_) => return,
        };
        let auth = format!("Bearer {token}");
        let fx = &self.shared.fx;
        let mut revoked: HashSet<u32> = HashSet::new();
        let mut n = 0u64;
        loop {
            let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
            tokio::time::sleep(every.mul_f64(-u.ln())).await;
            if Instant::now() >= until {
                return;
            }
            let revoke = rng.random_bool(0.4);
            let card = {
                let pool = self.pool();
                let seal_ok =
                    |c: &u32| fx.cards[*c as usize].seal_issuable() && !revoked.contains(c);
                let mut active: Vec<(u32, Option<CertKind>)> =
                    pool.active.iter().map(|(c, k)| (*c, *k)).collect();
                active.sort_unstable_by_key(|(c, _)| *c);
                let candidates: Vec<u32> = if revoke {
                    active
                        .iter()
                        .filter(|(c, k)| *k == Some(CertKind::Seal) && seal_ok(c))
                        .map(|(c, _)| *c)
                        .collect()
                } else {
                    active.iter().map(|(c, _)| *c).collect()
                };
                match candidates.len() {
                    0 if revoke => pool
                        .usable
                        .iter()
                        .copied()
                        .filter(seal_ok)
                        .nth(rng.random_range(0..64)),
                    0 => None,
                    len => Some(candidates[rng.random_range(0..len)]),
                }
            };
            let Some(card) = card else { continue };
            let node = rng.random_range(0..admin.len());
            let card_id = fx.cards[card as usize].card_id();
            n += 1;
            let (op, url, body) = if revoke {
                revoked.insert(card);
                history.revoking(card, history.now_us());
                let url = format!("{}/admin/v1/residents/{card_id}/seal/revoke", admin[node]);
                (Op::Revoke, url, None)
            } else {
                let url = format!("{}/admin/v1/residents/{card_id}/address", admin[node]);
                let body = format!("{{\"address\":\"{n}-1 Chaos-dori, Nemesis-shi\"}}");
                (Op::Address, url, Some(body.into_bytes()))
            };
            let start = history.now_us();
            let resp = client.request(Method::POST, &url, Some(&auth), body).await;
            let mut e = Event::new(NO_SESSION, card, op, start, history.now_us());
            e.node = u8::try_from(node).ok();
            e.status = (resp.status != 0).then_some(resp.status);
            e.code = serde_json::from_slice::<ApiError>(&resp.body)
                .ok()
                .map(|b| b.code);
            history.push(e);
        }
    }

    /// After the run: for every card the run used, a new session at another kiosk (then
    /// closed): a `409` means its lock outlived its session.
    pub async fn probe_cards(self: &Arc<Self>, budget: Duration, concurrency: usize) {
        let mut cards: Vec<(u32, u32)> = self
            .pool()
            .last_kiosk
            .iter()
            .map(|(c, k)| (*c, *k))
            .collect();
        cards.sort_unstable();
        let queue = Arc::new(Mutex::new(cards));
        let mut tasks = JoinSet::new();
        for _ in 0..concurrency {
            let (w, queue) = (self.clone(), queue.clone());
            tasks.spawn(async move {
                loop {
                    let next = {
                        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                        q.pop().map(|c| (c, q.len()))
                    };
                    let Some(((card, last), left)) = next else {
                        break;
                    };
                    w.probe(PROBE_BASE + left as u32, card, last, budget).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn probe(&self, index: u32, card: u32, last_kiosk: u32, budget: Duration) {
        let shared = &self.shared;
        let caller = Caller {
            shared,
            index,
            card,
            tap: Some(Tap::default()),
        };
        let other = (last_kiosk as usize + 1) % shared.kiosks.len();
        let kiosk = caller.kiosk(&shared.kiosks[other]);
        let card_id = shared.fx.cards[card as usize].card_id();
        let created = caller
            .send(
                Op::Probe,
                budget,
                &Note::default(),
                || kiosk.create_session(card_id),
                |c, n| n.session_id = Some(c.session_id.as_str().into()),
                |_| false,
            )
            .await;
        if let Ok(c) = created {
            let context = Note {
                session_id: Some(c.session_id.as_str().into()),
                ..Note::default()
            };
            let _ = caller
                .send(
                    Op::ProbeClose,
                    budget,
                    &context,
                    || kiosk.close(&c.session_id),
                    |_, _| {},
                    |_| false,
                )
                .await;
        }
    }
}
