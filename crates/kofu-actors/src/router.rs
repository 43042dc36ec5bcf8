//! The router: takes a request to the host of its shard. Session ids embed the shard,
//! so only the first request of a session (which carries the card) needs the card id.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use kofu_coord::Fence;
use kofu_core::session::CloseReason;
use kofu_proto::{CardId, ErrorCode, KioskId, SessionId};
use tokio::sync::oneshot;

use crate::Deps;
use crate::messages::{CreateSession, Replying, SessionCall, SessionOp, SessionReply};
use crate::shard_host::{CloseAll, ShardHost, StopAccepting};

struct Inner {
    /// Indexed by shard number; empty for shards this node does not own or has not
    /// placed yet.
    hosts: Vec<OnceLock<Addr<ShardHost>>>,
    leases: Vec<Fence>,
    deps: Arc<Deps>,
}

#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("shards", &self.inner.hosts.len())
            .finish()
    }
}

impl Router {
    /// A router for `leases`; hosts start when each HTTP worker calls `place_hosts`.
    pub fn new(shard_count: u32, leases: Vec<Fence>, deps: Arc<Deps>) -> Router {
        Router {
            inner: Arc::new(Inner {
                hosts: (0..shard_count).map(|_| OnceLock::new()).collect(),
                leases,
                deps,
            }),
        }
    }

    /// Starts, on the calling thread's arbiter, the hosts of the shards that fall to
    /// HTTP worker `worker` of `workers`. Sessions then run on the thread that accepts
    /// their requests for about 1/`workers` of all requests, which saves two thread
    /// hand-offs per request; the rest cross threads as before.
    pub fn place_hosts(&self, worker: usize, workers: usize) {
        let workers = workers.max(1);
        let mut placed = 0;
        for fence in self
            .inner
            .leases
            .iter()
            .filter(|f| f.shard as usize % workers == worker)
        {
            let Some(slot) = self.inner.hosts.get(fence.shard as usize) else {
                continue;
            };
            if slot.get().is_none() {
                let addr = ShardHost::new(*fence, self.inner.deps.clone()).start();
                if slot.set(addr).is_ok() {
                    placed += 1;
                }
            }
        }
        let metrics = &self.inner.deps.metrics;
        metrics.shards_owned.add(placed);
        metrics.shard_acquisitions.inc_by(placed as u64);
    }

    /// Whether every lease has a running host.
    pub fn ready(&self) -> bool {
        self.inner.leases.iter().all(|f| {
            self.inner
                .hosts
                .get(f.shard as usize)
                .is_some_and(|h| h.get().is_some())
        })
    }

    pub fn shard_count(&self) -> u32 {
        self.inner.hosts.len() as u32
    }

    fn host(&self, shard: u32) -> Option<&Addr<ShardHost>> {
        self.inner.hosts.get(shard as usize).and_then(OnceLock::get)
    }

    /// Hands a message to a host without waiting for room: a full mailbox is overload,
    /// answered `503` at once rather than queued without bound.
    fn post<M>(
        &self,
        shard: u32,
        make: impl FnOnce(oneshot::Sender<SessionReply>) -> M,
    ) -> oneshot::Receiver<SessionReply>
    where
        M: Message<Result = ()> + Replying + Send + 'static,
        ShardHost: Handler<M>,
    {
        let (tx, rx) = oneshot::channel();
        let Some(host) = self.host(shard) else {
            let _ = tx.send(ErrorCode::Unavailable.into());
            return rx;
        };
        let metrics = &self.inner.deps.metrics;
        metrics.mailbox_backlog.inc();
        if let Err(err) = host.try_send(make(tx)) {
            metrics.mailbox_backlog.dec();
            metrics.mailbox_rejections.inc();
            let msg = match err {
                SendError::Full(m) | SendError::Closed(m) => m,
            };
            let _ = msg.into_reply().send(ErrorCode::Unavailable.into());
        }
        rx
    }

    pub async fn create_session(
        &self,
        card: CardId,
        card_key: [u8; 32],
        kiosk: KioskId,
    ) -> SessionReply {
        let shard = kofu_proto::shard_of(&card, self.shard_count());
        let rx = self.post(shard, |reply| CreateSession {
            card,
            card_key,
            kiosk,
            reply,
        });
        // The host always answers a create; a dropped reply means the session actor
        // died while starting, which is not a decision about this card.
        rx.await.unwrap_or_else(|_| ErrorCode::Unavailable.into())
    }

    /// Sends `op` to a session. With `wait`, a pending document is awaited up to `wait`
    /// and `None` means it was still rendering then.
    pub async fn call(
        &self,
        session: SessionId,
        kiosk: KioskId,
        op: SessionOp,
        wait: Option<Duration>,
    ) -> Option<SessionReply> {
        // Past the host (which checked the kiosk), a dropped reply means the session
        // ended before handling the request: it is gone, and a DELETE has its answer.
        if session.shard() >= self.shard_count() {
            // No session of this cluster can carry that shard: it never existed.
            return Some(ErrorCode::UnknownSession.into());
        }
        let ended = if matches!(op, SessionOp::Close) {
            SessionReply::Closed
        } else {
            ErrorCode::UnknownSession.into()
        };
        let rx = self.post(session.shard(), |reply| SessionCall {
            session,
            kiosk,
            op,
            reply,
        });
        match wait {
            None => Some(rx.await.unwrap_or(ended)),
            Some(d) => match tokio::time::timeout(d, rx).await {
                Ok(r) => Some(r.unwrap_or(ended)),
                Err(_) => None,
            },
        }
    }

    /// Stops admitting new sessions on every shard of this node.
    pub fn stop_accepting(&self) {
        for h in self.inner.hosts.iter().filter_map(OnceLock::get) {
            h.do_send(StopAccepting);
        }
    }

    pub fn open_sessions(&self) -> i64 {
        self.inner.deps.metrics.sessions_open.get()
    }

    /// Closes every open session (their unconfirmed jobs are voided, never charged).
    pub async fn close_all(&self, reason: CloseReason) -> usize {
        let mut n = 0;
        for h in self.inner.hosts.iter().filter_map(OnceLock::get) {
            n += h.send(CloseAll(reason)).await.unwrap_or(0);
        }
        n
    }
}
