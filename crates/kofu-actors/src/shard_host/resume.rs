//! Resume: a call for a session this host has not met reads its snapshot through the
//! fenced store (so only the current owner can), and later calls for the same session
//! wait for that one read. A tombstone answers for a closed session: its own kiosk's
//! repeated DELETE is `204`, anything else `unknown_session`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use actix::prelude::*;
use kofu_coord::{Loaded, StoreError};
use kofu_proto::{ErrorCode, SessionId};

use super::{Entry, ShardHost};
use crate::messages::{Answer, Moved, SessionCall};
use crate::session::{Session, gone};
use crate::snapshot::{Stored, printed_jobs};

/// Calls one session may have waiting on its snapshot; a kiosk has one request in
/// flight, so more is a misbehaving client.
const MAX_WAITING: usize = 16;

impl ShardHost {
    pub(super) fn load(&mut self, msg: SessionCall, ctx: &mut Context<Self>) {
        let id = msg.session;
        if let Some(waiting) = self.loading.get_mut(&id) {
            if waiting.len() >= MAX_WAITING {
                msg.reply.send(ErrorCode::Unavailable);
            } else {
                waiting.push(msg);
            }
            return;
        }
        self.loading.insert(id, vec![msg]);
        let read = self.deps.store.load_session(self.fence, id);
        ctx.spawn(
            read.into_actor(self)
                .map(move |res, act, ctx| act.loaded(id, res, ctx)),
        );
    }

    /// The snapshot read for `id` came back: resume the session (unless it is closed or
    /// gone) and pass it the calls that waited.
    pub(super) fn loaded(
        &mut self,
        id: SessionId,
        res: Result<Option<Loaded>, StoreError>,
        ctx: &mut Context<Self>,
    ) {
        let calls = self.loading.remove(&id).unwrap_or_default();
        let answer_all = |calls: Vec<SessionCall>, answer: Answer| {
            for c in calls {
                c.reply.answer(answer.clone());
            }
        };
        if self.moving {
            return answer_all(calls, Err(Moved));
        }
        let (bytes, written_ago) = match res {
            Ok(Some(loaded)) => (loaded.bytes, loaded.written_ago),
            Ok(None) => {
                tracing::debug!(shard = self.fence.shard, session = %id, "no stored state: unknown session");
                return answer_all(calls, Ok(ErrorCode::UnknownSession.into()));
            }
            Err(StoreError::Fenced { .. }) => return answer_all(calls, Err(Moved)),
            Err(e) => {
                self.deps.metrics.store_unavailable.inc();
                tracing::warn!(shard = self.fence.shard, error = %e, "snapshot read failed");
                return answer_all(calls, Ok(ErrorCode::Unavailable.into()));
            }
        };
        let (closed_by, snap) = match Stored::decode(&bytes, id) {
            Ok(Stored::Open(snap)) if !snap.machine.is_closed() => (None, Some(snap)),
            Ok(Stored::Open(snap)) => (Some((snap.kiosk, printed_jobs(&snap.machine))), None),
            Ok(Stored::Closed(tombstone)) => (Some((tombstone.kiosk, tombstone.printed)), None),
            Err(_) => {
                // Unreadable state is not guessed at (I7); a fixed text names no data.
                tracing::error!(
                    shard = self.fence.shard,
                    "stored session state does not decode"
                );
                return answer_all(calls, Ok(ErrorCode::Unavailable.into()));
            }
        };
        let Some(snap) = snap else {
            tracing::debug!(shard = self.fence.shard, session = %id, "stored state is closed");
            for c in calls {
                match closed_by.as_ref() {
                    Some((kiosk, printed)) if *kiosk == c.kiosk => {
                        c.reply.send(gone(&c.op, printed));
                    }
                    _ => c.reply.send(ErrorCode::UnknownSession),
                }
            }
            return;
        };
        let slot = self.deps.kiosk_sessions.acquire(&snap.kiosk);
        let digest = snap.card_digest;
        let ended = Arc::new(AtomicBool::new(false));
        let addr = Session::resume(
            snap,
            written_ago,
            self.fence,
            self.deps.clone(),
            ctx.address(),
            ended.clone(),
        )
        .start();
        match self.cards.get(&digest).and_then(|s| self.sessions.get(s)) {
            Some(holder) if !holder.ended() => {}
            _ => {
                self.cards.insert(digest, id);
            }
        }
        self.sessions.insert(id, Entry { addr, slot, ended });
        for c in calls {
            self.route(c, ctx);
        }
    }
}
