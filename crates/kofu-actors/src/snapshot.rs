//! The session snapshot persisted (MessagePack) at every transition, so that a new
//! owner can resume a session. Document bytes are never part of it: they re-render
//! deterministically from each job's serial, issue time and record version.

use kofu_core::session::Session as Machine;
use kofu_proto::{CardId, KioskId, SessionId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub v: u8,
    pub session: SessionId,
    pub kiosk: KioskId,
    pub card: CardId,
    /// The card's Ed25519 public key, for an authentication still pending at a takeover.
    /// Byte strings, not arrays of 32 integers: smaller and cheaper to encode.
    #[serde(with = "serde_bytes")]
    pub card_key: [u8; 32],
    #[serde(with = "serde_bytes")]
    pub challenge: [u8; 32],
    /// The state machine with every job and its issuance metadata.
    pub machine: Machine,
    /// Unix milliseconds of the start, for the hard limit after a resume.
    pub started_ms: u64,
}

impl Snapshot {
    pub fn encode(&self) -> Vec<u8> {
        // Plain data with no maps keyed by non-strings: encoding cannot fail.
        rmp_serde::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Snapshot, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kofu_core::session::{Command, JobMeta};
    use kofu_proto::{CertKind, JobId};

    #[test]
    fn round_trips_through_messagepack() {
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
        let snap = Snapshot {
            v: 2,
            session: SessionId::new(12, [9; 16]),
            kiosk: KioskId::parse("SEJ-13104-0042-01").expect("kiosk"),
            card: CardId::parse("0123456789ABCDEF").expect("card"),
            card_key: [5; 32],
            challenge: [3; 32],
            machine,
            started_ms: 1_700_000_000_000,
        };
        let bytes = snap.encode();
        assert!(
            bytes.len() < 256,
            "snapshots stay small: {} bytes",
            bytes.len()
        );
        assert_eq!(Snapshot::decode(&bytes).expect("decodes"), snap);
        assert!(Snapshot::decode(&bytes[..bytes.len() / 2]).is_err());
    }
}
