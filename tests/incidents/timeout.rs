//! Incident 1 (timeout under load): jobs voided at their render deadline stay voided,
//! and no other job's document is released in their place.

use std::sync::Arc;
use std::time::Duration;

use kofu_kiosk::Fetched;
use kofu_proto::{CertKind, ErrorCode};
use kofu_testkit::Kiosk;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::env::Env;
use crate::noise::Noise;
use crate::steps::{
    brief, close, fetch, is_error, is_raw_error, new_job, not_released, open, print,
};
use crate::{Summary, Tally};

/// A voided job is fetched again this long after its creation: the delay injected by
/// `RENDER_TIMEOUT_FLAGS` has elapsed by then, so a late render would have finished and could
/// be (wrongly) released.
const REFETCH_AFTER: Duration = Duration::from_millis(2000);

/// Concurrent sessions of three jobs each while every third job misses its render
/// deadline: a voided job answers `410` forever, and no other job's document is ever
/// released in its place (every `200` verifies against its own session, kind and
/// copies, and every serial is unique). Then, within one session, job A times out and
/// job B created right after it is released: A stays `410`, B is B's document.
pub(crate) async fn timeout_under_load(apis: &[String], env: &Arc<Env>) -> Summary {
    const SESSIONS: usize = 40;
    let mut pick = env.picker();
    let cards = pick.take(SESSIONS, |_| true);
    assert_eq!(cards.len(), SESSIONS, "enough ordinary cards");
    let mut tally = Tally::default();
    let noise = Noise::start(apis, env);
    let barrier = Arc::new(Barrier::new(SESSIONS));
    let mut tasks = JoinSet::new();
    for (i, card_ix) in cards.into_iter().enumerate() {
        let (env, barrier, kiosk) = (env.clone(), barrier.clone(), env.kiosk(apis, i));
        tasks.spawn(async move { timeout_session(&env, &kiosk, card_ix, i, &barrier).await });
    }
    tally.join(tasks).await;
    tally.merge(noise.stop().await);
    if tally.get("released") == 0 || tally.get("voided") == 0 {
        tally.fail("under load, some documents must release and some jobs time out");
    }

    // Part two runs without other traffic on the node's job counter, so which job is
    // delayed is predictable enough to meet "A delayed, B (created after) not" within a
    // few sessions.
    let card_ix = pick.take(1, |_| true)[0];
    let kiosk = env.kiosk(apis, 0);
    tally.merge(void_then_release(env, &kiosk, card_ix).await);
    if tally.get("a_voided_b_released") != 1 {
        tally.fail("six sessions never showed job A voided and job B (created after) released");
    }
    tally.finish("incident 1", &["sessions", "a_voided_b_released"])
}

async fn timeout_session(
    env: &Arc<Env>,
    kiosk: &Kiosk,
    card_ix: usize,
    i: usize,
    barrier: &Barrier,
) -> Tally {
    let mut t = Tally::default();
    barrier.wait().await;
    let (sid, kinds) = match open(kiosk, env.card(card_ix)).await {
        Ok(s) => s,
        Err(e) => {
            t.fail(format!("session {i}: {e}"));
            return t;
        }
    };
    t.add("sessions", 1);
    // Three jobs back to back, so a delayed job and fast later ones are in flight
    // together; copies 1, 2, 3 make any swap within the session visible in the binding.
    let mut jobs = Vec::new();
    for n in 0..3 {
        let kind = kinds[(i + n) % kinds.len()];
        match new_job(kiosk, &sid, kind, n as u8 + 1).await {
            Ok(j) => jobs.push(j),
            Err(e) => t.fail(format!("session {i}: {e}")),
        }
    }
    let mut released = Vec::new();
    let mut voided = Vec::new();
    for job in &jobs {
        match fetch(kiosk, &sid, &job.id).await {
            Ok(Fetched::Ready(doc)) => match env
                .verify(card_ix, &doc, &sid, kiosk.kiosk_id(), job.kind, job.copies)
                .await
            {
                Ok(c) => {
                    t.serials.push(c.binding.serial.clone());
                    released.push((job, c.binding.serial, doc.body));
                }
                Err(e) => t.fail(format!("session {i} job {}: {e}", job.id)),
            },
            r if is_error(&r, ErrorCode::JobVoided) => voided.push(job),
            r => t.fail(format!("session {i}: {}", not_released("document", &r))),
        }
    }
    if let Some(last) = jobs.iter().map(|j| j.created).max() {
        tokio::time::sleep_until((last + REFETCH_AFTER).into()).await;
    }
    // The delayed renders have had time to finish: a voided job still answers 410 and
    // cannot be printed; a released one still gives exactly its own bytes.
    for job in &voided {
        let r = kiosk.raw().document(&sid, &job.id, 0).await;
        if r.status == 200 {
            t.fail(format!(
                "session {i}: voided job {} released a document later",
                job.id
            ));
        } else if !is_raw_error(&r, 410, "job_voided") {
            t.fail(format!(
                "session {i}: {}",
                brief("refetch of a voided job", &r)
            ));
        }
        let p = kiosk.raw().printed(&sid, &job.id).await;
        if !is_raw_error(&p, 410, "job_voided") {
            t.fail(format!(
                "session {i}: {}",
                brief("printed on a voided job", &p)
            ));
        }
    }
    for (job, serial, body) in &released {
        let r = kiosk.raw().document(&sid, &job.id, 0).await;
        if r.status != 200 || r.body != *body {
            t.fail(format!(
                "session {i}: {} (not the same bytes)",
                brief("refetch", &r)
            ));
        }
        if let Err(e) = print(kiosk, &sid, job, serial).await {
            t.fail(format!("session {i}: {e}"));
        }
    }
    t.add("released", released.len() as u64);
    t.add("voided", voided.len() as u64);
    if let Err(e) = close(kiosk, &sid).await {
        t.fail(format!("session {i}: {e}"));
    }
    t
}

/// One session at a time: job A then job B at once; until A is the delayed one and B
/// is not (every third job is delayed, so that happens within three sessions when
/// nothing else creates jobs; six are allowed).
async fn void_then_release(env: &Arc<Env>, kiosk: &Kiosk, card_ix: usize) -> Tally {
    let mut t = Tally::default();
    for attempt in 0..6 {
        let (sid, _) = match open(kiosk, env.card(card_ix)).await {
            Ok(s) => s,
            Err(e) => {
                t.fail(format!("A/B attempt {attempt}: {e}"));
                return t;
            }
        };
        // Different kind and copies, so a swapped document fails the binding check.
        let a = new_job(kiosk, &sid, CertKind::FamilyRegister, 2).await;
        let b = new_job(kiosk, &sid, CertKind::Residence, 1).await;
        let (a, b) = match (a, b) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                t.fail(format!(
                    "A/B attempt {attempt}: {:?} {:?}",
                    a.err(),
                    b.err()
                ));
                return t;
            }
        };
        // A is asked first and both long polls run together: a shared-slot bug would
        // hand B's finished document to A's waiting poll.
        let (ra, rb) = tokio::join!(fetch(kiosk, &sid, &a.id), fetch(kiosk, &sid, &b.id));
        let mut outcome = [false; 2];
        for (k, (job, r)) in [(&a, &ra), (&b, &rb)].into_iter().enumerate() {
            match r {
                Ok(Fetched::Ready(doc)) => match env
                    .verify(card_ix, doc, &sid, kiosk.kiosk_id(), job.kind, job.copies)
                    .await
                {
                    Ok(c) => t.serials.push(c.binding.serial),
                    Err(e) => t.fail(format!("A/B attempt {attempt}: {e}")),
                },
                r if is_error(r, ErrorCode::JobVoided) => outcome[k] = true,
                r => t.fail(format!(
                    "A/B attempt {attempt}: {}",
                    not_released("document", r)
                )),
            }
        }
        if let (true, false, Ok(Fetched::Ready(b_doc))) = (outcome[0], outcome[1], &rb) {
            tokio::time::sleep_until((a.created + REFETCH_AFTER).into()).await;
            let again_a = kiosk.raw().document(&sid, &a.id, 0).await;
            if !is_raw_error(&again_a, 410, "job_voided") {
                t.fail(brief("A (voided) fetched after its delay", &again_a));
            }
            let again_b = kiosk.raw().document(&sid, &b.id, 0).await;
            if again_b.status != 200 || again_b.body != b_doc.body {
                t.fail(brief("B fetched again (must be the same bytes)", &again_b));
            }
            if !is_raw_error(&kiosk.raw().printed(&sid, &a.id).await, 410, "job_voided") {
                t.fail("printed on voided A must answer 410 job_voided");
            }
            t.add("a_voided_b_released", 1);
            if let Err(e) = close(kiosk, &sid).await {
                t.fail(e);
            }
            return t;
        }
        if let Err(e) = close(kiosk, &sid).await {
            t.fail(e);
        }
    }
    t
}
