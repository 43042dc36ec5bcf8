//! Background traffic: every scenario runs beside it so that nothing it checks holds
//! only on an idle node.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kofu_kiosk::Fetched;
use kofu_proto::{CertKind, ErrorCode};
use kofu_testkit::Kiosk;
use tokio::task::JoinSet;

use crate::env::Env;
use crate::steps::{close, fetch, is_error, new_job, not_released, open, print};
use crate::{NOISE_CARDS_PER_KIOSK, NOISE_KIOSKS, NOISE_MAX_SESSIONS, Tally};

/// A few kiosks running complete residence sessions in a loop until stopped, verifying
/// every document like any other kiosk. `410 job_voided` is tolerated (fault flags may
/// void their jobs too); anything else wrong is a failure of the scenario.
pub(crate) struct Noise {
    stop: Arc<AtomicBool>,
    tasks: JoinSet<Tally>,
}

impl Noise {
    pub(crate) fn start(apis: &[String], env: &Arc<Env>) -> Noise {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        let first = env.fx.kiosks.len() - NOISE_KIOSKS;
        for k in 0..NOISE_KIOSKS {
            let kiosk = env.kiosk(apis, first + k);
            let cards = env.noise_cards[k * NOISE_CARDS_PER_KIOSK..(k + 1) * NOISE_CARDS_PER_KIOSK]
                .to_vec();
            let (env, stop) = (env.clone(), stop.clone());
            tasks.spawn(async move { noise_loop(env, kiosk, cards, stop).await });
        }
        Noise { stop, tasks }
    }

    pub(crate) async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut t = Tally::default();
        t.join(self.tasks).await;
        t
    }
}

async fn noise_loop(
    env: Arc<Env>,
    kiosk: Kiosk,
    cards: Vec<usize>,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut t = Tally::default();
    for n in 0..NOISE_MAX_SESSIONS {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let card_ix = cards[n % cards.len()];
        let (sid, _) = match open(&kiosk, env.card(card_ix)).await {
            Ok(s) => s,
            Err(e) => {
                t.fail(format!("noise: {e}"));
                break;
            }
        };
        t.add("noise_sessions", 1);
        match new_job(&kiosk, &sid, CertKind::Residence, 1).await {
            Ok(job) => match fetch(&kiosk, &sid, &job.id).await {
                Ok(Fetched::Ready(doc)) => match env
                    .verify(card_ix, &doc, &sid, kiosk.kiosk_id(), job.kind, job.copies)
                    .await
                {
                    Ok(c) => match print(&kiosk, &sid, &job, &c.binding.serial).await {
                        Ok(p) => {
                            t.add("noise_printed", 1);
                            t.add("noise_charged_yen", u64::from(p.charged_yen));
                            t.serials.push(c.binding.serial);
                        }
                        Err(e) => t.fail(format!("noise: {e}")),
                    },
                    Err(e) => t.fail(format!("noise: {e}")),
                },
                r if is_error(&r, ErrorCode::JobVoided) => t.add("noise_voided", 1),
                r => t.fail(format!("noise: {}", not_released("document", &r))),
            },
            Err(e) => t.fail(format!("noise: {e}")),
        }
        if let Err(e) = close(&kiosk, &sid).await {
            t.fail(format!("noise: {e}"));
        }
    }
    t
}
