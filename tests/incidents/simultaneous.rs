//! Incident 2 (near-simultaneous requests): stores opening sessions and creating jobs in
//! the same millisecond still get distinct sessions, serials and their own documents.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kofu_testkit::Kiosk;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::env::Env;
use crate::noise::Noise;
use crate::steps::{authenticate, close, failed, fetch, new_job, print};
use crate::{Summary, Tally};

/// 110 kiosks (different stores) open sessions in the same millisecond, create jobs in
/// the same millisecond, fetch and print together: distinct session ids, distinct
/// serials, every document verifies for its own session.
pub(crate) async fn near_simultaneous_requests(apis: &[String], env: &Arc<Env>) -> Summary {
    const STORES: usize = 110;
    let mut pick = env.picker();
    let cards = pick.take(STORES, |_| true);
    assert_eq!(cards.len(), STORES, "enough ordinary cards");
    env.warm(apis, STORES).await;
    let mut tally = Tally::default();
    let noise = Noise::start(apis, env);
    // One barrier per phase: each phase of all stores starts within the same moment.
    let phases: Arc<[Barrier; 4]> = Arc::new(std::array::from_fn(|_| Barrier::new(STORES)));
    let mut tasks = JoinSet::new();
    for (i, card_ix) in cards.into_iter().enumerate() {
        let (env, phases, kiosk) = (env.clone(), phases.clone(), env.kiosk(apis, i));
        tasks.spawn(async move { same_millisecond_store(&env, &kiosk, card_ix, i, &phases).await });
    }
    let mut sids = HashSet::new();
    let mut created_at = Vec::new();
    let mut jobs_at = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((t, sid, at)) => {
                tally.merge(t);
                if let Some(sid) = sid
                    && !sids.insert(sid)
                {
                    tally.fail("two stores got the same session id");
                }
                created_at.extend(at.0);
                jobs_at.extend(at.1);
            }
            Err(e) => tally.fail(format!("store task died: {e}")),
        }
    }
    tally.merge(noise.stop().await);
    let span = |v: &[Instant]| match (v.iter().min(), v.iter().max()) {
        (Some(a), Some(b)) => b.duration_since(*a),
        _ => Duration::ZERO,
    };
    eprintln!(
        "near-simultaneous: {STORES} creates sent within {:?}, {STORES} job requests within {:?}",
        span(&created_at),
        span(&jobs_at)
    );
    tally.finish("incident 2", &["sessions", "released", "printed"])
}

type SendTimes = (Option<Instant>, Option<Instant>);

/// One store's kiosk; waits at every phase barrier even after a failure, so that the
/// other stores are never left waiting.
async fn same_millisecond_store(
    env: &Arc<Env>,
    kiosk: &Kiosk,
    card_ix: usize,
    i: usize,
    phases: &[Barrier; 4],
) -> (Tally, Option<String>, SendTimes) {
    let mut t = Tally::default();
    let card = env.card(card_ix);
    phases[0].wait().await;
    let create_at = Instant::now();
    let session = match kiosk.create_session(card.card_id()).await {
        Ok(created) => authenticate(kiosk, card, &created).await,
        Err(e) => Err(failed("create session", &e)),
    };
    phases[1].wait().await;
    let job_at = Instant::now();
    let job = match &session {
        Ok((sid, kinds)) => new_job(kiosk, sid, kinds[i % kinds.len()], (i % 3) as u8 + 1).await,
        Err(e) => Err(e.clone()),
    };
    phases[2].wait().await;
    let doc = match (&session, &job) {
        (Ok((sid, _)), Ok(job)) => {
            let r = fetch(kiosk, sid, &job.id).await;
            env.check(card_ix, &r, sid, kiosk.kiosk_id(), job.kind, job.copies)
                .await
        }
        (Err(e), _) | (_, Err(e)) => Err(e.clone()),
    };
    phases[3].wait().await;
    let mut sid_out = None;
    match (&session, &job, &doc) {
        (Ok((sid, _)), Ok(job), Ok(c)) => {
            t.add("sessions", 1);
            t.add("released", 1);
            t.serials.push(c.binding.serial.clone());
            match print(kiosk, sid, job, &c.binding.serial).await {
                Ok(_) => t.add("printed", 1),
                Err(e) => t.fail(format!("store {i}: {e}")),
            }
            if let Err(e) = close(kiosk, sid).await {
                t.fail(format!("store {i}: {e}"));
            }
            sid_out = Some(sid.clone());
        }
        (_, _, Err(e)) => t.fail(format!("store {i}: {e}")),
        _ => t.fail(format!("store {i}: inconsistent step results")),
    }
    (t, sid_out, (Some(create_at), Some(job_at)))
}
