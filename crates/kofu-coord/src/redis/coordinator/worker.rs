//! The coordinator's background loop: renewals first, then membership, assignment,
//! handoffs, acquisitions and the lease scan that tells the router where shards live.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tracing::Instrument as _;

use super::events::announce;
use super::{Held, Shared};
use crate::redis::{Member, RedisConn, RedisLeases, RedisMembership, keys, unavailable};
use crate::{Fence, StoreError};

/// The background loop's half of the coordinator.
pub(super) struct Worker {
    pub(super) member: Member,
    pub(super) shard_count: u32,
    pub(super) lease_ttl: Duration,
    pub(super) period: Duration,
    pub(super) margin: Duration,
    pub(super) step: Duration,
    pub(super) handoff_deadline: Duration,
    pub(super) leases: RedisLeases,
    pub(super) membership: RedisMembership,
    pub(super) conn: RedisConn,
    pub(super) shared: Arc<Shared>,
    pub(super) handed_off: mpsc::UnboundedSender<Fence>,
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

    pub(super) async fn run(
        self,
        mut stopped: oneshot::Receiver<()>,
        mut handed_off: mpsc::UnboundedReceiver<Fence>,
        left: oneshot::Sender<()>,
    ) {
        tracing::info!(shards = self.shard_count, "joining the cluster");
        let mut tick = tokio::time::interval(self.period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut leaving: Option<Instant> = None;
        loop {
            tokio::select! {
                // A send or a dropped coordinator: either way, leave.
                _ = &mut stopped, if leaving.is_none() => {
                    leaving = Some(Instant::now() + self.handoff_deadline + self.step);
                    self.begin_leave().await;
                }
                Some(fence) = handed_off.recv() => {
                    self.finish_handoff(fence).await;
                    // Drain the rest without a full round in between.
                    while let Ok(fence) = handed_off.try_recv() {
                        self.finish_handoff(fence).await;
                    }
                }
                _ = tick.tick() => {}
                () = self.shared.poke.notified() => {}
            }
            if let Some(until) = leaving {
                let done = {
                    let state = self.shared.state.lock();
                    state.held.is_empty() && state.handing_off.is_empty()
                };
                if done || Instant::now() >= until {
                    break;
                }
            }
            self.round(leaving.is_some()).await;
        }
        self.release_all().await;
        announce(&self.conn, self.node_id(), "left").await;
        tracing::info!("left the cluster");
        // Whoever waits for the leave may go on; nobody may be waiting any more.
        let _ = left.send(());
        self.follow(tick).await;
    }

    /// After leaving, a drained node still forwards the requests that reach it, so it
    /// keeps watching where the shards are (and who is a member) until it is dropped.
    async fn follow(&self, mut tick: tokio::time::Interval) {
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.shared.poke.notified() => {}
            }
            if let Ok(members) = self.bounded("member scan", self.membership.members()).await {
                self.shared.state.lock().members = members;
            }
            self.observe().await;
        }
    }

    async fn round(&self, leaving: bool) {
        self.shared.prune_and_publish();
        // Renewals first: they are the most time-critical, and must not wait behind
        // membership calls that may time out.
        self.renew_held().await;
        self.shared.prune_and_publish();

        let desired: BTreeSet<u32> = if leaving {
            BTreeSet::new()
        } else {
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
            let desired = (0..self.shard_count)
                .filter(|&shard| kofu_core::assignment::owner(shard, &ids) == Some(self.node_id()))
                .collect();
            let joined = {
                let mut state = self.shared.state.lock();
                let joined = state.members.is_empty();
                state.members.clone_from(&members);
                state.heartbeat_ok = Some(Instant::now());
                joined
            };
            if joined {
                announce(&self.conn, self.node_id(), "joined").await;
            }
            desired
        };

        self.hand_off_unwanted(&desired);
        if !leaving {
            self.acquire_missing(&desired).await;
            let mut state = self.shared.state.lock();
            let now = Instant::now();
            if desired.is_empty() || !state.valid(now).is_empty() {
                state.wanting_since = None;
            } else {
                state.wanting_since.get_or_insert(now);
            }
        }
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

    /// Stops heartbeating first, so that the others stop counting this node as the
    /// rendezvous owner of anything, then lets the rounds hand every shard off.
    async fn begin_leave(&self) {
        tracing::info!("leaving the cluster: handing every shard off");
        self.shared.state.lock().leaving = true;
        if let Err(e) = self
            .bounded("leave", self.membership.leave(self.node_id()))
            .await
        {
            tracing::debug!("removing the heartbeat failed: {e}");
        }
        announce(&self.conn, self.node_id(), "leaving").await;
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
            self.shared
                .metrics
                .renew_failures
                .inc_by(fences.len() as u64);
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
                    self.shared.metrics.losses.inc();
                    tracing::warn!(shard = fence.shard, epoch = fence.epoch, "lease lost");
                    if state
                        .held
                        .get(&fence.shard)
                        .is_some_and(|h| h.fence == *fence)
                    {
                        state.held.remove(&fence.shard);
                    }
                }
                Err(e) => {
                    self.shared.metrics.renew_failures.inc();
                    tracing::debug!(shard = fence.shard, "lease renewal failed: {e}");
                }
            }
        }
    }

    /// Starts a handoff for every held shard outside `desired`. Without a hook (no
    /// sessions to drain) the shard is released at once.
    fn hand_off_unwanted(&self, desired: &BTreeSet<u32>) {
        let starting: Vec<Fence> = {
            let mut state = self.shared.state.lock();
            let fences: Vec<Fence> = state
                .held
                .values()
                .filter(|h| !desired.contains(&h.fence.shard))
                .filter(|h| !state.handing_off.contains(&h.fence.shard))
                .map(|h| h.fence)
                .collect();
            for f in &fences {
                state.handing_off.insert(f.shard);
            }
            fences
        };
        if starting.is_empty() {
            return;
        }
        tracing::info!(shards = starting.len(), "handing shards off");
        let hook = self.shared.hook.clone();
        for fence in starting {
            let done = self.handed_off.clone();
            let hook = hook.clone();
            let deadline = self.handoff_deadline;
            let span = tracing::info_span!("handoff", shard = fence.shard, epoch = fence.epoch);
            tokio::spawn(
                async move {
                    if let Some(hook) = hook
                        && timeout(deadline, hook(fence)).await.is_err()
                    {
                        tracing::warn!("handoff drain passed its deadline; releasing anyway");
                    }
                    // The loop is gone only when the node is: nothing left to release.
                    let _ = done.send(fence);
                }
                .instrument(span),
            );
        }
    }

    /// The shard is drained: stop reporting it, then release its lease (if still ours).
    async fn finish_handoff(&self, fence: Fence) {
        let still_held = {
            let mut state = self.shared.state.lock();
            state.handing_off.remove(&fence.shard);
            let held = state
                .held
                .get(&fence.shard)
                .is_some_and(|h| h.fence == fence);
            if held {
                state.held.remove(&fence.shard);
            }
            held
        };
        // Stop reporting the shard before its lease goes, so the next owner (which
        // acquires once the lease is gone) never overlaps with this node.
        self.shared.prune_and_publish();
        if !still_held {
            return;
        }
        match self
            .bounded("release", self.leases.release(fence, self.node_id()))
            .await
        {
            Ok(_) => announce(&self.conn, self.node_id(), "released").await,
            // The lease then simply expires: only slower.
            Err(e) => tracing::debug!(shard = fence.shard, "lease release failed: {e}"),
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
        {
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
        }
        if acquired > 0 {
            tracing::info!(shards = acquired, "acquired shards");
            announce(&self.conn, self.node_id(), "acquired").await;
        }
    }

    /// Reads every shard's lease in one pipelined round trip, for routing and `view`.
    async fn observe(&self) {
        let mut pipe = ::redis::pipe();
        for shard in 0..self.shard_count {
            pipe.cmd("GET").arg(keys::lease(shard));
        }
        let mut conn = self.conn.manager();
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

    /// The end of a leave: whatever is still held (a handoff past its deadline) is
    /// released, and the heartbeat removed again in case a round re-wrote it.
    async fn release_all(&self) {
        let fences: Vec<Fence> = {
            let mut state = self.shared.state.lock();
            state.handing_off.clear();
            std::mem::take(&mut state.held)
                .into_values()
                .map(|h| h.fence)
                .collect()
        };
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
    }
}
