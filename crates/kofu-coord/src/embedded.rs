//! The embedded coordinator: one node owns every shard, and the fenced store and the
//! registry live in this process. It enforces the same fence and lock rules as the
//! Redis implementation so that single-node and cluster runs share one code path.

mod registry;
mod store;

pub use registry::EmbeddedRegistry;
pub use store::{AuditSink, EmbeddedStore, MEMORY_AUDIT_RECORDS};

use crate::{ClusterView, Coordinator, Fence, NodeInfo, ShardLease};

/// Owns all shards at one epoch, chosen at boot so that epochs (and the serials that
/// embed them) never repeat across restarts.
#[derive(Debug)]
pub struct EmbeddedCoordinator {
    node_id: String,
    shard_count: u32,
    epoch: u64,
}

impl EmbeddedCoordinator {
    pub fn new(node_id: String, shard_count: u32, epoch: u64) -> EmbeddedCoordinator {
        EmbeddedCoordinator {
            node_id,
            shard_count,
            epoch,
        }
    }
}

impl Coordinator for EmbeddedCoordinator {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn shard_count(&self) -> u32 {
        self.shard_count
    }

    fn local_leases(&self) -> Vec<Fence> {
        (0..self.shard_count)
            .map(|shard| Fence {
                shard,
                epoch: self.epoch,
            })
            .collect()
    }

    fn view(&self) -> ClusterView {
        ClusterView {
            node_id: self.node_id.clone(),
            mode: "embedded",
            shard_count: self.shard_count,
            nodes: vec![NodeInfo {
                node_id: self.node_id.clone(),
                internal_addr: String::new(),
            }],
            shards: (0..self.shard_count)
                .map(|shard| ShardLease {
                    shard,
                    owner: self.node_id.clone(),
                    epoch: self.epoch,
                })
                .collect(),
        }
    }

    fn holds(&self, fence: Fence) -> bool {
        fence.epoch == self.epoch && fence.shard < self.shard_count
    }

    fn owner_of(&self, _shard: u32) -> Option<NodeInfo> {
        None
    }

    fn refresh(&self) {}
}
