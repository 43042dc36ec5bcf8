//! Changes with an unknown outcome: the store applied a change but its acknowledgement
//! was lost (a replica did not confirm it in time, the answer timed out), so the kiosk
//! got `503`. API.md: a `503` means "not done, or done and not yet confirmed", and
//! repeating the call converges: it is done once, or answered as done, never twice; and
//! nothing half-done stays behind (DESIGN.md, "acknowledged means durable").

use std::time::Duration;

use kofu_proto::{CertKind, ErrorCode, JobId, SessionOp};

use crate::harness::{Answer, Config, Open, World, beside, in_flight, run, wait_until};

const GONE: Answer = Answer::Error(ErrorCode::UnknownSession);

#[test]
fn a_print_recorded_but_answered_503_is_charged_once_and_never_voided() {
    run(Config::default(), |w| async move {
        let (s, job, doc) = w.delivered_in(0, 0, 0).await;
        let serial = w.verify(&s, CertKind::Residence, &doc).serial;
        w.gate.lose_acks(1);
        let first = w.printed(&s, job).await;
        assert!(first.is_unavailable(), "{first:?}");
        assert_eq!(w.store.audit_records().len(), 1, "the print was recorded");
        // The kiosk repeats it: the same answer, recorded once.
        let printed = Answer::Printed {
            serial,
            charged_yen: CertKind::Residence.fee_yen(),
        };
        assert_eq!(w.printed(&s, job).await, printed);
        assert_eq!(w.store.audit_records().len(), 1);
        assert_eq!(w.counter("kofu_prints_confirmed_total"), 1.0);
        assert_eq!(w.close(&s).await, Answer::Closed);
        assert_eq!(w.counter("kofu_jobs_voided_total"), 0.0);
    });
}

/// The kiosk gave up on the print after the `503` and removed the card: the print was
/// recorded, so the close must not void it (charged *and* voided).
#[test]
fn a_close_after_a_print_answered_503_does_not_void_it() {
    run(Config::default(), |w| async move {
        let (s, job, _) = w.delivered_in(1, 0, 0).await;
        w.gate.lose_acks(1);
        assert!(w.printed(&s, job).await.is_unavailable());
        assert_eq!(w.close(&s).await, Answer::Closed);
        assert_eq!(w.store.audit_records().len(), 1);
        assert_eq!(
            w.counter("kofu_jobs_voided_total"),
            0.0,
            "a printed job voided"
        );
        assert_eq!(w.counter("kofu_prints_confirmed_total"), 1.0);
    });
}

/// A session start that took the card lock but was answered `503`: no kiosk knows the
/// session, so it must not keep the card.
#[test]
fn a_create_answered_503_leaves_no_card_lock_behind() {
    run(Config::default(), |w| async move {
        let card = w.card_in(2, 0);
        w.gate.lose_acks(1);
        let first = w.create(&card, &w.kiosk(0)).await;
        assert!(first.is_unavailable(), "{first:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
        w.assert_free(&card).await;
    });
}

/// The same, when the store goes away right after the start was applied: the cleanup is
/// tried again until the store is back.
#[test]
fn a_create_answered_503_frees_its_card_once_the_store_is_back() {
    run(Config::default(), |w| async move {
        let card = w.start_lost_with_the_store(3, 0).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        w.gate.set_down(false);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        w.assert_free(&card).await;
    });
}

/// A close applied but answered `503`, then the shard moved: the repeated DELETE is
/// answered `204` by the next host from the close's tombstone.
#[test]
fn a_close_answered_503_converges_on_204_even_after_a_handoff() {
    run(Config::default(), |w| async move {
        let s = w.open_in(0, 1, 0).await;
        w.gate.lose_acks(1);
        assert!(w.close(&s).await.is_unavailable());
        assert_eq!(w.close(&s).await, Answer::Closed);

        let t = w.open_in(0, 2, 1).await;
        w.gate.lose_acks(1);
        assert!(w.close(&t).await.is_unavailable());
        w.take_over(0).await;
        assert_eq!(w.close(&t).await, Answer::Closed);
        let never = JobId::new(0, [0; 8]);
        assert_eq!(
            w.fetch(&t, never).await,
            Answer::Error(ErrorCode::UnknownSession)
        );
        // Both cards are free.
        w.open(&s.card, &w.kiosk(2)).await;
        w.open(&t.card, &w.kiosk(2)).await;
    });
}

/// The session reads its state back after the `503` and finds itself authenticated:
/// the repeat must still be answered as the first would have been, not `409`. (Before
/// the read-back the session simply did it again; this keeps that convergence.)
#[test]
fn an_authentication_applied_but_answered_503_is_answered_200_on_repeat() {
    run(Config::default(), |w| async move {
        let card = w.card_in(1, 1);
        let s = w.created(&card, &w.kiosk(0)).await;
        w.gate.lose_acks(1);
        assert!(w.auth(&s).await.is_unavailable());
        answered_once_then_409(&w, &s).await;
    });
}

/// A job created but answered `503`: the kiosk's repeat gets that job, not a second one
/// (the read-back finds the first; the repeat must not add another beside it).
#[test]
fn a_job_created_but_answered_503_is_the_job_its_repeat_gets() {
    run(Config::default(), |w| async move {
        let s = w.open_in(2, 1, 0).await;
        w.gate.lose_acks(1);
        assert!(w.job(&s, CertKind::Residence).await.is_unavailable());
        let job = w.job(&s, CertKind::Residence).await.job();
        let doc = w
            .fetch_wait(&s, job, Duration::from_secs(10))
            .await
            .document();
        w.verify(&s, CertKind::Residence, &doc);
        assert!(matches!(w.printed(&s, job).await, Answer::Printed { .. }));
        assert_eq!(w.close(&s).await, Answer::Closed);
        // No second job was left behind to be voided.
        assert_eq!(w.counter("kofu_jobs_voided_total"), 0.0);
        assert_eq!(w.store.audit_records().len(), 1);
    });
}

/// The authentication was applied, but its requester had given up before the answer
/// came (the kiosk's connection dropped, or the node that forwarded the call answered
/// `503` at its timeout): the kiosk's repeat is answered as the first would have been,
/// `200` with the offer, not `409 already_authenticated` (API.md: repeating converges).
/// Once an answer reached its requester, a repeat is the usual `409`.
#[test]
fn an_authentication_whose_answer_found_no_requester_is_answered_200_on_repeat() {
    run(Config::default(), |w| async move {
        let card = w.card_in(2, 1);
        let s = w.created(&card, &w.kiosk(0)).await;
        let abandoned = in_flight(&w, &s, |w, s| async move { w.auth(&s).await }).await;
        abandoned.abort();
        w.gate.open();
        wait_until("the authentication is stored", || w.gate.held() == 0).await;
        answered_once_then_409(&w, &s).await;
    });
}

/// Forwarded by another node: the answer left this node while the forwarding node still
/// waited, but the link may fail (or that node give up) before the kiosk has it. The
/// owner answers a repeat as done until the forwarding node's notice says the kiosk's
/// request got it; after the notice, a repeat (from any node) is the usual `409`.
#[test]
fn a_forwarded_authentication_is_answered_200_on_repeat_until_its_delivery_is_confirmed() {
    run(Config::default(), |w| async move {
        let s = w.created(&w.card_in(1, 3), &w.kiosk(0)).await;
        assert_eq!(w.forwarded(&s, w.auth_op(&s)).await, Answer::Authenticated);
        // No notice came (the link failed after the answer): a repeat is answered as done.
        assert_eq!(w.forwarded(&s, w.auth_op(&s)).await, Answer::Authenticated);
        assert_eq!(
            w.forwarded(&s, SessionOp::AuthDelivered).await,
            Answer::Noted
        );
        assert_eq!(
            w.forwarded(&s, w.auth_op(&s)).await,
            Answer::Error(ErrorCode::AlreadyAuthenticated)
        );
    });
}

/// The forwarding node tells the owner only once the answer has left it for the kiosk,
/// so a kiosk that repeats its authentication at once (through another node) may reach
/// the owner before that notice: the repeat waits a moment for it and is the usual
/// `409`, not a `200` for an answer the kiosk already has.
#[test]
fn a_repeat_that_overtakes_the_forwarding_nodes_notice_waits_for_it() {
    run(Config::default(), |w| async move {
        let s = w.created(&w.card_in(2, 4), &w.kiosk(0)).await;
        assert_eq!(w.forwarded(&s, w.auth_op(&s)).await, Answer::Authenticated);
        let repeat = beside(&w, &s, |w, s| async move {
            w.forwarded(&s, w.auth_op(&s)).await
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            w.forwarded(&s, SessionOp::AuthDelivered).await,
            Answer::Noted
        );
        assert_eq!(
            repeat.await.expect("the repeat"),
            Answer::Error(ErrorCode::AlreadyAuthenticated)
        );
    });
}

/// Authenticated on a node that then lost the shard (crashed, partitioned) before its
/// answer reached the kiosk: the new owner cannot know whether it did, and answers the
/// kiosk's repeat as done until the kiosk moves on to a job.
#[test]
fn a_resumed_session_answers_a_repeated_authentication_200_until_a_job_exists() {
    run(Config::default(), |w| async move {
        let s = w.open_in(3, 1, 0).await;
        w.take_over(3).await;
        answered_once_then_409(&w, &s).await;
        w.take_over(3).await;
        w.job(&s, CertKind::Residence).await.job();
        w.take_over(3).await;
        assert_eq!(
            w.auth(&s).await,
            Answer::Error(ErrorCode::AlreadyAuthenticated)
        );
    });
}

/// A request queued behind a transition in flight whose requester gave up meanwhile
/// (its kiosk was told `503`, or its forwarding node answered at its timeout) is never
/// acted on late: the kiosk may be repeating it already, and a late create would even
/// close the kiosk's newer session.
#[test]
fn a_request_given_up_on_while_queued_is_never_acted_on() {
    run(Config::default(), |w| async move {
        let card = w.card_in(1, 2);
        let s = w.created(&card, &w.kiosk(0)).await;
        let auth = in_flight(&w, &s, |w, s| async move { w.auth(&s).await }).await;
        let queued = beside(&w, &s, |w, s| async move {
            w.job(&s, CertKind::Residence).await
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        queued.abort();
        tokio::time::sleep(Duration::from_millis(1)).await;
        w.gate.open();
        assert_eq!(auth.await.expect("task"), Answer::Authenticated);
        let job = w.job(&s, CertKind::Residence).await.job();
        assert!(
            job.to_string().starts_with("j0-"),
            "the abandoned job request created a job before {job}"
        );
        assert_eq!(w.counter("kofu_requests_abandoned_total"), 1.0);
    });
}

/// A session started for a create whose requester gave up before the start was stored
/// (its kiosk was told `503`): no kiosk knows it, so it ends at once and the card is
/// free for the kiosk's next try, at any kiosk, not only after the idle timeout.
#[test]
fn a_session_created_for_nobody_frees_its_card_at_once() {
    run(Config::default(), |w| async move {
        let card = w.card_in(0, 3);
        w.gate.shut();
        let create = {
            let (w, card) = (w.clone(), card.clone());
            actix::spawn(async move { w.create(&card, &w.kiosk(0)).await })
        };
        wait_until("the start waits at the gate", || w.gate.held() == 1).await;
        create.abort();
        tokio::time::sleep(Duration::from_millis(1)).await;
        w.gate.open();
        tokio::time::sleep(Duration::from_millis(10)).await;
        w.assert_free(&card).await;
    });
}

/// A repeated authentication is answered `200` once (as the first would have been),
/// and after that, authenticating again is the usual `409 already_authenticated`.
async fn answered_once_then_409(w: &World, s: &Open) {
    assert_eq!(w.auth(s).await, Answer::Authenticated);
    assert_eq!(
        w.auth(s).await,
        Answer::Error(ErrorCode::AlreadyAuthenticated)
    );
}

/// A print recorded but answered `503`, and the session ended before the kiosk's
/// repeat reached it (its idle timeout ran out while the kiosk saw `503`s): the repeat
/// is answered what was done, from the closed session and then from its tombstone on
/// another owner, not `unknown_session` for a print that was charged and audited.
#[test]
fn a_print_answered_503_is_confirmed_on_repeat_after_the_session_ended() {
    run(Config::default(), |w| async move {
        let idle = w.config.session.idle_timeout;
        let (s, job, doc) = w.delivered_in(2, 3, 0).await;
        let printed = Answer::Printed {
            serial: w.verify(&s, CertKind::Residence, &doc).serial,
            charged_yen: CertKind::Residence.fee_yen(),
        };
        w.gate.lose_acks(1);
        assert!(w.printed(&s, job).await.is_unavailable());
        let ended = || w.counter("kofu_sessions_ended_total");
        let before = ended();
        tokio::time::sleep(idle + Duration::from_secs(1)).await;
        wait_until("the session ended on its idle timeout", || ended() > before).await;
        assert_eq!(w.printed(&s, job).await, printed);
        w.take_over(2).await;
        assert_eq!(w.printed(&s, job).await, printed);
        // Only that call: anything else about the session is over, for anyone else too.
        assert_eq!(w.printed(&s.at(w.kiosk(1)), job).await, GONE);
        assert_eq!(w.fetch(&s, job).await, GONE);
        assert_eq!(w.store.audit_records().len(), 1);
        assert_eq!(w.counter("kofu_jobs_voided_total"), 0.0);
    });
}
