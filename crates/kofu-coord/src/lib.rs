//! The coordination plane behind one set of traits: who owns a shard (with which fencing
//! epoch), the fenced store every session side effect goes through, and the registry of
//! authoritative records. `embedded` implements them in-process for a single node and
//! `redis` on a shared Redis for a cluster; the actors never know which implementation
//! they talk to (DESIGN.md, scenario 6).

#[cfg(feature = "testing")]
pub mod conformance;
pub mod embedded;
pub mod redis;
mod types;

pub use types::{
    Applied, AuditOutcome, AuditRecord, CardLockOp, Change, ClusterView, Coordinator,
    DEFAULT_HISTORY_TTL, Fence, FencedStore, HandoffHook, ImportStats, Loaded, LockOutcome,
    NodeInfo, Registry, RevokeOutcome, SessionCursor, SessionPage, ShardLease, SnapshotOp,
    StoreError, StoreFuture, all_sessions,
};
