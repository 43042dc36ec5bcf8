//! The embedded store behind a gate: while the gate is shut, a change waits before it
//! reaches the store, and is fence-checked only when it gets there, as a write still on
//! its way to Redis would be. The store itself is the real one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::FutureExt as _;
use futures::future::BoxFuture;
use kofu_coord::embedded::EmbeddedStore;
use kofu_coord::{Applied, Change, Fence, FencedStore, SessionCursor, SessionPage, StoreError};
use kofu_proto::SessionId;
use tokio::sync::watch;

pub struct GatedStore {
    store: Arc<EmbeddedStore>,
    open: watch::Sender<bool>,
    held: Arc<AtomicUsize>,
}

impl GatedStore {
    pub fn new(store: Arc<EmbeddedStore>) -> GatedStore {
        GatedStore {
            store,
            open: watch::Sender::new(true),
            held: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Changes from now on wait at the gate.
    pub fn shut(&self) {
        self.open.send_replace(false);
    }

    /// Lets every waiting change through (each checks its fence now).
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Changes waiting at the gate.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

impl FencedStore for GatedStore {
    fn apply(
        &self,
        fence: Fence,
        session: SessionId,
        change: Change,
    ) -> BoxFuture<'static, Result<Applied, StoreError>> {
        let (store, held) = (self.store.clone(), self.held.clone());
        let mut open = self.open.subscribe();
        async move {
            if !*open.borrow_and_update() {
                held.fetch_add(1, Ordering::SeqCst);
                let _ = open.wait_for(|o| *o).await;
                held.fetch_sub(1, Ordering::SeqCst);
            }
            store.apply_now(fence, session, change)
        }
        .boxed()
    }

    fn load_snapshot(
        &self,
        fence: Fence,
        session: SessionId,
    ) -> BoxFuture<'static, Result<Option<Vec<u8>>, StoreError>> {
        self.store.load_snapshot(fence, session)
    }

    fn list_sessions(
        &self,
        fence: Fence,
        cursor: SessionCursor,
        limit: usize,
    ) -> BoxFuture<'static, Result<SessionPage, StoreError>> {
        self.store.list_sessions(fence, cursor, limit)
    }
}
