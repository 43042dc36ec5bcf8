//! The values the suite and the implementations' own tests build their changes from.

use kofu_core::records::{Date, ResidentRecord, Seal};
use kofu_core::{Population, PopulationSpec};
use kofu_proto::{CardId, CertKind, SessionId};

use crate::{AuditRecord, CardLockOp, Change, SnapshotOp};

/// Shards of the registry and the stores under test.
pub const SHARDS: u32 = 16;

/// The day revocations happen on.
pub const ON: Date = Date::ymd(2026, 11, 21);

pub fn session(shard: u32, n: u8) -> SessionId {
    SessionId::new(shard, [n; 16])
}

pub fn card(n: u8) -> CardId {
    CardId::parse(&format!("{n:02X}23456789ABCDEF")).expect("card id")
}

pub fn audit(session: &SessionId, job: &str, card: &CardId) -> AuditRecord {
    AuditRecord {
        session_id: session.to_string(),
        job_id: job.into(),
        serial: "S-1".into(),
        kiosk_id: "SEJ-1".into(),
        card_digest: card.digest(),
        kind: CertKind::Residence,
        copies: 1,
        charged_yen: 300,
        record_version: 1,
        printed_at: "2026-11-21T09:00:00Z".into(),
    }
}

/// A change that writes nothing at all.
pub fn nothing() -> Change {
    Change {
        snapshot: SnapshotOp::Keep,
        card_lock: CardLockOp::None,
        allocate_serial: false,
        audit: None,
    }
}

/// Everything a state change can write at once: snapshot `snap`, the card's lock for
/// kiosk `SEJ-1`, a serial and the audit record of job `j1`.
pub fn full_change(session: &SessionId, card: &CardId) -> Change {
    Change {
        snapshot: SnapshotOp::Put(b"snap".to_vec()),
        card_lock: CardLockOp::Acquire {
            card_digest: card.digest_bytes(),
            kiosk_id: "SEJ-1".into(),
        },
        allocate_serial: true,
        audit: Some(audit(session, "j1", card)),
    }
}

pub fn lock_change(op: CardLockOp) -> Change {
    Change {
        card_lock: op,
        ..nothing()
    }
}

pub fn acquire(card: &CardId, kiosk: &str) -> Change {
    lock_change(CardLockOp::Acquire {
        card_digest: card.digest_bytes(),
        kiosk_id: kiosk.into(),
    })
}

pub fn release(card: &CardId) -> Change {
    lock_change(CardLockOp::Release {
        card_digest: card.digest_bytes(),
    })
}

pub fn serial_only() -> Change {
    Change {
        allocate_serial: true,
        ..nothing()
    }
}

pub fn population() -> Vec<ResidentRecord> {
    Population::generate(&PopulationSpec {
        seed: 11,
        residents: 300,
        kiosks: 1,
    })
    .residents
}

pub fn pick(records: &[ResidentRecord], f: impl Fn(&Seal) -> bool) -> ResidentRecord {
    records
        .iter()
        .find(|r| f(&r.seal))
        .cloned()
        .expect("the population has such a resident")
}
