//! The embedded store must refuse stale fences and keep locks and audits exact, since the
//! actors' safety arguments (I2, I5) rest on these rules.

use super::*;
use kofu_proto::CertKind;

fn sid(n: u8) -> SessionId {
    SessionId::new(3, [n; 16])
}

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

fn change() -> Change {
    Change {
        snapshot: SnapshotOp::Keep,
        card_lock: CardLockOp::None,
        allocate_serial: false,
        audit: None,
    }
}

#[test]
fn stale_fence_writes_nothing() {
    let store = EmbeddedStore::new(8, 5, AuditSink::Memory);
    let old = Fence { shard: 3, epoch: 5 };
    assert_eq!(store.bump_epoch(3), Some(6));
    let err = store
        .apply_now(
            old,
            sid(1),
            Change {
                audit: Some(audit("a", "j")),
                allocate_serial: true,
                snapshot: SnapshotOp::Put(vec![1]),
                ..change()
            },
        )
        .expect_err("stale epoch must be refused");
    assert_eq!(err, StoreError::Fenced { shard: 3, held: 5 });
    assert!(store.audit_records().is_empty());
    assert_eq!(store.snapshot_count(), 0);
}

#[test]
fn audit_is_idempotent_per_session_job() {
    let store = EmbeddedStore::new(8, 1, AuditSink::Memory);
    let f = Fence { shard: 3, epoch: 1 };
    let first = store.apply_now(
        f,
        sid(1),
        Change {
            audit: Some(audit("a", "j")),
            ..change()
        },
    );
    let again = store.apply_now(
        f,
        sid(1),
        Change {
            audit: Some(audit("a", "j")),
            ..change()
        },
    );
    assert_eq!(first.expect("ok").audit, Some(AuditOutcome::Recorded));
    assert_eq!(again.expect("ok").audit, Some(AuditOutcome::Duplicate));
    assert_eq!(store.audit_records().len(), 1);
}

#[test]
fn release_only_by_the_holder() {
    let store = EmbeddedStore::new(8, 1, AuditSink::Memory);
    let f = Fence { shard: 3, epoch: 1 };
    let acquire = |s| {
        store.apply_now(
            f,
            s,
            Change {
                card_lock: CardLockOp::Acquire {
                    card_digest: [7; 32],
                    kiosk_id: "K01".into(),
                },
                ..change()
            },
        )
    };
    let release = |s| {
        store.apply_now(
            f,
            s,
            Change {
                card_lock: CardLockOp::Release {
                    card_digest: [7; 32],
                },
                ..change()
            },
        )
    };
    acquire(sid(1)).expect("ok");
    acquire(sid(2)).expect("ok");
    // Another kiosk's acquire is refused and writes nothing, its serial included.
    let other = store.apply_now(
        f,
        sid(3),
        Change {
            card_lock: CardLockOp::Acquire {
                card_digest: [7; 32],
                kiosk_id: "K02".into(),
            },
            allocate_serial: true,
            ..change()
        },
    );
    assert_eq!(
        other.expect("ok"),
        Applied {
            serial: None,
            lock: Some(LockOutcome::InUse),
            audit: None
        }
    );
    assert_eq!(
        release(sid(1)).expect("ok").lock,
        Some(LockOutcome::NotHeld)
    );
    assert_eq!(
        release(sid(2)).expect("ok").lock,
        Some(LockOutcome::Released)
    );
}

#[test]
fn serials_are_unique_per_shard_and_audit_file_survives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let store = EmbeddedStore::new(2, 1, AuditSink::append_to(&path).expect("open audit file"));
    let f = Fence { shard: 1, epoch: 1 };
    let mut seen = std::collections::HashSet::new();
    for _ in 0..100 {
        let a = store
            .apply_now(
                f,
                sid(1),
                Change {
                    allocate_serial: true,
                    ..change()
                },
            )
            .expect("ok");
        assert!(seen.insert(a.serial.expect("serial")));
    }
    store
        .apply_now(
            f,
            sid(1),
            Change {
                audit: Some(audit("a", "j")),
                ..change()
            },
        )
        .expect("ok");
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text.lines().count(), 1);
    let back: AuditRecord = serde_json::from_str(text.trim()).expect("json line");
    assert_eq!(back, audit("a", "j"));
}
