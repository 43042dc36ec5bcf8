//! A coordinator whose answers the test decides: which leases this node holds and
//! whether it may still act on them (a lease that could not be renewed in time). There
//! is no other node, so no shard has a remote owner and the router forwards nothing.
//! Everything else of the node is real.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use kofu_coord::{ClusterView, Coordinator, Fence, NodeInfo, ShardLease};
use parking_lot::Mutex;

pub const NODE: &str = "node-test";

pub struct TestCoordinator {
    shard_count: u32,
    /// False: every lease of this node is in doubt (Redis unreachable, renewal late).
    holding: AtomicBool,
    leases: Mutex<HashMap<u32, Fence>>,
    refreshes: AtomicUsize,
}

impl TestCoordinator {
    pub fn new(shard_count: u32) -> TestCoordinator {
        TestCoordinator {
            shard_count,
            holding: AtomicBool::new(true),
            leases: Mutex::new(HashMap::new()),
            refreshes: AtomicUsize::new(0),
        }
    }

    /// This node holds `fence` from now on (replacing an older lease of the shard).
    pub fn grant(&self, fence: Fence) {
        self.leases.lock().insert(fence.shard, fence);
    }

    /// Whether this node may act on the leases it has: `false` stands for a lease that
    /// could not be renewed in time; `true` again for one renewed after all.
    pub fn set_holding(&self, holding: bool) {
        self.holding.store(holding, Ordering::SeqCst);
    }

    pub fn lease(&self, shard: u32) -> Option<Fence> {
        self.leases.lock().get(&shard).copied()
    }

    /// How often the router asked for a fresh look (it does while it waits).
    pub fn refreshes(&self) -> usize {
        self.refreshes.load(Ordering::SeqCst)
    }
}

impl Coordinator for TestCoordinator {
    fn node_id(&self) -> &str {
        NODE
    }

    fn shard_count(&self) -> u32 {
        self.shard_count
    }

    fn local_leases(&self) -> Vec<Fence> {
        if !self.holding.load(Ordering::SeqCst) {
            return Vec::new();
        }
        let mut leases: Vec<Fence> = self.leases.lock().values().copied().collect();
        leases.sort_by_key(|f| f.shard);
        leases
    }

    fn view(&self) -> ClusterView {
        ClusterView {
            node_id: NODE.into(),
            mode: "test",
            shard_count: self.shard_count,
            nodes: vec![NodeInfo {
                node_id: NODE.into(),
                internal_addr: String::new(),
            }],
            shards: self
                .local_leases()
                .into_iter()
                .map(|f| ShardLease {
                    shard: f.shard,
                    owner: NODE.into(),
                    epoch: f.epoch,
                })
                .collect(),
        }
    }

    fn holds(&self, fence: Fence) -> bool {
        self.holding.load(Ordering::SeqCst) && self.lease(fence.shard) == Some(fence)
    }

    fn owner_of(&self, _shard: u32) -> Option<NodeInfo> {
        None
    }

    fn refresh(&self) {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
    }
}
