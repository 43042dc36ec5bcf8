//! The trace context of the request a task is serving, carried without threading it
//! through every caller: a call made inside [`traced`] sends it in its frame
//! (`Frame::trace`), and the server runs each call's handler inside it again, so a call
//! forwarded onward keeps the trace.

use std::future::Future;

use kofu_proto::TraceParent;

tokio::task_local! {
    static CURRENT: Option<TraceParent>;
}

/// Runs `fut` with `trace` as the context its wire calls carry.
pub async fn traced<F: Future>(trace: Option<TraceParent>, fut: F) -> F::Output {
    CURRENT.scope(trace, fut).await
}

/// The context of the running task, if it runs inside [`traced`].
pub fn current() -> Option<TraceParent> {
    CURRENT.try_with(|t| *t).ok().flatten()
}
