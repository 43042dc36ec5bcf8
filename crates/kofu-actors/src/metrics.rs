//! The actors' Prometheus series, registered into the registry the node passes in. Label
//! children are resolved once here so the hot path only bumps atomics.

use std::sync::Arc;

use kofu_core::session::{CloseReason, VoidReason};
use kofu_proto::{CertKind, NotIssuable};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use tokio::sync::Notify;

use crate::session::CommitOp;

/// The open-sessions gauge, which also tells a node shutting down when the last
/// session is gone (instead of the node polling it).
#[derive(Clone)]
pub struct OpenSessions {
    gauge: IntGauge,
    none_left: Arc<Notify>,
}

impl OpenSessions {
    pub fn get(&self) -> i64 {
        self.gauge.get()
    }

    pub(crate) fn opened(&self) {
        self.gauge.inc();
    }

    pub(crate) fn closed(&self) {
        self.gauge.dec();
        if self.gauge.get() <= 0 {
            self.none_left.notify_waiters();
        }
    }

    /// Resolves once no session is open (at once if none is).
    pub async fn all_closed(&self) {
        loop {
            let notified = self.none_left.notified();
            tokio::pin!(notified);
            // Registered before the check, so a close in between still wakes us.
            notified.as_mut().enable();
            if self.gauge.get() <= 0 {
                return;
            }
            notified.await;
        }
    }
}

#[derive(Clone)]
pub struct ActorMetrics {
    pub sessions_open: OpenSessions,
    pub sessions_started: IntCounter,
    sessions_ended: IntCounterVec,
    documents_rendered: IntCounterVec,
    documents_released: IntCounterVec,
    documents_refused: IntCounterVec,
    jobs_voided: IntCounterVec,
    prints_confirmed: IntCounterVec,
    pub charged_yen: IntCounter,
    pub binding_self_check_failures: IntCounter,
    pub auth_failures: IntCounter,
    pub fencing_rejections: IntCounter,
    pub store_unavailable: IntCounter,
    pub shards_owned: IntGauge,
    pub shard_acquisitions: IntCounter,
    pub mailbox_backlog: IntGauge,
    pub mailbox_rejections: IntCounter,
    /// Requests whose requester gave up before a host or session took them up.
    pub abandoned: IntCounter,
    pub render_duration: Histogram,
    store_op_duration: HistogramVec,
}

impl std::fmt::Debug for ActorMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ActorMetrics")
    }
}

fn counter(reg: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(reg: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter_vec(
    reg: &Registry,
    name: &str,
    help: &str,
    label: &str,
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

impl ActorMetrics {
    pub fn new(reg: &Registry) -> prometheus::Result<ActorMetrics> {
        let render_duration = Histogram::with_opts(
            HistogramOpts::new(
                "kofu_render_duration_seconds",
                "Time to render and sign one document.",
            )
            .buckets(vec![
                10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 25e-3,
            ]),
        )?;
        reg.register(Box::new(render_duration.clone()))?;
        let store_op_duration = HistogramVec::new(
            HistogramOpts::new(
                "kofu_store_op_duration_seconds",
                "Time of one fenced store change, by operation.",
            )
            .buckets(vec![
                1e-6, 10e-6, 100e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3, 250e-3,
            ]),
            &["op"],
        )?;
        reg.register(Box::new(store_op_duration.clone()))?;
        let m = ActorMetrics {
            sessions_open: OpenSessions {
                gauge: gauge(reg, "kofu_sessions_open", "Sessions open on this node.")?,
                none_left: Arc::new(Notify::new()),
            },
            sessions_started: counter(reg, "kofu_sessions_started_total", "Sessions started.")?,
            sessions_ended: counter_vec(
                reg,
                "kofu_sessions_ended_total",
                "Sessions ended, by outcome.",
                "outcome",
            )?,
            documents_rendered: counter_vec(
                reg,
                "kofu_documents_rendered_total",
                "Documents rendered and signed, by kind.",
                "kind",
            )?,
            documents_released: counter_vec(
                reg,
                "kofu_documents_released_total",
                "Documents released to their kiosk, by kind.",
                "kind",
            )?,
            documents_refused: counter_vec(
                reg,
                "kofu_documents_refused_total",
                "Documents refused at release by revalidation, by reason.",
                "reason",
            )?,
            jobs_voided: counter_vec(
                reg,
                "kofu_jobs_voided_total",
                "Jobs voided, by reason.",
                "reason",
            )?,
            prints_confirmed: counter_vec(
                reg,
                "kofu_prints_confirmed_total",
                "Prints confirmed and audited, by kind.",
                "kind",
            )?,
            charged_yen: counter(reg, "kofu_charged_yen_total", "Fees charged, in yen.")?,
            binding_self_check_failures: counter(
                reg,
                "kofu_binding_self_check_failures_total",
                "Documents withheld because their binding did not match the session (must stay 0).",
            )?,
            auth_failures: counter(reg, "kofu_auth_failures_total", "Bad card signatures.")?,
            fencing_rejections: counter(
                reg,
                "kofu_fencing_rejections_total",
                "Writes refused because the shard lease epoch was stale.",
            )?,
            store_unavailable: counter(
                reg,
                "kofu_store_unavailable_total",
                "Store changes that failed because the store was unreachable.",
            )?,
            shards_owned: gauge(reg, "kofu_shards_owned", "Shards this node owns.")?,
            shard_acquisitions: counter(
                reg,
                "kofu_shard_acquisitions_total",
                "Shard leases acquired.",
            )?,
            mailbox_backlog: gauge(
                reg,
                "kofu_mailbox_backlog_messages",
                "Messages queued for shard hosts and not yet handled.",
            )?,
            mailbox_rejections: counter(
                reg,
                "kofu_mailbox_rejections_total",
                "Requests refused with 503 because a mailbox was full.",
            )?,
            abandoned: counter(
                reg,
                "kofu_requests_abandoned_total",
                "Requests dropped unhandled because their requester had given up (never acted on late).",
            )?,
            render_duration,
            store_op_duration,
        };
        // Pre-create every label value so dashboards see zeros, not gaps.
        for k in CertKind::ALL {
            m.documents_rendered.with_label_values(&[k.as_str()]);
            m.documents_released.with_label_values(&[k.as_str()]);
            m.prints_confirmed.with_label_values(&[k.as_str()]);
        }
        for r in [VoidReason::Deadline, VoidReason::SessionClosed] {
            m.jobs_voided.with_label_values(&[void_label(r)]);
        }
        for r in CloseReason::ALL {
            m.sessions_ended.with_label_values(&[r.as_str()]);
        }
        for r in NotIssuable::ALL {
            m.documents_refused.with_label_values(&[r.as_str()]);
        }
        for op in CommitOp::ALL {
            m.store_op_duration.with_label_values(&[op.as_str()]);
        }
        Ok(m)
    }

    pub(crate) fn session_ended(&self, reason: CloseReason) {
        self.sessions_ended
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    pub(crate) fn rendered(&self, kind: CertKind) {
        self.documents_rendered
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    pub(crate) fn released(&self, kind: CertKind) {
        self.documents_released
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    pub(crate) fn refused(&self, reason: NotIssuable) {
        self.documents_refused
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    pub(crate) fn voided(&self, reason: VoidReason, n: usize) {
        self.jobs_voided
            .with_label_values(&[void_label(reason)])
            .inc_by(n as u64);
    }

    pub(crate) fn printed(&self, kind: CertKind, yen: u32) {
        self.prints_confirmed
            .with_label_values(&[kind.as_str()])
            .inc();
        self.charged_yen.inc_by(u64::from(yen));
    }

    pub(crate) fn store_op(&self, op: CommitOp) -> prometheus::HistogramTimer {
        self.store_op_duration
            .with_label_values(&[op.as_str()])
            .start_timer()
    }
}

fn void_label(r: VoidReason) -> &'static str {
    match r {
        VoidReason::Deadline => "deadline",
        VoidReason::SessionClosed => "session_closed",
    }
}
