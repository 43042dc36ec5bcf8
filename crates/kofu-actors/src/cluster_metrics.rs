//! The cluster half of the actors' series: forwarding, waiting for moving shards,
//! handoffs and resumed sessions (DESIGN.md, "Observability"). Single nodes export them
//! too, at zero, so dashboards need not know the topology.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct ClusterMetrics {
    forwards: IntCounterVec,
    pub forward_duration: Histogram,
    pub forwards_received: IntCounter,
    pub route_retries: IntCounter,
    pub buffered: IntGauge,
    buffer_dropped: IntCounterVec,
    pub handoffs: IntCounter,
    pub handoff_duration: Histogram,
    pub sessions_resumed: IntCounter,
}

impl std::fmt::Debug for ClusterMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterMetrics")
    }
}

/// How a forwarded call ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ForwardResult {
    Ok,
    Moved,
    Error,
}

impl ForwardResult {
    fn as_str(self) -> &'static str {
        match self {
            ForwardResult::Ok => "ok",
            ForwardResult::Moved => "moved",
            ForwardResult::Error => "error",
        }
    }
}

/// Why a request waiting for a shard owner gave up with `503`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DropReason {
    Full,
    Deadline,
}

impl ClusterMetrics {
    pub fn new(reg: &Registry) -> prometheus::Result<ClusterMetrics> {
        let forwards = IntCounterVec::new(
            Opts::new(
                "kofu_forwards_total",
                "Requests forwarded to the owning node, by result.",
            ),
            &["result"],
        )?;
        let buffer_dropped = IntCounterVec::new(
            Opts::new(
                "kofu_route_buffer_dropped_total",
                "Requests answered 503 while waiting for a shard owner, by reason.",
            ),
            &["reason"],
        )?;
        let forward_duration = Histogram::with_opts(
            HistogramOpts::new(
                "kofu_forward_duration_seconds",
                "Round trip of one forwarded request to its owner node.",
            )
            .buckets(vec![
                50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3, 250e-3, 1.0,
            ]),
        )?;
        let handoff_duration = Histogram::with_opts(
            HistogramOpts::new(
                "kofu_shard_handoff_duration_seconds",
                "Time from stopping admission to a shard until its sessions were detached.",
            )
            .buckets(vec![1e-3, 5e-3, 25e-3, 100e-3, 500e-3, 1.0, 2.5, 5.0, 10.0]),
        )?;
        let m = ClusterMetrics {
            forwards,
            forward_duration,
            forwards_received: IntCounter::new(
                "kofu_forwards_received_total",
                "Requests received from other nodes for shards owned here.",
            )?,
            route_retries: IntCounter::new(
                "kofu_route_retries_total",
                "Routing attempts repeated because a shard was moving or had no owner yet.",
            )?,
            buffered: IntGauge::new(
                "kofu_route_buffered_requests",
                "Requests waiting for a moving shard's new owner.",
            )?,
            buffer_dropped,
            handoffs: IntCounter::new("kofu_shard_handoffs_total", "Shards handed off.")?,
            handoff_duration,
            sessions_resumed: IntCounter::new(
                "kofu_sessions_resumed_total",
                "Sessions resumed from their snapshot on a new owner.",
            )?,
        };
        reg.register(Box::new(m.forwards.clone()))?;
        reg.register(Box::new(m.forward_duration.clone()))?;
        reg.register(Box::new(m.forwards_received.clone()))?;
        reg.register(Box::new(m.route_retries.clone()))?;
        reg.register(Box::new(m.buffered.clone()))?;
        reg.register(Box::new(m.buffer_dropped.clone()))?;
        reg.register(Box::new(m.handoffs.clone()))?;
        reg.register(Box::new(m.handoff_duration.clone()))?;
        reg.register(Box::new(m.sessions_resumed.clone()))?;
        for r in [
            ForwardResult::Ok,
            ForwardResult::Moved,
            ForwardResult::Error,
        ] {
            m.forwards.with_label_values(&[r.as_str()]);
        }
        for r in ["full", "deadline"] {
            m.buffer_dropped.with_label_values(&[r]);
        }
        Ok(m)
    }

    pub(crate) fn forwarded(&self, result: ForwardResult) {
        self.forwards.with_label_values(&[result.as_str()]).inc();
    }

    pub(crate) fn dropped(&self, reason: DropReason) {
        let label = match reason {
            DropReason::Full => "full",
            DropReason::Deadline => "deadline",
        };
        self.buffer_dropped.with_label_values(&[label]).inc();
    }
}
