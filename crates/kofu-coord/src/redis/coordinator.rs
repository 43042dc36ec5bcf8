//! The cluster's shard ownership on Redis: one background loop per node heartbeats its
//! membership, computes the rendezvous owner of every shard over the live members, takes
//! the leases of its own shards, renews them and hands off the ones it should no longer
//! own (DESIGN.md, "Cluster coordination (redis)").
//!
//! Safety rests on self-fencing (I2, I7): a lease counts as local only until the instant
//! the renewal (or acquisition) was *sent* plus the lease TTL minus a safety margin. Redis
//! starts the TTL when it executes the command, which is never earlier than that send, so
//! this node stops acting on a shard before Redis can hand it to anyone else, even when it
//! cannot reach Redis at all.
//!
//! Handoff: a shard this node should give up stays held (and renewed) while the node's
//! `HandoffHook` drains it; only then is the lease released, and a pub/sub event tells
//! the others to take it at once instead of at their next round.

mod events;
mod worker;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::IntCounter;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::{Member, RedisConn, RedisLeases, RedisMembership};
use crate::{ClusterView, Coordinator, Fence, HandoffHook, NodeInfo, ShardLease};
use worker::Worker;

/// The loop period never drops below this, whatever the lease TTL (a zero period would
/// make the loop spin).
const MIN_PERIOD: Duration = Duration::from_millis(1);

/// A lease this node holds and until when it may act on it.
#[derive(Debug, Clone, Copy)]
struct Held {
    fence: Fence,
    valid_until: Instant,
}

#[derive(Debug, Default)]
struct State {
    held: BTreeMap<u32, Held>,
    /// Shards being drained before their release; still held and renewed.
    handing_off: BTreeSet<u32>,
    members: Vec<Member>,
    /// Every shard's lease as last read from Redis (index = shard).
    observed: Vec<Option<(String, u64)>>,
    /// The last heartbeat Redis acknowledged (`None`: not joined yet).
    heartbeat_ok: Option<Instant>,
    /// Since when this node is the rendezvous owner of shards but holds none.
    wanting_since: Option<Instant>,
    /// Set once the node began leaving the cluster.
    leaving: bool,
}

impl State {
    fn valid(&self, now: Instant) -> Vec<Fence> {
        self.held
            .values()
            .filter(|h| h.valid_until > now)
            .map(|h| h.fence)
            .collect()
    }
}

/// Lease counters, registered by the node into its registry.
#[derive(Debug, Clone)]
pub struct LeaseMetrics {
    pub renew_failures: IntCounter,
    pub losses: IntCounter,
}

impl LeaseMetrics {
    fn new() -> LeaseMetrics {
        // Names and help are constants: construction cannot fail.
        let counter = |name: &str, help: &str| {
            IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
        };
        LeaseMetrics {
            renew_failures: counter(
                "kofu_lease_renew_failures_total",
                "Lease renewals that failed or timed out.",
            ),
            losses: counter(
                "kofu_lease_losses_total",
                "Leases found taken by another owner at renewal.",
            ),
        }
    }
}

struct Shared {
    state: Mutex<State>,
    local: watch::Sender<Vec<Fence>>,
    /// Wakes the loop for an early round (a pub/sub event, a peer's `Moved`).
    poke: Notify,
    /// What the node does before giving a shard up; without one (no sessions to
    /// drain) a shard is released at once.
    hook: Option<HandoffHook>,
    metrics: LeaseMetrics,
    /// A heartbeat older than this has lapsed: the others no longer count this node.
    lease_ttl: Duration,
    /// How long taking up this node's shards may legitimately take: the previous
    /// owners' leases lapse or are handed off within it.
    acquire_grace: Duration,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    /// Forgets leases whose validity has passed and tells subscribers if the local set
    /// changed.
    fn prune_and_publish(&self) {
        let now = Instant::now();
        let valid = {
            let mut state = self.state.lock();
            state.held.retain(|_, h| h.valid_until > now);
            state.valid(now)
        };
        self.local.send_if_modified(|current| {
            if *current == valid {
                false
            } else {
                *current = valid;
                true
            }
        });
    }
}

/// Shard ownership for one node of a Redis-coordinated cluster.
pub struct RedisCoordinator {
    node_id: String,
    shard_count: u32,
    shared: Arc<Shared>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    /// Resolves once the node has left (its loop goes on observing the cluster).
    left: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
    task: JoinHandle<()>,
    events: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for RedisCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCoordinator")
            .field("node_id", &self.node_id)
            .field("shard_count", &self.shard_count)
            .finish_non_exhaustive()
    }
}

impl RedisCoordinator {
    /// Joins the cluster and starts the ownership loop on the current tokio runtime; the
    /// loop runs every `lease_ttl / 3`, which is also the heartbeat period (the member
    /// TTL equals `lease_ttl`). `handoff` drains a shard before its lease is released.
    /// Dropping the coordinator without `shutdown` stops the loop at once, like a
    /// crash: its leases and heartbeat then lapse by their TTL.
    ///
    /// # Panics
    /// If called outside a tokio runtime.
    pub fn start(
        conn: RedisConn,
        node_id: String,
        internal_addr: String,
        shard_count: u32,
        lease_ttl: Duration,
        handoff: Option<HandoffHook>,
    ) -> RedisCoordinator {
        RedisCoordinator::start_with_replicas(
            conn,
            node_id,
            internal_addr,
            shard_count,
            lease_ttl,
            0,
            handoff,
        )
    }

    /// `start`, with every lease acquisition and renewal acknowledged by `replicas`
    /// replicas before it counts (Sentinel setups; the same number as the store's).
    /// A node whose replica is gone stops holding shards within a lease TTL.
    ///
    /// # Panics
    /// If called outside a tokio runtime.
    pub fn start_with_replicas(
        conn: RedisConn,
        node_id: String,
        internal_addr: String,
        shard_count: u32,
        lease_ttl: Duration,
        replicas: u32,
        handoff: Option<HandoffHook>,
    ) -> RedisCoordinator {
        let period = (lease_ttl / 3).max(MIN_PERIOD);
        let (local, _) = watch::channel(Vec::new());
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            local,
            poke: Notify::new(),
            hook: handoff,
            metrics: LeaseMetrics::new(),
            lease_ttl,
            acquire_grace: lease_ttl * 2 + lease_ttl.max(Duration::from_secs(2)) + period,
        });
        let (handed_off, handed_off_rx) = mpsc::unbounded_channel();
        let worker = Worker {
            member: Member {
                node_id: node_id.clone(),
                internal_addr,
                version: env!("CARGO_PKG_VERSION").to_owned(),
            },
            shard_count,
            lease_ttl,
            period,
            // Covers the time between Redis executing a renewal and the reply arriving,
            // plus clock-rate differences; one missed renewal still leaves the lease
            // valid, two do not.
            margin: lease_ttl / 3,
            // Each Redis step may take at most one period, so an unreachable Redis
            // cannot stall the loop (and the watch updates) for long.
            step: period,
            // A drain that has not finished by then is cut short: the lease goes anyway
            // and the sessions resume from their snapshots on the next owner.
            handoff_deadline: lease_ttl.max(Duration::from_secs(2)),
            leases: RedisLeases::new(conn.clone()).with_replicas(replicas),
            membership: RedisMembership::new(conn.clone()),
            conn,
            shared: Arc::clone(&shared),
            handed_off,
        };
        let (stop, stopped) = oneshot::channel();
        let (left_tx, left) = oneshot::channel();
        let span = tracing::info_span!("coordinator", node = %node_id);
        let task = tokio::spawn(worker.run(stopped, handed_off_rx, left_tx).instrument(span));
        RedisCoordinator {
            node_id,
            shard_count,
            shared,
            stop: Mutex::new(Some(stop)),
            left: tokio::sync::Mutex::new(Some(left)),
            task,
            events: Mutex::new(None),
        }
    }

    /// Listens to the cluster's pub/sub announcements (joins, leaves, released and
    /// acquired shards) so this node converges in one round trip instead of one period;
    /// the period stays the backstop when the subscription is down.
    pub fn listen(&self, conn: RedisConn) {
        let shared = Arc::clone(&self.shared);
        let span = tracing::info_span!("coordinator_events", node = %self.node_id);
        let task = tokio::spawn(events::listen(conn, shared).instrument(span));
        if let Some(old) = self.events.lock().replace(task) {
            old.abort();
        }
    }

    /// The lease counters, for the node to register.
    pub fn metrics(&self) -> &LeaseMetrics {
        &self.shared.metrics
    }

    /// Changes of `local_leases`, published by the loop. A lease that lapses while the
    /// loop is stuck on Redis shows up here at most one step late; `local_leases` itself
    /// is always exact.
    pub fn subscribe(&self) -> watch::Receiver<Vec<Fence>> {
        self.shared.local.subscribe()
    }

    /// The members with a live heartbeat, as last read.
    pub fn members(&self) -> Vec<Member> {
        self.shared.state.lock().members.clone()
    }

    /// Leaves the cluster: hands every shard off (through the hook), releases the
    /// leases and removes the heartbeat. The loop then only keeps watching where shards
    /// live, for forwarding, until the coordinator is dropped. Idempotent.
    pub async fn shutdown(&self) {
        // The loop may already have ended (then the receiver is gone): nothing to stop.
        if let Some(stop) = self.stop.lock().take() {
            let _ = stop.send(());
        }
        let mut left = self.left.lock().await;
        if let Some(left) = left.take()
            && left.await.is_err()
        {
            tracing::warn!(node = %self.node_id, "coordinator loop ended before leaving");
        }
    }
}

impl Drop for RedisCoordinator {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(events) = self.events.lock().take() {
            events.abort();
        }
    }
}

impl Coordinator for RedisCoordinator {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn shard_count(&self) -> u32 {
        self.shard_count
    }

    /// Checked against the clock at every call, not only when the loop runs: a node whose
    /// loop is stuck on an unreachable Redis still stops reporting its leases in time.
    fn local_leases(&self) -> Vec<Fence> {
        self.shared.state.lock().valid(Instant::now())
    }

    fn holds(&self, fence: Fence) -> bool {
        let state = self.shared.state.lock();
        state
            .held
            .get(&fence.shard)
            .is_some_and(|h| h.fence == fence && h.valid_until > Instant::now())
    }

    fn owner_of(&self, shard: u32) -> Option<NodeInfo> {
        let state = self.shared.state.lock();
        let (owner, _) = state.observed.get(usize::try_from(shard).ok()?)?.as_ref()?;
        if *owner == self.node_id {
            return None;
        }
        state
            .members
            .iter()
            .find(|m| m.node_id == *owner)
            .map(|m| NodeInfo {
                node_id: m.node_id.clone(),
                internal_addr: m.internal_addr.clone(),
            })
    }

    fn refresh(&self) {
        self.shared.poke.notify_one();
    }

    fn unready_reasons(&self) -> Vec<&'static str> {
        let now = Instant::now();
        let state = self.shared.state.lock();
        let mut reasons = Vec::new();
        match state.heartbeat_ok {
            None => reasons.push("joining the cluster"),
            Some(at) if now.duration_since(at) > self.shared.lease_ttl => {
                reasons.push("redis unreachable");
            }
            Some(_) => {}
        }
        if state.leaving {
            reasons.push("leaving the cluster");
        } else if state
            .wanting_since
            .is_some_and(|since| now.duration_since(since) > self.shared.acquire_grace)
        {
            reasons.push("no shard leases acquired");
        }
        reasons
    }

    fn view(&self) -> ClusterView {
        let now = Instant::now();
        let state = self.shared.state.lock();
        let nodes = state
            .members
            .iter()
            .map(|m| NodeInfo {
                node_id: m.node_id.clone(),
                internal_addr: m.internal_addr.clone(),
            })
            .collect();
        let shards = (0..self.shard_count)
            .filter_map(|shard| {
                if let Some(held) = state.held.get(&shard)
                    && held.valid_until > now
                {
                    return Some(ShardLease {
                        shard,
                        owner: self.node_id.clone(),
                        epoch: held.fence.epoch,
                    });
                }
                let (owner, epoch) = state.observed.get(usize::try_from(shard).ok()?)?.as_ref()?;
                // A lease under this node's name that is not locally valid is not one
                // this node may act on: leave it out rather than claim it.
                (*owner != self.node_id).then(|| ShardLease {
                    shard,
                    owner: owner.clone(),
                    epoch: *epoch,
                })
            })
            .collect();
        ClusterView {
            node_id: self.node_id.clone(),
            mode: "redis",
            shard_count: self.shard_count,
            nodes,
            shards,
        }
    }
}
