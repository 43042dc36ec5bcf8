//! The embedded store behind a gate: while the gate is shut, a change waits before it
//! reaches the store, and is fence-checked only when it gets there, as a write still on
//! its way to Redis would be. The gate can also make the store unreachable (every
//! operation fails, nothing is applied) or lose acknowledgements (a change is applied,
//! then reported unavailable, as when `WAIT` falls short or the answer times out). The
//! store itself is the real one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures::FutureExt as _;
use kofu_coord::embedded::EmbeddedStore;
use kofu_coord::{
    Applied, Change, Fence, FencedStore, Loaded, SessionCursor, SessionPage, StoreError,
    StoreFuture,
};
use kofu_proto::SessionId;
use tokio::sync::watch;

pub struct GatedStore {
    store: Arc<EmbeddedStore>,
    open: watch::Sender<bool>,
    held: Arc<AtomicUsize>,
    /// Changes still to be applied and then reported unavailable.
    lost_acks: Arc<AtomicUsize>,
    /// Whether losing an acknowledgement also takes the store down.
    crash: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
}

fn unreachable_store() -> StoreError {
    StoreError::Unavailable("store unreachable (test)".into())
}

impl GatedStore {
    pub fn new(store: Arc<EmbeddedStore>) -> GatedStore {
        GatedStore {
            store,
            open: watch::Sender::new(true),
            held: Arc::new(AtomicUsize::new(0)),
            lost_acks: Arc::new(AtomicUsize::new(0)),
            crash: Arc::new(AtomicBool::new(false)),
            down: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The next `n` changes are applied, then answered `Unavailable`.
    pub fn lose_acks(&self, n: usize) {
        self.lost_acks.store(n, Ordering::SeqCst);
    }

    /// The next change is applied, then answered `Unavailable`, and the store stays
    /// down (as a primary that died right after the script ran) until `set_down(false)`.
    pub fn crash_after_apply(&self) {
        self.crash.store(true, Ordering::SeqCst);
        self.lose_acks(1);
    }

    /// While down, every operation answers `Unavailable` and applies nothing.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
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
    fn apply(&self, fence: Fence, session: SessionId, change: Change) -> StoreFuture<Applied> {
        let (store, held) = (self.store.clone(), self.held.clone());
        let (lost_acks, down) = (self.lost_acks.clone(), self.down.clone());
        let crash = self.crash.clone();
        let mut open = self.open.subscribe();
        async move {
            if !*open.borrow_and_update() {
                held.fetch_add(1, Ordering::SeqCst);
                let _ = open.wait_for(|o| *o).await;
                held.fetch_sub(1, Ordering::SeqCst);
            }
            if down.load(Ordering::SeqCst) {
                return Err(unreachable_store());
            }
            let applied = store.apply_now(fence, session, change)?;
            let lose =
                lost_acks.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            match lose {
                Ok(_) => {
                    if crash.swap(false, Ordering::SeqCst) {
                        down.store(true, Ordering::SeqCst);
                    }
                    Err(StoreError::Unavailable(
                        "not replicated in time (test)".into(),
                    ))
                }
                Err(_) => Ok(applied),
            }
        }
        .boxed()
    }

    fn load_session(&self, fence: Fence, session: SessionId) -> StoreFuture<Option<Loaded>> {
        if self.down.load(Ordering::SeqCst) {
            return futures::future::ready(Err(unreachable_store())).boxed();
        }
        self.store.load_session(fence, session)
    }

    fn list_sessions(&self, fence: Fence, at: SessionCursor, n: usize) -> StoreFuture<SessionPage> {
        if self.down.load(Ordering::SeqCst) {
            return futures::future::ready(Err(unreachable_store())).boxed();
        }
        self.store.list_sessions(fence, at, n)
    }
}
