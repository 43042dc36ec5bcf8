//! One conformance suite for every `FencedStore` and `Registry` implementation, as tikv's
//! `engine_traits_tests` has for its engines: the rules the actors' safety arguments rest
//! on (I2, I4, I5) are written once here, and `tests/conformance` runs each of them
//! against the embedded and the Redis implementation. Compiled only with the `testing`
//! feature, which only dev-dependencies enable; an implementation's own details (Redis
//! key layout, lease TTLs, the embedded audit file) keep their own tests.

pub mod fixtures;
pub mod registry;
pub mod sessions;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use kofu_core::records::ResidentRecord;

use crate::{AuditRecord, Fence, FencedStore, Registry};

/// What the suite needs from an implementation besides its traits: a way to own a
/// shard, to have it taken over, and to read what was audited.
pub trait Backend: Sized {
    /// A fresh, empty instance (its own Redis server, its own in-process store).
    fn start() -> impl Future<Output = Self>;

    fn store(&self) -> Arc<dyn FencedStore>;

    /// The fence of the shard's current owner; the shard is taken first if nobody
    /// holds it.
    fn fence(&self, shard: u32) -> impl Future<Output = Fence>;

    /// Another owner takes the shard over, as after a handoff or a crash: from now on
    /// every older fence of the shard is stale. Returns the new owner's fence.
    fn take_over(&self, shard: u32) -> impl Future<Output = Fence>;

    /// Every audit record written so far, each shard's in the order written.
    fn audit_records(&self) -> impl Future<Output = Vec<AuditRecord>>;

    /// A registry holding exactly `records`.
    fn registry(&self, records: Vec<ResidentRecord>) -> impl Future<Output = Arc<dyn Registry>>;

    /// Another handle on the registry made last, as another node would hold it (for
    /// Redis: another connection).
    fn registry_again(&self) -> impl Future<Output = Arc<dyn Registry>>;
}

/// Defines one `#[tokio::test]` per rule of the suite for `$backend`, each on a fresh
/// backend; invoke it once per implementation, inside a module named after it.
#[macro_export]
macro_rules! conformance_tests {
    ($backend:ty) => {
        $crate::conformance_tests!(@rules $backend;
            store::a_change_with_the_current_fence_writes_everything,
            store::a_stale_fence_writes_nothing,
            store::a_fence_never_granted_writes_nothing,
            store::an_audit_is_recorded_once_per_session_and_job,
            store::a_card_lock_is_released_only_by_its_holder,
            store::serials_are_unique_and_increasing,
            store::snapshots_put_load_and_delete,
            sessions::open_sessions_are_listed_until_they_end,
            sessions::a_tombstone_answers_for_a_closed_session_until_it_expires,
            sessions::audit_keys_end_with_their_session,
            sessions::a_loaded_session_tells_how_long_ago_it_was_written,
            registry::records_read_revoke_and_update,
            registry::concurrent_updates_lose_nothing,
            registry::superseded_versions_stay_readable,
        );
    };
    (@rules $backend:ty; $($module:ident :: $rule:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $rule() {
                let backend = <$backend as $crate::conformance::Backend>::start().await;
                $crate::conformance::$module::$rule(backend).await;
            }
        )*
    };
}
