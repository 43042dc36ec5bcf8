//! The Redis implementation of the coordination plane: shard leases with fencing epochs,
//! the fenced store every session side effect goes through, and the registry of
//! authoritative records (DESIGN.md, "Cluster coordination (redis)", I2, I4, I5).
//!
//! Everything talks to one Redis primary (or, with hash tags, one slot's primary)
//! through a `ConnectionManager`, which reconnects on its own; reads are never served by
//! replicas, so a write the primary acknowledged is seen by every later read.

mod coordinator;
mod keys;
mod leases;
mod membership;
mod registry;
mod scripts;
mod store;

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{RedisError, Value};

pub use coordinator::{LeaseMetrics, RedisCoordinator};
pub use leases::RedisLeases;
pub use membership::{Member, RedisMembership};
pub use registry::{RedisRegistry, RegistrySetupError};
pub use store::RedisStore;

use crate::StoreError;

/// How long one command may take before the caller is told the store is unavailable;
/// waiting longer would only hold a kiosk while safety is unknown (I7).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection attempts per failing call, and the longest pause between them: the
/// client's defaults hold a caller for over six seconds when Redis is down, but a node
/// that cannot reach Redis should answer `503` at once and let its leases lapse.
const RECONNECT_ATTEMPTS: usize = 3;
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(400);

/// Opens a self-reconnecting connection to `url` (`redis://host:port/db`).
pub async fn connect(url: &str) -> Result<ConnectionManager, StoreError> {
    // The url may carry a password: never echo it.
    let client = ::redis::Client::open(url)
        .map_err(|_| StoreError::Unavailable("invalid redis url".into()))?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_number_of_retries(RECONNECT_ATTEMPTS)
        .set_max_delay(RECONNECT_MAX_DELAY);
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| unavailable(&e))
}

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
