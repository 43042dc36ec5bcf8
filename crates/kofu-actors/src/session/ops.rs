//! The session's request handlers: each asks the state machine, performs the effects it
//! calls for through `commit`, and answers the kiosk. `redo` names a change of the
//! kiosk's previous request that was applied although it was answered `503`: repeating
//! that request is answered as done instead of doing it twice.

use std::sync::Arc;

use actix::prelude::*;
use ed25519_dalek::{Signature, VerifyingKey};
use kofu_coord::{AuditOutcome, AuditRecord, CardLockOp, Change, SnapshotOp};
use kofu_core::records::ResidentRecord;
use kofu_core::session::{
    Command, JobMeta, JobPhase, Outcome, Phase, Rejection, Session as Machine,
};
use kofu_proto::api::{
    AuthResponse, Holder, JobResponse, KindOffer, MunicipalityInfo, PrintedResponse,
};
use kofu_proto::{ApiError, CertKind, ErrorCode, JobId, NotIssuable, SessionOp, SessionReply};
use kofu_render::Rendered;
use sha2::{Digest as _, Sha256};

use super::{CommitOp, Session, hex};
use crate::messages::{ReplyTo, SessionCall};
use crate::snapshot::Stored;

fn rejected(r: Rejection) -> ApiError {
    match r {
        Rejection::NotIssuable(reason) => ApiError::not_issuable(reason),
        other => other.code().into(),
    }
}

/// A change that only writes the snapshot (`commit` fills it in).
pub(super) fn snapshot_only() -> Change {
    Change {
        snapshot: SnapshotOp::Keep,
        card_lock: CardLockOp::None,
        allocate_serial: false,
        audit: None,
    }
}

/// Registry answer for a kind: a vanished record can be issued nothing (I7).
fn issuable(record: Option<&ResidentRecord>, kind: CertKind) -> Result<(), NotIssuable> {
    record.map_or(Err(NotIssuable::RecordRestricted), |r| r.issuable(kind))
}

impl Session {
    /// Runs `then` with the holder's current record; store trouble answers `503`.
    fn with_record<F>(&mut self, ctx: &mut Context<Self>, reply: ReplyTo, then: F)
    where
        F: FnOnce(&mut Self, &mut Context<Self>, Option<Arc<ResidentRecord>>, ReplyTo) + 'static,
    {
        let fut = self.deps.registry.record_by_digest(self.card_digest);
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(rec) => then(act, ctx, rec, reply),
            Err(e) => {
                act.deps.metrics.store_unavailable.inc();
                tracing::warn!(shard = act.fence.shard, error = %e, "registry read failed");
                reply.send(ErrorCode::Unavailable);
            }
        }));
    }

    /// `with_record`, but the record read for the create is used once if still held.
    fn with_fresh_record<F>(&mut self, ctx: &mut Context<Self>, reply: ReplyTo, then: F)
    where
        F: FnOnce(&mut Self, &mut Context<Self>, Option<Arc<ResidentRecord>>, ReplyTo) + 'static,
    {
        match self.fresh.take() {
            Some(rec) => then(self, ctx, Some(rec), reply),
            None => self.with_record(ctx, reply, then),
        }
    }

    pub(super) fn auth(
        &mut self,
        ctx: &mut Context<Self>,
        signature: [u8; 64],
        reply: ReplyTo,
        redo: Option<CommitOp>,
    ) {
        let msg =
            kofu_proto::auth_message(&self.id.to_string(), self.kiosk.as_str(), &self.challenge);
        let Ok(key) = VerifyingKey::from_bytes(&self.card_key) else {
            tracing::error!(
                shard = self.fence.shard,
                "registry holds an invalid card key"
            );
            reply.send(ErrorCode::Unavailable);
            return;
        };
        let valid = key
            .verify_strict(&msg, &Signature::from_bytes(&signature))
            .is_ok();
        // A repeat of an authentication whose answer may not have reached the kiosk
        // (answered `503` after all, or lost on its way), before the kiosk moved on to a
        // job: answered as done. Once the kiosk surely had it, a repeat is `409`.
        let unanswered =
            redo == Some(CommitOp::Auth) || (!self.auth_answered && self.jobs.is_empty());
        if valid && unanswered && self.phase == Phase::Authenticated {
            if redo.is_none()
                && self
                    .auth_notice_due
                    .is_some_and(|due| tokio::time::Instant::now() < due)
            {
                // The answer went to another node, whose word that its kiosk has it may
                // be on its way: the repeat waits a moment for it (then `409`).
                let again = SessionCall {
                    session: self.id,
                    kiosk: self.kiosk.clone(),
                    op: SessionOp::Auth { signature },
                    reply,
                };
                ctx.notify_later(again, super::AUTH_NOTICE_POLL);
                return;
            }
            return self.with_fresh_record(ctx, reply, |act, _, rec, reply| match rec {
                Some(rec) => {
                    let answer = SessionReply::Authenticated(auth_response(&rec));
                    act.auth_delivered(reply.deliver_to_kiosk(answer));
                }
                None => reply.send(ErrorCode::UnknownCard),
            });
        }
        let mut next = self.machine();
        match next.apply(Command::Authenticate { valid }) {
            Outcome::Authenticated => {
                self.with_fresh_record(ctx, reply, move |act, ctx, rec, reply| {
                    let Some(rec) = rec else {
                        reply.send(ErrorCode::UnknownCard);
                        return;
                    };
                    act.commit(
                        ctx,
                        CommitOp::Auth,
                        next,
                        snapshot_only(),
                        move |act, _, res| match res {
                            Ok(_) => {
                                let answer = SessionReply::Authenticated(auth_response(&rec));
                                act.auth_delivered(reply.deliver_to_kiosk(answer));
                            }
                            Err(e) => reply.answer(e.answer()),
                        },
                    );
                })
            }
            Outcome::BadSignature { attempts_left } => {
                self.deps.metrics.auth_failures.inc();
                self.commit_then_reply(
                    ctx,
                    CommitOp::Auth,
                    next,
                    snapshot_only(),
                    reply,
                    move |_, _| ApiError::bad_signature(attempts_left).into(),
                );
            }
            Outcome::LockedOut => {
                self.deps.metrics.auth_failures.inc();
                self.end(
                    ctx,
                    kofu_core::session::CloseReason::Locked,
                    Some(reply),
                    ErrorCode::SessionLocked.into(),
                );
            }
            Outcome::Rejected(r) => reply.send(rejected(r)),
            other => unexpected(other, reply),
        }
    }

    pub(super) fn create_job(
        &mut self,
        ctx: &mut Context<Self>,
        kind: CertKind,
        copies: u8,
        reply: ReplyTo,
        redo: Option<CommitOp>,
    ) {
        if redo == Some(CommitOp::Job)
            && let Some(last) = self.jobs.last().map(|j| &j.saved)
            && last.kind == kind
            && last.copies == copies
        {
            return reply.send(SessionReply::JobCreated(JobResponse {
                job_id: last.id.to_string(),
                fee_yen: last.fee_yen(),
            }));
        }
        self.with_record(ctx, reply, move |act, ctx, rec, reply| {
            let index = act.jobs.len() as u8;
            let id = JobId::new(index, rand::random());
            let mut next = act.machine();
            let outcome = next.apply(Command::CreateJob {
                id,
                kind,
                copies,
                issuable: issuable(rec.as_deref(), kind),
            });
            let fee_yen = match outcome {
                Outcome::JobCreated { fee_yen } => fee_yen,
                Outcome::Rejected(r) => return reply.send(rejected(r)),
                other => return unexpected(other, reply),
            };
            if let Some(job) = next.jobs.last_mut() {
                job.meta = JobMeta {
                    created_ms: crate::clock::now_ms(),
                    serial: None,
                    issued_at: None,
                    record_version: rec.as_ref().map_or(0, |r| r.version),
                };
            }
            let change = Change {
                allocate_serial: true,
                ..snapshot_only()
            };
            act.commit(ctx, CommitOp::Job, next, change, move |act, ctx, res| {
                let applied = match res {
                    Ok(a) => a,
                    Err(e) => return reply.answer(e.answer()),
                };
                let serial = applied.serial.map(|n| act.serial_text(n));
                if let Some(job) = act.jobs.last_mut() {
                    job.saved.meta.serial = serial;
                }
                reply.send(SessionReply::JobCreated(JobResponse {
                    job_id: id.to_string(),
                    fee_yen,
                }));
                act.schedule_render(ctx, id, rec);
            });
        });
    }

    pub(super) fn fetch(
        &mut self,
        ctx: &mut Context<Self>,
        job: JobId,
        wait: bool,
        reply: ReplyTo,
    ) {
        let releasable = self.job_index(job).is_some_and(|i| {
            matches!(
                self.jobs[i].saved.phase,
                JobPhase::Ready | JobPhase::Delivered | JobPhase::Printed
            )
        });
        if !releasable {
            let mut probe = self.machine();
            match probe.apply(Command::Fetch {
                job,
                revalidation: Ok(()),
            }) {
                Outcome::Pending if wait => match self.job_index(job) {
                    Some(i) => {
                        let waiters = &mut self.jobs[i].waiters;
                        waiters.retain(|w| !w.is_closed());
                        waiters.push(reply);
                    }
                    None => reply.send(ErrorCode::UnknownJob),
                },
                Outcome::Pending => reply.send(SessionReply::Rendering),
                Outcome::Rejected(r) => reply.send(rejected(r)),
                other => unexpected(other, reply),
            }
            return;
        }
        self.with_record(ctx, reply, move |act, ctx, rec, reply| {
            let Some(i) = act.job_index(job) else {
                return reply.send(ErrorCode::UnknownJob);
            };
            let kind = act.jobs[i].saved.kind;
            let was = act.jobs[i].saved.phase;
            let mut next = act.machine();
            let outcome = next.apply(Command::Fetch {
                job,
                revalidation: issuable(rec.as_deref(), kind),
            });
            match outcome {
                Outcome::Release if was == JobPhase::Ready => {
                    // Fresh records (I4): a document not yet delivered is rendered from
                    // the current record (again, if the record moved on since).
                    if let Some(rec) = rec.as_deref()
                        && (act.jobs[i].doc.is_none()
                            || next.jobs[i].meta.record_version != rec.version)
                    {
                        act.render_into(i, rec, &mut next.jobs[i].meta);
                    }
                    act.release(ctx, i, next, reply);
                }
                Outcome::Release => {
                    // Delivered before: the same bytes again (API.md), re-rendered if
                    // need be (after a resume) from the record version they were made
                    // of, never from a newer one.
                    let version = next.jobs[i].meta.record_version;
                    match rec {
                        _ if act.jobs[i].doc.is_some() => act.release(ctx, i, next, reply),
                        Some(rec) if rec.version == version => {
                            act.render_into(i, &rec, &mut next.jobs[i].meta);
                            act.release(ctx, i, next, reply);
                        }
                        _ => act.render_at(ctx, i, version, next, reply),
                    }
                }
                Outcome::Rejected(r) => {
                    if let Rejection::NotIssuable(reason) = r {
                        act.deps.metrics.refused(reason);
                    }
                    if act.unchanged(&next) {
                        return reply.send(rejected(r));
                    }
                    act.jobs[i].doc = None;
                    act.commit_then_reply(
                        ctx,
                        CommitOp::Refuse,
                        next,
                        snapshot_only(),
                        reply,
                        move |_, _| rejected(r).into(),
                    );
                }
                other => unexpected(other, reply),
            }
        });
    }

    /// Renders job `i` from the record as it was at `version`, then releases it; if the
    /// registry no longer has that version the answer is `503`, never other bytes.
    fn render_at(
        &mut self,
        ctx: &mut Context<Self>,
        i: usize,
        version: u64,
        mut next: Machine,
        reply: ReplyTo,
    ) {
        let fut = self.deps.registry.record_at(self.card_digest, version);
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Some(rec)) => {
                act.render_into(i, &rec, &mut next.jobs[i].meta);
                act.release(ctx, i, next, reply);
            }
            Ok(None) => {
                tracing::warn!(
                    shard = act.fence.shard,
                    "record version of a delivered document is gone; not released"
                );
                reply.send(ErrorCode::Unavailable);
            }
            Err(e) => {
                act.deps.metrics.store_unavailable.inc();
                tracing::warn!(shard = act.fence.shard, error = %e, "registry read failed");
                reply.send(ErrorCode::Unavailable);
            }
        }));
    }

    /// Releases job `i`'s document, persisting `next` (delivered) first if it changes
    /// anything; a document released before is released again only after a fenced read
    /// shows this node still owns the shard and the session is as it was (I2).
    fn release(&mut self, ctx: &mut Context<Self>, i: usize, next: Machine, reply: ReplyTo) {
        let kind = self.jobs[i].saved.kind;
        let Some(doc) = self.jobs[i].doc.as_ref() else {
            return unexpected(Outcome::Release, reply);
        };
        if !self.binding_ok(doc, i) {
            self.deps.metrics.binding_self_check_failures.inc();
            tracing::error!(
                shard = self.fence.shard,
                "binding self-check failed; document withheld"
            );
            return reply.send(ErrorCode::Unavailable);
        }
        let document = doc.document.clone();
        if !self.unchanged(&next) {
            return self.commit_then_reply(
                ctx,
                CommitOp::Deliver,
                next,
                snapshot_only(),
                reply,
                move |act, _| {
                    act.deps.metrics.released(kind);
                    SessionReply::Document(document)
                },
            );
        }
        let timer = self.deps.metrics.store_op(CommitOp::Recheck);
        let check = self.deps.store.load_snapshot(self.fence, self.id);
        ctx.wait(check.into_actor(self).map(move |res, act, ctx| {
            timer.observe_duration();
            let current = match res {
                Ok(Some(bytes)) => matches!(
                    Stored::decode(&bytes, act.id),
                    Ok(Stored::Open(snap)) if snap.seq == act.seq
                ),
                Ok(None) => false,
                Err(e) => return reply.answer(act.store_failed(&e, ctx).answer()),
            };
            if current {
                act.deps.metrics.released(kind);
                reply.send(SessionReply::Document(document));
            } else {
                tracing::error!(
                    shard = act.fence.shard,
                    "stored session state is not this session's; document withheld"
                );
                reply.send(ErrorCode::Unavailable);
            }
        }));
    }

    /// The cheap half of the kiosk's own check, done before every release: the binding
    /// names this session, kiosk, card and order, and hashes exactly these bytes.
    fn binding_ok(&self, doc: &Rendered, i: usize) -> bool {
        let job = &self.jobs[i].saved;
        let b = &doc.binding;
        b.v == 1
            && b.session_id == self.id.to_string()
            && b.kiosk_id == self.kiosk.as_str()
            && b.card_digest == hex(&self.card_digest)
            && b.kind == job.kind
            && b.copies == job.copies
            && b.serial == job.meta.serial.as_deref().unwrap_or_default()
            && b.doc_sha256 == hex(&Sha256::digest(&doc.pdf))
    }

    pub(super) fn printed(&mut self, ctx: &mut Context<Self>, job: JobId, reply: ReplyTo) {
        let mut next = self.machine();
        let Some(i) = self.job_index(job) else {
            return reply.send(rejected(match next.apply(Command::Printed { job }) {
                Outcome::Rejected(r) => r,
                _ => Rejection::UnknownJob,
            }));
        };
        let j = &self.jobs[i].saved;
        let (kind, copies, record_version) = (j.kind, j.copies, j.meta.record_version);
        let serial = j.meta.serial.clone().unwrap_or_default();
        match next.apply(Command::Printed { job }) {
            Outcome::Charge { charged_yen } => {
                let record = AuditRecord {
                    session_id: self.id.to_string(),
                    job_id: job.to_string(),
                    serial: serial.clone(),
                    kiosk_id: self.kiosk.as_str().to_owned(),
                    card_digest: hex(&self.card_digest),
                    kind,
                    copies,
                    charged_yen,
                    record_version,
                    printed_at: crate::clock::now_rfc3339(),
                };
                let change = Change {
                    audit: Some(record),
                    ..snapshot_only()
                };
                self.commit_then_reply(
                    ctx,
                    CommitOp::Print,
                    next,
                    change,
                    reply,
                    move |act, applied| {
                        if applied.audit == Some(AuditOutcome::Recorded) {
                            act.deps.metrics.printed(kind, charged_yen);
                        }
                        SessionReply::Printed(PrintedResponse {
                            serial,
                            charged_yen,
                        })
                    },
                );
            }
            Outcome::AlreadyCharged { charged_yen } => {
                reply.send(SessionReply::Printed(PrintedResponse {
                    serial,
                    charged_yen,
                }));
            }
            Outcome::Rejected(r) => reply.send(rejected(r)),
            other => unexpected(other, reply),
        }
    }
}

/// The state machine answered something this request cannot produce: a bug, answered
/// as unavailable rather than guessed at (I7).
fn unexpected(outcome: Outcome, reply: ReplyTo) {
    tracing::error!(?outcome, "unexpected state machine outcome");
    reply.send(ErrorCode::Internal);
}

fn auth_response(rec: &ResidentRecord) -> AuthResponse {
    AuthResponse {
        holder: Holder {
            display_name: rec.display_name(),
        },
        municipality: MunicipalityInfo {
            code: rec.municipality.code.clone(),
            name: rec.municipality.name.clone(),
        },
        kinds: rec
            .issuable_kinds()
            .into_iter()
            .map(|kind| KindOffer {
                kind,
                fee_yen: kind.fee_yen(),
            })
            .collect(),
    }
}
