//! The fenced store's rules: the fence is checked before anything is written, a stale
//! or never-granted fence writes nothing (I2), a change applies all-or-nothing, a card
//! lock is released only by its holder, a print is audited once per (session, job)
//! (I5), serials never repeat, and snapshots are what was last put.

use std::collections::HashSet;

use kofu_proto::{CardId, SessionId};

use super::Backend;
use super::fixtures::{acquire, audit, card, full_change, nothing, release, serial_only, session};
use crate::{Applied, AuditOutcome, Change, Fence, LockOutcome, SnapshotOp, StoreError};

fn fenced(fence: Fence) -> StoreError {
    StoreError::Fenced {
        shard: fence.shard,
        held: fence.epoch,
    }
}

/// Checks, as the shard's current owner `fence`, that a refused `full_change(s, c)`
/// left nothing behind and that the shard's serial is still `serial`. Probing writes
/// (a serial, a lock, an audit record), so it comes last in a test.
async fn assert_nothing_written<B: Backend>(
    b: &B,
    fence: Fence,
    s: SessionId,
    c: &CardId,
    serial: u64,
) {
    let store = b.store();
    let snap = store.load_snapshot(fence, s).await;
    assert_eq!(snap, Ok(None), "snapshot written by a refused change");
    let session_text = s.to_string();
    let audited = b.audit_records().await;
    assert!(
        audited.iter().all(|r| r.session_id != session_text),
        "audit record written by a refused change"
    );
    let next = store.apply(fence, s, serial_only()).await;
    assert_eq!(
        next.expect("apply").serial,
        Some(serial + 1),
        "serial moved by a refused change"
    );
    let probe = session(fence.shard, 0xEE);
    let lock = store.apply(fence, probe, acquire(c, "PROBE")).await;
    assert_eq!(
        lock.expect("apply").lock,
        Some(LockOutcome::Acquired),
        "card lock taken by a refused change"
    );
    let again = Change {
        audit: Some(audit(&s, "j1", c)),
        ..nothing()
    };
    let again = store.apply(fence, s, again).await;
    assert_eq!(
        again.expect("apply").audit,
        Some(AuditOutcome::Recorded),
        "the refused change's audit counts as recorded"
    );
}

pub async fn a_change_with_the_current_fence_writes_everything<B: Backend>(b: B) {
    let store = b.store();
    let fence = b.fence(4).await;
    let (s, c) = (session(4, 1), card(1));
    let applied = store.apply(fence, s, full_change(&s, &c)).await;
    assert_eq!(
        applied,
        Ok(Applied {
            serial: Some(1),
            lock: Some(LockOutcome::Acquired),
            audit: Some(AuditOutcome::Recorded),
            replaced: None,
        })
    );
    let snap = store.load_snapshot(fence, s).await;
    assert_eq!(snap, Ok(Some(b"snap".to_vec())));
    assert_eq!(b.audit_records().await, vec![audit(&s, "j1", &c)]);
    let other = store.apply(fence, session(4, 2), acquire(&c, "K-2")).await;
    assert_eq!(other.expect("apply").lock, Some(LockOutcome::InUse));
    // The same kiosk inserts the card again: the new session takes the lock over, and
    // learns which session it replaced (its owner ends that one in the store too).
    let again = store
        .apply(fence, session(4, 3), acquire(&c, "SEJ-1"))
        .await;
    let again = again.expect("apply");
    assert_eq!(again.lock, Some(LockOutcome::Acquired));
    assert_eq!(again.replaced, Some(s));
    let repeat = store
        .apply(fence, session(4, 3), acquire(&c, "SEJ-1"))
        .await;
    assert_eq!(
        repeat.expect("apply").replaced,
        None,
        "a session replaces no one by repeating"
    );
    let old = store.apply(fence, s, release(&c)).await;
    assert_eq!(old.expect("apply").lock, Some(LockOutcome::NotHeld));
    let mine = store.apply(fence, session(4, 3), release(&c)).await;
    assert_eq!(mine.expect("apply").lock, Some(LockOutcome::Released));
}

pub async fn a_stale_fence_writes_nothing<B: Backend>(b: B) {
    let store = b.store();
    let old = b.fence(5).await;
    let warmup = Change {
        allocate_serial: true,
        ..Change::snapshot(b"a".to_vec())
    };
    let applied = store.apply(old, session(5, 9), warmup).await;
    assert_eq!(applied.expect("apply").serial, Some(1));
    let new = b.take_over(5).await;
    assert!(
        new.shard == 5 && new.epoch > old.epoch,
        "{new:?} after {old:?}"
    );

    let (s, c) = (session(5, 1), card(2));
    let res = store.apply(old, s, full_change(&s, &c)).await;
    assert_eq!(res, Err(fenced(old)));
    assert_eq!(
        store.load_snapshot(old, session(5, 9)).await,
        Err(fenced(old))
    );
    // The delete of a stale owner must not reach the new owner's data either.
    let delete = Change {
        snapshot: SnapshotOp::Delete,
        ..nothing()
    };
    let res = store.apply(old, session(5, 9), delete).await;
    assert_eq!(res, Err(fenced(old)));
    let loaded = store.load_snapshot(new, session(5, 9)).await;
    assert_eq!(loaded, Ok(Some(b"a".to_vec())));
    // Serials go on across owners: the new owner's next one follows the old owner's.
    assert_nothing_written(&b, new, s, &c, 1).await;
}

pub async fn a_fence_never_granted_writes_nothing<B: Backend>(b: B) {
    let store = b.store();
    let held = b.fence(6).await;
    let future = Fence {
        epoch: held.epoch + 1,
        ..held
    };
    let (s, c) = (session(6, 1), card(3));
    let res = store.apply(future, s, full_change(&s, &c)).await;
    assert_eq!(res, Err(fenced(future)));
    assert_eq!(store.load_snapshot(future, s).await, Err(fenced(future)));
    let other_shard = Fence { shard: 7, ..future };
    let res = store.apply(other_shard, s, Change::snapshot(vec![1])).await;
    assert!(matches!(res, Err(StoreError::Fenced { .. })), "{res:?}");
    assert_nothing_written(&b, held, s, &c, 0).await;
}

pub async fn an_audit_is_recorded_once_per_session_and_job<B: Backend>(b: B) {
    let store = b.store();
    let fence = b.fence(2).await;
    let (s, c) = (session(2, 1), card(4));
    let print = |s: &SessionId, job: &str| Change {
        audit: Some(audit(s, job, &c)),
        ..Change::snapshot(b"x".to_vec())
    };
    let first = store.apply(fence, s, print(&s, "j1")).await;
    assert_eq!(first.expect("apply").audit, Some(AuditOutcome::Recorded));
    let again = store.apply(fence, s, print(&s, "j1")).await;
    assert_eq!(again.expect("apply").audit, Some(AuditOutcome::Duplicate));
    assert_eq!(b.audit_records().await, vec![audit(&s, "j1", &c)]);
    // The key is the pair: another job of the session, or the same job id in another
    // session, is a print of its own.
    let second = store.apply(fence, s, print(&s, "j2")).await;
    assert_eq!(second.expect("apply").audit, Some(AuditOutcome::Recorded));
    let other = session(2, 2);
    let third = store.apply(fence, other, print(&other, "j1")).await;
    assert_eq!(third.expect("apply").audit, Some(AuditOutcome::Recorded));
    assert_eq!(
        b.audit_records().await,
        vec![
            audit(&s, "j1", &c),
            audit(&s, "j2", &c),
            audit(&other, "j1", &c)
        ]
    );
    // A duplicate stays one after the shard changed owner.
    let new = b.take_over(2).await;
    let after = store.apply(new, s, print(&s, "j1")).await;
    assert_eq!(after.expect("apply").audit, Some(AuditOutcome::Duplicate));
    assert_eq!(b.audit_records().await.len(), 3);
}

pub async fn a_card_lock_is_released_only_by_its_holder<B: Backend>(b: B) {
    let store = b.store();
    let fence = b.fence(8).await;
    let (one, two, three, c) = (session(8, 1), session(8, 2), session(8, 3), card(5));
    let lock = |res: Result<Applied, StoreError>| res.expect("apply").lock;
    assert_eq!(
        lock(store.apply(fence, one, release(&c)).await),
        Some(LockOutcome::NotHeld),
        "a lock nobody took"
    );
    assert_eq!(
        lock(store.apply(fence, one, acquire(&c, "K-1")).await),
        Some(LockOutcome::Acquired)
    );
    assert_eq!(
        lock(store.apply(fence, two, release(&c)).await),
        Some(LockOutcome::NotHeld)
    );
    // Another kiosk cannot take a held card, and the refused change writes nothing:
    // no snapshot, no serial, no audit record.
    let refused = Change {
        allocate_serial: true,
        snapshot: SnapshotOp::Put(b"refused".to_vec()),
        audit: Some(audit(&two, "j1", &c)),
        ..acquire(&c, "K-2")
    };
    let got = store.apply(fence, two, refused).await;
    assert_eq!(
        got,
        Ok(Applied {
            serial: None,
            lock: Some(LockOutcome::InUse),
            audit: None,
            replaced: None,
        })
    );
    assert_eq!(store.load_snapshot(fence, two).await, Ok(None));
    assert!(b.audit_records().await.is_empty());
    let next = store.apply(fence, three, serial_only()).await;
    assert_eq!(
        next.expect("apply").serial,
        Some(1),
        "the refusal took a serial"
    );
    // The same kiosk may (its shard host closed the older session first).
    assert_eq!(
        lock(store.apply(fence, two, acquire(&c, "K-1")).await),
        Some(LockOutcome::Acquired)
    );
    // The first session lost the lock to the second: its release leaves it alone.
    assert_eq!(
        lock(store.apply(fence, one, release(&c)).await),
        Some(LockOutcome::NotHeld)
    );
    assert_eq!(
        lock(store.apply(fence, three, acquire(&c, "K-3")).await),
        Some(LockOutcome::InUse),
        "the lock is still held by the second session"
    );
    assert_eq!(
        lock(store.apply(fence, two, release(&c)).await),
        Some(LockOutcome::Released)
    );
    assert_eq!(
        lock(store.apply(fence, two, release(&c)).await),
        Some(LockOutcome::NotHeld)
    );
    assert_eq!(
        lock(store.apply(fence, three, acquire(&c, "K-3")).await),
        Some(LockOutcome::Acquired),
        "a released card is free for any kiosk"
    );
}

pub async fn serials_are_unique_and_increasing<B: Backend>(b: B) {
    let store = b.store();
    let fence = b.fence(9).await;
    let mut last = 0;
    for n in 0..5 {
        let got = store.apply(fence, session(9, n), serial_only()).await;
        let serial = got.expect("apply").serial.expect("serial");
        assert!(serial > last, "{serial} after {last}");
        last = serial;
    }
    let tasks: Vec<_> = (0..64u8)
        .map(|n| tokio::spawn(store.apply(fence, session(9, n), serial_only())))
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        let applied = t.await.expect("task").expect("apply");
        assert!(seen.insert(applied.serial.expect("serial")));
    }
    assert_eq!(seen, (6..=69).collect::<HashSet<u64>>());
    let none = store
        .apply(fence, session(9, 1), Change::snapshot(vec![1]))
        .await;
    assert_eq!(none.expect("apply").serial, None);
    // Each shard counts on its own.
    let other = b.fence(10).await;
    let got = store.apply(other, session(10, 1), serial_only()).await;
    assert_eq!(got.expect("apply").serial, Some(1));
}

pub async fn snapshots_put_load_and_delete<B: Backend>(b: B) {
    let store = b.store();
    let fence = b.fence(10).await;
    let s = session(10, 1);
    assert_eq!(store.load_snapshot(fence, s).await, Ok(None));
    let bytes = vec![0u8, 255, 1, 2, b'|', b':'];
    let put = store.apply(fence, s, Change::snapshot(bytes.clone())).await;
    assert_eq!(put, Ok(Applied::default()));
    assert_eq!(store.load_snapshot(fence, s).await, Ok(Some(bytes.clone())));
    store.apply(fence, s, nothing()).await.expect("apply");
    assert_eq!(store.load_snapshot(fence, s).await, Ok(Some(bytes)));
    assert_eq!(store.load_snapshot(fence, session(10, 2)).await, Ok(None));
    let replaced = Change::snapshot(b"next".to_vec());
    store.apply(fence, s, replaced).await.expect("apply");
    assert_eq!(
        store.load_snapshot(fence, s).await,
        Ok(Some(b"next".to_vec()))
    );
    // A new owner reads what the old one wrote.
    let new = b.take_over(10).await;
    assert_eq!(
        store.load_snapshot(new, s).await,
        Ok(Some(b"next".to_vec()))
    );
    let delete = Change {
        snapshot: SnapshotOp::Delete,
        ..nothing()
    };
    store.apply(new, s, delete).await.expect("apply");
    assert_eq!(store.load_snapshot(new, s).await, Ok(None));
}
