//! Cluster membership in Redis: every live node keeps a heartbeat key with a TTL, so the
//! member list is simply the keys that have not expired; a crashed node drops out on its
//! own once its TTL passes (DESIGN.md, "Cluster coordination (redis)").

use std::time::Duration;

use ::redis::Value;
use serde::{Deserialize, Serialize};

use super::{RedisConn, keys, millis, unavailable};
use crate::StoreError;

/// Upper bound on `SCAN` round trips for one listing: a server that never returns cursor
/// 0 must not hold the coordinator loop forever.
const MAX_SCAN_ROUNDS: usize = 1_000;

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
            .map_err(|e| StoreError::Corrupt(format!("member record does not encode: {e}")))?;
        let mut conn = self.conn.manager();
        let _: Value = ::redis::cmd("SET")
            .arg(keys::member(&member.node_id))
            .arg(value)
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(())
    }

    /// Removes this node's heartbeat at once (a graceful leave), so others need not wait
    /// for its TTL before taking its shards over.
    pub async fn leave(&self, node_id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.manager();
        let _: Value = ::redis::cmd("DEL")
            .arg(keys::member(node_id))
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(())
    }

    /// Every node with a live heartbeat, sorted by id. `SCAN` is fine for the few members
    /// of a cluster; records that do not decode (or claim another node's key) are skipped
    /// rather than trusted.
    pub async fn members(&self) -> Result<Vec<Member>, StoreError> {
        let mut conn = self.conn.manager();
        let mut member_keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        for _ in 0..MAX_SCAN_ROUNDS {
            let (next, batch): (u64, Vec<String>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(keys::MEMBER_PATTERN)
                .arg("COUNT")
                .arg(100)
                .query_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
            member_keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        // SCAN may return a key more than once.
        member_keys.sort();
        member_keys.dedup();
        if member_keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> = ::redis::cmd("MGET")
            .arg(&member_keys)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let mut members: Vec<Member> = member_keys
            .iter()
            .zip(values)
            .filter_map(|(key, value)| {
                // Expired between SCAN and MGET: the node is gone.
                let value = value?;
                match serde_json::from_str::<Member>(&value) {
                    Ok(member) if keys::member(&member.node_id) == *key => Some(member),
                    _ => {
                        tracing::warn!("skipping a malformed membership record");
                        None
                    }
                }
            })
            .collect();
        members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(members)
    }
}
