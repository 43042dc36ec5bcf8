//! Tombstones: a closed session is remembered by its host for a while, so a kiosk that
//! repeats its DELETE (a lost answer, a retry after `503`) gets `204` again, while every
//! other call, and any call by another kiosk, gets `unknown_session` (API.md).

use std::time::Duration;

use kofu_proto::{CertKind, ErrorCode};

use crate::harness::{Answer, Config, run};

const GONE: Answer = Answer::Error(ErrorCode::UnknownSession);

#[test]
fn a_closed_session_answers_204_to_its_kiosk_for_the_tombstone_ttl() {
    run(Config::default(), |w| async move {
        let ttl = w.config.session.tombstone_ttl;
        let (s, job, _) = w.delivered_in(0, 0, 0).await;
        // The host's tombstone generations rotate on their own timer: close mid-period.
        tokio::time::sleep(ttl / 3).await;
        assert_eq!(w.close(&s).await, Answer::Closed);
        let other = s.at(w.kiosk(1));

        tokio::time::sleep(ttl - Duration::from_millis(1)).await;
        assert_eq!(w.close(&s).await, Answer::Closed);
        assert_eq!(w.close(&s).await, Answer::Closed);
        assert_eq!(w.fetch(&s, job).await, GONE);
        assert_eq!(w.printed(&s, job).await, GONE);
        assert_eq!(w.auth(&s).await, GONE);
        assert_eq!(w.job(&s, CertKind::Residence).await, GONE);
        assert_eq!(w.close(&other).await, GONE);
        assert_eq!(w.fetch(&other, job).await, GONE);
        // The unconfirmed job was voided, never charged, and the card is free.
        assert!(w.store.audit_records().is_empty());
        w.open(&s.card, &w.kiosk(1)).await;

        // Tombstones are bounded: two periods later the session is as unknown as one
        // that never existed.
        tokio::time::sleep(ttl * 2).await;
        assert_eq!(w.close(&s).await, GONE);
    });
}

/// The tombstone lives in the host that closed the session; after a handoff the new
/// owner has none, and finds no snapshot either.
#[test]
fn a_repeated_close_after_a_handoff_still_answers_204() {
    run(Config::default(), |w| async move {
        let s = w.open_in(1, 0, 0).await;
        assert_eq!(w.close(&s).await, Answer::Closed);
        w.take_over(1).await;
        assert_eq!(w.close(&s).await, Answer::Closed);
    });
}
