//! The session snapshot persisted (MessagePack) at every transition, so that a new
//! owner can resume a session. Document bytes are never part of it: they re-render
//! deterministically from (record version, serial, issued_at).

use kofu_core::session::Session as Machine;
use kofu_proto::{CardId, KioskId, SessionId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMeta {
    pub serial: Option<String>,
    pub issued_at: Option<String>,
    pub record_version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub v: u8,
    pub session: SessionId,
    pub kiosk: KioskId,
    pub card: CardId,
    pub challenge: [u8; 32],
    pub machine: Machine,
    pub jobs: Vec<JobMeta>,
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
