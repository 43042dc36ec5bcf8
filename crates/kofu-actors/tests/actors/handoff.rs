//! Handoff: the host stops admitting, lets every session finish the transition it is in
//! (its store write lands and is answered), detaches them, and only then lets the shard
//! go; requests meanwhile wait, and are served by the next host.

use std::time::Duration;

use kofu_proto::CertKind;

use crate::harness::{Answer, Config, beside, in_flight, run};

#[test]
fn a_handoff_finishes_transitions_in_flight_and_the_next_host_serves_the_rest() {
    run(Config::default(), |w| async move {
        let (a, (b, b_job, b_doc)) = w.open_and_delivered_in(0).await;
        let resumed = w.counter("kofu_sessions_resumed_total");

        let a_job = in_flight(&w, &a, |w, a| async move {
            w.job(&a, CertKind::Residence).await
        })
        .await;
        let handoff = beside(&w, &a, |w, _| async move { w.router.hand_off(0).await });
        tokio::time::sleep(Duration::from_millis(1)).await;
        let later = beside(&w, &b, move |w, b| async move { w.fetch(&b, b_job).await });
        tokio::time::sleep(w.config.router.move_wait / 4).await;
        assert!(
            !a_job.is_finished(),
            "the write in flight is still on its way"
        );
        assert!(
            !handoff.is_finished(),
            "the handoff waits for the write in flight"
        );
        assert!(
            !later.is_finished(),
            "a request meanwhile waits for the shard"
        );

        // The write lands: it is answered, and only then does the handoff complete.
        w.gate.open();
        let a_job = a_job.await.expect("task").job();
        handoff.await.expect("task");
        assert!(
            !later.is_finished(),
            "no host serves the shard between owners"
        );
        w.reacquire(0);
        assert_eq!(later.await.expect("task").document(), b_doc);
        // Both sessions go on from their snapshots on the new host.
        let a_doc = w
            .fetch_wait(&a, a_job, Duration::from_secs(10))
            .await
            .document();
        w.verify(&a, CertKind::Residence, &a_doc);
        assert_eq!(w.counter("kofu_sessions_resumed_total"), resumed + 2.0);
        assert!(matches!(w.printed(&b, b_job).await, Answer::Printed { .. }));
        assert_eq!(w.close(&a).await, Answer::Closed);
    });
}
