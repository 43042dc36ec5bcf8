//! What a session leaves in the store (MessagePack): while open, the snapshot persisted at
//! every transition, so that a new owner can resume the session; once closed, a small
//! tombstone for a while, so that a repeated DELETE is answered `204` by whichever node
//! owns the shard by then. Document bytes are never part of it: they re-render
//! deterministically from each job's serial, issue time and record version. Neither
//! holds the card id, only its digest (I6).

use kofu_core::session::{JobPhase, Session as Machine};
use kofu_proto::{CardId, JobId, KioskId, SessionId};
use serde::{Deserialize, Serialize};

/// The format of an open session's snapshot.
pub const SNAPSHOT_V: u8 = 3;
/// The format of a tombstone: a value no snapshot carries, checked on decode.
const TOMBSTONE_V: u8 = 0x83;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub v: u8,
    pub session: SessionId,
    pub kiosk: KioskId,
    /// SHA-256 of the card id: the key of the card lock and of registry lookups.
    /// Byte strings, not arrays of 32 integers: smaller and cheaper to encode.
    #[serde(with = "serde_bytes")]
    pub card_digest: [u8; 32],
    /// The card's Ed25519 public key, for an authentication still pending at a takeover.
    #[serde(with = "serde_bytes")]
    pub card_key: [u8; 32],
    #[serde(with = "serde_bytes")]
    pub challenge: [u8; 32],
    /// The state machine with every job and its issuance metadata.
    pub machine: Machine,
    /// Unix milliseconds of the start, for the hard limit after a resume.
    pub started_ms: u64,
    /// How many changes of this session the store acknowledged or may have applied:
    /// one more with every change, so that after a change with an unknown outcome the
    /// session can tell from the stored snapshot whether it was applied.
    pub seq: u64,
}

/// A closed session, as the store keeps it for the tombstone TTL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub v: u8,
    pub session: SessionId,
    /// Only this kiosk's calls are answered from it; another kiosk's are `unknown_session`.
    pub kiosk: KioskId,
    /// Absent in tombstones written before it was kept.
    #[serde(default)]
    pub printed: Vec<PrintedJob>,
}

/// A job whose print the session confirmed: a `printed` repeated after its answer was
/// lost (a `503`, a dropped connection) gets the same answer even once the session is
/// over (API.md: repeating it returns the same answer), not `unknown_session` for a
/// print that was charged and audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintedJob {
    pub job: JobId,
    pub serial: String,
    pub charged_yen: u32,
}

/// The jobs of `machine` whose print was confirmed.
pub fn printed_jobs(machine: &Machine) -> Vec<PrintedJob> {
    machine
        .jobs
        .iter()
        .filter(|j| j.phase == JobPhase::Printed)
        .map(|j| PrintedJob {
            job: j.id,
            serial: j.meta.serial.clone().unwrap_or_default(),
            charged_yen: j.fee_yen(),
        })
        .collect()
}

/// The format before issue 10 (card id instead of its digest, no sequence number), read
/// so that sessions open across an upgrade go on; never written.
#[derive(Deserialize)]
struct SnapshotV2 {
    v: u8,
    session: SessionId,
    kiosk: KioskId,
    card: CardId,
    #[serde(with = "serde_bytes")]
    card_key: [u8; 32],
    #[serde(with = "serde_bytes")]
    challenge: [u8; 32],
    machine: Machine,
    started_ms: u64,
}

impl SnapshotV2 {
    fn upgrade(self) -> Snapshot {
        Snapshot {
            v: SNAPSHOT_V,
            session: self.session,
            kiosk: self.kiosk,
            card_digest: self.card.digest_bytes(),
            card_key: self.card_key,
            challenge: self.challenge,
            machine: self.machine,
            started_ms: self.started_ms,
            seq: 0,
        }
    }
}

/// What the store holds for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Open(Snapshot),
    Closed(Tombstone),
}

/// Stored bytes in neither format. It says nothing about the bytes: what they hold is
/// never logged (I6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undecodable;

impl Snapshot {
    pub fn encode(&self) -> Vec<u8> {
        // Plain data with no maps keyed by non-strings: encoding cannot fail.
        rmp_serde::to_vec(self).unwrap_or_default()
    }
}

impl Tombstone {
    /// The tombstone of `session`, closed as `machine` says.
    pub fn new(session: SessionId, kiosk: KioskId, machine: &Machine) -> Tombstone {
        Tombstone {
            v: TOMBSTONE_V,
            session,
            kiosk,
            printed: printed_jobs(machine),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).unwrap_or_default()
    }
}

impl Stored {
    /// Decodes what the store holds for `session`; bytes of another session, or of an
    /// unknown format, do not decode.
    pub fn decode(bytes: &[u8], session: SessionId) -> Result<Stored, Undecodable> {
        let stored = match rmp_serde::from_slice::<Snapshot>(bytes) {
            Ok(snap) if snap.v == SNAPSHOT_V => Stored::Open(snap),
            Ok(_) => return Err(Undecodable),
            Err(_) => match rmp_serde::from_slice::<Tombstone>(bytes) {
                Ok(t) if t.v == TOMBSTONE_V => Stored::Closed(t),
                _ => match rmp_serde::from_slice::<SnapshotV2>(bytes) {
                    Ok(old) if old.v == 2 => Stored::Open(old.upgrade()),
                    _ => return Err(Undecodable),
                },
            },
        };
        let id = match &stored {
            Stored::Open(s) => s.session,
            Stored::Closed(t) => t.session,
        };
        if id == session {
            Ok(stored)
        } else {
            Err(Undecodable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kofu_core::session::{Command, JobMeta};
    use kofu_proto::{CertKind, JobId};

    fn snapshot() -> Snapshot {
        let mut machine = Machine::new();
        machine.apply(Command::Authenticate { valid: true });
        machine.apply(Command::CreateJob {
            id: JobId::new(0, [1; 8]),
            kind: CertKind::Seal,
            copies: 2,
            issuable: Ok(()),
        });
        machine.jobs[0].meta = JobMeta {
            created_ms: 1_700_000_000_500,
            serial: Some("0012-1-00000001".into()),
            issued_at: None,
            record_version: 4,
        };
        Snapshot {
            v: SNAPSHOT_V,
            session: SessionId::new(12, [9; 16]),
            kiosk: KioskId::parse("SEJ-13104-0042-01").expect("kiosk"),
            card_digest: CardId::parse("0123456789ABCDEF")
                .expect("card")
                .digest_bytes(),
            card_key: [5; 32],
            challenge: [3; 32],
            machine,
            started_ms: 1_700_000_000_000,
            seq: 3,
        }
    }

    #[test]
    fn round_trips_through_messagepack() {
        let snap = snapshot();
        let bytes = snap.encode();
        assert!(
            bytes.len() < 300,
            "snapshots stay small: {} bytes",
            bytes.len()
        );
        assert_eq!(
            Stored::decode(&bytes, snap.session),
            Ok(Stored::Open(snap.clone()))
        );
        assert_eq!(
            Stored::decode(&bytes[..bytes.len() / 2], snap.session),
            Err(Undecodable)
        );
        // Another session's bytes are not this session's state.
        assert_eq!(
            Stored::decode(&bytes, SessionId::new(12, [8; 16])),
            Err(Undecodable)
        );
    }

    #[test]
    fn a_tombstone_is_small_and_tells_itself_apart() {
        let snap = snapshot();
        let t = Tombstone::new(snap.session, snap.kiosk.clone(), &Machine::new());
        let bytes = t.encode();
        assert!(
            bytes.len() < 64,
            "tombstones are small: {} bytes",
            bytes.len()
        );
        assert_eq!(Stored::decode(&bytes, snap.session), Ok(Stored::Closed(t)));
    }

    /// A tombstone keeps the confirmed prints (and only those) with their answer.
    #[test]
    fn a_tombstone_keeps_what_its_confirmed_prints_were_answered() {
        let snap = snapshot();
        let mut machine = snap.machine.clone();
        machine.jobs[0].phase = JobPhase::Printed;
        machine.apply(Command::CreateJob {
            id: JobId::new(0, [2; 8]),
            kind: CertKind::Residence,
            copies: 1,
            issuable: Ok(()),
        });
        let t = Tombstone::new(snap.session, snap.kiosk.clone(), &machine);
        assert_eq!(
            t.printed,
            vec![PrintedJob {
                job: JobId::new(0, [1; 8]),
                serial: "0012-1-00000001".into(),
                charged_yen: CertKind::Seal.fee_yen() * 2,
            }]
        );
        assert_eq!(
            Stored::decode(&t.encode(), snap.session),
            Ok(Stored::Closed(t))
        );
    }

    /// A tombstone written before confirmed prints were kept still reads, with none.
    #[test]
    fn a_tombstone_without_prints_reads_as_one_with_none() {
        #[derive(Serialize)]
        struct Before<'a> {
            v: u8,
            session: SessionId,
            kiosk: &'a KioskId,
        }
        let snap = snapshot();
        let old = Before {
            v: TOMBSTONE_V,
            session: snap.session,
            kiosk: &snap.kiosk,
        };
        let bytes = rmp_serde::to_vec(&old).expect("encode");
        let t = Tombstone::new(snap.session, snap.kiosk.clone(), &Machine::new());
        assert_eq!(Stored::decode(&bytes, snap.session), Ok(Stored::Closed(t)));
    }

    /// A session snapshotted by a node of the previous version goes on after an upgrade.
    #[test]
    fn a_version_2_snapshot_is_read_as_this_one() {
        #[derive(Serialize)]
        struct V2<'a> {
            v: u8,
            session: SessionId,
            kiosk: &'a KioskId,
            card: CardId,
            #[serde(with = "serde_bytes")]
            card_key: [u8; 32],
            #[serde(with = "serde_bytes")]
            challenge: [u8; 32],
            machine: &'a Machine,
            started_ms: u64,
        }
        let snap = snapshot();
        let card = CardId::parse("0123456789ABCDEF").expect("card");
        let old = rmp_serde::to_vec(&V2 {
            v: 2,
            session: snap.session,
            kiosk: &snap.kiosk,
            card,
            card_key: snap.card_key,
            challenge: snap.challenge,
            machine: &snap.machine,
            started_ms: snap.started_ms,
        })
        .expect("encode");
        assert_eq!(
            Stored::decode(&old, snap.session),
            Ok(Stored::Open(Snapshot { seq: 0, ..snap }))
        );
    }

    #[test]
    fn the_card_id_is_never_stored() {
        let bytes = snapshot().encode();
        let id = b"0123456789ABCDEF";
        assert!(!bytes.windows(id.len()).any(|w| w == id));
    }
}
