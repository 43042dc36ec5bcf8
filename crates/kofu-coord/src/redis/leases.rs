//! Shard leases: a node owns a shard while its `<node_id>:<epoch>` value sits under the
//! shard's lease key; the epoch comes from a counter that never goes back, so every new
//! owner fences out all earlier ones (I2).

use std::time::Duration;

use ::redis::Value;

use super::{RedisConn, bad_reply, keys, millis, reply_int, scripts, unavailable};
use crate::{Fence, StoreError};

#[derive(Clone)]
pub struct RedisLeases {
    conn: RedisConn,
}

impl std::fmt::Debug for RedisLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisLeases")
    }
}

/// This node's clock in milliseconds: the least epoch a new lease may get.
fn epoch_floor() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(1)
}

fn lease_value(node_id: &str, epoch: u64) -> String {
    format!("{node_id}:{epoch}")
}

impl RedisLeases {
    pub fn new(conn: RedisConn) -> RedisLeases {
        RedisLeases { conn }
    }

    /// Takes the shard if no lease is held, with a fresh epoch; `None` while another (or
    /// this) node holds it.
    pub async fn acquire(
        &self,
        shard: u32,
        node_id: &str,
        ttl: Duration,
    ) -> Result<Option<Fence>, StoreError> {
        let mut conn = self.conn.manager();
        let reply: Value = scripts::ACQUIRE_SCRIPT
            .key(keys::lease(shard))
            .key(keys::epoch(shard))
            .arg(node_id)
            .arg(millis(ttl))
            .arg(epoch_floor())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        match reply {
            Value::Nil => Ok(None),
            other => {
                let epoch = reply_int(&other)
                    .and_then(|e| u64::try_from(e).ok())
                    .ok_or_else(|| bad_reply("lease acquire"))?;
                Ok(Some(Fence { shard, epoch }))
            }
        }
    }

    /// Extends the lease if it is still exactly this one; `false` means it is lost and
    /// the node must stop serving the shard.
    pub async fn renew(
        &self,
        fence: Fence,
        node_id: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.manager();
        let reply: Value = scripts::RENEW_SCRIPT
            .key(keys::lease(fence.shard))
            .arg(lease_value(node_id, fence.epoch))
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        reply_int(&reply)
            .map(|n| n == 1)
            .ok_or_else(|| bad_reply("lease renew"))
    }

    /// Drops the lease only if it is still exactly this one (a handoff).
    pub async fn release(&self, fence: Fence, node_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.manager();
        let reply: Value = scripts::RELEASE_SCRIPT
            .key(keys::lease(fence.shard))
            .arg(lease_value(node_id, fence.epoch))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        reply_int(&reply)
            .map(|n| n == 1)
            .ok_or_else(|| bad_reply("lease release"))
    }

    /// The node and epoch holding the shard now, if any.
    pub async fn holder(&self, shard: u32) -> Result<Option<(String, u64)>, StoreError> {
        let mut conn = self.conn.manager();
        let value: Option<String> = ::redis::cmd("GET")
            .arg(keys::lease(shard))
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let Some(value) = value else {
            return Ok(None);
        };
        let (node, epoch) = value
            .rsplit_once(':')
            .and_then(|(node, epoch)| Some((node.to_owned(), epoch.parse().ok()?)))
            .ok_or_else(|| StoreError::Corrupt(format!("malformed lease of shard {shard}")))?;
        Ok(Some((node, epoch)))
    }
}
