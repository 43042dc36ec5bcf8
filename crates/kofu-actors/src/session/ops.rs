//! The session's request handlers: each asks the state machine, performs the effects it
//! calls for through `commit`, and answers the kiosk.

use std::sync::Arc;

use actix::prelude::*;
use ed25519_dalek::{Signature, VerifyingKey};
use kofu_coord::{AuditOutcome, AuditRecord, CardLockOp, Change, SnapshotOp};
use kofu_core::records::{NotIssuable, ResidentRecord};
use kofu_core::session::{Command, JobPhase, Outcome, Rejection};
use kofu_proto::api::{
    AuthResponse, Holder, JobResponse, KindOffer, MunicipalityInfo, PrintedResponse,
};
use kofu_proto::{CertKind, ErrorCode, JobId};
use kofu_render::Document;

use super::{Session, Slot};
use crate::messages::{ApiError, ReplyTo, SessionReply};
use crate::snapshot::JobMeta;

fn rejected(r: Rejection) -> SessionReply {
    let reason = match r {
        Rejection::NotIssuable(n) => Some(n.as_str()),
        _ => None,
    };
    SessionReply::Error(ApiError {
        code: r.code(),
        attempts_left: None,
        reason,
    })
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
        let fut = self.deps.registry.record(&self.card);
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(rec) => then(act, ctx, rec, reply),
            Err(e) => {
                act.deps.metrics.store_unavailable.inc();
                tracing::warn!(shard = act.fence.shard, error = %e, "registry read failed");
                let _ = reply.send(ErrorCode::Unavailable.into());
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

    pub(super) fn auth(&mut self, ctx: &mut Context<Self>, signature: [u8; 64], reply: ReplyTo) {
        let msg =
            kofu_proto::auth_message(&self.id.to_string(), self.kiosk.as_str(), &self.challenge);
        let Ok(key) = VerifyingKey::from_bytes(&self.card_key) else {
            tracing::error!(
                shard = self.fence.shard,
                "registry holds an invalid card key"
            );
            let _ = reply.send(ErrorCode::Unavailable.into());
            return;
        };
        let valid = key
            .verify_strict(&msg, &Signature::from_bytes(&signature))
            .is_ok();
        let mut next = self.machine.clone();
        match next.apply(Command::Authenticate { valid }) {
            Outcome::Authenticated => {
                self.with_fresh_record(ctx, reply, move |act, ctx, rec, reply| {
                    let Some(rec) = rec else {
                        let _ = reply.send(ErrorCode::UnknownCard.into());
                        return;
                    };
                    let metas = act.metas.clone();
                    act.commit_then_reply(
                        ctx,
                        "auth",
                        next,
                        metas,
                        snapshot_only(),
                        reply,
                        move |_, _| SessionReply::Authenticated(auth_response(&rec)),
                    );
                })
            }
            Outcome::BadSignature { attempts_left } => {
                self.deps.metrics.auth_failures.inc();
                let metas = self.metas.clone();
                self.commit_then_reply(
                    ctx,
                    "auth",
                    next,
                    metas,
                    snapshot_only(),
                    reply,
                    move |_, _| {
                        SessionReply::Error(ApiError {
                            code: ErrorCode::BadSignature,
                            attempts_left: Some(attempts_left),
                            reason: None,
                        })
                    },
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
            Outcome::Rejected(r) => {
                let _ = reply.send(rejected(r));
            }
            other => unexpected(other, reply),
        }
    }

    pub(super) fn create_job(
        &mut self,
        ctx: &mut Context<Self>,
        kind: CertKind,
        copies: u8,
        reply: ReplyTo,
    ) {
        self.with_record(ctx, reply, move |act, ctx, rec, reply| {
            let index = act.machine.jobs.len() as u8;
            let id = JobId::new(index, rand::random());
            let mut next = act.machine.clone();
            let outcome = next.apply(Command::CreateJob {
                id,
                kind,
                copies,
                issuable: issuable(rec.as_deref(), kind),
            });
            let fee_yen = match outcome {
                Outcome::JobCreated { fee_yen } => fee_yen,
                Outcome::Rejected(r) => {
                    let _ = reply.send(rejected(r));
                    return;
                }
                other => return unexpected(other, reply),
            };
            let mut metas = act.metas.clone();
            metas.push(JobMeta {
                created_ms: crate::clock::now_ms(),
                serial: None,
                issued_at: None,
                record_version: rec.as_ref().map_or(0, |r| r.version),
            });
            let change = Change {
                allocate_serial: true,
                ..snapshot_only()
            };
            act.commit(ctx, "job", next, metas, change, move |act, ctx, res| {
                let applied = match res {
                    Ok(a) => a,
                    Err(e) => {
                        let _ = reply.send(SessionReply::from(e));
                        return;
                    }
                };
                let i = act.metas.len() - 1;
                act.metas[i].serial = applied.serial.map(|n| act.serial_text(n));
                act.slots.push(Slot::default());
                let _ = reply.send(SessionReply::JobCreated(JobResponse {
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
                self.machine.jobs[i].phase,
                JobPhase::Ready | JobPhase::Delivered | JobPhase::Printed
            )
        });
        if !releasable {
            let mut probe = self.machine.clone();
            match probe.apply(Command::Fetch {
                job,
                revalidation: Ok(()),
            }) {
                Outcome::Pending if wait => {
                    if let Some(i) = self.job_index(job) {
                        self.slots[i].waiters.retain(|w| !w.is_closed());
                        self.slots[i].waiters.push(reply);
                    }
                }
                Outcome::Pending => {
                    let _ = reply.send(SessionReply::Rendering);
                }
                Outcome::Rejected(r) => {
                    let _ = reply.send(rejected(r));
                }
                other => unexpected(other, reply),
            }
            return;
        }
        self.with_record(ctx, reply, move |act, ctx, rec, reply| {
            let Some(i) = act.job_index(job) else {
                let _ = reply.send(ErrorCode::UnknownJob.into());
                return;
            };
            let kind = act.machine.jobs[i].kind;
            let was = act.machine.jobs[i].phase;
            let mut next = act.machine.clone();
            let outcome = next.apply(Command::Fetch {
                job,
                revalidation: issuable(rec.as_deref(), kind),
            });
            let mut metas = act.metas.clone();
            match outcome {
                Outcome::Release => {
                    // Fresh records (I4): a document not yet delivered is re-rendered if
                    // the record moved on since it was rendered.
                    if let Some(rec) = rec.as_deref()
                        && was == JobPhase::Ready
                        && metas[i].record_version != rec.version
                    {
                        act.render_into_slot(i, rec, &mut metas);
                    }
                    // Resumed on a new owner: the bytes were never persisted, so render
                    // them again from the persisted serial and issue time.
                    if act.slots[i].doc.is_none()
                        && let Some(rec) = rec.as_deref()
                    {
                        act.render_into_slot(i, rec, &mut metas);
                    }
                    let Some(doc) = act.slots[i].doc.clone() else {
                        return unexpected(Outcome::Release, reply);
                    };
                    if !act.binding_ok(&doc, i) {
                        act.deps.metrics.binding_self_check_failures.inc();
                        tracing::error!(
                            shard = act.fence.shard,
                            "binding self-check failed; document withheld"
                        );
                        let _ = reply.send(ErrorCode::Unavailable.into());
                        return;
                    }
                    if next == act.machine && metas == act.metas {
                        act.deps.metrics.released(kind);
                        let _ = reply.send(SessionReply::Document(doc));
                        return;
                    }
                    act.commit_then_reply(
                        ctx,
                        "deliver",
                        next,
                        metas,
                        snapshot_only(),
                        reply,
                        move |act, _| {
                            act.deps.metrics.released(kind);
                            SessionReply::Document(doc)
                        },
                    );
                }
                Outcome::Rejected(r) => {
                    if let Rejection::NotIssuable(reason) = r {
                        act.deps.metrics.refused(reason);
                    }
                    if next == act.machine {
                        let _ = reply.send(rejected(r));
                        return;
                    }
                    act.slots[i].doc = None;
                    act.commit_then_reply(
                        ctx,
                        "refuse",
                        next,
                        metas,
                        snapshot_only(),
                        reply,
                        move |_, _| rejected(r),
                    );
                }
                other => unexpected(other, reply),
            }
        });
    }

    /// The cheap half of the kiosk's own check, done before every release: the binding
    /// names this session, kiosk, card and order, and hashes exactly these bytes.
    fn binding_ok(&self, doc: &Document, i: usize) -> bool {
        let job = &self.machine.jobs[i];
        doc.binding.matches(
            &doc.pdf,
            &self.id.to_string(),
            self.kiosk.as_str(),
            &self.card,
            job.kind,
            job.copies,
        ) && doc.binding.serial == self.metas[i].serial.clone().unwrap_or_default()
    }

    pub(super) fn printed(&mut self, ctx: &mut Context<Self>, job: JobId, reply: ReplyTo) {
        let mut next = self.machine.clone();
        let Some(i) = self.job_index(job) else {
            let _ = reply.send(rejected(match next.apply(Command::Printed { job }) {
                Outcome::Rejected(r) => r,
                _ => Rejection::UnknownJob,
            }));
            return;
        };
        let serial = self.metas[i].serial.clone().unwrap_or_default();
        match next.apply(Command::Printed { job }) {
            Outcome::Charge { charged_yen } => {
                let j = &self.machine.jobs[i];
                let (kind, copies) = (j.kind, j.copies);
                let record = AuditRecord {
                    session_id: self.id.to_string(),
                    job_id: job.to_string(),
                    serial: serial.clone(),
                    kiosk_id: self.kiosk.as_str().to_owned(),
                    card_digest: self.card.digest(),
                    kind,
                    copies,
                    charged_yen,
                    record_version: self.metas[i].record_version,
                    printed_at: crate::clock::now_rfc3339(),
                };
                let change = Change {
                    audit: Some(record),
                    ..snapshot_only()
                };
                let metas = self.metas.clone();
                self.commit_then_reply(
                    ctx,
                    "print",
                    next,
                    metas,
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
                let _ = reply.send(SessionReply::Printed(PrintedResponse {
                    serial,
                    charged_yen,
                }));
            }
            Outcome::Rejected(r) => {
                let _ = reply.send(rejected(r));
            }
            other => unexpected(other, reply),
        }
    }
}

/// The state machine answered something this request cannot produce: a bug, answered
/// as unavailable rather than guessed at (I7).
fn unexpected(outcome: Outcome, reply: ReplyTo) {
    tracing::error!(?outcome, "unexpected state machine outcome");
    let _ = reply.send(ErrorCode::Internal.into());
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
