//! Continuous kiosk load against a cluster for the fault tests: each kiosk runs whole
//! sessions back to back, retries a step that got `503` as a real kiosk would, checks
//! every document like a kiosk before printing, and counts what happened.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use kofu_testkit::{Card, Fixtures, Kiosk, Resp, verify_document_async};
use std::sync::Mutex;

/// A step retried after `503` (or a transport error) at most this often.
const RETRIES: usize = 60;
const RETRY_PAUSE: Duration = Duration::from_millis(100);

#[derive(Default, Clone)]
pub struct Tally {
    pub completed: usize,
    /// `step status code` → count, for sessions that could not finish.
    pub failed: HashMap<String, usize>,
    pub misdeliveries: Vec<String>,
    /// serial → (session, charged) of every confirmed print.
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
}

/// Runs `kiosks` concurrent kiosks until `stop`, each sending every request to a
/// random one of `targets()`'s current answer.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub tally: Arc<Mutex<Tally>>,
    pub targets: Arc<Mutex<Vec<String>>>,
}

impl Load {
    pub fn start(
        fx: &'static Fixtures,
        issuer: VerifyingKey,
        targets: Vec<String>,
        kiosks: usize,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let targets = Arc::new(Mutex::new(targets));
        // Cards any kiosk may print a residence certificate for; kiosk k uses only cards
        // k, k+K, k+2K... of them, so no two kiosks ever hold the same card.
        let cards: Arc<Vec<&'static Card>> = Arc::new(fx.ordinary().collect());
        assert!(cards.len() >= kiosks, "fewer usable cards than kiosks");
        let per_kiosk = cards.len() / kiosks;
        let tasks = (0..kiosks)
            .map(|k| {
                let cards = cards.clone();
                let (stop, tally, targets) = (stop.clone(), tally.clone(), targets.clone());
                tokio::spawn(async move {
                    let cred = &fx.kiosks[k % fx.kiosks.len()];
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let card = cards[k + kiosks * (n % per_kiosk)];
                        n += 1;
                        let bases = targets.lock().map(|t| t.clone()).unwrap_or_default();
                        let kiosk = Kiosk::new(&bases[0], cred).spread(&bases);
                        let outcome = session(fx, &issuer, &kiosk, card).await;
                        let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
                        match outcome {
                            Ok((serial, sid)) => {
                                t.completed += 1;
                                if t.prints.insert(serial, sid).is_some() {
                                    t.double_charges += 1;
                                }
                            }
                            Err(Outcome::Failed(why)) => *t.failed.entry(why).or_default() += 1,
                            Err(Outcome::Misdelivered(why)) => t.misdeliveries.push(why),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            tasks,
            tally,
            targets,
        }
    }

    pub fn set_targets(&self, targets: Vec<String>) {
        if let Ok(mut t) = self.targets.lock() {
            *t = targets;
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

enum Outcome {
    Failed(String),
    Misdelivered(String),
}

/// Sends a step until it gets something other than `503` or a transport error.
async fn retried<F, Fut>(what: &str, mut send: F) -> Result<Resp, Outcome>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    let mut last = 0;
    for _ in 0..RETRIES {
        let r = send().await;
        if r.status != 503 && r.status != 0 {
            return Ok(r);
        }
        last = r.status;
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    Err(Outcome::Failed(format!("{what} {last} gave up")))
}

fn expect(what: &str, r: &Resp, status: u16) -> Result<(), Outcome> {
    if r.status == status {
        Ok(())
    } else {
        Err(Outcome::Failed(format!(
            "{what} {} {}",
            r.status,
            r.error_code().unwrap_or_default()
        )))
    }
}

async fn session(
    fx: &Fixtures,
    issuer: &VerifyingKey,
    kiosk: &Kiosk,
    card: &Card,
) -> Result<(String, String), Outcome> {
    let r = retried("create", || kiosk.create_session(&card.card_id)).await?;
    expect("create", &r, 201)?;
    let created: kofu_proto::api::CreateSessionResponse = r.json();
    let sid = created.session_id;
    let sig = Kiosk::sign_challenge(card, &sid, &kiosk.kiosk_id, &created.challenge);
    let r = retried("auth", || kiosk.auth(&sid, &sig)).await?;
    expect("auth", &r, 200)?;
    let r = retried("job", || kiosk.create_job(&sid, "residence", 1)).await?;
    expect("job", &r, 202)?;
    let job: kofu_proto::api::JobResponse = r.json();
    let doc = loop {
        let r = retried("fetch", || kiosk.document(&sid, &job.job_id, 2_000)).await?;
        if r.status != 202 {
            break r;
        }
    };
    expect("fetch", &doc, 200)?;
    let verified = verify_document_async(
        fx,
        card,
        &doc,
        &sid,
        &kiosk.kiosk_id,
        "residence",
        1,
        issuer,
    )
    .await;
    if let Err(why) = verified {
        return Err(Outcome::Misdelivered(why));
    }
    let r = retried("printed", || kiosk.printed(&sid, &job.job_id)).await?;
    expect("printed", &r, 200)?;
    let printed: kofu_proto::api::PrintedResponse = r.json();
    let r = retried("close", || kiosk.close(&sid)).await?;
    expect("close", &r, 204)?;
    Ok((printed.serial, sid))
}
