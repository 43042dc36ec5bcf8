//! The shard host: one actor per owned shard. It owns the shard's session table and card
//! locks, starts session actors on its own arbiter, and routes calls to them, answering
//! `unknown_session` for any session of another kiosk exactly as for a missing one.
//! Sessions it has not met are resumed from their snapshot (a takeover), and a handoff
//! detaches them all for the next owner.

mod resume;

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use kofu_coord::Fence;
use kofu_core::session::CloseReason;
use kofu_proto::{ErrorCode, KioskId, SessionId, SessionOp, SessionReply};

use crate::Deps;
use crate::messages::{CreateSession, Detach, SessionCall, SessionEnded};
use crate::session::timers::CloseSession;
use crate::session::{Session, SessionInit};

struct Entry {
    addr: Addr<Session>,
    kiosk: KioskId,
}

pub struct ShardHost {
    fence: Fence,
    deps: Arc<Deps>,
    sessions: HashMap<SessionId, Entry>,
    /// card digest → the session holding the card on this shard
    cards: HashMap<[u8; 32], SessionId>,
    /// Recently ended sessions and their kiosk, in two generations: a repeated DELETE
    /// by the same kiosk stays `204` for at least one `tombstone_ttl`.
    tombstones: [HashMap<SessionId, KioskId>; 2],
    /// Sessions whose snapshot is being read, with the calls waiting for it.
    loading: HashMap<SessionId, Vec<SessionCall>>,
    /// Handing the shard off: every message is answered `Moved`.
    moving: bool,
}

impl ShardHost {
    pub fn new(fence: Fence, deps: Arc<Deps>) -> ShardHost {
        ShardHost {
            fence,
            deps,
            sessions: HashMap::new(),
            cards: HashMap::new(),
            tombstones: [HashMap::new(), HashMap::new()],
            loading: HashMap::new(),
            moving: false,
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct RotateTombstones;

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
        ctx.set_mailbox_capacity(self.deps.config.host_mailbox);
        ctx.notify_later(RotateTombstones, self.deps.config.tombstone_ttl);
    }
}

impl Handler<RotateTombstones> for ShardHost {
    type Result = ();

    fn handle(&mut self, _: RotateTombstones, ctx: &mut Context<Self>) {
        let [young, old] = &mut self.tombstones;
        std::mem::swap(young, old);
        young.clear();
        ctx.notify_later(RotateTombstones, self.deps.config.tombstone_ttl);
    }
}

impl Handler<CreateSession> for ShardHost {
    type Result = ();

    fn handle(&mut self, msg: CreateSession, ctx: &mut Context<Self>) {
        self.deps.metrics.mailbox_backlog.dec();
        if self.moving {
            return msg.reply.moved();
        }
        let digest = msg.card.digest_bytes();
        if let Some(old) = self.cards.get(&digest).copied() {
            match self.sessions.get(&old) {
                Some(e) if e.kiosk != msg.kiosk => {
                    return msg.reply.send(ErrorCode::CardInUse);
                }
                Some(_) => {
                    // Same kiosk, same card: the old session ends first. Its lock release
                    // only applies while it still holds the lock, so the new lock stands.
                    if let Some(e) = self.sessions.remove(&old) {
                        e.addr.do_send(CloseSession(CloseReason::Replaced));
                        self.tombstones[0].insert(old, e.kiosk);
                    }
                }
                None => {}
            }
        }
        let id = SessionId::new(self.fence.shard, rand::random());
        let init = SessionInit {
            id,
            kiosk: msg.kiosk.clone(),
            card: msg.card,
            card_key: msg.card_key,
            record: msg.record,
            fence: self.fence,
            challenge: rand::random(),
            deps: self.deps.clone(),
            host: ctx.address(),
            reply: msg.reply,
        };
        let addr = Session::new(init).start();
        self.cards.insert(digest, id);
        self.sessions.insert(
            id,
            Entry {
                addr,
                kiosk: msg.kiosk,
            },
        );
    }
}

impl Handler<SessionCall> for ShardHost {
    type Result = ();

    fn handle(&mut self, msg: SessionCall, ctx: &mut Context<Self>) {
        self.deps.metrics.mailbox_backlog.dec();
        if self.moving {
            return msg.reply.moved();
        }
        self.route(msg, ctx);
    }
}

impl ShardHost {
    fn route(&mut self, msg: SessionCall, ctx: &mut Context<Self>) {
        let Some(entry) = self.sessions.get(&msg.session) else {
            let ended_here = self
                .tombstones
                .iter()
                .any(|t| t.get(&msg.session) == Some(&msg.kiosk));
            if ended_here {
                let answer = if matches!(msg.op, SessionOp::Close) {
                    SessionReply::Closed
                } else {
                    ErrorCode::UnknownSession.into()
                };
                return msg.reply.send(answer);
            }
            self.load(msg, ctx);
            return;
        };
        if entry.kiosk != msg.kiosk {
            return msg.reply.send(ErrorCode::UnknownSession);
        }
        if let Err(err) = entry.addr.try_send(msg) {
            let (msg, code) = match err {
                SendError::Full(m) => {
                    self.deps.metrics.mailbox_rejections.inc();
                    (m, ErrorCode::Unavailable)
                }
                SendError::Closed(m) if matches!(m.op, SessionOp::Close) => {
                    // Stopped but not yet forgotten: the session is closed already.
                    return m.reply.send(SessionReply::Closed);
                }
                SendError::Closed(m) => (m, ErrorCode::UnknownSession),
            };
            msg.reply.send(code);
        }
    }
}

impl Handler<SessionEnded> for ShardHost {
    type Result = ();

    fn handle(&mut self, msg: SessionEnded, _ctx: &mut Context<Self>) {
        if self.cards.get(&msg.card_digest) == Some(&msg.session) {
            self.cards.remove(&msg.card_digest);
        }
        if self.sessions.remove(&msg.session).is_some() {
            self.tombstones[0].insert(msg.session, msg.kiosk);
        }
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
