//! kofu's actors: a `Session` actor per open session owning its state and documents, a
//! `ShardHost` per shard owning the session and card-lock tables, and the `Router` that
//! takes a request to the host of its shard. Invariant I3 lives here: nothing mutable is
//! shared between sessions.

pub mod clock;
mod cluster_metrics;
mod deps;
mod messages;
mod metrics;
mod router;
mod session;
mod shard_host;
pub mod snapshot;
pub mod wire_link;

pub use cluster_metrics::{ClusterMetrics, DropReason, ForwardResult};
pub use deps::{Deps, RenderFaults, SessionConfig};
pub use messages::{ApiError, SessionOp, SessionReply};
pub use messages::{Detach, ForwardedDocument};
pub use metrics::ActorMetrics;
pub use router::{Remote, Router, RouterConfig, wire_handler};
