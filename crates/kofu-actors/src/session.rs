//! The session actor: one per open session. It alone holds the session's state, the
//! card it authenticated and the documents rendered for it (I3), persists every
//! transition through the fenced store before answering, and ends itself on timers.

mod ops;
mod render;
pub(crate) mod timers;

use std::sync::Arc;

use actix::prelude::*;
use kofu_coord::{Applied, CardLockOp, Change, Fence, LockOutcome, SnapshotOp, StoreError};
use kofu_core::records::ResidentRecord;
use kofu_core::session::{CloseReason, Command, Outcome, Phase, Session as Machine, VoidReason};
use kofu_proto::api::CreateSessionResponse;
use kofu_proto::{CardId, ErrorCode, JobId, KioskId, SessionId, SessionOp, SessionReply};
use kofu_render::Rendered;
// Tokio's clock, not std's: the same instant in production, and virtual time in tests
// on a paused runtime, where the idle timer must measure what its timer waited.
use tokio::time::Instant;

use crate::Deps;
use crate::messages::{Detach, NotApplied, ReplyTo, SessionCall, SessionEnded};
use crate::shard_host::ShardHost;
use crate::snapshot::Snapshot;

/// One job of the session: the persisted part (the state machine's job with its
/// issuance metadata, as in the snapshot) and, beside it, the document bytes and the
/// requests parked on them, which are never persisted.
struct Job {
    saved: kofu_core::session::Job,
    /// Boxed: most jobs of an open session have none yet or no longer.
    doc: Option<Box<Rendered>>,
    waiters: Vec<ReplyTo>,
}

impl Job {
    fn new(saved: kofu_core::session::Job) -> Job {
        Job {
            saved,
            doc: None,
            waiters: Vec::new(),
        }
    }
}

/// The store change a transition commits; it names the change in the metrics' `op`
/// label, so the label values are exactly these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitOp {
    Start,
    Auth,
    Job,
    Render,
    Deliver,
    Refuse,
    Print,
    Void,
    Close,
}

impl CommitOp {
    pub(crate) const ALL: [CommitOp; 9] = [
        CommitOp::Start,
        CommitOp::Auth,
        CommitOp::Job,
        CommitOp::Render,
        CommitOp::Deliver,
        CommitOp::Refuse,
        CommitOp::Print,
        CommitOp::Void,
        CommitOp::Close,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CommitOp::Start => "start",
            CommitOp::Auth => "auth",
            CommitOp::Job => "job",
            CommitOp::Render => "render",
            CommitOp::Deliver => "deliver",
            CommitOp::Refuse => "refuse",
            CommitOp::Print => "print",
            CommitOp::Void => "void",
            CommitOp::Close => "close",
        }
    }
}

pub struct Session {
    id: SessionId,
    kiosk: KioskId,
    card: CardId,
    card_digest: [u8; 32],
    /// Compressed: decompressing costs once per session at auth, and the expanded
    /// point would be most of an idle session's memory.
    card_key: [u8; 32],
    fence: Fence,
    challenge: [u8; 32],
    /// The state machine's phase; with each job's `saved` part, the persisted state.
    phase: Phase,
    jobs: Vec<Job>,
    deps: Arc<Deps>,
    host: Addr<ShardHost>,
    started_ms: u64,
    started: Instant,
    last_activity: Instant,
    /// The answer to the kiosk's create request, sent once the start is persisted.
    pending_create: Option<ReplyTo>,
    /// The record read for the create, used by the authentication that follows.
    fresh: Option<Arc<ResidentRecord>>,
    /// Started from a snapshot on a new owner rather than by a kiosk's create.
    resumed: bool,
    /// Stopped without ending (shard moved): parked requests go to the new owner.
    detached: bool,
}

/// Everything a session starts from.
pub struct SessionInit {
    pub id: SessionId,
    pub kiosk: KioskId,
    pub card: CardId,
    pub card_key: [u8; 32],
    pub record: Option<Arc<ResidentRecord>>,
    pub fence: Fence,
    pub challenge: [u8; 32],
    pub deps: Arc<Deps>,
    pub host: Addr<ShardHost>,
    pub reply: ReplyTo,
}

impl Session {
    pub fn new(init: SessionInit) -> Session {
        let started_ms = crate::clock::now_ms();
        Session {
            card_digest: init.card.digest_bytes(),
            id: init.id,
            kiosk: init.kiosk,
            card: init.card,
            card_key: init.card_key,
            fence: init.fence,
            challenge: init.challenge,
            phase: Machine::new().phase,
            jobs: Vec::new(),
            deps: init.deps,
            host: init.host,
            started_ms,
            started: Instant::now(),
            last_activity: Instant::now(),
            pending_create: Some(init.reply),
            fresh: init.record,
            resumed: false,
            detached: false,
        }
    }

    /// A session as its last snapshot left it, on the shard's new owner. Document bytes
    /// are re-rendered on demand from the persisted serial, issue time and record.
    pub fn resume(snap: Snapshot, fence: Fence, deps: Arc<Deps>, host: Addr<ShardHost>) -> Session {
        let now_ms = crate::clock::now_ms();
        let age = std::time::Duration::from_millis(now_ms.saturating_sub(snap.started_ms));
        let now = Instant::now();
        Session {
            card_digest: snap.card.digest_bytes(),
            id: snap.session,
            kiosk: snap.kiosk,
            card: snap.card,
            card_key: snap.card_key,
            fence,
            challenge: snap.challenge,
            phase: snap.machine.phase,
            jobs: snap.machine.jobs.into_iter().map(Job::new).collect(),
            deps,
            host,
            started_ms: snap.started_ms,
            started: now.checked_sub(age).unwrap_or(now),
            last_activity: now,
            pending_create: None,
            fresh: None,
            resumed: true,
            detached: false,
        }
    }

    /// The persisted state as the state machine's value: what a transition starts from.
    fn machine(&self) -> Machine {
        Machine {
            phase: self.phase,
            jobs: self.jobs.iter().map(|j| j.saved.clone()).collect(),
        }
    }

    /// Whether `next` is the persisted state as it is (nothing to commit).
    fn unchanged(&self, next: &Machine) -> bool {
        next.phase == self.phase && next.jobs.iter().eq(self.jobs.iter().map(|j| &j.saved))
    }

    /// Takes `next` as the persisted state; jobs it adds start with no document.
    fn adopt(&mut self, next: Machine) {
        self.phase = next.phase;
        let mut saved = next.jobs.into_iter();
        for (job, next) in self.jobs.iter_mut().zip(saved.by_ref()) {
            job.saved = next;
        }
        self.jobs.extend(saved.map(Job::new));
    }

    fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed(_))
    }

    fn snapshot_bytes(&self, machine: &Machine) -> Vec<u8> {
        Snapshot {
            v: 2,
            session: self.id,
            kiosk: self.kiosk.clone(),
            card: self.card.clone(),
            card_key: self.card_key,
            challenge: self.challenge,
            machine: machine.clone(),
            started_ms: self.started_ms,
        }
        .encode()
    }

    fn job_index(&self, job: JobId) -> Option<usize> {
        self.jobs.iter().position(|j| j.saved.id == job)
    }

    /// Persists `next` (plus `change`'s other effects) and adopts it only once the
    /// store acknowledged; the mailbox waits meanwhile, so transitions of one session
    /// never interleave.
    fn commit<F>(
        &mut self,
        ctx: &mut Context<Self>,
        op: CommitOp,
        next: Machine,
        mut change: Change,
        done: F,
    ) where
        F: FnOnce(&mut Self, &mut Context<Self>, Result<Applied, NotApplied>) + 'static,
    {
        change.snapshot = if next.is_closed() {
            SnapshotOp::Delete
        } else {
            SnapshotOp::Put(self.snapshot_bytes(&next))
        };
        let timer = self.deps.metrics.store_op(op);
        let fut = self.deps.store.apply(self.fence, self.id, change);
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| {
            timer.observe_duration();
            match res {
                Ok(applied) => {
                    act.adopt(next);
                    done(act, ctx, Ok(applied));
                }
                Err(e) => {
                    act.store_failed(&e, ctx);
                    let failed = match e {
                        StoreError::Fenced { .. } => NotApplied::Moved,
                        _ => NotApplied::Unavailable,
                    };
                    done(act, ctx, Err(failed));
                }
            }
        }));
    }

    /// `commit`, then answer `reply`: `ok` builds the answer once the store acknowledged;
    /// a change not applied answers why.
    fn commit_then_reply<F>(
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

    /// A fenced write means another node owns the shard now: this session must not act
    /// any more (I2). An unreachable store only fails this request (I7).
    fn store_failed(&mut self, e: &StoreError, ctx: &mut Context<Self>) {
        match e {
            StoreError::Fenced { .. } => {
                self.deps.metrics.fencing_rejections.inc();
                tracing::warn!(shard = self.fence.shard, error = %e, "session lost its shard; stopping");
                ctx.stop();
            }
            StoreError::Unavailable(_) | StoreError::Corrupt(_) => {
                self.deps.metrics.store_unavailable.inc();
                tracing::warn!(shard = self.fence.shard, error = %e, "store change failed");
            }
        }
    }

    /// Ends the session for `reason`: voids unconfirmed jobs, releases the card lock and
    /// deletes the snapshot, then stops. `reply` gets `answer` once that is persisted.
    fn end(
        &mut self,
        ctx: &mut Context<Self>,
        reason: CloseReason,
        reply: Option<ReplyTo>,
        answer: SessionReply,
    ) {
        let mut next = self.machine();
        let voided = match next.apply(Command::Close(reason)) {
            Outcome::Closed { voided } => voided,
            _ => Vec::new(),
        };
        let change = Change {
            snapshot: SnapshotOp::Delete,
            card_lock: CardLockOp::Release {
                card_digest: self.card_digest,
            },
            allocate_serial: false,
            audit: None,
        };
        self.commit(ctx, CommitOp::Close, next, change, move |act, ctx, res| {
            match res {
                Ok(_) => {
                    act.deps
                        .metrics
                        .voided(VoidReason::SessionClosed, voided.len());
                    act.deps.metrics.session_ended(reason);
                    if let Some(r) = reply {
                        r.send(answer);
                    }
                    ctx.stop();
                }
                Err(e) => {
                    if let Some(r) = reply {
                        r.answer(e.answer());
                    }
                    // Timers retry the close; a kiosk retries its DELETE.
                    act.schedule_idle_check(ctx, std::time::Duration::from_secs(1));
                }
            }
        });
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.deps.config.session_mailbox);
        self.deps.metrics.sessions_open.opened();
        self.schedule_idle_check(ctx, self.deps.config.idle_timeout);
        if self.resumed {
            self.deps.cluster.sessions_resumed.inc();
            self.resume_renders(ctx);
            return;
        }
        self.deps.metrics.sessions_started.inc();
        let change = Change {
            snapshot: SnapshotOp::Keep,
            card_lock: CardLockOp::Acquire {
                card_digest: self.card_digest,
                kiosk_id: self.kiosk.as_str().to_owned(),
            },
            allocate_serial: false,
            audit: None,
        };
        let next = self.machine();
        self.commit(ctx, CommitOp::Start, next, change, |act, ctx, res| {
            let Some(reply) = act.pending_create.take() else {
                return;
            };
            match res {
                Ok(applied) if applied.lock == Some(LockOutcome::InUse) => {
                    // Held by a session this host has not met yet (it lives in a
                    // snapshot from before a takeover): the card is in use.
                    reply.send(ErrorCode::CardInUse);
                    ctx.stop();
                }
                Ok(_) => {
                    reply.send(SessionReply::Created(CreateSessionResponse {
                        session_id: act.id.to_string(),
                        challenge: kofu_proto::b64url(&act.challenge),
                        expires_in_s: act.deps.config.idle_timeout.as_millis().div_ceil(1000)
                            as u64,
                    }));
                }
                Err(e) => {
                    reply.answer(e.answer());
                    ctx.stop();
                }
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.deps.metrics.sessions_open.closed();
        for job in &mut self.jobs {
            for w in job.waiters.drain(..) {
                if self.detached {
                    w.moved();
                } else {
                    w.send(ErrorCode::UnknownSession);
                }
            }
        }
        self.host.do_send(SessionEnded {
            session: self.id,
            kiosk: self.kiosk.clone(),
            card_digest: self.card_digest,
        });
    }
}

impl Handler<SessionCall> for Session {
    type Result = ();

    fn handle(&mut self, msg: SessionCall, ctx: &mut Context<Self>) {
        if self.is_closed() {
            msg.reply.send(ErrorCode::UnknownSession);
            return;
        }
        // Checked per request: a node that could not renew its lease in time must not
        // act for the shard any more, not even to re-send a rendered document (I2).
        if !self.deps.coordinator.holds(self.fence) {
            msg.reply.moved();
            self.detached = true;
            ctx.stop();
            return;
        }
        self.last_activity = Instant::now();
        match msg.op {
            SessionOp::Auth { signature } => self.auth(ctx, signature, msg.reply),
            SessionOp::CreateJob { kind, copies } => self.create_job(ctx, kind, copies, msg.reply),
            SessionOp::Fetch { job, wait } => self.fetch(ctx, job, wait, msg.reply),
            SessionOp::Printed { job } => self.printed(ctx, job, msg.reply),
            SessionOp::Close => self.end(
                ctx,
                CloseReason::Removed,
                Some(msg.reply),
                SessionReply::Closed,
            ),
        }
    }
}

impl Handler<Detach> for Session {
    type Result = ();

    fn handle(&mut self, _: Detach, ctx: &mut Context<Self>) {
        self.detached = true;
        ctx.stop();
    }
}
