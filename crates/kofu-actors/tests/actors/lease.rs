//! A lease lost or in doubt: the coordinator stops holding the shard between requests,
//! while a store write is on its way, or while a fetch waits on a render. A live
//! session must never be reported gone (`404`/`204`/`410`/`422`); it answers `503`
//! until its owner is safe again, then goes on where it was (API.md, DESIGN.md "Fault
//! model"). Issue 10: a session that saw its lease in doubt used to stop, its host
//! tombstoned it, and the router's retry landed on the tombstone.

use std::rc::Rc;
use std::time::Duration;

use kofu_proto::{CertKind, JobId};
use tokio::task::JoinHandle;

use crate::harness::{Answer, Config, Open, World, beside, in_flight, run};

/// A change the store acknowledged is answered as done, even if the lease went into
/// doubt while it was on its way: the fence was current when it landed.
#[test]
fn a_write_that_landed_before_the_lease_was_lost_is_answered() {
    run(Config::default(), |w| async move {
        let (s, job, doc) = w.delivered_in(0, 0, 0).await;
        let serial = w.verify(&s, CertKind::Residence, &doc).serial;
        let printed = in_flight(&w, &s, move |w, s| async move { w.printed(&s, job).await }).await;
        w.coordinator.set_holding(false);
        w.gate.open();
        let charged_yen = CertKind::Residence.fee_yen();
        let expected = Answer::Printed {
            serial,
            charged_yen,
        };
        assert_eq!(printed.await.expect("task"), expected);
        assert_eq!(w.store.audit_records().len(), 1);
        // Renewed after all: the session goes on.
        w.coordinator.set_holding(true);
        assert_eq!(w.printed(&s, job).await, expected);
        assert_eq!(w.close(&s).await, Answer::Closed);
        assert_eq!(w.store.audit_records().len(), 1);
    });
}

#[test]
fn a_lease_in_doubt_between_requests_answers_503_never_gone() {
    run(Config::default(), |w| async move {
        let (s, job, doc) = w.delivered_in(1, 0, 0).await;
        w.coordinator.set_holding(false);
        let fetched = w.fetch(&s, job).await;
        assert!(fetched.is_unavailable(), "fetch: {fetched:?}");
        let closed = w.close(&s).await;
        assert!(closed.is_unavailable(), "close: {closed:?}");
        // The lease is renewed after all: the session is where it was.
        w.coordinator.set_holding(true);
        assert_eq!(w.fetch(&s, job).await.document(), doc);
        assert!(matches!(w.printed(&s, job).await, Answer::Printed { .. }));
        assert_eq!(w.close(&s).await, Answer::Closed);
        assert_eq!(w.store.audit_records().len(), 1);
    });
}

/// Another node takes the shard while a print's write is on its way: the store refuses
/// it. The shard comes back to this node within `move_wait`; the print then succeeds,
/// charged once.
#[test]
fn a_lease_lost_during_a_store_write_never_answers_gone() {
    run(Config::default(), |w| async move {
        let (s, job, _) = w.delivered_in(2, 0, 0).await;
        let printed = in_flight(&w, &s, move |w, s| async move { w.printed(&s, job).await }).await;
        w.coordinator.set_holding(false);
        w.steal(2);
        w.gate.open();
        tokio::time::sleep(w.config.router.move_wait / 4).await;
        w.reacquire(2);
        let answer = printed.await.expect("task");
        assert!(matches!(answer, Answer::Printed { .. }), "{answer:?}");
        assert_eq!(w.store.audit_records().len(), 1);
    });
}

/// How late `parked_on_a_render`'s job renders.
const RENDER_DELAY: Duration = Duration::from_millis(500);

/// A session of `shard` whose job renders `RENDER_DELAY` late (in a world started with
/// `Config::render_late(RENDER_DELAY)`), with a long poll parked on it; then this node's
/// lease goes into doubt.
async fn parked_on_a_render(w: &Rc<World>, shard: u32) -> (Open, JobId, JoinHandle<Answer>) {
    let s = w.open(&w.card_in(shard, 0), &w.kiosk(0)).await;
    let job = w.job(&s, CertKind::Residence).await.job();
    let parked = beside(w, &s, move |w, s| async move {
        w.fetch_wait(&s, job, Duration::from_secs(10)).await
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    w.coordinator.set_holding(false);
    (s, job, parked)
}

/// Another request finds the lease in doubt while a long poll waits on the render; the
/// lease is renewed after all.
#[test]
fn a_lease_in_doubt_while_a_fetch_waits_on_its_render_never_answers_gone() {
    run(Config::render_late(RENDER_DELAY), |w| async move {
        let (s, _, parked) = parked_on_a_render(&w, 3).await;
        let other = beside(&w, &s, |w, s| async move {
            w.job(&s, CertKind::FamilyRegister).await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        w.coordinator.set_holding(true);
        let doc = parked.await.expect("task").document();
        w.verify(&s, CertKind::Residence, &doc);
        let other = other.await.expect("task");
        assert!(matches!(other, Answer::JobCreated(_)), "{other:?}");
    });
}

/// The render's delivery (the write that persists it) is refused because another node
/// took the shard; the fetch parked on the render must not hear that the session is
/// gone. The shard comes back in time.
#[test]
fn a_render_fenced_by_a_takeover_never_answers_gone() {
    run(Config::render_late(RENDER_DELAY), |w| async move {
        let (s, job, parked) = parked_on_a_render(&w, 0).await;
        w.steal(0);
        // The render runs and its delivery's write is refused; then the shard comes back.
        tokio::time::sleep(Duration::from_millis(600)).await;
        w.reacquire(0);
        let answer = parked.await.expect("task");
        assert!(!answer.says_gone(), "{answer:?}");
        let doc = match answer {
            Answer::Document(doc) => doc,
            _ => w
                .fetch_wait(&s, job, Duration::from_secs(10))
                .await
                .document(),
        };
        w.verify(&s, CertKind::Residence, &doc);
    });
}

/// A request queued in a session's mailbox behind a write that the store refuses (the
/// shard was taken): the session stops without handling it, and its reply is dropped.
/// That means nothing was done: the router tries again, and never calls the session gone.
#[test]
fn a_request_queued_behind_a_fenced_write_never_answers_gone() {
    run(Config::default(), |w| async move {
        let (s, job, doc) = w.delivered_in(1, 1, 0).await;
        let printed = in_flight(&w, &s, move |w, s| async move { w.printed(&s, job).await }).await;
        let queued = beside(&w, &s, move |w, s| async move { w.fetch(&s, job).await });
        tokio::time::sleep(Duration::from_millis(1)).await;
        w.steal(1);
        w.gate.open();
        tokio::time::sleep(w.config.router.move_wait / 4).await;
        w.reacquire(1);
        assert_eq!(queued.await.expect("task").document(), doc);
        let answer = printed.await.expect("task");
        assert!(matches!(answer, Answer::Printed { .. }), "{answer:?}");
        assert_eq!(w.store.audit_records().len(), 1);
    });
}

/// Another node took the shard but this node has not noticed yet: a delivered document
/// is not released again from memory; it waits for the owner (I2).
#[test]
fn a_delivered_document_is_released_again_only_by_the_shards_owner() {
    run(Config::default(), |w| async move {
        let (s, job, doc) = w.delivered_in(2, 1, 0).await;
        w.steal(2);
        let answer = w.fetch(&s, job).await;
        assert!(answer.is_unavailable(), "{answer:?}");
        assert!(w.counter("kofu_fencing_rejections_total") >= 1.0);
        w.reacquire(2);
        assert_eq!(w.fetch(&s, job).await.document(), doc);
    });
}
