//! Per-thread connections to the primary. A node's sessions run on the actix workers'
//! single-threaded runtimes, but one shared connection's driver task ran on the thread
//! that opened it: every command and every reply crossed threads, two wake-ups per
//! command, about 36 commands a session. Here each such thread gets a connection of its
//! own, so a command, its reply and the task awaiting both stay on one thread.
//!
//! Opening one never holds a command: until it is open (or while it cannot be opened:
//! Redis down, paused, failing over) commands take the shared connection, whose timeouts
//! and reconnects decide how fast a caller hears `unavailable` (I7), exactly as before.

use std::cell::RefCell;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ::redis::aio::ConnectionManager;
use tokio::runtime::{Handle, RuntimeFlavor};
use tracing::Instrument as _;

use super::Inner;

/// After a failed attempt, how long the thread keeps to the shared connection.
const RETRY_AFTER: Duration = Duration::from_secs(1);

thread_local! {
    static LOCAL: RefCell<Vec<Local>> = const { RefCell::new(Vec::new()) };
}

/// This thread's connection for one `RedisConn`, on one runtime, to one primary.
struct Local {
    owner: Weak<Inner>,
    /// A connection's driver is a task of the runtime that opened it: one that outlives
    /// its runtime answers nothing, so a new runtime on the thread opens its own.
    runtime: tokio::runtime::Id,
    /// The `Inner::generation` it was opened for; a failover moves past it.
    generation: u64,
    state: State,
}

enum State {
    Opening,
    Open(ConnectionManager),
    Failed(Instant),
}

/// What this thread has for a `RedisConn`.
enum Found {
    Open(ConnectionManager),
    /// Being opened, or failed a moment ago: use the shared one.
    Wait,
    /// Nothing (or a failure long enough ago): this caller starts opening it.
    ToOpen,
}

impl Local {
    fn is(&self, owner: *const Inner, runtime: tokio::runtime::Id, generation: u64) -> bool {
        std::ptr::eq(self.owner.as_ptr(), owner)
            && self.runtime == runtime
            && self.generation == generation
    }
}

/// This thread's connection for `inner`'s current primary, if it has one open. `None`
/// off a current-thread runtime (a multi-threaded one moves tasks between threads, so
/// there is nothing to keep together) and until it is open: the first call starts
/// opening it in the background.
pub(super) fn manager(inner: &Arc<Inner>) -> Option<ConnectionManager> {
    let handle = Handle::try_current().ok()?;
    if handle.runtime_flavor() != RuntimeFlavor::CurrentThread {
        return None;
    }
    let runtime = handle.id();
    // Read before the client is: a failover writes the new primary, then bumps this, so
    // a connection is never filed under a newer generation than its primary's.
    let generation = inner.generation();
    let owner = Arc::as_ptr(inner);
    let found = LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        if let Some(l) = local.iter_mut().find(|l| l.is(owner, runtime, generation)) {
            return match &l.state {
                State::Open(m) => Found::Open(m.clone()),
                State::Opening => Found::Wait,
                State::Failed(at) if at.elapsed() < RETRY_AFTER => Found::Wait,
                State::Failed(_) => {
                    l.state = State::Opening;
                    Found::ToOpen
                }
            };
        }
        // Whatever this replaces, and the connections of dropped `RedisConn`s, go.
        local.retain(|l| {
            l.owner.strong_count() > 0
                && !(std::ptr::eq(l.owner.as_ptr(), owner) && l.runtime == runtime)
        });
        local.push(Local {
            owner: Arc::downgrade(inner),
            runtime,
            generation,
            state: State::Opening,
        });
        Found::ToOpen
    });
    match found {
        Found::Open(m) => return Some(m),
        Found::Wait => return None,
        Found::ToOpen => {}
    }
    let weak = Arc::downgrade(inner);
    let span = tracing::debug_span!("redis_thread_connection");
    // A current-thread runtime runs its tasks on this thread: the result lands in this
    // thread's list.
    tokio::spawn(
        async move {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let opened = inner.open_manager().await;
            LOCAL.with(|local| {
                let mut local = local.borrow_mut();
                let Some(l) = local
                    .iter_mut()
                    .find(|l| l.is(Arc::as_ptr(&inner), runtime, generation))
                else {
                    return;
                };
                l.state = match opened {
                    Ok(m) => State::Open(m),
                    Err(e) => {
                        tracing::debug!("no connection of this thread's own yet: {e}");
                        State::Failed(Instant::now())
                    }
                };
            });
        }
        .instrument(span),
    );
    None
}
