//! The session's timers, each a message the actor sends itself: render start, render
//! deadline, idle timeout and hard limit (which also retries a close the store did not
//! confirm), plus the host's order to close. Each acts on a settled state.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use kofu_core::records::ResidentRecord;
use kofu_core::session::{CloseReason, Command, Outcome, VoidReason};
use kofu_proto::{ErrorCode, JobId, SessionReply};
use tokio::time::Instant;

use super::{CommitOp, Session};
use crate::messages::NotApplied;

/// Render a job, from the record already read for it when there is one.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct RenderNow(pub JobId, pub Option<Arc<ResidentRecord>>);

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct RenderDeadline(pub JobId);

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct IdleCheck;

/// The shard host ends a session (replaced by a newer one of the same kiosk, shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseSession(pub CloseReason);

const RENDER_RETRY: Duration = Duration::from_millis(100);

impl Session {
    /// One timer serves both the idle timeout and the hard limit (a pending timer costs
    /// memory per open session): it fires at whichever comes first, never later than
    /// `after`.
    pub(super) fn schedule_idle_check(&mut self, ctx: &mut Context<Self>, after: Duration) {
        let to_hard_limit = self
            .deps
            .config
            .hard_limit
            .saturating_sub(self.started.elapsed());
        ctx.notify_later(IdleCheck, after.min(to_hard_limit));
    }

    /// Tries the idle check (and a pending close) again soon, whatever the hard limit
    /// says: the store did not answer, and must not be asked again at once.
    pub(super) fn retry_close(&mut self, ctx: &mut Context<Self>) {
        ctx.notify_later(IdleCheck, super::CLOSE_RETRY);
    }

    /// Rendering starts right after the `202` is sent (or after an injected delay); the
    /// deadline runs from job creation.
    /// `rec` is the record the job was created from: rendering at once from it saves a
    /// registry round trip (the release re-validates against a fresh read anyway, I4).
    pub(super) fn schedule_render(
        &mut self,
        ctx: &mut Context<Self>,
        job: JobId,
        rec: Option<Arc<ResidentRecord>>,
    ) {
        let delay = self.deps.faults.next_delay();
        if delay.is_zero() {
            ctx.notify(RenderNow(job, rec));
        } else {
            // An injected delay stands for a slow render: read the record afresh after it.
            ctx.notify_later(RenderNow(job, None), delay);
        }
        ctx.notify_later(RenderDeadline(job), self.deps.config.render_deadline);
    }

    /// After a resume (or a reconcile that found jobs this actor never created): jobs
    /// from the `first` on that are still rendering are rendered here, against the
    /// deadline that runs from their creation.
    pub(super) fn resume_renders(&mut self, ctx: &mut Context<Self>, first: usize) {
        let now_ms = crate::clock::now_ms();
        for job in self.jobs.iter().skip(first).map(|j| &j.saved) {
            if job.phase != kofu_core::session::JobPhase::Rendering {
                continue;
            }
            let deadline_ms = job
                .meta
                .created_ms
                .saturating_add(self.deps.config.render_deadline.as_millis() as u64);
            ctx.notify(RenderNow(job.id, None));
            ctx.notify_later(
                RenderDeadline(job.id),
                Duration::from_millis(deadline_ms.saturating_sub(now_ms)),
            );
        }
    }

    pub(super) fn schedule_render_retry(&mut self, ctx: &mut Context<Self>, job: JobId) {
        ctx.notify_later(RenderNow(job, None), RENDER_RETRY);
    }
}

impl Handler<RenderNow> for Session {
    type Result = ();

    fn handle(&mut self, RenderNow(job, rec): RenderNow, ctx: &mut Context<Self>) {
        self.settled(ctx, move |act, ctx, res| match res {
            Ok(()) if !act.is_closed() => act.render(ctx, job, rec),
            Ok(()) | Err(NotApplied::Moved) => {}
            Err(NotApplied::Unavailable) => act.schedule_render_retry(ctx, job),
        });
    }
}

impl Handler<RenderDeadline> for Session {
    type Result = ();

    fn handle(&mut self, RenderDeadline(job): RenderDeadline, ctx: &mut Context<Self>) {
        self.settled(ctx, move |act, ctx, res| match res {
            Ok(()) => act.void_late(ctx, job),
            Err(NotApplied::Moved) => {}
            Err(NotApplied::Unavailable) => {
                ctx.notify_later(RenderDeadline(job), RENDER_RETRY);
            }
        });
    }
}

impl Session {
    /// Voids a job that missed its render deadline (if it did).
    fn void_late(&mut self, ctx: &mut Context<Self>, job: JobId) {
        let mut next = self.machine();
        if next.apply(Command::RenderDeadline { job }) != Outcome::Changed {
            return;
        }
        let Some(i) = self.job_index(job) else { return };
        self.commit(
            ctx,
            CommitOp::Void,
            next,
            super::ops::snapshot_only(),
            move |act, ctx, res| {
                if res.is_err() {
                    // Not voided yet: try again shortly; the job stays unreleasable meanwhile
                    // because only Ready jobs release and this one is still Rendering.
                    ctx.notify_later(RenderDeadline(job), RENDER_RETRY);
                    return;
                }
                act.deps.metrics.voided(VoidReason::Deadline, 1);
                let voided = &mut act.jobs[i];
                voided.doc = None;
                for w in voided.waiters.drain(..) {
                    w.send(ErrorCode::JobVoided);
                }
            },
        );
    }
}

impl Handler<IdleCheck> for Session {
    type Result = ();

    fn handle(&mut self, _: IdleCheck, ctx: &mut Context<Self>) {
        self.settled(ctx, |act, ctx, res| match res {
            Ok(()) if act.is_closed() => {}
            Ok(()) => act.idle_check(ctx),
            Err(NotApplied::Moved) => {}
            Err(NotApplied::Unavailable) => act.retry_close(ctx),
        });
    }
}

impl Session {
    fn idle_check(&mut self, ctx: &mut Context<Self>) {
        if let Some(reason) = self.closing {
            self.end(ctx, reason, None, SessionReply::Closed);
            return;
        }
        if self.started.elapsed() >= self.deps.config.hard_limit {
            self.end(ctx, CloseReason::HardLimit, None, SessionReply::Closed);
            return;
        }
        let idle = self.deps.config.idle_timeout;
        let quiet = self.last_activity.elapsed();
        if quiet >= idle {
            self.end(ctx, CloseReason::IdleTimeout, None, SessionReply::Closed);
        } else {
            self.schedule_idle_check(ctx, idle - quiet);
        }
    }
}

impl Handler<CloseSession> for Session {
    type Result = ();

    fn handle(&mut self, CloseSession(reason): CloseSession, ctx: &mut Context<Self>) {
        self.last_activity = Instant::now();
        self.closing = Some(reason);
        self.close_if_settled(ctx);
    }
}
