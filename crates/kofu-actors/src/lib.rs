//! kofu's actors: a `Session` actor per open session owning its state and documents, a
//! `ShardHost` per shard owning the session and card-lock tables, and the `Router` that
//! takes a request to the host of its shard. Invariant I3 lives here: nothing mutable is
//! shared between sessions.

pub mod clock;
mod cluster_metrics;
mod deps;
mod kiosk_sessions;
mod messages;
mod metrics;
mod router;
mod session;
mod shard_host;
mod snapshot;

pub use cluster_metrics::ClusterMetrics;
pub use deps::{Deps, RenderFaults, SessionConfig};
pub use kiosk_sessions::{KioskSessions, SessionSlot};
pub use metrics::{ActorMetrics, OpenSessions};
pub use router::{Receipt, Remote, Router, RouterConfig, ShardStart};
