//! What a session leaves in the store over its life: while open it is listed among its
//! shard's sessions (a new owner resumes them all), a close deletes or tombstones it, a
//! tombstone answers for the closed session until it expires, and the keys that make a
//! print count once go with the session, so memory follows the sessions open.

use std::collections::HashSet;
use std::time::Duration;

use kofu_proto::SessionId;
use tokio::time::{Instant, sleep};

use super::Backend;
use super::fixtures::{acquire, audit, card, nothing, session};
use crate::{
    AuditOutcome, Change, Fence, FencedStore, SessionCursor, SnapshotOp, StoreError, all_sessions,
};

/// Long enough for a loaded machine to get a close and the reads after it done.
const SHORT_TTL: Duration = Duration::from_millis(1_500);
const WITHIN: Duration = Duration::from_secs(20);

fn tombstone(bytes: &[u8], ttl: Duration) -> Change {
    Change {
        snapshot: SnapshotOp::Tombstone {
            bytes: bytes.to_vec(),
            ttl,
        },
        ..nothing()
    }
}

fn delete() -> Change {
    Change {
        snapshot: SnapshotOp::Delete,
        ..nothing()
    }
}

async fn listed(store: &dyn FencedStore, fence: Fence) -> HashSet<SessionId> {
    let all = all_sessions(store, fence, 3).await.expect("list");
    all.into_iter().collect()
}

pub async fn open_sessions_are_listed_until_they_end<B: Backend>(b: B) {
    let store = b.store();
    let fence = b.fence(11).await;
    assert_eq!(listed(&*store, fence).await, HashSet::new());
    let open: Vec<SessionId> = (1..=25).map(|n| session(11, n)).collect();
    for s in &open {
        let put = Change::snapshot(vec![1, 2, 3]);
        store.apply(fence, *s, put).await.expect("apply");
    }
    // A change that writes no snapshot does not open a session.
    let lock_only = session(11, 99);
    store
        .apply(fence, lock_only, acquire(&card(9), "K-9"))
        .await
        .expect("apply");
    // Another shard's sessions are its own.
    let elsewhere = b.fence(12).await;
    let put = Change::snapshot(vec![1]);
    store
        .apply(elsewhere, session(12, 1), put)
        .await
        .expect("apply");
    assert_eq!(listed(&*store, fence).await, open.iter().copied().collect());
    // Paged: each page holds about the limit, and the pages cover everything.
    let mut cursor = SessionCursor::default();
    let mut pages = 0;
    loop {
        let page = store.list_sessions(fence, cursor, 10).await.expect("list");
        pages += 1;
        assert!(page.sessions.len() <= 25, "{page:?}");
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
        assert!(pages < 100, "the listing never ends");
    }
    // A rewrite keeps a session listed once; a delete and a tombstone end it.
    store
        .apply(fence, open[0], Change::snapshot(vec![4]))
        .await
        .expect("apply");
    store.apply(fence, open[1], delete()).await.expect("apply");
    let closed = tombstone(b"closed", Duration::from_secs(60));
    store.apply(fence, open[2], closed).await.expect("apply");
    let want: HashSet<SessionId> = open[3..].iter().chain(&open[..1]).copied().collect();
    assert_eq!(listed(&*store, fence).await, want);
    // The listing is fenced like a write: a new owner lists, the old one may not.
    let new = b.take_over(11).await;
    assert_eq!(listed(&*store, new).await, want);
    let stale = store
        .list_sessions(fence, SessionCursor::default(), 10)
        .await;
    assert!(matches!(stale, Err(StoreError::Fenced { .. })), "{stale:?}");
}

pub async fn a_tombstone_answers_for_a_closed_session_until_it_expires<B: Backend>(b: B) {
    let store = b.store();
    let fence = b.fence(13).await;
    let (s, c) = (session(13, 1), card(7));
    let print = Change {
        audit: Some(audit(&s, "j1", &c)),
        ..Change::snapshot(b"open".to_vec())
    };
    let first = store.apply(fence, s, print.clone()).await;
    assert_eq!(first.expect("apply").audit, Some(AuditOutcome::Recorded));
    store
        .apply(fence, s, tombstone(b"closed", SHORT_TTL))
        .await
        .expect("apply");
    // The next owner reads the marker, not the open snapshot nor nothing.
    let new = b.take_over(13).await;
    assert_eq!(
        store.load_snapshot(new, s).await,
        Ok(Some(b"closed".to_vec()))
    );
    assert!(!listed(&*store, new).await.contains(&s));
    // The session's audit keys went with it (a retry is the tombstone's to answer).
    let again = Change {
        audit: Some(audit(&s, "j1", &c)),
        ..nothing()
    };
    let again = store.apply(new, s, again).await;
    assert_eq!(again.expect("apply").audit, Some(AuditOutcome::Recorded));
    let deadline = Instant::now() + WITHIN;
    while store.load_snapshot(new, s).await.expect("load").is_some() {
        assert!(Instant::now() < deadline, "the tombstone never expired");
        sleep(Duration::from_millis(50)).await;
    }
    // A put after a tombstone opens the session again (and lists it).
    store
        .apply(new, s, Change::snapshot(b"again".to_vec()))
        .await
        .expect("apply");
    assert!(listed(&*store, new).await.contains(&s));
}

/// Exactly-once charging needs its keys only while the session lives (a late retry of
/// an ended session is answered from its tombstone by the actors): deleting the
/// session's snapshot drops them, so memory is bounded by the sessions open.
pub async fn audit_keys_end_with_their_session<B: Backend>(b: B) {
    let store = b.store();
    let fence = b.fence(3).await;
    let (s, other, c) = (session(3, 1), session(3, 2), card(6));
    let print = |s: &SessionId| Change {
        audit: Some(audit(s, "j1", &c)),
        ..Change::snapshot(b"x".to_vec())
    };
    for s in [&s, &other] {
        let first = store.apply(fence, *s, print(s)).await;
        assert_eq!(first.expect("apply").audit, Some(AuditOutcome::Recorded));
    }
    store.apply(fence, s, delete()).await.expect("apply");
    let after = store.apply(fence, s, print(&s)).await;
    assert_eq!(
        after.expect("apply").audit,
        Some(AuditOutcome::Recorded),
        "the ended session's audit keys are still kept"
    );
    // Another session's keys stay.
    let again = store.apply(fence, other, print(&other)).await;
    assert_eq!(again.expect("apply").audit, Some(AuditOutcome::Duplicate));
}

/// A session's state is loaded with its age by the store's clock, and every put makes
/// it young again: a new owner counts a resumed session's quiet time on it, whatever
/// its own clock says.
pub async fn a_loaded_session_tells_how_long_ago_it_was_written<B: Backend>(b: B) {
    const PAUSE: Duration = Duration::from_millis(600);
    let store = b.store();
    let fence = b.fence(14).await;
    let s = session(14, 1);
    store
        .apply(fence, s, Change::snapshot(vec![1]))
        .await
        .expect("apply");
    let put_at = Instant::now();
    sleep(PAUSE).await;
    let first = store.load_session(fence, s).await.expect("load");
    let first = first.expect("a snapshot");
    assert_eq!(first.bytes, vec![1]);
    // Redis counts whole milliseconds of the ttl left.
    assert!(
        first.written_ago + Duration::from_millis(2) >= PAUSE
            && first.written_ago <= put_at.elapsed() + Duration::from_millis(2),
        "age {:?} for a put {:?} ago",
        first.written_ago,
        put_at.elapsed()
    );
    store
        .apply(fence, s, Change::snapshot(vec![2]))
        .await
        .expect("apply");
    let put_at = Instant::now();
    let second = store.load_session(fence, s).await.expect("load");
    let second = second.expect("a snapshot");
    assert_eq!(second.bytes, vec![2]);
    assert!(
        second.written_ago <= put_at.elapsed() + Duration::from_millis(2),
        "age {:?} right after a put",
        second.written_ago
    );
    assert_eq!(
        store
            .load_session(fence, session(14, 2))
            .await
            .expect("load"),
        None
    );
}
