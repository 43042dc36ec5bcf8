//! The session actor: one per open session. It alone holds the session's state, the
//! card digest it authenticated and the documents rendered for it (I3), persists every
//! transition through the fenced store before answering, and ends itself on timers.
//! A change whose outcome the store could not report is read back before the next
//! transition (`session/reconcile.rs`), so a kiosk's retry after `503` converges.

mod commit;
mod ops;
mod reconcile;
mod render;
pub(crate) mod timers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::prelude::*;
use kofu_coord::{CardLockOp, Change, Fence, LockOutcome, SnapshotOp};
use kofu_core::records::ResidentRecord;
use kofu_core::session::{CloseReason, Phase, Session as Machine};
use kofu_proto::api::{CreateSessionResponse, PrintedResponse};
use kofu_proto::{ErrorCode, JobId, KioskId, SessionId, SessionOp, SessionReply};
use kofu_render::Rendered;
// Tokio's clock, not std's: the same instant in production, and virtual time in tests
// on a paused runtime, where the idle timer must measure what its timer waited.
use tokio::time::Instant;

use crate::Deps;
use crate::messages::{
    Delivery, Detach, EndReplaced, NotApplied, ReplyTo, SessionCall, SessionStopped,
};
use crate::shard_host::ShardHost;
use crate::snapshot::{PrintedJob, SNAPSHOT_V, Snapshot, printed_jobs};

/// How soon a close that the store did not confirm is tried again.
const CLOSE_RETRY: Duration = Duration::from_secs(1);
/// How long after its answer went to another node a repeated authentication waits for
/// that node's notice, and how often it looks: the notice follows the answer at once
/// (one link hop), so only a lost answer waits the whole time.
const AUTH_NOTICE_WAIT: Duration = Duration::from_millis(500);
const AUTH_NOTICE_POLL: Duration = Duration::from_millis(20);

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

/// A store operation of a session; it names the operation in the metrics' `op` label,
/// so the label values are exactly these. All but the last two are changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitOp {
    Start,
    Auth,
    Job,
    Deliver,
    Refuse,
    Print,
    Void,
    Close,
    /// A write of the unchanged state, so that the store's age of it tells how long
    /// the session has been quiet (a kiosk polling a document changes nothing).
    Touch,
    /// The fenced read before a delivered document is released again.
    Recheck,
    /// The read back of the stored state after a change with an unknown outcome.
    Reconcile,
}

impl CommitOp {
    pub(crate) const ALL: [CommitOp; 11] = [
        CommitOp::Start,
        CommitOp::Auth,
        CommitOp::Job,
        CommitOp::Deliver,
        CommitOp::Refuse,
        CommitOp::Print,
        CommitOp::Void,
        CommitOp::Close,
        CommitOp::Touch,
        CommitOp::Recheck,
        CommitOp::Reconcile,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CommitOp::Start => "start",
            CommitOp::Auth => "auth",
            CommitOp::Job => "job",
            CommitOp::Deliver => "deliver",
            CommitOp::Refuse => "refuse",
            CommitOp::Print => "print",
            CommitOp::Void => "void",
            CommitOp::Close => "close",
            CommitOp::Touch => "touch",
            CommitOp::Recheck => "recheck",
            CommitOp::Reconcile => "reconcile",
        }
    }
}

/// Whether the session's state is the store's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unsure {
    /// It is: every change was acknowledged or refused.
    No,
    /// The last change (`op`) may or may not have been applied (a timeout, a replica
    /// that did not confirm): the stored state is read back before the next transition.
    Changed(CommitOp),
    /// It was applied although its request was answered `503`: the kiosk's repeat of
    /// that request is answered as done, once (API.md: repeating converges).
    Applied(CommitOp),
}

pub struct Session {
    id: SessionId,
    kiosk: KioskId,
    /// The card as its digest only (I6): the lock's key, registry lookups, bindings.
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
    /// When the store last acknowledged a write of the state: a kiosk's request more
    /// than the config's `activity_grain` after it writes again (`Touch`), so that the
    /// stored state is never older than the session's quiet time plus that grain.
    last_write: Instant,
    /// Changes written so far (the snapshot's `seq`).
    seq: u64,
    unsure: Unsure,
    /// A close decided but not confirmed by the store yet: the idle timer retries it.
    closing: Option<CloseReason>,
    /// The answer to the kiosk's create request, sent once the start is persisted.
    pending_create: Option<ReplyTo>,
    /// The record read for the create, used by the authentication that follows.
    fresh: Option<Arc<ResidentRecord>>,
    /// Started from a snapshot on a new owner rather than by a kiosk's create.
    resumed: bool,
    /// The kiosk surely has the answer to its authentication: it went to a requester
    /// still waiting for it. Until then (a forwarding node or the kiosk gave up on it,
    /// or the session resumed elsewhere) a repeat of it is answered as done, `200` with
    /// the same offer, not `409` (API.md: repeating a call after `503` converges).
    auth_answered: bool,
    /// Until when a repeated authentication waits for the notice of the node its answer
    /// went to (which sends it once the answer left for its kiosk), before it is answered
    /// as done: a kiosk repeating it at once gets `409`, one whose answer was lost `200`.
    auth_notice_due: Option<Instant>,
    /// Set once the session is over (closed, or never reached the store), before its
    /// last answer leaves, not when it detaches from a shard that moves: parked requests
    /// learn it is gone, and the host (which shares the flag) no longer counts it as
    /// holding its card, although its `SessionStopped` may still be on its way (a kiosk
    /// told `204` may insert the card again at once, at any kiosk).
    ended: Arc<AtomicBool>,
}

/// Everything a session starts from.
pub struct SessionInit {
    pub id: SessionId,
    pub kiosk: KioskId,
    pub card_digest: [u8; 32],
    pub card_key: [u8; 32],
    pub record: Option<Arc<ResidentRecord>>,
    pub fence: Fence,
    pub challenge: [u8; 32],
    pub deps: Arc<Deps>,
    pub host: Addr<ShardHost>,
    pub reply: ReplyTo,
    /// Shared with the host's entry for the session.
    pub ended: Arc<AtomicBool>,
}

impl Session {
    pub fn new(init: SessionInit) -> Session {
        let started_ms = crate::clock::now_ms();
        Session {
            card_digest: init.card_digest,
            id: init.id,
            kiosk: init.kiosk,
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
            last_write: Instant::now(),
            seq: 0,
            unsure: Unsure::No,
            closing: None,
            pending_create: Some(init.reply),
            fresh: init.record,
            resumed: false,
            auth_answered: false,
            auth_notice_due: None,
            ended: init.ended,
        }
    }

    /// A session as its last snapshot left it, on the shard's new owner. Document bytes
    /// are re-rendered on demand from the persisted serial, issue time and record. Its
    /// idle time counts from its last request as the stored state's age (`written_ago`,
    /// by the store's clock) bounds it, so a session orphaned by a crash ends on its
    /// own, and a shard that moves again and again does not keep it open.
    pub fn resume(
        snap: Snapshot,
        written_ago: Duration,
        fence: Fence,
        deps: Arc<Deps>,
        host: Addr<ShardHost>,
        ended: Arc<AtomicBool>,
    ) -> Session {
        let now_ms = crate::clock::now_ms();
        let age = Duration::from_millis(now_ms.saturating_sub(snap.started_ms));
        let now = Instant::now();
        let quiet = quiet_before_resume(&deps.config, written_ago);
        Session {
            card_digest: snap.card_digest,
            id: snap.session,
            kiosk: snap.kiosk,
            card_key: snap.card_key,
            fence,
            challenge: snap.challenge,
            phase: snap.machine.phase,
            jobs: snap.machine.jobs.into_iter().map(Job::new).collect(),
            deps,
            host,
            started_ms: snap.started_ms,
            started: now.checked_sub(age).unwrap_or(now),
            last_activity: now.checked_sub(quiet).unwrap_or(now),
            last_write: now.checked_sub(written_ago).unwrap_or(now),
            seq: snap.seq,
            unsure: Unsure::No,
            closing: None,
            pending_create: None,
            fresh: None,
            resumed: true,
            auth_answered: false,
            auth_notice_due: None,
            ended,
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

    fn snapshot_bytes(&self, machine: &Machine, seq: u64) -> Vec<u8> {
        Snapshot {
            v: SNAPSHOT_V,
            session: self.id,
            kiosk: self.kiosk.clone(),
            card_digest: self.card_digest,
            card_key: self.card_key,
            challenge: self.challenge,
            machine: machine.clone(),
            started_ms: self.started_ms,
            seq,
        }
        .encode()
    }

    /// Notes where an authentication's answer went.
    fn auth_delivered(&mut self, to: Delivery) {
        self.auth_answered = to == Delivery::ToKiosk;
        self.auth_notice_due = (to == Delivery::ToPeer).then(|| Instant::now() + AUTH_NOTICE_WAIT);
    }

    fn job_index(&self, job: JobId) -> Option<usize> {
        self.jobs.iter().position(|j| j.saved.id == job)
    }

    /// Answers a request by the session's kiosk: `op` dispatched once the state is known.
    fn serve(&mut self, ctx: &mut Context<Self>, op: SessionOp, reply: ReplyTo) {
        self.settled(ctx, move |act, ctx, res| {
            if let Err(e) = res {
                return reply.answer(e.answer());
            }
            if act.is_closed() {
                return reply.send(gone(&op, &printed_jobs(&act.machine())));
            }
            let redo = match act.unsure {
                Unsure::Applied(op) => {
                    act.unsure = Unsure::No;
                    Some(op)
                }
                _ => None,
            };
            match op {
                SessionOp::Auth { signature } => act.auth(ctx, signature, reply, redo),
                SessionOp::CreateJob { kind, copies } => {
                    act.create_job(ctx, kind, copies, reply, redo)
                }
                SessionOp::Fetch { job, wait } => {
                    act.touched(ctx, reply, move |act, ctx, reply| {
                        act.fetch(ctx, job, wait, reply)
                    })
                }
                SessionOp::Printed { job } => act.printed(ctx, job, reply),
                SessionOp::Close => {
                    act.end(ctx, CloseReason::Removed, Some(reply), SessionReply::Closed)
                }
                // Taken up by the `SessionCall` handler before anything waits.
                SessionOp::AuthDelivered => reply.send(SessionReply::Noted),
            }
        });
    }
}

/// How long a resumed session counts as quiet already, from its stored state's age: a
/// request may have come up to the grain after the last write without writing, so that
/// much is not counted; and the session stays for at least the grain after the resume
/// (the kiosk of a session whose owner failed mid-flow is retrying just then).
fn quiet_before_resume(config: &crate::SessionConfig, written_ago: Duration) -> Duration {
    let grain = config.activity_grain;
    written_ago
        .saturating_sub(grain)
        .min(config.idle_timeout.saturating_sub(grain))
}

/// What a closed session answers its kiosk: a repeated DELETE is `204`, a repeated
/// `printed` of a job whose print it confirmed the same answer as before (both
/// idempotent, API.md), anything else `unknown_session`.
pub(crate) fn gone(op: &SessionOp, printed: &[PrintedJob]) -> SessionReply {
    match op {
        SessionOp::Close => SessionReply::Closed,
        SessionOp::Printed { job } => {
            printed
                .iter()
                .find(|p| p.job == *job)
                .map_or(ErrorCode::UnknownSession.into(), |p| {
                    SessionReply::Printed(PrintedResponse {
                        serial: p.serial.clone(),
                        charged_yen: p.charged_yen,
                    })
                })
        }
        _ => ErrorCode::UnknownSession.into(),
    }
}

/// Lower-case hex of a digest, as bindings and audit records carry it.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.deps.config.session_mailbox);
        self.deps.metrics.sessions_open.opened();
        let quiet = self.last_activity.elapsed();
        self.schedule_idle_check(ctx, self.deps.config.idle_timeout.saturating_sub(quiet));
        if self.resumed {
            self.deps.cluster.sessions_resumed.inc();
            self.resume_renders(ctx, 0);
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
                    // snapshot from before a takeover): the card is in use. Nothing
                    // was written.
                    reply.send(ErrorCode::CardInUse);
                    act.stop_ended(ctx);
                }
                Ok(applied) => {
                    if let Some(older) = applied.replaced {
                        // The kiosk's older session of this card, which this host may
                        // not have met (the host ends the one it knows itself).
                        act.host.do_send(EndReplaced {
                            session: older,
                            kiosk: act.kiosk.clone(),
                        });
                    }
                    let delivered = reply.deliver(SessionReply::Created(CreateSessionResponse {
                        session_id: act.id.to_string(),
                        challenge: kofu_proto::b64url(&act.challenge),
                        expires_in_s: act.deps.config.idle_timeout.as_millis().div_ceil(1000)
                            as u64,
                    }));
                    if !delivered {
                        // Its requester gave up (the kiosk was told `503`): no kiosk
                        // knows this session, so it ends now rather than lock the card
                        // until its idle timeout.
                        act.end(ctx, CloseReason::IdleTimeout, None, SessionReply::Closed);
                    }
                }
                Err(NotApplied::Moved) => reply.moved(),
                Err(NotApplied::Unavailable) => {
                    reply.send(ErrorCode::Unavailable);
                    // The start may have been applied (card lock, snapshot) though no
                    // kiosk knows this session: undo it now if the store answers, else
                    // the idle timer tries again until it does.
                    act.closing = Some(CloseReason::IdleTimeout);
                    act.close_if_settled(ctx);
                }
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.deps.metrics.sessions_open.closed();
        for job in &mut self.jobs {
            for w in job.waiters.drain(..) {
                if self.ended.load(Ordering::Acquire) {
                    w.send(ErrorCode::UnknownSession);
                } else {
                    w.moved();
                }
            }
        }
        self.host.do_send(SessionStopped {
            session: self.id,
            card_digest: self.card_digest,
        });
    }
}

impl Handler<SessionCall> for Session {
    type Result = ();

    fn handle(&mut self, msg: SessionCall, ctx: &mut Context<Self>) {
        if self.is_closed() {
            return msg
                .reply
                .send(gone(&msg.op, &printed_jobs(&self.machine())));
        }
        // Checked per request: a node that could not renew its lease in time must not
        // act for the shard, not even to re-send a rendered document (I2). Nothing is
        // done and nothing is said about the session: the router waits for an owner.
        if !self.deps.coordinator.holds(self.fence) {
            return msg.reply.moved();
        }
        if msg.reply.is_closed() {
            // Queued while a transition was in flight, and given up on meanwhile: the
            // kiosk was told `503` (or nothing) and may be repeating it already.
            self.deps.metrics.abandoned.inc();
            return;
        }
        if msg.op == SessionOp::AuthDelivered {
            // The forwarding node's word that the kiosk has the authentication's answer:
            // no request of the kiosk, so the idle timer does not restart.
            self.auth_answered |= self.phase == Phase::Authenticated;
            self.auth_notice_due = None;
            return msg.reply.send(SessionReply::Noted);
        }
        self.last_activity = Instant::now();
        self.serve(ctx, msg.op, msg.reply);
    }
}

impl Handler<Detach> for Session {
    type Result = ();

    fn handle(&mut self, _: Detach, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lower_case_and_two_digits_per_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }
}
