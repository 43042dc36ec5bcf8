//! Bounded mailboxes: a request that finds its session's or its host's mailbox full is
//! answered `503` at once, not queued without bound, and everything that got in is
//! answered as usual.

use std::time::Duration;

use futures::future::join_all;
use tokio::time::Instant;

use crate::harness::{Answer, Config, beside, in_flight, run};

const MAILBOX: usize = 2;
const REQUESTS: usize = 8;

/// The default test configuration with `set` applied to its session settings.
fn mailboxes(set: impl FnOnce(&mut kofu_actors::SessionConfig)) -> Config {
    let mut config = Config::default();
    set(&mut config.session);
    config
}

#[test]
fn a_full_session_mailbox_answers_503_at_once() {
    run(mailboxes(|c| c.session_mailbox = MAILBOX), |w| async move {
        let (s, job, doc) = w.delivered_in(1, 0, 0).await;
        // The session is busy: its print's write waits at the gate.
        let busy = in_flight(&w, &s, move |w, s| async move { w.printed(&s, job).await }).await;

        let fetches: Vec<_> = (0..REQUESTS)
            .map(|_| beside(&w, &s, move |w, s| async move { w.fetch(&s, job).await }))
            .collect();
        // Every request has reached the session or been refused; none can be served
        // while the gate is shut, so what is answered now was answered at once.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let at_once: Vec<bool> = fetches.iter().map(|f| f.is_finished()).collect();
        w.gate.open();
        assert!(matches!(busy.await.expect("task"), Answer::Printed { .. }));
        let mut refused = 0;
        for (fetch, at_once) in fetches.into_iter().zip(at_once) {
            let answer = fetch.await.expect("task");
            if at_once {
                assert!(answer.is_unavailable(), "{answer:?}");
                refused += 1;
            } else {
                assert_eq!(answer, Answer::Document(doc.clone()));
            }
        }
        assert!(refused >= 1, "no request was refused");
        assert!(refused <= REQUESTS - MAILBOX, "{refused} refused");
        assert_eq!(w.counter("kofu_mailbox_rejections_total"), refused as f64);
    });
}

/// Found by this test (issue 10): the router cloned the host's `Addr` for every request,
/// and an actix mailbox parks a *sender* that finds it full (after queueing its
/// message), so every fresh clone got its message in and the host's bound never refused
/// anything. The router now counts what it posts to each host.
#[test]
fn a_full_host_mailbox_answers_503_at_once() {
    run(mailboxes(|c| c.host_mailbox = MAILBOX), |w| async move {
        let (s, job, doc) = w.delivered_in(2, 0, 0).await;
        // All of these reach the host's mailbox before the host runs once.
        let started = Instant::now();
        let answers = join_all((0..REQUESTS).map(|_| w.fetch(&s, job))).await;
        assert_eq!(started.elapsed(), Duration::ZERO, "answered at once");
        let refused = answers.iter().filter(|a| a.is_unavailable()).count();
        let served = answers
            .iter()
            .filter(|a| **a == Answer::Document(doc.clone()));
        assert_eq!(refused + served.count(), REQUESTS, "{answers:?}");
        assert!(refused >= 1, "no request was refused: {answers:?}");
        assert!(refused <= REQUESTS - MAILBOX, "{refused} refused");
        assert_eq!(w.counter("kofu_mailbox_rejections_total"), refused as f64);
    });
}
