//! Leases and what is Redis's own in the fenced store: lease scripts and their TTLs, a
//! lapsed lease writing nothing (I2), and the keys a change writes. The store's rules
//! common to every implementation are in the conformance suite (`tests/conformance`).

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

/// Session 1 of shard 4 with card 1, after one full change (snapshot, card lock, audit)
/// was applied under a held lease.
async fn one_full_change(env: &Env) -> (Fence, SessionId, CardId) {
    let fence = env.lease(4, LONG).await;
    let (s, c) = (session(4, 1), card(1));
    env.store
        .apply(fence, s, full_change(&s, &c))
        .await
        .expect("apply");
    (fence, s, c)
}

/// The keys one change writes: the lock names its session and kiosk, snapshots and locks
/// expire with the state TTL, and the audit entry carries the card only as its digest.
#[tokio::test]
async fn a_change_writes_its_keys_with_ttls() {
    let env = env().await;
    let (_, s, c) = one_full_change(&env).await;
    let len: u64 = raw(&env.raw, redis::cmd("XLEN").arg("kofu:{s4}:audit")).await;
    assert_eq!(len, 1);
    let entries: redis::Value = raw(
        &env.raw,
        redis::cmd("XRANGE")
            .arg("kofu:{s4}:audit")
            .arg("-")
            .arg("+"),
    )
    .await;
    let text = format!("{entries:?}");
    assert!(text.contains(&c.digest()), "audit carries the card digest");
    let lock_key = format!("kofu:{{s4}}:lock:{}", c.digest());
    let lock: Option<String> = raw(&env.raw, redis::cmd("GET").arg(&lock_key)).await;
    assert_eq!(lock, Some(format!("{s}|SEJ-1")));
    for key in [format!("kofu:{{s4}}:snap:{s}"), lock_key] {
        let ttl: i64 = raw(&env.raw, redis::cmd("PTTL").arg(&key)).await;
        assert!(ttl > 0 && ttl <= 600_000, "ttl {ttl} of {key}");
    }
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

/// A stale `fence` lands nothing: a whole change for a session of its shard and card `c`
/// is refused and leaves no trace, and the session's snapshot is not read. Returns the
/// session.
async fn assert_fence_refused(env: &Env, fence: Fence, c: &CardId) -> SessionId {
    let s = session(fence.shard, 1);
    let res = env.store.apply(fence, s, full_change(&s, c)).await;
    assert_eq!(
        res,
        Err(StoreError::Fenced {
            shard: fence.shard,
            held: fence.epoch
        })
    );
    assert_nothing_written(env, fence.shard, &s, c, 0).await;
    let load = env.store.load_snapshot(fence, s).await;
    assert!(matches!(load, Err(StoreError::Fenced { .. })), "{load:?}");
    s
}

#[tokio::test]
async fn lapsed_lease_refuses_writes_before_anyone_takes_over() {
    let env = env().await;
    let fence = env.lease(6, SHORT).await;
    tokio::time::sleep(SHORT * 2).await;
    assert_eq!(env.leases.holder(6).await.expect("holder"), None);
    let s = assert_fence_refused(&env, fence, &card(3)).await;
    // A fence of a shard nobody ever leased is refused too.
    let never = Fence { shard: 7, epoch: 1 };
    let res = env.store.apply(never, s, Change::snapshot(vec![1])).await;
    assert!(matches!(res, Err(StoreError::Fenced { .. })));
}

/// Two owners with one epoch number (a Redis that lost its counter, a skewed clock's
/// floor): the fence is the whole `node:epoch`, so the other node's lease refuses this
/// node's writes and reads.
#[tokio::test]
async fn a_lease_of_another_node_with_the_same_epoch_refuses_the_fence() {
    let env = env().await;
    let fence = env.lease(3, LONG).await;
    let _: () = raw(
        &env.raw,
        redis::cmd("SET")
            .arg("kofu:{s3}:lease")
            .arg(format!("b:{}", fence.epoch))
            .arg("PX")
            .arg(30_000),
    )
    .await;
    assert_fence_refused(&env, fence, &card(2)).await;
}

/// Exactly-once charging keeps its keys only while the session lives: a close drops
/// them, so Redis holds no per-print state for the sessions it has served.
#[tokio::test]
async fn a_close_drops_the_sessions_audit_keys() {
    let env = env().await;
    let (fence, s, _) = one_full_change(&env).await;
    let keys: Vec<String> = raw(&env.raw, redis::cmd("KEYS").arg("*audited*")).await;
    assert_eq!(keys, vec![format!("kofu:{{s4}}:audited:{s}")]);
    // It expires on its own too, and not before the session's snapshot (whose expiry
    // every later put moves on, while only a print moves the set's).
    let ttl: i64 = raw(&env.raw, redis::cmd("PTTL").arg(&keys[0])).await;
    let snap_key = format!("kofu:{{s4}}:snap:{s}");
    let snap_ttl: i64 = raw(&env.raw, redis::cmd("PTTL").arg(&snap_key)).await;
    assert!(
        ttl > snap_ttl + 500_000 && ttl <= 1_200_000,
        "ttl {ttl}, snapshot's {snap_ttl}"
    );
    let close = Change {
        snapshot: kofu_coord::SnapshotOp::Delete,
        ..Change::snapshot(Vec::new())
    };
    env.store.apply(fence, s, close).await.expect("apply");
    let keys: Vec<String> = raw(&env.raw, redis::cmd("KEYS").arg("*audited*")).await;
    assert!(keys.is_empty(), "{keys:?}");
}

/// The commands Redis runs inside the scripts for one session as the actors write it
/// (open with the card lock, auth, job with a serial, render, deliver, print, close with
/// a tombstone), counted from `INFO commandstats`: each runs several times per session
/// on the cluster's one Redis, so each is there for a reason. No clock reads (`TIME`),
/// the index written once at the open and once at the close (never pruned per write),
/// and no expiry a `SET ... PX` already gives.
#[tokio::test]
async fn a_session_costs_few_redis_commands() {
    use kofu_coord::conformance::fixtures::audit;
    use kofu_coord::{CardLockOp, SnapshotOp};
    let env = env().await;
    let fence = env.lease(6, LONG).await;
    let (s, c) = (session(6, 1), card(2));
    let put = |n: u8| Change::snapshot(vec![n; 300]);
    let changes = [
        Change {
            card_lock: CardLockOp::Acquire {
                card_digest: c.digest_bytes(),
                kiosk_id: "SEJ-1".into(),
            },
            ..put(1)
        },
        put(2),
        Change {
            allocate_serial: true,
            ..put(3)
        },
        put(4),
        put(5),
        Change {
            audit: Some(audit(&s, "j1", &c)),
            ..put(6)
        },
        Change {
            snapshot: SnapshotOp::Tombstone {
                bytes: vec![7; 100],
                ttl: LONG,
            },
            card_lock: CardLockOp::Release {
                card_digest: c.digest_bytes(),
            },
            ..put(7)
        },
    ];
    let _: () = raw(&env.raw, redis::cmd("CONFIG").arg("RESETSTAT")).await;
    for change in changes {
        env.store.apply(fence, s, change).await.expect("apply");
    }
    let stats: String = raw(&env.raw, redis::cmd("INFO").arg("commandstats")).await;
    // Calls that ran (a first `EVALSHA` fails with `NOSCRIPT` and is sent again).
    let ran = |line: &str| -> u64 {
        let field = |name: &str| -> u64 {
            line.split(&format!("{name}="))
                .nth(1)
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        field("calls") - field("failed_calls")
    };
    let calls = |name: &str| -> u64 {
        let prefix = format!("cmdstat_{name}:");
        stats
            .lines()
            .find(|l| l.starts_with(&prefix))
            .map_or(0, ran)
    };
    let skip = ["evalsha", "config|resetstat", "info", "script|load"];
    let inside: u64 = stats
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter(|l| !skip.iter().any(|s| l.starts_with(&format!("{s}:"))))
        .map(ran)
        .sum();
    assert_eq!(calls("evalsha"), 7, "{stats}");
    assert_eq!(calls("time"), 0, "{stats}");
    assert_eq!(calls("zremrangebyscore"), 0, "{stats}");
    assert_eq!(calls("zadd") + calls("zrem"), 2, "{stats}");
    assert!(calls("pexpire") <= 1, "{stats}");
    // 7 fence checks, 7 writes of the session's state, lock take and drop (3), serial,
    // audit (3), the index (2), and at most one trim of the audit stream.
    assert!(inside <= 24, "{inside} commands in the scripts:\n{stats}");
    // The close took the session out of the index again.
    let listed: Vec<String> = raw(
        &env.raw,
        redis::cmd("ZRANGE")
            .arg("kofu:{s6}:sessions")
            .arg(0)
            .arg(-1),
    )
    .await;
    assert!(listed.is_empty(), "{listed:?}");
}
