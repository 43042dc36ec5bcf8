//! Cluster membership in Redis: every live node keeps a heartbeat key with a TTL (and its
//! id in an index set), so the member list is the heartbeats that have not expired; a
//! crashed node drops out on its own once its TTL passes (DESIGN.md, "Cluster
//! coordination (redis)").

use std::time::Duration;

use ::redis::Value;
use serde::{Deserialize, Serialize};

use super::{RedisConn, keys, millis, unavailable};
use crate::StoreError;

/// What a node announces about itself in its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub node_id: String,
    /// Where other nodes forward messages for the shards this node owns.
    pub internal_addr: String,
    /// The node's build version, so mixed-version clusters are visible.
    pub version: String,
}

#[derive(Clone)]
pub struct RedisMembership {
    conn: RedisConn,
}

impl std::fmt::Debug for RedisMembership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisMembership")
    }
}

impl RedisMembership {
    pub fn new(conn: RedisConn) -> RedisMembership {
        RedisMembership { conn }
    }

    /// Writes (or refreshes) this node's heartbeat; it lapses after `ttl` without one.
    pub async fn heartbeat(&self, member: &Member, ttl: Duration) -> Result<(), StoreError> {
        let value = serde_json::to_string(member)
            .map_err(|_| StoreError::Corrupt("member record does not encode".into()))?;
        let mut conn = self.conn.manager();
        let _: Value = ::redis::pipe()
            .cmd("SET")
            .arg(keys::member(&member.node_id))
            .arg(value)
            .arg("PX")
            .arg(millis(ttl))
            .ignore()
            .cmd("SADD")
            .arg(keys::MEMBERS)
            .arg(&member.node_id)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(())
    }

    /// Removes this node's heartbeat at once (a graceful leave), so others need not wait
    /// for its TTL before taking its shards over.
    pub async fn leave(&self, node_id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.manager();
        let _: Value = ::redis::pipe()
            .cmd("DEL")
            .arg(keys::member(node_id))
            .ignore()
            .cmd("SREM")
            .arg(keys::MEMBERS)
            .arg(node_id)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(())
    }

    /// Every node with a live heartbeat, sorted by id. Ids whose heartbeat has expired
    /// are dropped from the index on the way; records that do not decode (or claim
    /// another node's key) are skipped rather than trusted.
    pub async fn members(&self) -> Result<Vec<Member>, StoreError> {
        let mut conn = self.conn.manager();
        let mut ids: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(keys::MEMBERS)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        ids.sort();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let member_keys: Vec<String> = ids.iter().map(|id| keys::member(id)).collect();
        let values: Vec<Option<String>> = ::redis::cmd("MGET")
            .arg(&member_keys)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let mut members = Vec::new();
        let mut gone = Vec::new();
        for ((id, key), value) in ids.iter().zip(&member_keys).zip(values) {
            // Expired: the node is gone (a crash, or a leave that lost its SREM).
            let Some(value) = value else {
                gone.push(id.clone());
                continue;
            };
            match serde_json::from_str::<Member>(&value) {
                Ok(member) if keys::member(&member.node_id) == *key => members.push(member),
                _ => tracing::warn!("skipping a malformed membership record"),
            }
        }
        if !gone.is_empty() {
            // A node that heartbeats meanwhile adds itself back with its next SADD.
            let pruned: Result<i64, _> = ::redis::cmd("SREM")
                .arg(keys::MEMBERS)
                .arg(&gone)
                .query_async(&mut conn)
                .await;
            if let Err(e) = pruned {
                tracing::debug!("pruning the member index failed: {}", unavailable(&e));
            }
        }
        Ok(members)
    }
}
