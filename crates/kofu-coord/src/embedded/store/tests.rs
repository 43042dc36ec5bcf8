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
    assert_eq!(store.audit_records(), back);
}
