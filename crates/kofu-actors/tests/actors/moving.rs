//! A shard without an owner here (handed off, dropped, or still being handed off): a
//! request waits for it, bounded by `RouterConfig::move_wait` and by how many may wait
//! at once, then answers `503`; and it is served if the shard comes back in time (I7).

use std::time::Duration;

use kofu_proto::CertKind;
use tokio::time::Instant;

use crate::harness::{Answer, Config, beside, in_flight, run, wait_until};

/// The router's longest pause between two attempts.
const LONGEST_PAUSE: Duration = Duration::from_millis(100);

#[test]
fn a_request_for_a_shard_without_owner_waits_then_answers_503() {
    run(Config::default(), |w| async move {
        let move_wait = w.config.router.move_wait;
        let (s, job, doc) = w.delivered_in(2, 0, 0).await;
        // The lease is gone (lapsed, or taken by a node this one cannot see yet).
        w.router.drop_shard(w.fence(2));
        let refreshes = w.coordinator.refreshes();

        let started = Instant::now();
        let answer = w.fetch(&s, job).await;
        let waited = started.elapsed();
        assert!(answer.is_unavailable(), "{answer:?}");
        assert!(
            waited <= move_wait && waited + LONGEST_PAUSE >= move_wait,
            "answered after {waited:?}, the bound is {move_wait:?}"
        );
        assert!(
            w.coordinator.refreshes() > refreshes,
            "never asked for news"
        );
        // Other shards are served meanwhile, at once.
        let other = w.card_in(3, 0);
        let started = Instant::now();
        w.open(&other, &w.kiosk(1)).await;
        assert_eq!(started.elapsed(), Duration::ZERO);

        // The session was never gone: once the shard is back it goes on.
        w.reacquire(2);
        assert_eq!(w.fetch(&s, job).await.document(), doc);
    });
}

#[test]
fn a_request_waits_for_a_shard_that_comes_back_in_time() {
    run(Config::default(), |w| async move {
        let move_wait = w.config.router.move_wait;
        let (s, job, doc) = w.delivered_in(3, 0, 0).await;
        w.router.hand_off(3).await;

        let started = Instant::now();
        let fetch = beside(&w, &s, move |w, s| async move { w.fetch(&s, job).await });
        tokio::time::sleep(move_wait / 2).await;
        assert!(!fetch.is_finished(), "the request waits for the shard");
        w.reacquire(3);
        assert_eq!(fetch.await.expect("task").document(), doc);
        let waited = started.elapsed();
        assert!(
            waited >= move_wait / 2 && waited <= move_wait / 2 + LONGEST_PAUSE,
            "served {waited:?} after the request"
        );
    });
}

/// While a host hands off, its shard is `Moving`: requests wait; a handoff that never
/// ends (a store write that never comes back) costs them `503` after the bound.
#[test]
fn a_request_during_a_handoff_that_does_not_end_answers_503() {
    run(Config::default(), |w| async move {
        let move_wait = w.config.router.move_wait;
        let (a, (b, job, _)) = w.open_and_delivered_in(0).await;
        let stuck = in_flight(&w, &a, |w, a| async move {
            w.job(&a, CertKind::Residence).await
        })
        .await;
        let handoff = beside(&w, &a, |w, _| async move { w.router.hand_off(0).await });
        // Let the handoff begin (virtual time: nothing else is due).
        tokio::time::sleep(Duration::from_millis(1)).await;

        let started = Instant::now();
        let answer = w.fetch(&b, job).await;
        let waited = started.elapsed();
        assert!(answer.is_unavailable(), "{answer:?}");
        assert!(waited + LONGEST_PAUSE >= move_wait && waited <= move_wait);
        assert!(!handoff.is_finished() && !stuck.is_finished());
        // Once the write lands, the handoff completes and the write is answered.
        w.gate.open();
        assert!(matches!(stuck.await.expect("task"), Answer::JobCreated(_)));
        handoff.await.expect("task");
    });
}

#[test]
fn requests_waiting_for_shards_are_bounded_in_number() {
    let mut config = Config::default();
    config.router.max_waiting = 1;
    run(config, |w| async move {
        let a = w.open_in(1, 0, 0).await;
        let b = w.open_in(2, 0, 1).await;
        w.router.drop_shard(w.fence(1));
        w.router.drop_shard(w.fence(2));
        let first = beside(&w, &a, |w, a| async move { w.auth(&a).await });
        wait_until("a request waits", || {
            w.counter("kofu_route_retries_total") > 0.0
        })
        .await;
        let started = Instant::now();
        let second = w.auth(&b).await;
        assert!(second.is_unavailable(), "{second:?}");
        assert_eq!(started.elapsed(), Duration::ZERO, "refused at once");
        w.reacquire(1);
        // Answered by the session resumed on the new host, which cannot know whether
        // the first authentication's answer reached the kiosk: answered as done.
        assert_eq!(first.await.expect("task"), Answer::Authenticated);
    });
}
