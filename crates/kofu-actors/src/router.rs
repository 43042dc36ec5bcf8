//! The router: takes a request to the host of its shard. Session ids embed the shard,
//! so only the first request of a session (which carries the card) needs the card id.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use kofu_coord::Fence;
use kofu_core::records::ResidentRecord;
use kofu_core::session::CloseReason;
use kofu_proto::{CardId, ErrorCode, KioskId, SessionId};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::Deps;
use crate::messages::{CreateSession, Replying, SessionCall, SessionOp, SessionReply};
use crate::shard_host::{CloseAll, ShardHost, StopAccepting};

struct Inner {
    /// Indexed by shard number; `None` for shards this node does not own.
    hosts: Vec<Option<Addr<ShardHost>>>,
    arbiters: Mutex<Vec<Arbiter>>,
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
    /// Starts one shard host per lease, spread round-robin over `threads` arbiters
    /// (one per core), so sessions of different shards run in parallel.
    pub fn start(shard_count: u32, leases: &[Fence], deps: Arc<Deps>, threads: usize) -> Router {
        let arbiters: Vec<Arbiter> = (0..threads.max(1)).map(|_| Arbiter::new()).collect();
        let mut hosts: Vec<Option<Addr<ShardHost>>> = vec![None; shard_count as usize];
        for (i, fence) in leases.iter().enumerate() {
            let fence = *fence;
            let d = deps.clone();
            let arb = &arbiters[i % arbiters.len()];
            let addr =
                ShardHost::start_in_arbiter(&arb.handle(), move |_| ShardHost::new(fence, d));
            if let Some(slot) = hosts.get_mut(fence.shard as usize) {
                *slot = Some(addr);
            }
        }
        deps.metrics.shards_owned.set(leases.len() as i64);
        deps.metrics.shard_acquisitions.inc_by(leases.len() as u64);
        Router {
            inner: Arc::new(Inner {
                hosts,
                arbiters: Mutex::new(arbiters),
                deps,
            }),
        }
    }

    pub fn shard_count(&self) -> u32 {
        self.inner.hosts.len() as u32
    }

    fn host(&self, shard: u32) -> Option<&Addr<ShardHost>> {
        self.inner
            .hosts
            .get(shard as usize)
            .and_then(Option::as_ref)
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
        record: Arc<ResidentRecord>,
        kiosk: KioskId,
    ) -> SessionReply {
        let shard = kofu_proto::shard_of(&card, self.shard_count());
        let rx = self.post(shard, |reply| CreateSession {
            card,
            record,
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
        for h in self.inner.hosts.iter().flatten() {
            h.do_send(StopAccepting);
        }
    }

    pub fn open_sessions(&self) -> i64 {
        self.inner.deps.metrics.sessions_open.get()
    }

    /// Closes every open session (their unconfirmed jobs are voided, never charged).
    pub async fn close_all(&self, reason: CloseReason) -> usize {
        let mut n = 0;
        for h in self.inner.hosts.iter().flatten() {
            n += h.send(CloseAll(reason)).await.unwrap_or(0);
        }
        n
    }

    /// Stops the arbiters; call after the HTTP server has stopped.
    pub fn stop(&self) {
        for a in self.inner.arbiters.lock().drain(..) {
            a.stop();
            let _ = a.join();
        }
    }
}
