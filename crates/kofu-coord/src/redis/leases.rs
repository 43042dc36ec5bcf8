//! Shard leases: a node owns a shard while its `<node_id>:<epoch>` value sits under the
//! shard's lease key; the epoch comes from a counter that never goes back, so every new
//! owner fences out all earlier ones (I2). Behind Sentinel an acquisition or a renewal
//! counts only once a replica has it (why epochs never repeat: `scripts::ACQUIRE`).

use std::time::Duration;

use ::redis::Value;

use super::call::{Call, not_replicated};
use super::{RedisConn, bad_reply, keys, millis, reply_int, scripts, unavailable};
use crate::{Fence, StoreError};

#[derive(Clone)]
pub struct RedisLeases {
    conn: RedisConn,
    replicas: u32,
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
        RedisLeases { conn, replicas: 0 }
    }

    /// Requires `n` replicas to acknowledge an acquisition before it is used and a
    /// renewal before it extends the lease (Sentinel setups): a lease a failover could
    /// lose is never acted on.
    pub fn with_replicas(mut self, n: u32) -> RedisLeases {
        self.replicas = n;
        self
    }

    /// Takes the shard if no lease is held, with a fresh epoch; `None` while another (or
    /// this) node holds it. An acquisition the replicas did not acknowledge answers
    /// `Unavailable` and is never used: it simply expires.
    pub async fn acquire(
        &self,
        shard: u32,
        node_id: &str,
        ttl: Duration,
    ) -> Result<Option<Fence>, StoreError> {
        let mut conn = self.conn.manager();
        let mut call = Call::new(&scripts::ACQUIRE_SCRIPT);
        call.key(keys::lease(shard))
            .key(keys::epoch(shard))
            .arg(node_id)
            .arg(millis(ttl))
            .arg(epoch_floor());
        let (reply, acked) = call
            .run_replicated(&mut conn, self.replicas)
            .await
            .map_err(|e| unavailable(&e))?;
        match reply {
            Value::Nil => Ok(None),
            other => {
                let epoch = reply_int(&other)
                    .and_then(|e| u64::try_from(e).ok())
                    .ok_or_else(|| bad_reply("lease acquire"))?;
                if !acked {
                    return Err(not_replicated("lease acquisition"));
                }
                Ok(Some(Fence { shard, epoch }))
            }
        }
    }

    /// Extends the lease if it is still exactly this one; `false` means it is lost and
    /// the node must stop serving the shard. A renewal the replicas did not acknowledge
    /// answers `Unavailable`: the lease keeps its old validity.
    pub async fn renew(
        &self,
        fence: Fence,
        node_id: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.manager();
        let mut call = Call::new(&scripts::RENEW_SCRIPT);
        call.key(keys::lease(fence.shard))
            .arg(lease_value(node_id, fence.epoch))
            .arg(millis(ttl));
        let (reply, acked) = call
            .run_replicated(&mut conn, self.replicas)
            .await
            .map_err(|e| unavailable(&e))?;
        let renewed = reply_int(&reply)
            .map(|n| n == 1)
            .ok_or_else(|| bad_reply("lease renew"))?;
        if renewed && !acked {
            return Err(not_replicated("lease renewal"));
        }
        Ok(renewed)
    }

    /// Drops the lease only if it is still exactly this one (a handoff).
    pub async fn release(&self, fence: Fence, node_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.manager();
        let mut call = Call::new(&scripts::RELEASE_SCRIPT);
        call.key(keys::lease(fence.shard))
            .arg(lease_value(node_id, fence.epoch));
        let reply = call.run(&mut conn).await.map_err(|e| unavailable(&e))?;
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
