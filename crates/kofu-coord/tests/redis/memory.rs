//! What Redis keeps for the sessions it served: nothing but each print's audit entry
//! once a session ended (its index entry, audited set and tombstone go), index entries
//! of expired snapshots are pruned, the audit stream keeps prints for the retention and
//! superseded record versions for the history TTL. Redis memory then follows the
//! sessions open plus a bounded audit window, not every session ever served.

use kofu_coord::conformance::fixtures::{audit, nothing};
use kofu_coord::{AuditRecord, SessionCursor, SnapshotOp};
use tokio::time::{Instant, sleep};

use super::*;

async fn lease(env: &Env, shard: u32) -> Fence {
    let fence = env.leases.acquire(shard, "a", LONG).await.expect("acquire");
    fence.expect("a free shard")
}

fn printed(s: &SessionId, job: &str, c: &CardId) -> AuditRecord {
    AuditRecord {
        serial: format!("S-{s}-{job}"),
        ..audit(s, job, c)
    }
}

#[tokio::test]
async fn index_entries_expire_with_their_snapshots() {
    let env = env().await;
    let ttl = Duration::from_millis(1_500);
    let store = RedisStore::new(env.raw.clone(), "a", ttl);
    let fence = lease(&env, 2).await;
    let (old, new) = (session(2, 1), session(2, 2));
    store
        .apply(fence, old, Change::snapshot(vec![1]))
        .await
        .expect("apply");
    let listed = store
        .list_sessions(fence, SessionCursor::default(), 100)
        .await;
    assert_eq!(listed.expect("list").sessions, vec![old]);
    wait_for("the snapshot expires", async || {
        let snap: Option<Vec<u8>> = raw(
            &env.raw,
            redis::cmd("GET").arg(format!("kofu:{{s2}}:snap:{old}")),
        )
        .await;
        snap.is_none()
    })
    .await;
    // Listed no more, and the listing pruned its index entry (puts do not).
    let listed = store
        .list_sessions(fence, SessionCursor::default(), 100)
        .await;
    assert_eq!(listed.expect("list").sessions, vec![]);
    let members = |env: &Env| {
        let raw_conn = env.raw.clone();
        async move {
            let members: Vec<String> = raw(
                &raw_conn,
                redis::cmd("ZRANGE")
                    .arg("kofu:{s2}:sessions")
                    .arg(0)
                    .arg(-1),
            )
            .await;
            members
        }
    };
    assert_eq!(
        members(&env).await,
        Vec::<String>::new(),
        "the listing pruned the expired entry"
    );
    store
        .apply(fence, new, Change::snapshot(vec![2]))
        .await
        .expect("apply");
    store
        .apply(fence, new, Change::snapshot(vec![3]))
        .await
        .expect("apply");
    assert_eq!(members(&env).await, vec![new.to_string()]);
}

/// `MINID ~` trims whole stream nodes: with small nodes, old exported prints go at one of
/// the next prints once the retention has passed (about one print in 16 trims), and the
/// newest stay.
#[tokio::test]
async fn the_audit_stream_keeps_prints_for_the_retention() {
    let env = env().await;
    let _: () = raw(
        &env.raw,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("stream-node-max-entries")
            .arg(4),
    )
    .await;
    let retention = Duration::from_millis(1_000);
    let store = RedisStore::new(env.raw.clone(), "a", STATE_TTL).with_audit_retention(retention);
    let fence = lease(&env, 5).await;
    let c = card(3);
    let print = |s: SessionId, job: String| Change {
        audit: Some(printed(&s, &job, &c)),
        ..nothing()
    };
    for n in 0..10u8 {
        let s = session(5, n);
        let applied = store.apply(fence, s, print(s, "j1".into())).await;
        assert!(applied.expect("apply").audit.is_some());
    }
    let len: u64 = raw(&env.raw, redis::cmd("XLEN").arg("kofu:{s5}:audit")).await;
    assert_eq!(len, 10, "nothing is trimmed within the retention");
    // An export handed the first eight over (two whole nodes; the mark of
    // `AuditStreams::mark`: the first id after the last one exported). Only exported
    // prints are ever trimmed: the other two stay, and so does every later print.
    let first: Vec<(String, Vec<String>)> = raw(
        &env.raw,
        redis::cmd("XRANGE")
            .arg("kofu:{s5}:audit")
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(8),
    )
    .await;
    let (ms, seq) = first[7].0.split_once('-').expect("entry id");
    let next = format!("{ms}-{}", seq.parse::<u64>().expect("seq") + 1);
    let _: () = raw(
        &env.raw,
        redis::cmd("SET").arg("kofu:{s5}:audit:exported").arg(next),
    )
    .await;
    let s = session(5, 100);
    let mut job = 0u32;
    let xlen = async || -> u64 { raw(&env.raw, redis::cmd("XLEN").arg("kofu:{s5}:audit")).await };
    let deadline = Instant::now() + WITHIN;
    // A print now and then, until one of them trimmed the exported prints.
    while xlen().await > u64::from(job) + 2 {
        assert!(
            Instant::now() < deadline,
            "exported prints older than the retention stay"
        );
        job += 1;
        let applied = store.apply(fence, s, print(s, format!("late{job}"))).await;
        assert!(applied.expect("apply").audit.is_some());
        sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        xlen().await,
        u64::from(job) + 2,
        "unexported prints trimmed after {job} late prints"
    );
}

#[tokio::test]
async fn superseded_record_versions_expire_after_the_history_ttl() {
    let env = env().await;
    let records = population();
    let ttl = Duration::from_millis(1_500);
    let registry = RedisRegistry::new(env.raw.clone(), SHARDS).with_history_ttl(ttl);
    registry.load(records.clone()).await.expect("load");
    let r = &records[0];
    let digest = r.card_id.digest_bytes();
    let moved = registry.update_address(&r.card_id, "x".into()).await;
    assert_eq!(moved, Ok(Some(r.version + 1)));
    let shard = kofu_proto::shard_of(&r.card_id, SHARDS);
    let key = format!("kofu:{{s{shard}}}:rec:{}@{}", r.card_id.digest(), r.version);
    let pttl: i64 = raw(&env.raw, redis::cmd("PTTL").arg(&key)).await;
    assert!(pttl > 0 && pttl <= 1_500, "pttl {pttl}");
    let kept = registry.record_at(digest, r.version).await.expect("read");
    assert_eq!(kept.as_deref(), Some(r));
    wait_for("the superseded version expires", async || {
        registry.record_at(digest, r.version).await == Ok(None)
    })
    .await;
    let current = registry
        .record_at(digest, r.version + 1)
        .await
        .expect("read");
    assert_eq!(current.map(|c| c.version), Some(r.version + 1));
}

/// Serves sessions as the actors do (open with a card lock, a print, a close that
/// leaves a short tombstone) and measures what is left once the tombstones expired:
/// only the shard's counters and one audit stream entry per print. Prints the bytes per
/// served session (README, "Redis memory").
#[tokio::test]
async fn a_served_session_leaves_only_its_audit_entry() {
    const SESSIONS: u8 = 200;
    let env = env().await;
    let fence = lease(&env, 9).await;
    let c = card(8);
    let tombstone_ttl = Duration::from_millis(1_000);
    let mut open_bytes = 0u64;
    for n in 0..SESSIONS {
        let s = session(9, n);
        let open = Change {
            snapshot: SnapshotOp::Put(vec![0xA5; 300]),
            card_lock: kofu_coord::CardLockOp::Acquire {
                card_digest: c.digest_bytes(),
                kiosk_id: "SEJ-1".into(),
            },
            allocate_serial: true,
            audit: None,
        };
        env.store.apply(fence, s, open).await.expect("open");
        let print = Change {
            audit: Some(printed(&s, "j1", &c)),
            ..Change::snapshot(vec![0xA5; 400])
        };
        env.store.apply(fence, s, print).await.expect("print");
        if n == 0 {
            // One open session's keys, for the README's bound per open session.
            for key in [
                format!("kofu:{{s9}}:snap:{s}"),
                format!("kofu:{{s9}}:audited:{s}"),
                format!("kofu:{{s9}}:lock:{}", c.digest()),
            ] {
                let used: Option<u64> =
                    raw(&env.raw, redis::cmd("MEMORY").arg("USAGE").arg(&key)).await;
                open_bytes += used.expect("key exists");
            }
        }
        let close = Change {
            snapshot: SnapshotOp::Tombstone {
                bytes: vec![0x5A; 120],
                ttl: tombstone_ttl,
            },
            card_lock: kofu_coord::CardLockOp::Release {
                card_digest: c.digest_bytes(),
            },
            ..nothing()
        };
        env.store.apply(fence, s, close).await.expect("close");
    }
    wait_for("the tombstones expire", async || {
        let snaps: Vec<String> = raw(&env.raw, redis::cmd("KEYS").arg("*snap*")).await;
        snaps.is_empty()
    })
    .await;
    let mut keys: Vec<String> = raw(&env.raw, redis::cmd("KEYS").arg("*")).await;
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "kofu:{s9}:audit",
            "kofu:{s9}:epoch",
            "kofu:{s9}:lease",
            "kofu:{s9}:serial"
        ]
    );
    let stream: Option<u64> = raw(
        &env.raw,
        redis::cmd("MEMORY")
            .arg("USAGE")
            .arg("kofu:{s9}:audit")
            .arg("SAMPLES")
            .arg(0),
    )
    .await;
    let per_session = stream.expect("the stream exists") / u64::from(SESSIONS);
    println!(
        "redis memory: {per_session} bytes per served session (audit entry), \
         {open_bytes} bytes per open session (snapshot 400 B, audited set, card lock)"
    );
    assert!(per_session <= 400, "{per_session} bytes per served session");
}
