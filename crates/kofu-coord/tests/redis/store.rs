//! Leases and the fenced store: fencing (a stale or lapsed owner writes nothing, I2),
//! exactly-once audit (I5), card locks, serials and snapshots.

use super::*;

#[tokio::test]
async fn lease_acquire_renew_release() {
    let env = env().await;
    let fence = env.leases.acquire(3, "a", LONG).await.expect("acquire");
    let fence = fence.expect("free shard is acquired");
    // Epochs start at the acquirer's clock in ms, so they survive a Redis data loss.
    assert_eq!(fence.shard, 3);
    assert!(fence.epoch > 1_700_000_000_000, "{fence:?}");
    assert_eq!(
        env.leases.holder(3).await.expect("holder"),
        Some(("a".into(), fence.epoch))
    );
    assert!(env.leases.renew(fence, "a", LONG).await.expect("renew"));
    assert!(!env.leases.renew(fence, "b", LONG).await.expect("renew"));
    let stale = Fence { epoch: 9, ..fence };
    assert!(!env.leases.renew(stale, "a", LONG).await.expect("renew"));
    assert!(!env.leases.release(fence, "b").await.expect("release"));
    assert!(env.leases.release(fence, "a").await.expect("release"));
    assert_eq!(env.leases.holder(3).await.expect("holder"), None);
    assert!(!env.leases.renew(fence, "a", LONG).await.expect("renew"));
    let again = env.leases.acquire(3, "b", LONG).await.expect("acquire");
    let again = again.expect("a released lease is free");
    assert!(again.shard == 3 && again.epoch > fence.epoch, "{again:?}");
}

#[tokio::test]
async fn held_lease_blocks_others_until_it_expires() {
    let env = env().await;
    let first = env.leases.acquire(1, "a", SHORT).await.expect("acquire");
    assert_eq!(first.map(|f| f.shard), Some(1));
    assert_eq!(
        env.leases.acquire(1, "b", SHORT).await.expect("acquire"),
        None
    );
    assert_eq!(
        env.leases.acquire(1, "a", SHORT).await.expect("acquire"),
        None
    );
    // Another shard is independent.
    let other = env.leases.acquire(2, "b", SHORT).await.expect("acquire");
    assert_eq!(other.map(|f| f.shard), Some(2));
    tokio::time::sleep(SHORT * 2).await;
    let next = env.leases.acquire(1, "b", LONG).await.expect("acquire");
    let next = next.expect("an expired lease is free");
    let first = first.expect("first lease");
    assert!(next.shard == 1 && next.epoch > first.epoch, "{next:?}");
    assert_eq!(
        env.leases.holder(1).await.expect("holder"),
        Some(("b".into(), next.epoch))
    );
}

#[tokio::test]
async fn apply_with_the_current_fence_writes_everything() {
    let env = env().await;
    let fence = env.leases.acquire(4, "a", LONG).await.expect("acquire");
    let fence = fence.expect("lease");
    let (s, c) = (session(4, 1), card(1));
    let applied = env
        .store
        .apply(fence, s, full_change(&s, &c))
        .await
        .expect("apply");
    assert_eq!(
        applied,
        Applied {
            serial: Some(1),
            lock: Some(LockOutcome::Acquired),
            audit: Some(AuditOutcome::Recorded),
        }
    );
    let snap = env.store.load_snapshot(fence, s).await.expect("load");
    assert_eq!(snap, Some(b"snap".to_vec()));
    let len: u64 = raw(&env.raw, redis::cmd("XLEN").arg("kofu:{s4}:audit")).await;
    assert_eq!(len, 1);
    let lock: Option<String> = raw(
        &env.raw,
        redis::cmd("GET").arg(format!("kofu:{{s4}}:lock:{}", c.digest())),
    )
    .await;
    assert_eq!(lock, Some(format!("{s}|SEJ-1")));
    let ttl: i64 = raw(
        &env.raw,
        redis::cmd("PTTL").arg(format!("kofu:{{s4}}:snap:{s}")),
    )
    .await;
    assert!(ttl > 0 && ttl <= 600_000, "snapshot ttl {ttl}");
}

/// What a fenced-out change must not have touched.
async fn assert_nothing_written(env: &Env, shard: u32, s: &SessionId, c: &CardId, serial: u64) {
    let snap: Option<Vec<u8>> = raw(
        &env.raw,
        redis::cmd("GET").arg(format!("kofu:{{s{shard}}}:snap:{s}")),
    )
    .await;
    assert_eq!(snap, None, "snapshot written by a fenced change");
    let len: u64 = raw(
        &env.raw,
        redis::cmd("XLEN").arg(format!("kofu:{{s{shard}}}:audit")),
    )
    .await;
    assert_eq!(len, 0, "audit entry written by a fenced change");
    let audited: u64 = raw(
        &env.raw,
        redis::cmd("SCARD").arg(format!("kofu:{{s{shard}}}:audited")),
    )
    .await;
    assert_eq!(audited, 0);
    let stored: Option<u64> = raw(
        &env.raw,
        redis::cmd("GET").arg(format!("kofu:{{s{shard}}}:serial")),
    )
    .await;
    assert_eq!(
        stored.unwrap_or(0),
        serial,
        "serial moved by a fenced change"
    );
    let lock: Option<String> = raw(
        &env.raw,
        redis::cmd("GET").arg(format!("kofu:{{s{shard}}}:lock:{}", c.digest())),
    )
    .await;
    assert_eq!(lock, None, "card lock taken by a fenced change");
}

#[tokio::test]
async fn stale_fence_after_takeover_writes_nothing() {
    let env = env().await;
    let old = env.leases.acquire(5, "a", SHORT).await.expect("acquire");
    let old = old.expect("lease");
    let warmup = Change {
        allocate_serial: true,
        ..Change::snapshot(b"a".to_vec())
    };
    let applied = env.store.apply(old, session(5, 9), warmup).await;
    assert_eq!(applied.expect("apply").serial, Some(1));
    tokio::time::sleep(SHORT * 2).await;
    let new = env.leases.acquire(5, "b", LONG).await.expect("acquire");
    assert!(new.is_some_and(|f| f.epoch > old.epoch), "{new:?}");

    let (s, c) = (session(5, 1), card(2));
    let res = env.store.apply(old, s, full_change(&s, &c)).await;
    let stale = StoreError::Fenced {
        shard: 5,
        held: old.epoch,
    };
    assert_eq!(res, Err(stale.clone()));
    assert_nothing_written(&env, 5, &s, &c, 1).await;
    let load = env.store.load_snapshot(old, session(5, 9)).await;
    assert_eq!(load, Err(stale));
    // The delete of a stale owner must not reach the new owner's data either.
    let del = Change {
        snapshot: SnapshotOp::Delete,
        ..Change::snapshot(Vec::new())
    };
    let res = env.store.apply(old, session(5, 9), del).await;
    assert!(matches!(res, Err(StoreError::Fenced { .. })));
    let loaded = env
        .store
        .load_snapshot(new.expect("lease"), session(5, 9))
        .await;
    assert_eq!(loaded, Ok(Some(b"a".to_vec())));
}

#[tokio::test]
async fn lapsed_lease_refuses_writes_before_anyone_takes_over() {
    let env = env().await;
    let fence = env.leases.acquire(6, "a", SHORT).await.expect("acquire");
    let fence = fence.expect("lease");
    tokio::time::sleep(SHORT * 2).await;
    assert_eq!(env.leases.holder(6).await.expect("holder"), None);
    let (s, c) = (session(6, 1), card(3));
    let res = env.store.apply(fence, s, full_change(&s, &c)).await;
    assert_eq!(
        res,
        Err(StoreError::Fenced {
            shard: 6,
            held: fence.epoch
        })
    );
    assert_nothing_written(&env, 6, &s, &c, 0).await;
    let load = env.store.load_snapshot(fence, s).await;
    assert!(matches!(load, Err(StoreError::Fenced { .. })));
    // A fence of a shard nobody ever leased is refused too.
    let never = Fence { shard: 7, epoch: 1 };
    let res = env.store.apply(never, s, Change::snapshot(vec![1])).await;
    assert!(matches!(res, Err(StoreError::Fenced { .. })));
}

#[tokio::test]
async fn audit_is_recorded_once() {
    let env = env().await;
    let fence = env.leases.acquire(2, "a", LONG).await.expect("acquire");
    let fence = fence.expect("lease");
    let (s, c) = (session(2, 1), card(4));
    let change = Change {
        audit: Some(audit(&s, "j1", &c)),
        ..Change::snapshot(b"x".to_vec())
    };
    let first = env
        .store
        .apply(fence, s, change.clone())
        .await
        .expect("apply");
    assert_eq!(first.audit, Some(AuditOutcome::Recorded));
    let again = env.store.apply(fence, s, change).await.expect("apply");
    assert_eq!(again.audit, Some(AuditOutcome::Duplicate));
    let len: u64 = raw(&env.raw, redis::cmd("XLEN").arg("kofu:{s2}:audit")).await;
    assert_eq!(len, 1);
    let other_job = Change {
        audit: Some(audit(&s, "j2", &c)),
        ..Change::snapshot(b"x".to_vec())
    };
    let second = env.store.apply(fence, s, other_job).await.expect("apply");
    assert_eq!(second.audit, Some(AuditOutcome::Recorded));
    let entries: redis::Value = raw(
        &env.raw,
        redis::cmd("XRANGE")
            .arg("kofu:{s2}:audit")
            .arg("-")
            .arg("+"),
    )
    .await;
    let text = format!("{entries:?}");
    assert!(text.contains(&c.digest()), "audit carries the card digest");
    let len: u64 = raw(&env.raw, redis::cmd("XLEN").arg("kofu:{s2}:audit")).await;
    assert_eq!(len, 2);
}

#[tokio::test]
async fn card_lock_is_released_only_by_its_holder() {
    let env = env().await;
    let fence = env.leases.acquire(8, "a", LONG).await.expect("acquire");
    let fence = fence.expect("lease");
    let (one, two, c) = (session(8, 1), session(8, 2), card(5));
    let acquire = |kiosk: &str| {
        lock_change(CardLockOp::Acquire {
            card_digest: c.digest_bytes(),
            kiosk_id: kiosk.into(),
        })
    };
    let release = lock_change(CardLockOp::Release {
        card_digest: c.digest_bytes(),
    });
    let got = env.store.apply(fence, one, acquire("K-1")).await;
    assert_eq!(got.expect("apply").lock, Some(LockOutcome::Acquired));
    let got = env.store.apply(fence, two, release.clone()).await;
    assert_eq!(got.expect("apply").lock, Some(LockOutcome::NotHeld));
    // Another kiosk cannot take a held card, and the refused change writes nothing.
    let mut refused = acquire("K-2");
    refused.allocate_serial = true;
    refused.snapshot = SnapshotOp::Put(b"refused".to_vec());
    let got = env.store.apply(fence, two, refused).await;
    assert_eq!(
        got.expect("apply"),
        Applied {
            serial: None,
            lock: Some(LockOutcome::InUse),
            audit: None
        }
    );
    let snap = env.store.load_snapshot(fence, two).await.expect("load");
    assert_eq!(snap, None, "a refused change leaves no snapshot");
    // The same kiosk may (its shard host closed the older session first).
    let got = env.store.apply(fence, two, acquire("K-1")).await;
    assert_eq!(got.expect("apply").lock, Some(LockOutcome::Acquired));
    // The first session lost the lock to the second: its release leaves it alone.
    let got = env.store.apply(fence, one, release.clone()).await;
    assert_eq!(got.expect("apply").lock, Some(LockOutcome::NotHeld));
    let key = format!("kofu:{{s8}}:lock:{}", c.digest());
    let held: Option<String> = raw(&env.raw, redis::cmd("GET").arg(&key)).await;
    assert_eq!(held, Some(format!("{two}|K-1")));
    let got = env.store.apply(fence, two, release.clone()).await;
    assert_eq!(got.expect("apply").lock, Some(LockOutcome::Released));
    let held: Option<String> = raw(&env.raw, redis::cmd("GET").arg(&key)).await;
    assert_eq!(held, None);
    let got = env.store.apply(fence, two, release).await;
    assert_eq!(got.expect("apply").lock, Some(LockOutcome::NotHeld));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serials_are_unique_and_increasing() {
    let env = env().await;
    let fence = env.leases.acquire(9, "a", LONG).await.expect("acquire");
    let fence = fence.expect("lease");
    let serial_change = Change {
        snapshot: SnapshotOp::Keep,
        card_lock: CardLockOp::None,
        allocate_serial: true,
        audit: None,
    };
    let mut last = 0;
    for n in 0..5 {
        let got = env
            .store
            .apply(fence, session(9, n), serial_change.clone())
            .await;
        let serial = got.expect("apply").serial.expect("serial");
        assert!(serial > last);
        last = serial;
    }
    let tasks: Vec<_> = (0..64u8)
        .map(|n| {
            let fut = env.store.apply(fence, session(9, n), serial_change.clone());
            tokio::spawn(fut)
        })
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        let applied = t.await.expect("task").expect("apply");
        assert!(seen.insert(applied.serial.expect("serial")));
    }
    assert_eq!(seen, (6..=69).collect::<HashSet<u64>>());
    let none = env
        .store
        .apply(fence, session(9, 1), Change::snapshot(vec![1]))
        .await;
    assert_eq!(none.expect("apply").serial, None);
}

#[tokio::test]
async fn snapshots_put_load_and_delete() {
    let env = env().await;
    let fence = env.leases.acquire(10, "a", LONG).await.expect("acquire");
    let fence = fence.expect("lease");
    let s = session(10, 1);
    assert_eq!(env.store.load_snapshot(fence, s).await, Ok(None));
    let bytes = vec![0u8, 255, 1, 2, b'|', b':'];
    let put = env
        .store
        .apply(fence, s, Change::snapshot(bytes.clone()))
        .await;
    assert_eq!(put, Ok(Applied::default()));
    assert_eq!(
        env.store.load_snapshot(fence, s).await,
        Ok(Some(bytes.clone()))
    );
    let keep = lock_change(CardLockOp::None);
    env.store.apply(fence, s, keep).await.expect("apply");
    assert_eq!(env.store.load_snapshot(fence, s).await, Ok(Some(bytes)));
    assert_eq!(
        env.store.load_snapshot(fence, session(10, 2)).await,
        Ok(None)
    );
    let delete = Change {
        snapshot: SnapshotOp::Delete,
        ..lock_change(CardLockOp::None)
    };
    env.store.apply(fence, s, delete).await.expect("apply");
    assert_eq!(env.store.load_snapshot(fence, s).await, Ok(None));
}
