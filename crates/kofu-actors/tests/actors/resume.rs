//! Lazy resume: after its shard changed owner, a session continues from its snapshot on
//! the first request the new host gets for it: authenticated, with its jobs, and with
//! documents re-rendered to the same bytes (API.md: fetching again returns the same
//! bytes until the session ends).

use std::time::Duration;

use kofu_proto::{CertKind, ErrorCode};

use crate::harness::{Answer, Config, run};

#[test]
fn a_session_continues_from_its_snapshot_on_a_new_host() {
    run(Config::default(), |w| async move {
        let (s, delivered, doc) = w.delivered_in(1, 0, 0).await;
        // Rendered but never fetched before the move.
        let ready = w.job(&s, CertKind::FamilyRegister).await.job();
        let old = w.fence(1);
        let resumed = w.counter("kofu_sessions_resumed_total");

        let new = w.take_over(1).await;
        assert!(new.epoch > old.epoch, "{new:?} after {old:?}");
        assert_eq!(w.fetch(&s, delivered).await.document(), doc);
        assert_eq!(w.counter("kofu_sessions_resumed_total"), resumed + 1.0);
        // Still authenticated, with both jobs.
        assert_eq!(
            w.auth(&s).await,
            Answer::Error(ErrorCode::AlreadyAuthenticated)
        );
        let second = w
            .fetch_wait(&s, ready, Duration::from_secs(10))
            .await
            .document();
        let binding = w.verify(&s, CertKind::FamilyRegister, &second);
        let serial = w.verify(&s, CertKind::Residence, &doc).serial;
        assert_ne!(binding.serial, serial);
        let third = w.job(&s, CertKind::Residence).await;
        assert!(matches!(third, Answer::JobCreated(_)), "{third:?}");
        // The print is confirmed and charged once, with the serial delivered before.
        let printed = w.printed(&s, delivered).await;
        assert_eq!(
            printed,
            Answer::Printed {
                serial: serial.clone(),
                charged_yen: CertKind::Residence.fee_yen(),
            }
        );
        let audited = w.store.audit_records();
        assert_eq!(audited.len(), 1);
        assert_eq!(audited[0].serial, serial);
        assert_eq!(w.close(&s).await, Answer::Closed);
        // The card is free again, at any kiosk.
        w.open(&s.card, &w.kiosk(1)).await;
    });
}

/// A job still rendering when the shard moved is rendered by the new host, against the
/// deadline that runs from the job's creation.
#[test]
fn a_job_rendering_at_the_move_is_rendered_by_the_new_host() {
    run(
        Config::render_late(Duration::from_secs(1)),
        |w| async move {
            let s = w.open_in(2, 0, 0).await;
            let job = w.job(&s, CertKind::Residence).await.job();
            assert_eq!(w.fetch(&s, job).await, Answer::Rendering);
            w.take_over(2).await;
            let doc = w
                .fetch_wait(&s, job, Duration::from_secs(10))
                .await
                .document();
            let binding = w.verify(&s, CertKind::Residence, &doc);
            assert_eq!(
                w.printed(&s, job).await,
                Answer::Printed {
                    serial: binding.serial,
                    charged_yen: CertKind::Residence.fee_yen(),
                }
            );
        },
    );
}

/// A document delivered before a takeover keeps its bytes even if the holder's record
/// changed since: the kiosk may fetch it again to print (API.md).
#[test]
fn a_delivered_document_keeps_its_bytes_across_a_takeover_after_a_record_change() {
    run(Config::default(), |w| async move {
        let (s, job, doc) = w.delivered_in(3, 0, 0).await;
        let moved = w
            .registry
            .update_address_now(&s.card.id, "新住所 9-9-9".into());
        assert!(moved.is_some());
        w.take_over(3).await;
        assert_eq!(w.fetch(&s, job).await.document(), doc);
    });
}
