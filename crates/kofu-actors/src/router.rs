//! The router: takes a request to the host of its shard, here or on the owning node.
//! Session ids embed the shard, so only the first request of a session (which carries
//! the card) needs the card id. A shard that is moving, or has no safe owner yet, is
//! waited for (bounded in time and in the number of waiting requests), then `503` (I7).

mod remote;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix::prelude::*;
use kofu_coord::Fence;
use kofu_core::records::ResidentRecord;
use kofu_core::session::CloseReason;
use kofu_proto::{CardId, ErrorCode, KioskId, SessionId, SessionOp, SessionReply};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::time::Instant;

use crate::Deps;
use crate::cluster_metrics::DropReason;
use crate::messages::{Answer, CreateSession, Moved, ReplyTo, SessionCall};
use crate::shard_host::{CloseAll, HandOff, ShardHost};
pub use remote::Remote;

/// How long a request may wait for a moving shard, and how many may wait at once.
#[derive(Debug, Clone, Copy)]
pub struct RouterConfig {
    pub move_wait: Duration,
    pub max_waiting: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            move_wait: Duration::from_secs(5),
            max_waiting: 10_000,
        }
    }
}

/// Pause between routing attempts while a shard moves: short, since a handoff takes
/// milliseconds and the new owner is announced at once.
const RETRY_PAUSE: Duration = Duration::from_millis(10);
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(100);

enum Slot {
    Empty,
    Active(Host),
    /// Being handed off or dropped: requests wait for the next owner.
    Moving,
}

/// A shard served here: its host, and how many requests wait in the host's mailbox.
struct Host {
    fence: Fence,
    addr: Addr<ShardHost>,
    backlog: Arc<AtomicUsize>,
}

/// How a host starts: what it may find in the store for its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardStart {
    /// The store was created with this node (an embedded node's start): no session of
    /// the shard exists yet.
    Fresh,
    /// The shard was taken over: its open sessions (orphans of a crash, or handed over)
    /// are resumed at once, so their idle timers run.
    TakenOver,
}

/// Hosts of one node that resume their shard's sessions at the same time.
const SWEEPS_AT_ONCE: usize = 4;

/// One request as the router carries it, possibly several times (to a moved shard).
#[derive(Debug, Clone)]
pub(crate) enum Request {
    Create {
        card: CardId,
        card_key: [u8; 32],
        /// Never forwarded: only a session started on this node uses it.
        record: Option<Arc<ResidentRecord>>,
        kiosk: KioskId,
    },
    Call {
        session: SessionId,
        kiosk: KioskId,
        op: SessionOp,
    },
}

/// One routing attempt: an answer, or "try again" (nothing happened anywhere).
pub(crate) enum Attempt {
    Done(SessionReply),
    /// An authentication answered by another node, which must be told once the kiosk
    /// has the answer: the receipt tells it.
    Receipted(SessionReply, Receipt),
    Again,
}

/// Tells a session's owner on another node that the kiosk has its authentication's
/// answer (`SessionOp::AuthDelivered`). Run it once the answer has left this node for
/// the kiosk, and not if it never did: until the owner hears it, a repeat of the
/// authentication is answered as done (`200`), never `409` for an answer the kiosk lacks.
pub type Receipt = futures::future::BoxFuture<'static, ()>;

struct Inner {
    slots: Vec<RwLock<Slot>>,
    /// The HTTP workers' arbiters, on which shard hosts run.
    arbiters: Mutex<Vec<Option<ArbiterHandle>>>,
    /// Wakes whoever waits for every worker to register its arbiter.
    registered: Notify,
    deps: Arc<Deps>,
    /// The other nodes (cluster mode); `None` on an embedded node.
    remote: Option<Remote>,
    config: RouterConfig,
    waiting: AtomicUsize,
    /// Permits to sweep a taken-over shard (`ShardStart::TakenOver`).
    sweeps: Arc<Semaphore>,
}

#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("shards", &self.inner.slots.len())
            .finish()
    }
}

/// Decrements the waiting count however the wait ends.
struct Waiting<'a>(&'a Router);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.inner.waiting.fetch_sub(1, Ordering::AcqRel);
        self.0.inner.deps.cluster.buffered.dec();
    }
}

impl Router {
    /// A router for `workers` HTTP workers; hosts start as shards are added once every
    /// worker has registered its arbiter. With `remote`, requests for shards owned
    /// elsewhere are forwarded to their owner.
    pub fn new(
        shard_count: u32,
        workers: usize,
        deps: Arc<Deps>,
        config: RouterConfig,
        remote: Option<Remote>,
    ) -> Router {
        Router {
            inner: Arc::new(Inner {
                slots: (0..shard_count).map(|_| RwLock::new(Slot::Empty)).collect(),
                arbiters: Mutex::new(vec![None; workers.max(1)]),
                registered: Notify::new(),
                deps,
                remote,
                config,
                waiting: AtomicUsize::new(0),
                sweeps: Arc::new(Semaphore::new(SWEEPS_AT_ONCE)),
            }),
        }
    }

    /// Called on each HTTP worker thread: shards `s` with `s % workers == worker` run
    /// there, so about 1/`workers` of requests are served on the thread that accepted
    /// them, saving two thread hand-offs.
    pub fn register_worker(&self, worker: usize) {
        let mut arbiters = self.inner.arbiters.lock();
        if let Some(slot) = arbiters.get_mut(worker) {
            *slot = Some(Arbiter::current());
        }
        if arbiters.iter().all(Option::is_some) {
            self.inner.registered.notify_waiters();
        }
    }

    /// Resolves once every worker has registered, so hosts can be placed.
    pub async fn workers_registered(&self) {
        loop {
            let notified = self.inner.registered.notified();
            tokio::pin!(notified);
            // Registered before the check, so a registration in between still wakes us.
            notified.as_mut().enable();
            if self.inner.arbiters.lock().iter().all(Option::is_some) {
                return;
            }
            notified.await;
        }
    }

    /// The arbiter of worker `turn` (modulo the workers), once it has registered.
    pub(crate) fn worker_arbiter(&self, turn: usize) -> Option<ArbiterHandle> {
        let arbiters = self.inner.arbiters.lock();
        arbiters
            .get(turn % arbiters.len().max(1))
            .cloned()
            .flatten()
    }

    pub fn shard_count(&self) -> u32 {
        self.inner.slots.len() as u32
    }

    pub(crate) fn deps(&self) -> &Arc<Deps> {
        &self.inner.deps
    }

    /// Starts the host of a shard whose lease this node just took.
    pub fn add_shard(&self, fence: Fence, start: ShardStart) {
        let Some(slot) = self.inner.slots.get(fence.shard as usize) else {
            return;
        };
        let Some(arbiter) = self.worker_arbiter(fence.shard as usize) else {
            tracing::error!(
                shard = fence.shard,
                "no worker arbiter to place the shard on"
            );
            return;
        };
        let deps = self.inner.deps.clone();
        let backlog = Arc::new(AtomicUsize::new(0));
        let sweep = (start == ShardStart::TakenOver).then(|| self.inner.sweeps.clone());
        let counted = backlog.clone();
        let addr = ShardHost::start_in_arbiter(&arbiter, move |_| {
            ShardHost::new(fence, deps, counted, sweep)
        });
        let host = Host {
            fence,
            addr,
            backlog,
        };
        let old = std::mem::replace(&mut *slot.write(), Slot::Active(host));
        if let Slot::Active(old) = old {
            old.addr.do_send(HandOff);
        } else {
            self.inner.deps.metrics.shards_owned.inc();
        }
        self.inner.deps.metrics.shard_acquisitions.inc();
    }

    /// Gives a shard up: requests wait from now on, every session is detached after
    /// its in-flight transition, then the slot is empty and the lease may go.
    pub async fn hand_off(&self, shard: u32) {
        let Some(slot) = self.inner.slots.get(shard as usize) else {
            return;
        };
        let old = std::mem::replace(&mut *slot.write(), Slot::Moving);
        let metrics = &self.inner.deps.metrics;
        if let Slot::Active(old) = old {
            let timer = self.inner.deps.cluster.handoff_duration.start_timer();
            let _ = old.addr.send(HandOff).await;
            timer.observe_duration();
            metrics.shards_owned.dec();
            self.inner.deps.cluster.handoffs.inc();
        }
        let mut slot = slot.write();
        if matches!(*slot, Slot::Moving) {
            *slot = Slot::Empty;
        }
    }

    /// The lease of `fence` is gone (lapsed or taken): stop acting for it at once.
    pub fn drop_shard(&self, fence: Fence) {
        let Some(slot) = self.inner.slots.get(fence.shard as usize) else {
            return;
        };
        let mut slot = slot.write();
        if let Slot::Active(host) = &*slot
            && host.fence == fence
        {
            host.addr.do_send(HandOff);
            *slot = Slot::Empty;
            self.inner.deps.metrics.shards_owned.dec();
        }
    }

    /// Hands a message to the host of `shard` without waiting for room: `None` when
    /// the shard is not served here now, or its lease is in doubt (I2: the request
    /// waits for a safe owner, here or elsewhere). A full mailbox is overload, answered
    /// `503` at once rather than queued without bound.
    fn post<M>(
        &self,
        shard: u32,
        remote: bool,
        make: impl FnOnce(ReplyTo) -> M,
    ) -> Option<oneshot::Receiver<Answer>>
    where
        M: Message<Result = ()> + Send + 'static,
        ShardHost: Handler<M>,
    {
        let slot = self.inner.slots.get(shard as usize)?.read();
        let Slot::Active(host) = &*slot else {
            return None;
        };
        let deps = &self.inner.deps;
        if !deps.coordinator.holds(host.fence) {
            return None;
        }
        let (tx, rx) = ReplyTo::channel(remote);
        if host.backlog.fetch_add(1, Ordering::AcqRel) >= deps.config.host_mailbox {
            host.backlog.fetch_sub(1, Ordering::AcqRel);
            deps.metrics.mailbox_rejections.inc();
            tx.send(ErrorCode::Unavailable);
            return Some(rx);
        }
        deps.metrics.mailbox_backlog.inc();
        // A stopped host drops the message, and with it the reply: tried again.
        host.addr.do_send(make(tx));
        Some(rx)
    }

    /// One attempt on this node's own host: `None` when the shard is not served here,
    /// `Again` when it stopped being served here meanwhile. `wait` bounds a long poll,
    /// which answers `Rendering` when it runs out. `remote`: another node forwarded it.
    pub(crate) async fn attempt_local(
        &self,
        shard: u32,
        req: &Request,
        wait: Option<Duration>,
        remote: bool,
    ) -> Option<Attempt> {
        let rx = match req.clone() {
            Request::Create {
                card,
                card_key,
                record,
                kiosk,
            } => self.post(shard, remote, |reply| CreateSession {
                card,
                card_key,
                record,
                kiosk,
                reply,
            })?,
            Request::Call { session, kiosk, op } => {
                self.post(shard, remote, |reply| SessionCall {
                    session,
                    kiosk,
                    op,
                    reply,
                })?
            }
        };
        let answer = match wait {
            None => rx.await,
            Some(d) => match tokio::time::timeout(d, rx).await {
                Ok(r) => r,
                Err(_) => return Some(Attempt::Done(SessionReply::Rendering)),
            },
        };
        Some(match answer {
            Ok(Ok(reply)) => Attempt::Done(reply),
            // A dropped reply means nobody handled the request (a host or session that
            // stopped with it in its mailbox): nothing happened, so it is tried again,
            // never guessed at.
            Ok(Err(Moved)) | Err(_) => Attempt::Again,
        })
    }

    /// Routes `req` for `shard` until it is answered, waiting out moves up to the
    /// configured bound.
    async fn route(
        &self,
        shard: u32,
        req: Request,
        wait: Option<Duration>,
    ) -> (SessionReply, Option<Receipt>) {
        let started = Instant::now();
        let deadline = started + self.inner.config.move_wait;
        let mut waiting: Option<Waiting<'_>> = None;
        let mut pause = RETRY_PAUSE;
        loop {
            let left = wait.map(|w| w.saturating_sub(started.elapsed()));
            let attempt = match self.attempt_local(shard, &req, left, false).await {
                Some(a) => a,
                None => match &self.inner.remote {
                    Some(remote) => remote.attempt(self, shard, &req, left).await,
                    None => Attempt::Again,
                },
            };
            match attempt {
                Attempt::Done(reply) => return (reply, None),
                Attempt::Receipted(reply, receipt) => return (reply, Some(receipt)),
                Attempt::Again => {}
            }
            let cluster = &self.inner.deps.cluster;
            if Instant::now() + pause > deadline {
                cluster.dropped(DropReason::Deadline);
                return (ErrorCode::Unavailable.into(), None);
            }
            if waiting.is_none() {
                let n = self.inner.waiting.fetch_add(1, Ordering::AcqRel);
                cluster.buffered.inc();
                let guard = Waiting(self);
                if n >= self.inner.config.max_waiting {
                    cluster.dropped(DropReason::Full);
                    return (ErrorCode::Unavailable.into(), None);
                }
                waiting = Some(guard);
            }
            cluster.route_retries.inc();
            self.inner.deps.coordinator.refresh();
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_PAUSE_MAX);
        }
    }

    pub async fn create_session(
        &self,
        card: CardId,
        record: Arc<ResidentRecord>,
        kiosk: KioskId,
    ) -> SessionReply {
        let shard = kofu_proto::shard_of(&card, self.shard_count());
        let req = Request::Create {
            card,
            card_key: record.card_public_key,
            record: Some(record),
            kiosk,
        };
        self.route(shard, req, None).await.0
    }

    /// Sends `op` to a session. With `wait`, a pending document is awaited up to `wait`,
    /// and the answer is `Rendering` if it was not ready by then. A receipt that comes
    /// with the answer is run before it is returned: for callers that hand the answer
    /// on at once (the HTTP layer runs it after the answer left, `call_receipted`).
    pub async fn call(
        &self,
        session: SessionId,
        kiosk: KioskId,
        op: SessionOp,
        wait: Option<Duration>,
    ) -> SessionReply {
        let (reply, receipt) = self.call_receipted(session, kiosk, op, wait).await;
        if let Some(receipt) = receipt {
            receipt.await;
        }
        reply
    }

    /// `call`, with the receipt to run once the answer has reached the kiosk.
    pub async fn call_receipted(
        &self,
        session: SessionId,
        kiosk: KioskId,
        op: SessionOp,
        wait: Option<Duration>,
    ) -> (SessionReply, Option<Receipt>) {
        if session.shard() >= self.shard_count() {
            // No session of this cluster can carry that shard: it never existed.
            return (ErrorCode::UnknownSession.into(), None);
        }
        let req = Request::Call { session, kiosk, op };
        self.route(session.shard(), req, wait).await
    }

    fn active_hosts(&self) -> Vec<Addr<ShardHost>> {
        self.inner
            .slots
            .iter()
            .filter_map(|s| match &*s.read() {
                Slot::Active(host) => Some(host.addr.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn open_sessions(&self) -> i64 {
        self.inner.deps.metrics.sessions_open.get()
    }

    /// Resolves once no session is open on this node.
    pub async fn sessions_closed(&self) {
        self.inner.deps.metrics.sessions_open.all_closed().await;
    }

    /// Closes every open session (their unconfirmed jobs are voided, never charged).
    pub async fn close_all(&self, reason: CloseReason) -> usize {
        let mut n = 0;
        for h in self.active_hosts() {
            n += h.send(CloseAll(reason)).await.unwrap_or(0);
        }
        n
    }
}
