//! What every actor of a node needs, built once at start and shared read-only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kofu_coord::{Coordinator, FencedStore, Registry};
use kofu_render::Issuer;

use crate::{ActorMetrics, ClusterMetrics, KioskSessions};

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub idle_timeout: Duration,
    pub hard_limit: Duration,
    pub render_deadline: Duration,
    /// Capacity of each session's mailbox; a full mailbox answers `503`.
    pub session_mailbox: usize,
    /// Capacity of each shard host's mailbox.
    pub host_mailbox: usize,
    /// How long a closed session's tombstone stays in the store, so that a repeated
    /// DELETE stays `204` (on whichever node owns the shard by then).
    pub tombstone_ttl: Duration,
    /// How much later than its stored state's last write a session's last request may
    /// be: a request that changes nothing writes the state again once the last write is
    /// older (`Touch`). A new owner counts a resumed session quiet since that write less
    /// this grain, so its kiosk's card is free within the idle timeout plus the grain of
    /// its last request, however often the shard moves (a lease TTL keeps that within
    /// DESIGN.md's idle timeout + 2 x TTL).
    pub activity_grain: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_timeout: Duration::from_secs(180),
            hard_limit: Duration::from_secs(15 * 60),
            render_deadline: Duration::from_secs(30),
            session_mailbox: 16,
            host_mailbox: 4096,
            tombstone_ttl: Duration::from_secs(60),
            activity_grain: Duration::from_secs(5),
        }
    }
}

/// Fault injection for drills and tests: slows down rendering of every n-th job so that
/// render deadlines can be exercised under load.
#[derive(Debug, Default)]
pub struct RenderFaults {
    pub delay: Duration,
    pub every: u64,
    counter: AtomicU64,
}

impl RenderFaults {
    pub fn new(delay: Duration, every: u64) -> RenderFaults {
        RenderFaults {
            delay,
            every: every.max(1),
            counter: AtomicU64::new(0),
        }
    }

    /// The delay for the next job rendered on this node.
    pub fn next_delay(&self) -> Duration {
        if self.delay.is_zero() {
            return Duration::ZERO;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        if (n + 1) % self.every == 0 {
            self.delay
        } else {
            Duration::ZERO
        }
    }
}

pub struct Deps {
    pub store: Arc<dyn FencedStore>,
    pub registry: Arc<dyn Registry>,
    /// Whether this node still holds a shard's lease, asked before acting for it.
    pub coordinator: Arc<dyn Coordinator>,
    pub issuer: Arc<Issuer>,
    pub config: SessionConfig,
    pub faults: RenderFaults,
    pub metrics: ActorMetrics,
    pub cluster: ClusterMetrics,
    /// Open sessions per kiosk on this node (admission control: a kiosk over its limit
    /// gets `429 too_many_requests` on create).
    pub kiosk_sessions: Arc<KioskSessions>,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps")
            .field("config", &self.config)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_job_is_delayed() {
        let f = RenderFaults::new(Duration::from_millis(5), 3);
        let delays: Vec<bool> = (0..9).map(|_| !f.next_delay().is_zero()).collect();
        assert_eq!(
            delays,
            [false, false, true, false, false, true, false, false, true]
        );
        let every = RenderFaults::new(Duration::from_millis(5), 1);
        assert!((0..4).all(|_| !every.next_delay().is_zero()));
        let none = RenderFaults::new(Duration::ZERO, 1);
        assert!(none.next_delay().is_zero());
    }
}
