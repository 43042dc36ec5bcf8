//! The cluster's shard ownership on Redis: one background loop per node heartbeats its
//! membership, computes the rendezvous owner of every shard over the live members, takes
//! the leases of its own shards, renews them and drops the ones it should no longer own
//! (DESIGN.md, "Cluster coordination (redis)").
//!
//! Safety rests on self-fencing (I2, I7): a lease counts as local only until the instant
//! the renewal (or acquisition) was *sent* plus the lease TTL minus a safety margin. Redis
//! starts the TTL when it executes the command, which is never earlier than that send, so
//! this node stops acting on a shard before Redis can hand it to anyone else, even when it
//! cannot reach Redis at all.
//!
//! The handoff protocol (drain the shard before releasing) is not here yet: a shard this
//! node should no longer own stops being local at once and its lease is released.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use futures::future::join_all;
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tracing::Instrument as _;

use super::{Member, RedisLeases, RedisMembership, keys, unavailable};
use crate::{ClusterView, Coordinator, Fence, NodeInfo, ShardLease, StoreError};

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
    members: Vec<Member>,
    /// Every shard's lease as last read from Redis (index = shard), for `view`.
    observed: Vec<Option<(String, u64)>>,
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

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    local: watch::Sender<Vec<Fence>>,
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
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
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
    /// TTL equals `lease_ttl`). Dropping the coordinator without `shutdown` still makes
    /// the loop leave the cluster, in the background.
    ///
    /// # Panics
    /// If called outside a tokio runtime.
    pub fn start(
        conn: ConnectionManager,
        node_id: String,
        internal_addr: String,
        shard_count: u32,
        lease_ttl: Duration,
    ) -> RedisCoordinator {
        let period = (lease_ttl / 3).max(MIN_PERIOD);
        let (local, _) = watch::channel(Vec::new());
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            local,
        });
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
            leases: RedisLeases::new(conn.clone()),
            membership: RedisMembership::new(conn.clone()),
            conn,
            shared: Arc::clone(&shared),
        };
        let (stop, stopped) = oneshot::channel();
        let span = tracing::info_span!("coordinator", node = %node_id);
        let task = tokio::spawn(worker.run(stopped).instrument(span));
        RedisCoordinator {
            node_id,
            shard_count,
            shared,
            stop,
            task,
        }
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

    /// Stops the loop, releases every lease held and removes the heartbeat, so the other
    /// nodes take the shards over at their next round instead of after a TTL.
    pub async fn shutdown(self) {
        // The loop may already have ended (then the receiver is gone): nothing to stop.
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::warn!(node = %self.node_id, "coordinator loop ended abnormally: {e}");
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

    fn view(&self) -> ClusterView {
        let now = Instant::now();
        let state = self.shared.state.lock();
        let nodes = state
            .members
            .iter()
            .map(|m| NodeInfo {
                node_id: m.node_id.clone(),
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

/// The background loop's half of the coordinator.
struct Worker {
    member: Member,
    shard_count: u32,
    lease_ttl: Duration,
    period: Duration,
    margin: Duration,
    step: Duration,
    leases: RedisLeases,
    membership: RedisMembership,
    conn: ConnectionManager,
    shared: Arc<Shared>,
}

impl Worker {
    fn node_id(&self) -> &str {
        &self.member.node_id
    }

    /// Until when a lease whose command was sent at `sent_at` may be acted on.
    fn valid_until(&self, sent_at: Instant) -> Instant {
        sent_at + self.lease_ttl.saturating_sub(self.margin)
    }

    async fn bounded<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        timeout(self.step, fut)
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable(format!("redis {what} timed out"))))
    }

    async fn run(self, mut stopped: oneshot::Receiver<()>) {
        tracing::info!(shards = self.shard_count, "joining the cluster");
        let mut tick = tokio::time::interval(self.period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // A send or a dropped coordinator: either way, leave.
                _ = &mut stopped => break,
                _ = tick.tick() => {}
            }
            self.round().await;
        }
        self.leave().await;
    }

    async fn round(&self) {
        self.shared.prune_and_publish();
        // Renewals first: they are the most time-critical, and must not wait behind
        // membership calls that may time out.
        self.renew_held().await;
        self.shared.prune_and_publish();

        let members = match self.heartbeat_and_list().await {
            Ok(members) => members,
            Err(e) => {
                tracing::debug!("membership round failed: {e}");
                return;
            }
        };
        // This node counts as a member even if a scan raced its own heartbeat.
        let mut ids: Vec<&str> = members.iter().map(|m| m.node_id.as_str()).collect();
        ids.push(self.node_id());
        let desired: BTreeSet<u32> = (0..self.shard_count)
            .filter(|&shard| kofu_core::assignment::owner(shard, &ids) == Some(self.node_id()))
            .collect();
        self.shared.state.lock().members.clone_from(&members);

        self.release_unwanted(&desired).await;
        self.acquire_missing(&desired).await;
        self.shared.prune_and_publish();
        self.observe().await;
    }

    async fn heartbeat_and_list(&self) -> Result<Vec<Member>, StoreError> {
        self.bounded(
            "heartbeat",
            self.membership.heartbeat(&self.member, self.lease_ttl),
        )
        .await?;
        self.bounded("member scan", self.membership.members()).await
    }

    async fn renew_held(&self) {
        let fences: Vec<Fence> = self
            .shared
            .state
            .lock()
            .held
            .values()
            .map(|h| h.fence)
            .collect();
        if fences.is_empty() {
            return;
        }
        // Taken before sending: Redis restarts the TTL no earlier than this.
        let sent_at = Instant::now();
        let renewals = join_all(
            fences
                .iter()
                .map(|&fence| self.leases.renew(fence, self.node_id(), self.lease_ttl)),
        );
        let Ok(results) = timeout(self.step, renewals).await else {
            // Leases keep their old validity and lapse unless a later renewal succeeds.
            tracing::warn!(leases = fences.len(), "lease renewal timed out");
            return;
        };
        let valid_until = self.valid_until(sent_at);
        let mut state = self.shared.state.lock();
        for (fence, result) in fences.iter().zip(results) {
            match result {
                Ok(true) => {
                    if let Some(held) = state.held.get_mut(&fence.shard)
                        && held.fence == *fence
                    {
                        held.valid_until = valid_until;
                    }
                }
                Ok(false) => {
                    tracing::warn!(shard = fence.shard, epoch = fence.epoch, "lease lost");
                    if state
                        .held
                        .get(&fence.shard)
                        .is_some_and(|h| h.fence == *fence)
                    {
                        state.held.remove(&fence.shard);
                    }
                }
                Err(e) => tracing::debug!(shard = fence.shard, "lease renewal failed: {e}"),
            }
        }
    }

    async fn release_unwanted(&self, desired: &BTreeSet<u32>) {
        let unwanted: Vec<Fence> = {
            let mut state = self.shared.state.lock();
            let shards: Vec<u32> = state
                .held
                .keys()
                .filter(|shard| !desired.contains(shard))
                .copied()
                .collect();
            shards
                .iter()
                .filter_map(|shard| state.held.remove(shard))
                .map(|h| h.fence)
                .collect()
        };
        if unwanted.is_empty() {
            return;
        }
        // Stop reporting the shards before their leases go, so the next owner (which
        // acquires once the lease is gone) never overlaps with this node.
        self.shared.prune_and_publish();
        tracing::info!(
            shards = unwanted.len(),
            "releasing shards owned elsewhere now"
        );
        let releases = join_all(
            unwanted
                .iter()
                .map(|&fence| self.leases.release(fence, self.node_id())),
        );
        // A release that fails or times out leaves the lease to expire: only slower.
        if timeout(self.step, releases).await.is_err() {
            tracing::debug!("lease release timed out");
        }
    }

    async fn acquire_missing(&self, desired: &BTreeSet<u32>) {
        let missing: Vec<u32> = {
            let state = self.shared.state.lock();
            desired
                .iter()
                .filter(|shard| !state.held.contains_key(shard))
                .copied()
                .collect()
        };
        if missing.is_empty() {
            return;
        }
        let sent_at = Instant::now();
        let acquisitions = join_all(
            missing
                .iter()
                .map(|&shard| self.leases.acquire(shard, self.node_id(), self.lease_ttl)),
        );
        // On a timeout an acquisition may still have happened in Redis; unknown to this
        // node, that lease simply expires and is taken again later (safe, only slower).
        let Ok(results) = timeout(self.step, acquisitions).await else {
            tracing::debug!("lease acquisition timed out");
            return;
        };
        let valid_until = self.valid_until(sent_at);
        let mut acquired = 0usize;
        let mut state = self.shared.state.lock();
        for (shard, result) in missing.iter().zip(results) {
            match result {
                Ok(Some(fence)) => {
                    state.held.insert(*shard, Held { fence, valid_until });
                    acquired += 1;
                }
                // Still held by the previous owner until it releases or it expires.
                Ok(None) => {}
                Err(e) => tracing::debug!(shard, "lease acquisition failed: {e}"),
            }
        }
        if acquired > 0 {
            tracing::info!(shards = acquired, "acquired shards");
        }
    }

    /// Reads every shard's lease in one pipelined round trip, for `view`.
    async fn observe(&self) {
        let mut pipe = ::redis::pipe();
        for shard in 0..self.shard_count {
            pipe.cmd("GET").arg(keys::lease(shard));
        }
        let mut conn = self.conn.clone();
        let read = async {
            pipe.query_async::<Vec<Option<String>>>(&mut conn)
                .await
                .map_err(|e| unavailable(&e))
        };
        match self.bounded("lease scan", read).await {
            Ok(values) => {
                let observed = values
                    .into_iter()
                    .map(|value| {
                        let (node, epoch) = value?
                            .rsplit_once(':')
                            .and_then(|(n, e)| Some((n.to_owned(), e.parse::<u64>().ok()?)))?;
                        Some((node, epoch))
                    })
                    .collect();
                self.shared.state.lock().observed = observed;
            }
            Err(e) => tracing::debug!("lease scan failed: {e}"),
        }
    }

    /// Graceful leave: stop reporting every shard, release the leases, drop the
    /// heartbeat. Failures only mean the others wait for the TTLs instead.
    async fn leave(&self) {
        let fences: Vec<Fence> = std::mem::take(&mut self.shared.state.lock().held)
            .into_values()
            .map(|h| h.fence)
            .collect();
        self.shared.prune_and_publish();
        let releases = join_all(
            fences
                .iter()
                .map(|&fence| self.leases.release(fence, self.node_id())),
        );
        if timeout(self.step, releases).await.is_err() {
            tracing::debug!("lease release on leave timed out");
        }
        if let Err(e) = self
            .bounded("leave", self.membership.leave(self.node_id()))
            .await
        {
            tracing::debug!("removing the heartbeat failed: {e}");
        }
        tracing::info!(released = fences.len(), "left the cluster");
    }
}
