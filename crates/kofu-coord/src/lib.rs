//! The coordination plane behind one set of traits: who owns a shard (with which fencing
//! epoch), the fenced store every session side effect goes through, and the registry of
//! authoritative records. `embedded` implements them in-process for a single node; the
//! actors never know which implementation they talk to (DESIGN.md, scenario 6).

pub mod embedded;
mod types;

pub use types::{
    Applied, AuditOutcome, AuditRecord, CardLockOp, Change, ClusterView, Coordinator, Fence,
    FencedStore, LockOutcome, NodeInfo, Registry, RevokeOutcome, ShardLease, SnapshotOp,
    StoreError,
};
