//! Rendering a job: from the record it was created from or a fresh read, with its
//! persisted serial (taken anew for a job resumed before its serial came back), then
//! kept ready (persisted with its delivery) so parked fetches are answered.

use std::sync::Arc;

use actix::prelude::*;
use kofu_coord::Change;
use kofu_core::records::ResidentRecord;
use kofu_core::session::{Command, JobMeta, JobPhase};
use kofu_proto::JobId;
use kofu_render::RenderRequest;

use super::ops::snapshot_only;
use super::{CommitOp, Session};

impl Session {
    /// Renders job `i` from `rec` with its serial and issue time, keeping the document
    /// beside the job; `meta` (the job's in the next state) gets the issue time and
    /// record version it was rendered with.
    pub(super) fn render_into(&mut self, i: usize, rec: &ResidentRecord, meta: &mut JobMeta) {
        let job = &self.jobs[i].saved;
        let issued_at = meta
            .issued_at
            .get_or_insert_with(crate::clock::now_rfc3339)
            .clone();
        meta.record_version = rec.version;
        let serial = meta.serial.clone().unwrap_or_default();
        let session_id = self.id.to_string();
        let timer = self.deps.metrics.render_duration.start_timer();
        let doc = kofu_render::render(
            &self.deps.issuer,
            &RenderRequest {
                record: rec,
                kind: job.kind,
                copies: job.copies,
                serial: &serial,
                issued_at: &issued_at,
                session_id: &session_id,
                kiosk_id: self.kiosk.as_str(),
            },
        );
        timer.observe_duration();
        self.deps.metrics.rendered(job.kind);
        self.jobs[i].doc = Some(Box::new(doc));
    }

    /// Render a job whose render timer fired (possibly after an injected delay), from
    /// `known` or else from a fresh registry read.
    pub(super) fn render(
        &mut self,
        ctx: &mut Context<Self>,
        job: JobId,
        known: Option<Arc<ResidentRecord>>,
    ) {
        let Some(i) = self.job_index(job) else { return };
        if self.jobs[i].saved.phase != JobPhase::Rendering {
            return;
        }
        if let Some(rec) = known {
            return self.render_from(ctx, i, job, rec);
        }
        let fut = self.deps.registry.record_by_digest(self.card_digest);
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| {
            if act.jobs[i].saved.phase != JobPhase::Rendering {
                return;
            }
            match res {
                Ok(Some(rec)) => act.render_from(ctx, i, job, rec),
                // The release check refuses a vanished record; the deadline voids the job
                // if the registry stays unreadable.
                Ok(None) | Err(_) => act.schedule_render_retry(ctx, job),
            }
        }));
    }

    /// Renders job `i` from `rec`; parked fetches then get it. Being ready is not
    /// persisted on its own: nobody was told anything yet, and the delivery that follows
    /// stores it with the serial, issue time and record version the bytes were made of
    /// (one fenced write per job fewer). A new owner that finds the job still rendering
    /// renders it again from its persisted serial, before anyone saw these bytes.
    fn render_from(
        &mut self,
        ctx: &mut Context<Self>,
        i: usize,
        job: JobId,
        rec: Arc<ResidentRecord>,
    ) {
        if self.jobs[i].saved.meta.serial.is_none() {
            // Resumed from a snapshot written before the serial came back.
            return self.allocate_serial(ctx, i, job, rec);
        }
        let mut next = self.machine();
        self.render_into(i, &rec, &mut next.jobs[i].meta);
        next.apply(Command::RenderDone { job });
        self.adopt(next);
        let waiters = std::mem::take(&mut self.jobs[i].waiters);
        // Released only while this node may act for the shard (I2); the router finds
        // the owner for the others.
        let holds = self.deps.coordinator.holds(self.fence);
        for w in waiters {
            if holds {
                self.fetch(ctx, job, false, w);
            } else {
                w.moved();
            }
        }
    }

    /// Takes a fresh serial for job `i` (a job resumed mid-render on a new owner), then
    /// renders it.
    fn allocate_serial(
        &mut self,
        ctx: &mut Context<Self>,
        i: usize,
        job: JobId,
        rec: Arc<ResidentRecord>,
    ) {
        let change = Change {
            allocate_serial: true,
            ..snapshot_only()
        };
        let next = self.machine();
        self.commit(
            ctx,
            CommitOp::Job,
            next,
            change,
            move |act, ctx, res| match res.ok().and_then(|a| a.serial) {
                Some(n) => {
                    act.jobs[i].saved.meta.serial = Some(act.serial_text(n));
                    act.render(ctx, job, Some(rec));
                }
                None => act.schedule_render_retry(ctx, job),
            },
        );
    }

    pub(super) fn serial_text(&self, n: u64) -> String {
        format!("{:04}-{:x}-{:08}", self.fence.shard, self.fence.epoch, n)
    }
}
