//! Committing a transition: the change is written through the fenced store, and the
//! session adopts the new state only once the store acknowledged it. A refused change
//! (fenced) detaches the session; one whose outcome is unknown leaves it unsure until
//! it reads its state back (`reconcile.rs`). Ending the session is the last commit.

use actix::prelude::*;
use kofu_coord::{Applied, CardLockOp, Change, SnapshotOp, StoreError};
use kofu_core::session::{CloseReason, Command, Outcome, Session as Machine, VoidReason};
use kofu_proto::SessionReply;

use super::{CommitOp, Session, Unsure};
use crate::messages::{NotApplied, ReplyTo};
use crate::snapshot::Tombstone;

impl Session {
    /// Persists `next` (plus `change`'s other effects) and adopts it only once the
    /// store acknowledged; the mailbox waits meanwhile, so transitions of one session
    /// never interleave. A closed `next` leaves a tombstone instead of a snapshot.
    pub(super) fn commit<F>(
        &mut self,
        ctx: &mut Context<Self>,
        op: CommitOp,
        next: Machine,
        mut change: Change,
        done: F,
    ) where
        F: FnOnce(&mut Self, &mut Context<Self>, Result<Applied, NotApplied>) + 'static,
    {
        let seq = self.seq + 1;
        change.snapshot = if next.is_closed() {
            SnapshotOp::Tombstone {
                bytes: Tombstone::new(self.id, self.kiosk.clone(), &next).encode(),
                ttl: self.deps.config.tombstone_ttl,
            }
        } else {
            SnapshotOp::Put(self.snapshot_bytes(&next, seq))
        };
        let timer = self.deps.metrics.store_op(op);
        let sent = tokio::time::Instant::now();
        let fut = self.deps.store.apply(self.fence, self.id, change);
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| {
            timer.observe_duration();
            match res {
                Ok(applied) => {
                    act.seq = seq;
                    act.last_write = sent;
                    act.adopt(next);
                    done(act, ctx, Ok(applied));
                }
                Err(e) => {
                    let failed = act.store_failed(&e, ctx);
                    if failed == NotApplied::Unavailable {
                        act.unsure = Unsure::Changed(op);
                    }
                    done(act, ctx, Err(failed));
                }
            }
        }));
    }

    /// `commit`, then answer `reply`: `ok` builds the answer once the store acknowledged;
    /// a change not applied answers why.
    pub(super) fn commit_then_reply<F>(
        &mut self,
        ctx: &mut Context<Self>,
        op: CommitOp,
        next: Machine,
        change: Change,
        reply: ReplyTo,
        ok: F,
    ) where
        F: FnOnce(&mut Self, Applied) -> SessionReply + 'static,
    {
        self.commit(ctx, op, next, change, move |act, _, res| match res {
            Ok(applied) => reply.send(ok(act, applied)),
            Err(e) => reply.answer(e.answer()),
        });
    }

    /// Writes the unchanged state if the last write is older than the activity grain,
    /// then runs `then` (at once if not): a request that changes nothing keeps the
    /// stored state's age within the grain of the session's quiet time.
    pub(super) fn touched<F>(&mut self, ctx: &mut Context<Self>, reply: ReplyTo, then: F)
    where
        F: FnOnce(&mut Self, &mut Context<Self>, ReplyTo) + 'static,
    {
        if self.last_write.elapsed() <= self.deps.config.activity_grain {
            return then(self, ctx, reply);
        }
        let next = self.machine();
        let change = super::ops::snapshot_only();
        self.commit(
            ctx,
            CommitOp::Touch,
            next,
            change,
            move |act, ctx, res| match res {
                Ok(_) => then(act, ctx, reply),
                Err(e) => reply.answer(e.answer()),
            },
        );
    }

    /// A fenced operation means another node owns the shard now: this session must not
    /// act any more (I2), and detaches, leaving its state to the next owner. An
    /// unreachable store only fails this request (I7).
    pub(super) fn store_failed(&mut self, e: &StoreError, ctx: &mut Context<Self>) -> NotApplied {
        match e {
            StoreError::Fenced { .. } => {
                self.deps.metrics.fencing_rejections.inc();
                tracing::warn!(
                    shard = self.fence.shard,
                    "session lost its shard; detaching"
                );
                ctx.stop();
                NotApplied::Moved
            }
            StoreError::Unavailable(_) | StoreError::Corrupt(_) => {
                self.deps.metrics.store_unavailable.inc();
                tracing::warn!(shard = self.fence.shard, error = %e, "store operation failed");
                NotApplied::Unavailable
            }
        }
    }

    /// The session is over: stop, telling parked requests it is gone.
    pub(super) fn stop_ended(&mut self, ctx: &mut Context<Self>) {
        self.mark_ended();
        ctx.stop();
    }

    /// Marks the session over, for the host too: done before its closing answer is
    /// sent, so that a kiosk told `204` finds the card free at once.
    pub(super) fn mark_ended(&self) {
        self.ended.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Ends the session for `reason`: voids unconfirmed jobs, releases the card lock and
    /// leaves a tombstone, then stops. `reply` gets `answer` once that is persisted; a
    /// close the store did not confirm is tried again by the idle timer until it is.
    pub(super) fn end(
        &mut self,
        ctx: &mut Context<Self>,
        reason: CloseReason,
        reply: Option<ReplyTo>,
        answer: SessionReply,
    ) {
        self.closing = Some(reason);
        let mut next = self.machine();
        let voided = match next.apply(Command::Close(reason)) {
            Outcome::Closed { voided } => voided,
            _ => Vec::new(),
        };
        let change = Change {
            snapshot: SnapshotOp::Keep,
            card_lock: CardLockOp::Release {
                card_digest: self.card_digest,
            },
            allocate_serial: false,
            audit: None,
        };
        self.commit(
            ctx,
            CommitOp::Close,
            next,
            change,
            move |act, ctx, res| match res {
                Ok(_) => {
                    tracing::debug!(shard = act.fence.shard, session = %act.id, ?reason, "session ended");
                    act.deps
                        .metrics
                        .voided(VoidReason::SessionClosed, voided.len());
                    act.deps.metrics.session_ended(reason);
                    act.mark_ended();
                    if let Some(r) = reply {
                        r.send(answer);
                    }
                    act.stop_ended(ctx);
                }
                Err(e) => {
                    if let Some(r) = reply {
                        r.answer(e.answer());
                    }
                    act.retry_close(ctx);
                }
            },
        );
    }
}
