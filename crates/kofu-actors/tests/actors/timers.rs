//! The session's timers run on tokio's clock, so the harness can wait them out: an idle
//! session ends after the idle timeout, voids its jobs and frees its card, and activity
//! short of it keeps the session open.

use std::time::Duration;

use kofu_proto::{CertKind, ErrorCode};

use crate::harness::{Answer, Config, run};

#[test]
fn an_idle_session_ends_after_the_idle_timeout_and_frees_its_card() {
    run(Config::default(), |w| async move {
        let idle = w.config.session.idle_timeout;
        let almost = idle - Duration::from_secs(1);
        let card = w.card_in(1, 0);
        let s = w.open(&card, &w.kiosk(0)).await;
        let in_use = Answer::Error(ErrorCode::CardInUse);
        assert_eq!(w.create(&card, &w.kiosk(1)).await, in_use);

        tokio::time::sleep(almost).await;
        let (job, doc) = w.delivered(&s, CertKind::Residence).await;
        tokio::time::sleep(almost).await;
        assert_eq!(w.fetch(&s, job).await.document(), doc);
        assert_eq!(w.create(&card, &w.kiosk(1)).await, in_use);

        tokio::time::sleep(idle + Duration::from_secs(1)).await;
        assert_eq!(
            w.fetch(&s, job).await,
            Answer::Error(ErrorCode::UnknownSession)
        );
        assert!(
            w.store.audit_records().is_empty(),
            "a voided job was charged"
        );
        w.assert_free(&card).await;
    });
}
