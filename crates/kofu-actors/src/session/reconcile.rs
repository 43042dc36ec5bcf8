//! After a change whose outcome is unknown (the store timed out, or a replica did not
//! confirm it in time: the script may have run), the session reads its stored state back
//! before its next transition and continues from that: a print answered `503` but
//! recorded is a print, a close answered `503` but applied is a close. Only the session
//! writes its state, so the stored state is either the one before the change or the one
//! after it, and the snapshot's sequence number says which (DESIGN.md, "acknowledged
//! means durable").

use actix::prelude::*;
use kofu_coord::StoreError;
use kofu_core::session::{CloseReason, Command, JobPhase, Outcome, Session as Machine, VoidReason};

use super::{CommitOp, Job, Session, SessionReply, Unsure};
use crate::messages::NotApplied;
use crate::snapshot::Stored;

impl Session {
    /// Runs `then` once the session's state is the store's: at once, or after reading
    /// it back when the last change's outcome is unknown. `Err` when that read failed
    /// (the session stays unsure) or found the shard moved (the session detached).
    pub(super) fn settled<F>(&mut self, ctx: &mut Context<Self>, then: F)
    where
        F: FnOnce(&mut Self, &mut Context<Self>, Result<(), NotApplied>) + 'static,
    {
        let Unsure::Changed(op) = self.unsure else {
            return then(self, ctx, Ok(()));
        };
        let timer = self.deps.metrics.store_op(CommitOp::Reconcile);
        let read = self.deps.store.load_snapshot(self.fence, self.id);
        ctx.wait(read.into_actor(self).map(move |res, act, ctx| {
            timer.observe_duration();
            let res = act.reconcile(op, res, ctx);
            then(act, ctx, res);
        }));
    }

    /// Once settled, ends the session for the close decided earlier (`closing`), unless
    /// that close turned out to be applied already; the idle timer retries on failure.
    pub(super) fn close_if_settled(&mut self, ctx: &mut Context<Self>) {
        self.settled(ctx, |act, ctx, res| match (res, act.closing) {
            (Ok(()), Some(reason)) if !act.is_closed() => {
                act.end(ctx, reason, None, SessionReply::Closed);
            }
            (Ok(()), _) => {}
            (Err(_), _) => act.retry_close(ctx),
        });
    }

    /// Continues from the stored state `res` after `op`, whose outcome was unknown.
    fn reconcile(
        &mut self,
        op: CommitOp,
        res: Result<Option<Vec<u8>>, StoreError>,
        ctx: &mut Context<Self>,
    ) -> Result<(), NotApplied> {
        let stored = match res {
            Ok(None) => None,
            Ok(Some(bytes)) => match Stored::decode(&bytes, self.id) {
                Ok(stored) => Some(stored),
                Err(_) => {
                    // A fixed text: the bytes are not described (I6), and not guessed at.
                    tracing::error!(
                        shard = self.fence.shard,
                        "stored session state does not decode"
                    );
                    return Err(NotApplied::Unavailable);
                }
            },
            Err(e) => return Err(self.store_failed(&e, ctx)),
        };
        self.unsure = Unsure::No;
        match stored {
            // Closed, or never stored (a start that was not applied): over either way.
            None | Some(Stored::Closed(_)) => {
                self.closed_in_store(ctx);
                Ok(())
            }
            Some(Stored::Open(snap)) if snap.seq == self.seq => Ok(()),
            Some(Stored::Open(snap)) => {
                if snap.seq == self.seq + 1 {
                    self.unsure = Unsure::Applied(op);
                } else {
                    // Not a state this session wrote last: trust nothing it holds.
                    tracing::error!(
                        shard = self.fence.shard,
                        "stored session state is not the last one written"
                    );
                    for job in &mut self.jobs {
                        job.doc = None;
                    }
                }
                self.seq = snap.seq;
                self.adopt_stored(snap.machine, ctx);
                Ok(())
            }
        }
    }

    /// The store says the session is over: it is, here too.
    fn closed_in_store(&mut self, ctx: &mut Context<Self>) {
        let reason = self.closing.unwrap_or(CloseReason::IdleTimeout);
        tracing::debug!(shard = self.fence.shard, session = %self.id, ?reason, "session found closed in the store");
        let mut next = self.machine();
        if let Outcome::Closed { voided } = next.apply(Command::Close(reason)) {
            self.deps
                .metrics
                .voided(VoidReason::SessionClosed, voided.len());
            self.deps.metrics.session_ended(reason);
        }
        self.adopt(next);
        self.stop_ended(ctx);
    }

    /// Takes the stored `machine` as the session's state: a job keeps its document
    /// only if it is issued exactly as the stored job says; jobs the change added are
    /// rendered here; parked fetches of jobs no longer rendering are answered anew.
    fn adopt_stored(&mut self, machine: Machine, ctx: &mut Context<Self>) {
        let known = self.jobs.len();
        for (job, stored) in self.jobs.iter_mut().zip(&machine.jobs) {
            if job.saved.id != stored.id || job.saved.meta != stored.meta {
                job.doc = None;
            }
            if job.saved.phase != JobPhase::Printed && stored.phase == JobPhase::Printed {
                // A print recorded though its request was answered `503`.
                self.deps.metrics.printed(stored.kind, stored.fee_yen());
            }
        }
        self.phase = machine.phase;
        let mut stored = machine.jobs.into_iter();
        for (job, next) in self.jobs.iter_mut().zip(stored.by_ref()) {
            job.saved = next;
        }
        self.jobs.extend(stored.map(Job::new));
        self.resume_renders(ctx, known);
        let parked: Vec<_> = self
            .jobs
            .iter_mut()
            .filter(|j| j.saved.phase != JobPhase::Rendering)
            .flat_map(|j| {
                let id = j.saved.id;
                j.waiters.drain(..).map(move |w| (id, w))
            })
            .collect();
        for (job, w) in parked {
            self.fetch(ctx, job, true, w);
        }
    }
}
