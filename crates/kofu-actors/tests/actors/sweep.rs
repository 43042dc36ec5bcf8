//! Eager resume on takeover: a new owner resumes every open session of the shard at
//! once, so the idle timer of a session whose kiosk walked away (or whose owner
//! crashed) runs, and its card is free again within the idle timeout of the takeover
//! (DESIGN.md: "a card whose session was orphaned by a crash is free again within the
//! idle timeout plus 2 x TTL").

use std::time::Duration;

use kofu_proto::{CertKind, ErrorCode};

use crate::harness::{Answer, Config, run, wait_until};

const IN_USE: Answer = Answer::Error(ErrorCode::CardInUse);

#[test]
fn an_orphaned_session_is_resumed_on_takeover_and_ends_after_its_idle_timeout() {
    run(Config::default(), |w| async move {
        let idle = w.config.session.idle_timeout;
        let card = w.card_in(1, 0);
        let s = w.open(&card, &w.kiosk(0)).await;
        w.delivered(&s, CertKind::Residence).await;
        let resumed = w.counter("kofu_sessions_resumed_total");
        // The owner goes away; its kiosk never comes back.
        w.take_over(1).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(w.counter("kofu_sessions_resumed_total"), resumed + 1.0);

        tokio::time::sleep(idle - Duration::from_secs(1)).await;
        assert_eq!(w.create(&card, &w.kiosk(1)).await, IN_USE, "ended early");
        tokio::time::sleep(Duration::from_secs(2)).await;
        w.assert_free(&card).await;
        // Its unconfirmed job was voided, never charged.
        assert!(w.store.audit_records().is_empty());
        assert_eq!(w.counter("kofu_jobs_voided_total"), 1.0);
    });
}

/// A create that took the card lock but was answered `503` on a node that then lost
/// the shard, with the store down meanwhile: the next owner's sweep finds the orphan
/// once the store is back, and its idle timeout frees the card.
#[test]
fn a_create_answered_503_before_a_takeover_is_swept_by_the_next_owner() {
    run(Config::default(), |w| async move {
        let idle = w.config.session.idle_timeout;
        let card = w.start_lost_with_the_store(2, 0).await;
        w.take_over(2).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        w.gate.set_down(false);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(w.create(&card, &w.kiosk(1)).await, IN_USE);
        tokio::time::sleep(idle).await;
        w.assert_free(&card).await;
    });
}

/// The sweep and a kiosk's call for the same session meet: the session is resumed
/// once, and the call is answered by it.
#[test]
fn a_call_during_the_sweep_waits_for_the_same_resume() {
    run(Config::default(), |w| async move {
        let (a, (b, job, doc)) = w.open_and_delivered_in(3).await;
        let resumed = w.counter("kofu_sessions_resumed_total");
        w.take_over(3).await;
        assert_eq!(w.fetch(&b, job).await.document(), doc);
        assert_eq!(w.close(&a).await, Answer::Closed);
        assert_eq!(w.counter("kofu_sessions_resumed_total"), resumed + 2.0);
    });
}

/// A start answered `503` left a session in the store that no host met (the shard moved
/// meanwhile); the kiosk inserted the card again, which takes that session's lock over,
/// and closed its new session. The older one must be over in the store too: a later
/// takeover must not resume it as the card's holder, keeping every other kiosk out for
/// a fresh idle timeout at every move of the shard.
#[test]
fn a_session_its_kiosk_replaced_before_any_host_met_it_is_not_resumed_later() {
    run(Config::default(), |w| async move {
        let card = w.start_lost_with_the_store(2, 1).await;
        w.take_over(2).await;
        w.gate.set_down(false);
        let ended = || w.counter("kofu_sessions_ended_total");
        let before = ended();
        let s = w.created(&card, &w.kiosk(0)).await;
        wait_until("the replaced session ended", || ended() > before).await;
        assert_eq!(w.close(&s).await, Answer::Closed);
        w.take_over(2).await;
        // Whatever the next owner's sweep resumes, nothing holds the card.
        tokio::time::sleep(Duration::from_secs(2)).await;
        w.assert_free(&card).await;
    });
}

/// The shard moves again and again after the kiosk walked away (lease churn, a node
/// that keeps coming back): each new owner counts the session quiet since its stored
/// state was written, so the card is free within the idle timeout (plus the activity
/// grain) of the kiosk's last request, not an idle timeout after the last move.
#[test]
fn a_session_the_shard_keeps_moving_under_still_ends_its_idle_timeout_after_its_last_request() {
    run(Config::default(), |w| async move {
        let (idle, grain) = (
            w.config.session.idle_timeout,
            w.config.session.activity_grain,
        );
        let card = w.card_in(3, 5);
        let s = w.open(&card, &w.kiosk(0)).await;
        w.delivered(&s, CertKind::Residence).await;
        let last_request = tokio::time::Instant::now();
        for _ in 0..3 {
            tokio::time::sleep(idle / 3).await;
            w.take_over(3).await;
        }
        tokio::time::sleep_until(last_request + idle + grain + Duration::from_secs(1)).await;
        w.assert_free(&card).await;
    });
}

/// The other side of it: a kiosk that only polls its document writes nothing, yet it is
/// active. Its polls keep the stored state young enough that a new owner does not end
/// the session while its kiosk is still within the idle timeout.
#[test]
fn a_session_whose_kiosk_only_polls_is_not_ended_early_by_a_new_owner() {
    run(Config::default(), |w| async move {
        let idle = w.config.session.idle_timeout;
        let (s, job, doc) = w.delivered_in(0, 5, 0).await;
        // Polls for longer than the idle timeout since the last change.
        for _ in 0..5 {
            tokio::time::sleep(idle / 4).await;
            assert_eq!(w.fetch(&s, job).await.document(), doc);
        }
        w.take_over(0).await;
        tokio::time::sleep(idle / 2).await;
        assert_eq!(w.fetch(&s, job).await.document(), doc, "ended early");
    });
}
