//! The traits and value types shared by every coordinator implementation.

use std::sync::Arc;

use futures::future::BoxFuture;
use kofu_core::records::{Date, ResidentRecord};
use kofu_proto::{CardId, CertKind, SessionId};
use serde::{Deserialize, Serialize};

/// The right to write for a shard: its number and the epoch of the lease held. Every
/// side effect carries one; the store refuses it once a newer epoch exists (I2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fence {
    pub shard: u32,
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The fence is stale: another owner holds the shard now. Never retry with it.
    #[error("fenced: epoch {held} of shard {shard} is no longer current")]
    Fenced { shard: u32, held: u64 },
    /// The store cannot be reached or answered with an error: safety unknown (I7).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored bytes do not decode.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotOp {
    Keep,
    Put(Vec<u8>),
    Delete,
}

/// Card locks are keyed by the card's SHA-256 digest, never by the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardLockOp {
    None,
    /// Take the lock for this session (overwriting a lock of the same kiosk, which the
    /// shard host has closed already).
    Acquire {
        card_digest: [u8; 32],
        kiosk_id: String,
    },
    /// Drop the lock only if this session still holds it.
    Release {
        card_digest: [u8; 32],
    },
}

/// One confirmed print: the charge and the audit entry are the same record (I5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub session_id: String,
    pub job_id: String,
    pub serial: String,
    pub kiosk_id: String,
    pub card_digest: String,
    pub kind: CertKind,
    pub copies: u8,
    pub charged_yen: u32,
    pub record_version: u64,
    pub printed_at: String,
}

/// One state change of one session: everything it writes, applied atomically with a
/// single fence check (one Redis script per state change in the cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub snapshot: SnapshotOp,
    pub card_lock: CardLockOp,
    pub allocate_serial: bool,
    pub audit: Option<AuditRecord>,
}

impl Change {
    pub fn snapshot(bytes: Vec<u8>) -> Change {
        Change {
            snapshot: SnapshotOp::Put(bytes),
            card_lock: CardLockOp::None,
            allocate_serial: false,
            audit: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockOutcome {
    Acquired,
    Released,
    /// Release of a lock that another session holds now: left alone.
    NotHeld,
    /// Acquire of a card that a session of another kiosk holds: the whole change was
    /// refused and nothing was written (the shard host's table may not know that session
    /// yet after a takeover).
    InUse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    Recorded,
    /// This (session, job) was recorded before: nothing written, nothing charged.
    Duplicate,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub serial: Option<u64>,
    pub lock: Option<LockOutcome>,
    pub audit: Option<AuditOutcome>,
}

/// Where every session side effect goes. Implementations check the fence first and
/// apply a `Change` all-or-nothing.
pub trait FencedStore: Send + Sync + 'static {
    fn apply(
        &self,
        fence: Fence,
        session: SessionId,
        change: Change,
    ) -> BoxFuture<'static, Result<Applied, StoreError>>;

    fn load_snapshot(
        &self,
        fence: Fence,
        session: SessionId,
    ) -> BoxFuture<'static, Result<Option<Vec<u8>>, StoreError>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    Revoked { record_version: u64 },
    AlreadyRevoked { record_version: u64 },
    NotRegistered,
    UnknownCard,
}

/// The authoritative records (I4): read at session start, job creation and release.
pub trait Registry: Send + Sync + 'static {
    fn record(
        &self,
        card: &CardId,
    ) -> BoxFuture<'static, Result<Option<Arc<ResidentRecord>>, StoreError>>;

    /// Once this resolves `Ok`, every later `record` call sees the revocation.
    fn revoke_seal(
        &self,
        card: &CardId,
        on: Date,
    ) -> BoxFuture<'static, Result<RevokeOutcome, StoreError>>;

    /// A moving-in notification; returns the new record version, `None` for unknown cards.
    fn update_address(
        &self,
        card: &CardId,
        address: String,
    ) -> BoxFuture<'static, Result<Option<u64>, StoreError>>;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    pub node_id: String,
    /// Where other nodes forward requests for this node's shards (empty when embedded).
    pub internal_addr: String,
}

/// What a node does with a shard it is about to give up: stop admitting to it, let
/// in-flight transitions finish and detach its sessions. The lease is released only
/// once the returned future completes (or its deadline passes).
pub type HandoffHook = Arc<dyn Fn(Fence) -> BoxFuture<'static, ()> + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardLease {
    pub shard: u32,
    pub owner: String,
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    pub node_id: String,
    pub mode: &'static str,
    pub shard_count: u32,
    pub nodes: Vec<NodeInfo>,
    pub shards: Vec<ShardLease>,
}

/// Shard ownership as this node sees it.
pub trait Coordinator: Send + Sync + 'static {
    fn node_id(&self) -> &str;
    fn shard_count(&self) -> u32;
    /// The leases this node holds now.
    fn local_leases(&self) -> Vec<Fence>;
    fn view(&self) -> ClusterView;
    /// Whether this node may still act for `fence` right now (checked per request, so a
    /// node that could not renew stops serving before its lease can expire).
    fn holds(&self, fence: Fence) -> bool;
    /// The live member holding `shard`'s lease as last observed, if it is another node.
    fn owner_of(&self, shard: u32) -> Option<NodeInfo>;
    /// Asks for a fresh look at the cluster soon (a peer said a shard moved).
    fn refresh(&self);
}
