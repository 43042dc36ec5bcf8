//! The traits and value types shared by every coordinator implementation.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use kofu_core::records::{Date, ResidentRecord};
use kofu_proto::{CardId, CertKind, SessionId};
use serde::{Deserialize, Serialize};

/// The right to write for a shard: its number and the epoch of the lease held. Every
/// side effect carries one; the store refuses it unless the shard's lease is exactly this
/// node's at this epoch (I2): the Redis store knows its node, so a lease of another node
/// that happens to carry the same epoch number refuses it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fence {
    pub shard: u32,
    pub epoch: u64,
}

/// What every store and registry call returns: boxed so the traits stay object-safe
/// (the actors hold `dyn FencedStore`), `'static` so a caller can spawn it.
pub type StoreFuture<T> = BoxFuture<'static, Result<T, StoreError>>;

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
    /// Stores the session's state (expiring with the store's state TTL) and lists the
    /// session among the shard's open sessions. The listing is written by the put that
    /// finds no state stored (the session's first), not by every put; a put over a
    /// tombstone (which no session does: a closed session never writes again) is not
    /// listed by the Redis store.
    Put(Vec<u8>),
    /// Drops the session's state, its listing and its audit keys.
    Delete,
    /// Ends the session but leaves a marker for `ttl`: `bytes` (opaque to the store, a
    /// closed snapshot) are what `load_snapshot` returns until then, so a repeated close
    /// after a handoff is answered by the next owner. Like `Delete`, it drops the
    /// session's listing and its audit keys.
    Tombstone {
        bytes: Vec<u8>,
        ttl: Duration,
    },
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
    /// The lock was taken over from this older session of the same kiosk and card (the
    /// kiosk inserted the card again): that session is over, and its owner must end it
    /// in the store too, or a later takeover would resume it as the card's holder.
    pub replaced: Option<SessionId>,
}

/// Where a listing of a shard's open sessions goes on: `SessionCursor::default()` starts
/// one, and only a cursor a page returned continues it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionCursor(pub(crate) String);

/// One page of a shard's open sessions: those whose snapshot was put and is neither
/// deleted, tombstoned nor expired. A session may appear on more than one page of a
/// listing (callers treat the listing as a set); one open for the whole listing appears
/// at least once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionPage {
    pub sessions: Vec<SessionId>,
    /// `None` once the listing is complete.
    pub next: Option<SessionCursor>,
}

/// What the store holds for a session, with its age by the store's own clock: one
/// clock for every node, so a node whose wall clock is off still learns how long a
/// session was quiet before it took the shard over (a resumed idle timer counts on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub bytes: Vec<u8>,
    /// Since the last write of an open session's state (a tombstone's age is not kept).
    pub written_ago: Duration,
}

/// Where every session side effect goes. Implementations check the fence first and
/// apply a `Change` all-or-nothing.
pub trait FencedStore: Send + Sync + 'static {
    fn apply(&self, fence: Fence, session: SessionId, change: Change) -> StoreFuture<Applied>;

    /// The session's stored bytes and how long ago they were written.
    fn load_session(&self, fence: Fence, session: SessionId) -> StoreFuture<Option<Loaded>>;

    /// `load_session` without the age.
    fn load_snapshot(&self, fence: Fence, session: SessionId) -> StoreFuture<Option<Vec<u8>>> {
        use futures::{FutureExt as _, TryFutureExt as _};
        self.load_session(fence, session)
            .map_ok(|loaded| loaded.map(|l| l.bytes))
            .boxed()
    }

    /// A page of the shard's open sessions (fenced like a write), about `n` of them
    /// (Redis may return somewhat more or fewer; never a page without a `next` before
    /// the listing is complete). A new owner resumes them all so that their idle timers
    /// run and orphaned sessions end (DESIGN.md, "Liveness comes back by itself").
    fn list_sessions(&self, fence: Fence, at: SessionCursor, n: usize) -> StoreFuture<SessionPage>;
}

/// Every open session of the fence's shard, page by page, each once.
pub async fn all_sessions(
    store: &dyn FencedStore,
    fence: Fence,
    page: usize,
) -> Result<Vec<SessionId>, StoreError> {
    let mut seen = std::collections::HashSet::new();
    let mut all = Vec::new();
    let mut cursor = SessionCursor::default();
    loop {
        let got = store.list_sessions(fence, cursor, page).await?;
        all.extend(got.sessions.into_iter().filter(|s| seen.insert(*s)));
        match got.next {
            Some(next) => cursor = next,
            None => return Ok(all),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    Revoked { record_version: u64 },
    AlreadyRevoked { record_version: u64 },
    NotRegistered,
    UnknownCard,
}

/// How long a registry keeps a superseded record version readable by default: above the
/// session hard limit (15 min) plus any margin a deployment adds.
pub const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(3600);

/// The authoritative records (I4): read at session start, job creation and release.
pub trait Registry: Send + Sync + 'static {
    fn record(&self, card: &CardId) -> StoreFuture<Option<Arc<ResidentRecord>>>;

    /// The current record of the card whose SHA-256 digest is `card_digest`, so that a
    /// session need not keep the card id (I6). Same answer as `record`.
    fn record_by_digest(&self, card_digest: [u8; 32]) -> StoreFuture<Option<Arc<ResidentRecord>>>;

    /// The record as it was at `version`: the current one if it still is, a superseded
    /// one for a while after a change (at least the history TTL the registry was made
    /// with), `None` once it is gone (or never existed). A delivered document re-renders
    /// from this, byte for byte, on any owner.
    fn record_at(
        &self,
        card_digest: [u8; 32],
        version: u64,
    ) -> StoreFuture<Option<Arc<ResidentRecord>>>;

    /// Once this resolves `Ok`, every later `record` call sees the revocation.
    fn revoke_seal(&self, card: &CardId, on: Date) -> StoreFuture<RevokeOutcome>;

    /// A moving-in notification; returns the new record version, `None` for unknown cards.
    fn update_address(&self, card: &CardId, address: String) -> StoreFuture<Option<u64>>;
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
    /// Why this node cannot serve its share right now (`/readyz`), from what the
    /// coordinator last observed: no Redis call. Empty when it can; the embedded
    /// coordinator always can.
    fn unready_reasons(&self) -> Vec<&'static str> {
        Vec::new()
    }
}

/// What importing a registry file did (`docs/registry-format.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportStats {
    /// Cards not known before, stored at version 1.
    pub added: u64,
    /// Records the file changed, each stored as a new version.
    pub changed: u64,
    /// Records the file left as they were (or whose only change would undo a
    /// revocation).
    pub unchanged: u64,
}

impl ImportStats {
    pub fn total(&self) -> u64 {
        self.added + self.changed + self.unchanged
    }

    pub fn add(&mut self, other: ImportStats) {
        self.added += other.added;
        self.changed += other.changed;
        self.unchanged += other.unchanged;
    }
}

impl std::fmt::Display for ImportStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} added, {} changed, {} unchanged",
            self.added, self.changed, self.unchanged
        )
    }
}
