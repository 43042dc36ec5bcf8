//! The audit streams read back for an auditor (`AuditStreams`): every shard's stream
//! merged in id order a page at a time, periods half-open, and trimming (at once, or
//! by the retention) that removes what an export handed over and never an entry it did
//! not.

use kofu_coord::conformance::fixtures::audit;
use kofu_coord::redis::{AuditEntry, AuditStreams};
use kofu_coord::{CardLockOp, SnapshotOp};

use super::*;

/// Applies one confirmed print of job `job` in a session of `shard`.
async fn print(env: &Env, fence: Fence, n: u8, job: &str) {
    print_to(&env.store, fence, n, job).await;
}

async fn print_to(store: &RedisStore, fence: Fence, n: u8, job: &str) {
    let sid = session(fence.shard, n);
    let change = Change {
        snapshot: SnapshotOp::Keep,
        card_lock: CardLockOp::None,
        allocate_serial: false,
        audit: Some(audit(&sid, job, &card(1))),
    };
    store.apply(fence, sid, change).await.expect("apply");
}

/// Redis's clock in ms.
async fn redis_ms(env: &Env) -> u64 {
    let (secs, micros): (u64, u64) = raw(&env.raw, &mut redis::cmd("TIME")).await;
    secs * 1000 + micros / 1000
}

/// A millisecond after every entry written so far.
async fn boundary(env: &Env) -> u64 {
    let t = redis_ms(env).await + 1;
    while redis_ms(env).await <= t {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    t
}

async fn streams(env: &Env) -> AuditStreams {
    RedisRegistry::new(env.raw.clone(), SHARDS)
        .check_shard_count()
        .await
        .expect("shard count");
    AuditStreams::open(env.raw.clone()).await.expect("open")
}

async fn export_all(
    s: &AuditStreams,
    since: u64,
    until: u64,
) -> (Vec<AuditEntry>, kofu_coord::redis::Exported) {
    let mut out = Vec::new();
    let exported = s
        .export(since, until, |e| {
            out.push(e.clone());
            Ok::<(), StoreError>(())
        })
        .await
        .expect("export");
    (out, exported)
}

async fn xlen(env: &Env, shard: u32) -> u64 {
    raw(
        &env.raw,
        redis::cmd("XLEN").arg(format!("kofu:{{s{shard}}}:audit")),
    )
    .await
}

#[tokio::test]
async fn streams_merge_in_id_order_across_pages() {
    let env = env().await;
    let s = streams(&env).await;
    assert_eq!(s.shard_count(), SHARDS);
    let fences: Vec<Fence> =
        futures::future::join_all((0..4).map(|shard| env.lease(shard, LONG))).await;
    // More than a page in two streams, interleaved with two small ones.
    let mut written: Vec<(u32, String)> = Vec::new();
    for i in 0..300u32 {
        let shard = match i % 10 {
            0 => 2,
            1 => 3,
            n if n % 2 == 0 => 0,
            _ => 1,
        };
        let job = format!("j{i}");
        print(&env, fences[shard as usize], (i % 200) as u8, &job).await;
        written.push((shard, job));
    }
    let (out, exported) = export_all(&s, 0, u64::MAX).await;
    assert_eq!(exported.records, 300);
    assert_eq!(out.len(), 300);
    for pair in out.windows(2) {
        assert!(
            (pair[0].id, pair[0].shard) < (pair[1].id, pair[1].shard),
            "not in id order"
        );
    }
    // Each stream's entries in the order written, and nothing lost or added.
    for shard in 0..4 {
        let want: Vec<&str> = written
            .iter()
            .filter(|(s, _)| *s == shard)
            .map(|(_, j)| j.as_str())
            .collect();
        let got: Vec<&str> = out
            .iter()
            .filter(|e| e.shard == shard)
            .map(|e| e.record.job_id.as_str())
            .collect();
        assert_eq!(got, want, "shard {shard}");
    }
    // The record comes back as it was written (card as digest only).
    assert_eq!(out[0].record.card_digest, card(1).digest());
    assert_eq!(out[0].record.printed_at, "2026-11-21T09:00:00Z");
    // An empty period, and one ending before it starts.
    assert!(export_all(&s, 0, 0).await.0.is_empty());
    assert!(export_all(&s, 5, 4).await.0.is_empty());
}

#[tokio::test]
async fn trim_removes_what_was_exported_and_nothing_older() {
    let env = env().await;
    let s = streams(&env).await;
    let f1 = env.lease(1, LONG).await;
    let f2 = env.lease(2, LONG).await;
    print(&env, f1, 1, "before").await;
    let t = boundary(&env).await;
    print(&env, f1, 2, "after-1").await;
    print(&env, f2, 3, "after-2").await;

    // Half-open periods on the entries' ids.
    let (before, _) = export_all(&s, 0, t).await;
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].record.job_id, "before");

    let (after, exported) = export_all(&s, t, u64::MAX).await;
    let jobs: Vec<&str> = after.iter().map(|e| e.record.job_id.as_str()).collect();
    assert_eq!(jobs.len(), 2);
    assert!(jobs.contains(&"after-1") && jobs.contains(&"after-2"));
    // Written after the export: never trimmed by it.
    print(&env, f2, 4, "later").await;
    let trimmed = s.trim(&exported, t).await.expect("trim");
    // Shard 1 holds an entry before the export's start: left whole.
    assert_eq!(trimmed.streams_kept, 1);
    assert_eq!(trimmed.entries, 1);
    assert_eq!(xlen(&env, 1).await, 2);
    assert_eq!(xlen(&env, 2).await, 1);
    let (left, _) = export_all(&s, 0, u64::MAX).await;
    let jobs: Vec<&str> = left.iter().map(|e| e.record.job_id.as_str()).collect();
    assert_eq!(jobs, ["before", "after-1", "later"]);

    // From the start: everything exported is trimmed, everywhere.
    let (_, exported) = export_all(&s, 0, u64::MAX).await;
    let trimmed = s.trim(&exported, 0).await.expect("trim");
    assert_eq!(trimmed.entries, 3);
    assert_eq!(trimmed.streams_kept, 0);
    assert_eq!(xlen(&env, 1).await + xlen(&env, 2).await, 0);
}

/// The retention removes a print only once an export handed it over: with a retention
/// of a millisecond, prints no export handed over all stay (before the export and after
/// it); the exported ones go.
#[tokio::test]
async fn the_retention_trims_only_what_an_export_handed_over() {
    let env = env().await;
    let s = streams(&env).await;
    let store = RedisStore::new(env.raw.clone(), "a", STATE_TTL)
        .with_audit_retention(Duration::from_millis(1));
    let fence = env.lease(1, LONG).await;
    // Several stream nodes (100 entries each: `MINID ~` cuts whole nodes), and one
    // print in 16 (by its millisecond) trims: 300 prints trim many times over.
    const N: u16 = 300;
    for i in 0..N {
        print_to(&store, fence, (i % 200) as u8, &format!("old-{i}")).await;
    }
    assert_eq!(
        xlen(&env, 1).await,
        u64::from(N),
        "unexported prints trimmed"
    );

    let (_, exported) = export_all(&s, 0, u64::MAX).await;
    assert_eq!(exported.records, u64::from(N));
    let marked = s.mark(&exported, 0).await.expect("mark");
    assert_eq!(marked, kofu_coord::redis::Trimmed::default());
    for i in 0..N {
        print_to(&store, fence, (i % 200) as u8, &format!("new-{i}")).await;
    }
    let (left, _) = export_all(&s, 0, u64::MAX).await;
    let new = left
        .iter()
        .filter(|e| e.record.job_id.starts_with("new-"))
        .count();
    assert_eq!(new, usize::from(N), "prints after the export trimmed");
    let old = left.len() - new;
    assert!(
        old < usize::from(N),
        "exported prints never trimmed ({old} left)"
    );
}

#[tokio::test]
async fn a_redis_without_a_registry_is_refused() {
    let env = env().await;
    assert!(AuditStreams::open(env.raw.clone()).await.is_err());
}
