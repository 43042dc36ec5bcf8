//! Continuous kiosk load against a cluster for the fault tests: each kiosk runs whole
//! sessions back to back, repeats a step that got `503` or no answer as a real kiosk
//! would, checks every document like a kiosk before printing, and counts what happened.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kofu_kiosk::{Fault, KindChoice, LongPoll, Plan, Retry, SessionFailure};
use kofu_proto::CertKind;
use kofu_testkit::{Card, Client, Deployment, Fixtures};

/// A step is sent at most this often while it gets `503` or no answer.
const PLAN: Plan = Plan {
    kind: KindChoice::Fixed(CertKind::Residence),
    copies: 1,
    poll: LongPoll {
        wait_ms: 2_000,
        budget: Duration::from_secs(60),
    },
    retry: Retry {
        attempts: 60,
        pause: Duration::from_millis(100),
    },
};

/// How long a condition of a cluster test may take on a busy 2-core CI machine (other
/// builds and tests beside it); conditions are polled, so it costs nothing when idle.
pub const BUSY: Duration = Duration::from_secs(90);

#[derive(Default, Clone)]
pub struct Tally {
    pub completed: usize,
    /// `step status code` → count, for sessions that could not finish.
    pub failed: HashMap<String, usize>,
    pub misdeliveries: Vec<String>,
    /// serial → session of every confirmed print.
    pub prints: HashMap<String, String>,
    pub double_charges: usize,
}

impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tally")
            .field("completed", &self.completed)
            .field("failed", &self.failed)
            .field("misdeliveries", &self.misdeliveries)
            .field("prints", &self.prints.len())
            .field("double_charges", &self.double_charges)
            .finish()
    }
}

impl Tally {
    pub fn failures(&self) -> usize {
        self.failed.values().sum()
    }

    /// I1 and I5 whatever else happened: no document reached the wrong kiosk, and no
    /// serial was charged twice.
    #[track_caller]
    pub fn assert_safe(&self) {
        assert!(self.misdeliveries.is_empty(), "{:?}", self.misdeliveries);
        assert_eq!(self.double_charges, 0);
    }

    /// `assert_safe`, at least `min_completed` sessions, and not one failed.
    #[track_caller]
    pub fn assert_clean(&self, min_completed: usize) {
        assert!(
            self.completed >= min_completed,
            "too few sessions: {}",
            self.completed
        );
        assert_eq!(self.failures(), 0, "{:?}", self.failed);
        self.assert_safe();
    }

    fn count(&mut self, failure: &SessionFailure) {
        let step = failure.step;
        let key = match &failure.fault {
            Fault::Refused(why) => {
                self.misdeliveries.push(why.to_string());
                return;
            }
            Fault::Call(e) if e.is_retryable() => {
                format!("{step} {} gave up", e.status().unwrap_or(0))
            }
            Fault::Call(e) => format!(
                "{step} {} {}",
                e.status().unwrap_or(0),
                e.code().map_or("", |c| c.as_str())
            ),
            other => format!("{step} {other}"),
        };
        *self.failed.entry(key).or_default() += 1;
    }
}

/// Runs `kiosks` concurrent kiosks until `stop`, each sending every request to a
/// random one of the targets last set.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub tally: Arc<Mutex<Tally>>,
    client: Arc<Mutex<Client>>,
}

impl Load {
    pub fn start(d: &Deployment, targets: Vec<String>, kiosks: usize) -> Load {
        let (fx, issuer): (&'static Fixtures, _) = (d.fixtures(), d.issuer().clone());
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let client = Arc::new(Mutex::new(d.client().with_targets(&targets)));
        // Cards any kiosk may print a residence certificate for; kiosk k uses only cards
        // k, k+K, k+2K... of them, so no two kiosks ever hold the same card.
        let cards: Arc<Vec<&'static Card>> = Arc::new(fx.ordinary().collect());
        assert!(cards.len() >= kiosks, "fewer usable cards than kiosks");
        let per_kiosk = cards.len() / kiosks;
        let tasks = (0..kiosks)
            .map(|k| {
                let (cards, issuer) = (cards.clone(), issuer.clone());
                let (stop, tally, client) = (stop.clone(), tally.clone(), client.clone());
                tokio::spawn(async move {
                    let cred = &fx.kiosks[k % fx.kiosks.len()];
                    let verifier = kofu_testkit::strict(fx, &issuer);
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let card = cards[k + kiosks * (n % per_kiosk)];
                        n += 1;
                        let kiosk = client.lock().map(|c| c.kiosk(cred)).expect("client");
                        let outcome = kiosk.complete_session(card, &PLAN, &verifier).await;
                        let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
                        match outcome {
                            Ok(done) => {
                                t.completed += 1;
                                if t.prints
                                    .insert(done.printed.serial, done.session_id)
                                    .is_some()
                                {
                                    t.double_charges += 1;
                                }
                            }
                            Err(failure) => t.count(&failure),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            tasks,
            tally,
            client,
        }
    }

    /// Where the kiosks send their next sessions (a load balancer's new member list).
    pub fn set_targets(&self, targets: Vec<String>) {
        if let Ok(mut c) = self.client.lock() {
            *c = c.with_targets(&targets);
        }
    }

    /// Sessions completed so far.
    pub fn completed(&self) -> usize {
        self.tally.lock().map(|t| t.completed).unwrap_or(0)
    }

    /// Waits until `n` sessions have completed, for at most [`BUSY`]; then it is up to the
    /// test's assertions on the tally. Idle, this takes a second or two.
    pub async fn until_completed(&self, n: usize) {
        let deadline = Instant::now() + BUSY;
        while self.completed() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.tally.lock().map(|t| t.clone()).unwrap_or_default()
    }
}
