//! What is the embedded store's own: the audit file sink, which makes an acknowledged
//! print survive a crash of the process (I5). The rules every store keeps are checked by
//! the conformance suite (`tests/conformance`).

use super::*;
use kofu_proto::CertKind;

fn audit(session: &str, job: &str) -> AuditRecord {
    AuditRecord {
        session_id: session.into(),
        job_id: job.into(),
        serial: "S".into(),
        kiosk_id: "K01".into(),
        card_digest: "d".into(),
        kind: CertKind::Residence,
        copies: 1,
        charged_yen: 200,
        record_version: 1,
        printed_at: "2026-11-21T09:00:00Z".into(),
    }
}

fn print(session: &str, job: &str) -> Change {
    Change {
        snapshot: SnapshotOp::Keep,
        card_lock: CardLockOp::None,
        allocate_serial: false,
        audit: Some(audit(session, job)),
    }
}

#[test]
fn audit_file_holds_each_acknowledged_print_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let store = EmbeddedStore::new(2, 1, AuditSink::append_to(&path).expect("open audit file"));
    let f = Fence { shard: 1, epoch: 1 };
    let sid = SessionId::new(1, [1; 16]);
    for change in [print("a", "j"), print("a", "j"), print("a", "k")] {
        store.apply_now(f, sid, change).expect("ok");
    }
    // A stale owner's print reaches neither memory nor the file.
    store.bump_epoch(1);
    let stale = store.apply_now(f, sid, print("b", "j"));
    assert!(matches!(stale, Err(StoreError::Fenced { .. })));
    let text = std::fs::read_to_string(&path).expect("read");
    let back: Vec<AuditRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(back, vec![audit("a", "j"), audit("a", "k")]);
    // The file is the record: memory keeps none of it.
    assert!(store.audit_records().is_empty());
}

/// A crash in the middle of a record's write leaves a line without its newline; that
/// record was never acknowledged. Opened again, the file drops it, so the next record
/// starts a line of its own and every line reads back (an export of the file works).
#[test]
fn a_torn_last_line_is_cut_when_the_file_is_opened_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let mut text = serde_json::to_string(&audit("a", "j")).expect("json");
    text.push('\n');
    let torn = serde_json::to_string(&audit("a", "k")).expect("json");
    text.push_str(&torn[..torn.len() / 2]);
    std::fs::write(&path, text).expect("write");
    let store = EmbeddedStore::new(2, 1, AuditSink::append_to(&path).expect("open audit file"));
    let f = Fence { shard: 1, epoch: 1 };
    store
        .apply_now(f, SessionId::new(1, [1; 16]), print("b", "j"))
        .expect("ok");
    let back: Vec<AuditRecord> = std::fs::read_to_string(&path)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(back, vec![audit("a", "j"), audit("b", "j")]);
}

/// A write that failed leaves the file taking no more records (what reached the disk is
/// unknown): every later print fails too, instead of landing after a lost one.
#[test]
fn after_a_failed_write_the_audit_file_takes_no_more_records() {
    let sink = AuditSink::append_to(std::path::Path::new("/dev/full")).expect("open");
    let store = EmbeddedStore::new(2, 1, sink);
    let f = Fence { shard: 1, epoch: 1 };
    let sid = SessionId::new(1, [1; 16]);
    for job in ["j", "k"] {
        let r = store.apply_now(f, sid, print("a", job));
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    }
    let AuditSink::File(file) = &store.sink else {
        panic!("a file sink");
    };
    assert!(file.lock().is_none(), "the failed file still takes records");
}

/// The memory sink keeps only the latest records: a node without an audit file must
/// not grow with every print it ever confirmed.
#[test]
fn the_memory_sink_keeps_a_bounded_number_of_records() {
    let store = EmbeddedStore::new(1, 1, AuditSink::Memory);
    let f = Fence { shard: 0, epoch: 1 };
    for n in 0..(MEMORY_AUDIT_RECORDS + 10) {
        let sid = SessionId::new(0, [0; 16]);
        store
            .apply_now(f, sid, print("s", &format!("j{n}")))
            .expect("ok");
    }
    let kept = store.audit_records();
    assert_eq!(kept.len(), MEMORY_AUDIT_RECORDS);
    let last = format!("j{}", MEMORY_AUDIT_RECORDS + 9);
    assert_eq!(kept.last().map(|r| r.job_id.as_str()), Some(last.as_str()));
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Thousands of sessions served leave nothing behind once their tombstones expired:
/// no snapshot, no audit key, no listing (the node's memory follows the sessions open).
#[test]
fn served_sessions_leave_nothing_once_their_tombstones_expire() {
    let store = EmbeddedStore::new(2, 1, AuditSink::Memory);
    let f = Fence { shard: 1, epoch: 1 };
    let ttl = std::time::Duration::from_millis(300);
    for n in 0..5_000u32 {
        let mut random = [0u8; 16];
        random[..4].copy_from_slice(&n.to_be_bytes());
        let sid = SessionId::new(1, random);
        let job = format!("j{n}");
        let mut printed = print(&sid.to_string(), &job);
        printed.snapshot = SnapshotOp::Put(vec![1; 64]);
        store.apply_now(f, sid, printed).expect("print");
        let close = Change {
            snapshot: SnapshotOp::Tombstone {
                bytes: vec![2; 16],
                ttl,
            },
            card_lock: CardLockOp::None,
            allocate_serial: false,
            audit: None,
        };
        store.apply_now(f, sid, close).expect("close");
    }
    assert_eq!(
        store.audited_session_count(),
        0,
        "audit keys outlive their sessions"
    );
    let listed = store.list_sessions_now(f, &SessionCursor::default(), 10);
    assert_eq!(listed.expect("list").sessions, vec![]);
    // Expired entries go at the shard's next use.
    wait_until("the tombstones expire", || {
        let _ = store.list_sessions_now(f, &SessionCursor::default(), 1);
        store.snapshot_count() == 0
    });
}

#[test]
fn snapshots_expire_with_the_state_ttl() {
    let ttl = std::time::Duration::from_millis(300);
    let store = EmbeddedStore::new(1, 1, AuditSink::Memory).with_state_ttl(ttl);
    let f = Fence { shard: 0, epoch: 1 };
    let sid = SessionId::new(0, [7; 16]);
    let mut printed = print(&sid.to_string(), "j1");
    printed.snapshot = SnapshotOp::Put(vec![1]);
    store.apply_now(f, sid, printed).expect("print");
    let listed = store.list_sessions_now(f, &SessionCursor::default(), 10);
    assert_eq!(listed.expect("list").sessions, vec![sid]);
    assert_eq!(store.audited_session_count(), 1);
    wait_until("the snapshot expires", || {
        let _ = store.list_sessions_now(f, &SessionCursor::default(), 1);
        store.snapshot_count() == 0
    });
    assert_eq!(store.audited_session_count(), 0);
    let listed = store.list_sessions_now(f, &SessionCursor::default(), 10);
    assert_eq!(listed.expect("list").sessions, vec![]);
}
