//! The shard host: one actor per owned shard. It owns the shard's session table and card
//! locks, starts session actors on its own arbiter, and routes calls to them, answering
//! `unknown_session` for any session of another kiosk exactly as for a missing one.
//! Sessions it has not met are resumed from their snapshot (lazily on a call, and all at
//! once when the shard was taken over), and a handoff detaches them all for the next
//! owner. A stopped session is forgotten at once: what the host does not know, it reads
//! from the store, where a closed session leaves a tombstone, so it never calls a live
//! session gone, nor a closed one alive.

mod resume;
mod sweep;

use foldhash::{HashMap, HashMapExt as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use actix::prelude::*;
use kofu_coord::Fence;
use kofu_core::session::CloseReason;
use kofu_proto::{ErrorCode, KioskId, SessionId, SessionOp};
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::messages::{CreateSession, Detach, EndReplaced, ReplyTo, SessionCall, SessionStopped};
use crate::session::timers::CloseSession;
use crate::session::{Session, SessionInit};
use crate::{Deps, SessionSlot};

struct Entry {
    addr: Addr<Session>,
    /// The kiosk's count of open sessions holds this one until the entry is dropped.
    slot: SessionSlot,
    /// Set by the session once it is over, before its last answer: from then on it
    /// holds no card, although it may not have stopped yet.
    ended: Arc<AtomicBool>,
}

impl Entry {
    fn kiosk(&self) -> &KioskId {
        self.slot.kiosk()
    }

    fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }
}

pub struct ShardHost {
    fence: Fence,
    deps: Arc<Deps>,
    sessions: HashMap<SessionId, Entry>,
    /// card digest → the session holding the card on this shard
    cards: HashMap<[u8; 32], SessionId>,
    /// Sessions whose snapshot is being read, with the calls waiting for it.
    loading: HashMap<SessionId, Vec<SessionCall>>,
    /// Handing the shard off: every message is answered `Moved`.
    moving: bool,
    /// Requests the router posted that this host has not taken yet: the router's bound
    /// on this mailbox (`SessionConfig::host_mailbox`).
    backlog: Arc<AtomicUsize>,
    /// Taken over: resume every open session of the shard, one sweep at a time among
    /// the hosts sharing these permits.
    sweep: Option<Arc<Semaphore>>,
}

impl ShardHost {
    pub fn new(
        fence: Fence,
        deps: Arc<Deps>,
        backlog: Arc<AtomicUsize>,
        sweep: Option<Arc<Semaphore>>,
    ) -> ShardHost {
        ShardHost {
            fence,
            deps,
            sessions: HashMap::new(),
            cards: HashMap::new(),
            loading: HashMap::new(),
            moving: false,
            backlog,
            sweep,
        }
    }

    /// A request the router posted is taken off the mailbox; answers whether this host
    /// may act on it (I2): not while handing off, nor while the lease is in doubt.
    fn admit(&mut self) -> bool {
        self.backlog.fetch_sub(1, Ordering::AcqRel);
        self.deps.metrics.mailbox_backlog.dec();
        !self.moving && self.deps.coordinator.holds(self.fence)
    }
}

/// Give the shard up: from now on every message is answered `Moved`, and every session
/// is detached once its in-flight transition is persisted. Resolves when all are gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HandOff;

/// Close every open session of this shard; answers how many were closed.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseAll(pub CloseReason);

impl Actor for ShardHost {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Unbounded here (0), bounded by the router, which counts what it posts (a
        // shared `Addr` would not do: actix lets every fresh clone of it past a full
        // mailbox). The rest (sessions stopping, a handoff) must always get in.
        ctx.set_mailbox_capacity(0);
        if let Some(permits) = self.sweep.take() {
            self.start_sweep(ctx, permits);
        }
    }
}

impl Handler<CreateSession> for ShardHost {
    type Result = ();

    fn handle(&mut self, msg: CreateSession, ctx: &mut Context<Self>) {
        if !self.admit() {
            return msg.reply.moved();
        }
        if msg.reply.is_closed() {
            // Its requester gave up (the kiosk, or the node that forwarded it, already
            // answered `503` and the kiosk may have inserted the card again since):
            // acting on it now would close the kiosk's newer session and lock the card
            // for a session nobody knows.
            self.deps.metrics.abandoned.inc();
            return;
        }
        let digest = msg.card.digest_bytes();
        let mut replaced = None;
        if let Some(old) = self.cards.get(&digest).copied() {
            match self.sessions.get(&old) {
                // Closed (its lock released in the store) but not stopped yet: a kiosk
                // told `204` may insert the card again at once, anywhere.
                Some(e) if e.ended() => {}
                Some(e) if *e.kiosk() != msg.kiosk => {
                    return msg.reply.send(ErrorCode::CardInUse);
                }
                Some(e) => replaced = Some(e.addr.clone()),
                None => {}
            }
        }
        // A session replacing the kiosk's own session of this card takes the place of
        // the one ending; any other counts against the kiosk's limit.
        let kiosk_sessions = &self.deps.kiosk_sessions;
        let slot = match &replaced {
            Some(_) => kiosk_sessions.acquire(&msg.kiosk),
            None => match kiosk_sessions.try_acquire(&msg.kiosk) {
                Some(slot) => slot,
                None => return msg.reply.send(ErrorCode::TooManyRequests),
            },
        };
        if let Some(old) = replaced {
            // Same kiosk, same card: the old session ends first (it stays in the table
            // until it has). Its lock release only applies while it still holds the
            // lock, so the new lock stands.
            tracing::debug!(
                shard = self.fence.shard,
                "the kiosk inserted the card again; its old session ends"
            );
            old.do_send(CloseSession(CloseReason::Replaced));
        }
        let id = SessionId::new(self.fence.shard, rand::random());
        let ended = Arc::new(AtomicBool::new(false));
        let init = SessionInit {
            id,
            kiosk: msg.kiosk,
            card_digest: digest,
            card_key: msg.card_key,
            record: msg.record,
            fence: self.fence,
            challenge: rand::random(),
            deps: self.deps.clone(),
            host: ctx.address(),
            reply: msg.reply,
            ended: ended.clone(),
        };
        let addr = Session::new(init).start();
        self.cards.insert(digest, id);
        self.sessions.insert(id, Entry { addr, slot, ended });
    }
}

impl Handler<SessionCall> for ShardHost {
    type Result = ();

    fn handle(&mut self, msg: SessionCall, ctx: &mut Context<Self>) {
        if !self.admit() {
            return msg.reply.moved();
        }
        if msg.reply.is_closed() {
            // Given up on before it was taken up: never acted on late.
            self.deps.metrics.abandoned.inc();
            return;
        }
        self.route(msg, ctx);
    }
}

impl ShardHost {
    fn route(&mut self, msg: SessionCall, ctx: &mut Context<Self>) {
        let Some(entry) = self.sessions.get(&msg.session) else {
            return self.load(msg, ctx);
        };
        if *entry.kiosk() != msg.kiosk {
            return msg.reply.send(ErrorCode::UnknownSession);
        }
        if let Err(err) = entry.addr.try_send(msg) {
            match err {
                SendError::Full(m) => {
                    self.deps.metrics.mailbox_rejections.inc();
                    m.reply.send(ErrorCode::Unavailable);
                }
                // Stopped (ended or detached), and its `SessionStopped` is on its way:
                // nothing was done, so the router tries again, and then the store tells
                // (a tombstone, or the snapshot of a session that detached).
                SendError::Closed(m) => m.reply.moved(),
            }
        }
    }
}

impl Handler<SessionStopped> for ShardHost {
    type Result = ();

    fn handle(&mut self, msg: SessionStopped, _ctx: &mut Context<Self>) {
        if self.cards.get(&msg.card_digest) == Some(&msg.session) {
            self.cards.remove(&msg.card_digest);
        }
        self.sessions.remove(&msg.session);
    }
}

impl Handler<EndReplaced> for ShardHost {
    type Result = ();

    fn handle(&mut self, msg: EndReplaced, ctx: &mut Context<Self>) {
        if let Some(e) = self.sessions.get(&msg.session) {
            return e.addr.do_send(CloseSession(CloseReason::Replaced));
        }
        // Closed as its kiosk would close it. The answer has no requester, but someone
        // must wait for it, or the call counts as given up on and is never acted on.
        let (reply, answer) = ReplyTo::channel(false);
        actix::spawn(
            async move {
                let _ = answer.await;
            }
            .instrument(tracing::debug_span!(
                "end_replaced",
                shard = self.fence.shard
            )),
        );
        let close = SessionCall {
            session: msg.session,
            kiosk: msg.kiosk,
            op: SessionOp::Close,
            reply,
        };
        self.route(close, ctx);
    }
}

impl Handler<HandOff> for ShardHost {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: HandOff, _ctx: &mut Context<Self>) -> Self::Result {
        self.moving = true;
        for (_, calls) in self.loading.drain() {
            for c in calls {
                c.reply.moved();
            }
        }
        let detached: Vec<_> = self
            .sessions
            .values()
            .map(|e| e.addr.send(Detach))
            .collect();
        Box::pin(
            futures::future::join_all(detached)
                .into_actor(self)
                .map(|_, _, ctx| ctx.stop()),
        )
    }
}

impl Handler<CloseAll> for ShardHost {
    type Result = usize;

    fn handle(&mut self, CloseAll(reason): CloseAll, _ctx: &mut Context<Self>) -> usize {
        for e in self.sessions.values() {
            e.addr.do_send(CloseSession(reason));
        }
        self.sessions.len()
    }
}
