//! The Redis implementation of the coordination plane: shard leases with fencing epochs,
//! the fenced store every session side effect goes through, and the registry of
//! authoritative records (DESIGN.md, "Cluster coordination (redis)", I2, I4, I5).
//!
//! Everything talks to one Redis primary (or, with hash tags, one slot's primary)
//! through a `RedisConn`, which reconnects on its own and follows Sentinel failovers;
//! reads are never served by replicas, so a write the primary acknowledged is seen by
//! every later read.

mod audit;
mod call;
mod conn;
mod coordinator;
mod import;
mod keys;
mod leases;
mod membership;
mod registry;
mod scripts;
mod store;

use std::time::Duration;

use ::redis::{RedisError, Value};

pub use audit::{AuditEntry, AuditStreams, EntryId, Exported, Trimmed};
pub use conn::{ConnectOptions, RedisConn, connect, connect_with, is_sentinel};
pub use coordinator::{LeaseMetrics, RedisCoordinator};
pub use import::IMPORT_LABEL_PREFIX;
pub use leases::RedisLeases;
pub use membership::{Member, RedisMembership};
pub use registry::{RedisRegistry, RegistrySetupError};
pub use store::{DEFAULT_AUDIT_RETENTION, RedisStore};

use crate::StoreError;

/// Maps a client or server error to `Unavailable`, keeping only its category and code:
/// server messages may quote arguments, which can be personal data (I6).
pub(crate) fn unavailable(e: &RedisError) -> StoreError {
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connection_refusal() {
        "connection refused"
    } else if e.is_connection_dropped() {
        "connection dropped"
    } else if e.is_io_error() {
        "i/o error"
    } else {
        "error"
    };
    StoreError::Unavailable(match e.code() {
        Some(code) => format!("redis {what} ({code})"),
        None => format!("redis {what}"),
    })
}

/// A reply of an unexpected shape: the scripts and this code disagree, so nothing can
/// be trusted about what happened.
pub(crate) fn bad_reply(what: &str) -> StoreError {
    StoreError::Unavailable(format!("unexpected redis reply to {what}"))
}

pub(crate) fn reply_int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

pub(crate) fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
