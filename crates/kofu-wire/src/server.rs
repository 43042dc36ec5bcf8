//! The accepting side of a node-to-node link: handshakes (TLS when configured, then
//! HMAC), then many requests served concurrently per connection, answered by
//! correlation id. Before the handshakes complete a connection is cheap and short-lived:
//! small frames only, one second for both handshakes together, and at most
//! [`MAX_PRE_AUTH`] such connections at once, the oldest giving way to a new one, so
//! that idle or slow unauthenticated connections cannot keep the peers out (forwarding
//! between nodes goes on under such a flood).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use kofu_proto::wire::{Body, Frame};
use kofu_proto::{ErrorCode, SessionReply};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tracing::Instrument;

use crate::frame::{FrameReader, encode_frame, run_writer};
use crate::{
    CallHandler, ConnSpawner, LinkAuth, LinkError, PRE_AUTH_TIMEOUT, Secrets, WRITE_QUEUE,
    handshake,
};

/// Requests one connection may have in the handler at once; past it the server stops
/// reading that connection, which pushes back on the sender through TCP.
const SERVER_IN_FLIGHT: usize = 1024;
/// Connections one server accepts at once; a cluster has few peers, so this is generous.
const MAX_CONNECTIONS: usize = 512;
/// Connections still in their handshake at once. A peer's handshake takes a round trip,
/// so to keep it out a flood would have to open this many connections within that time.
pub const MAX_PRE_AUTH: usize = 64;

/// Where a connection is in its life, shared by its task and the accept loop.
const PRE_AUTH: u8 = 0;
const AUTHENTICATED: u8 = 1;
/// Given up by the accept loop for a newer connection (before it authenticated).
const EVICTED: u8 = 2;
const ENDED: u8 = 3;

/// A connection still in its handshake, as the accept loop tracks it.
struct Unproven {
    state: Arc<AtomicU8>,
    task: AbortHandle,
}

impl Unproven {
    fn still_unproven(&self) -> bool {
        self.state.load(Ordering::Acquire) == PRE_AUTH
    }

    /// Ends the connection unless it authenticated meanwhile.
    fn evict(self) {
        let evicted =
            self.state
                .compare_exchange(PRE_AUTH, EVICTED, Ordering::AcqRel, Ordering::Acquire);
        if evicted.is_ok() {
            self.task.abort();
        }
    }
}

/// Accepts authenticated connections from other nodes and serves their calls.
/// Dropping it closes the listener and every connection, failing the peers' calls.
pub struct WireServer {
    local_addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for WireServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl WireServer {
    /// Serves `listener` (bound by the caller, so its address can be announced before
    /// anything is built) on the current tokio runtime: every call that passes the
    /// handshake goes to `handler`.
    pub fn serve(
        listener: TcpListener,
        node_id: impl Into<String>,
        auth: impl Into<LinkAuth>,
        handler: CallHandler,
    ) -> Result<WireServer, LinkError> {
        Self::serve_on(listener, node_id, auth, handler, None)
    }

    /// As [`WireServer::serve`], but each accepted connection runs where `spawn` puts
    /// it (its socket moves to that runtime); the listener stays on the current one.
    /// Dropping the server still ends every connection.
    pub fn serve_on(
        listener: TcpListener,
        node_id: impl Into<String>,
        auth: impl Into<LinkAuth>,
        handler: CallHandler,
        spawn: Option<ConnSpawner>,
    ) -> Result<WireServer, LinkError> {
        let auth: LinkAuth = auth.into();
        if auth.secrets.is_empty() {
            return Err(LinkError::EmptySecret);
        }
        let node_id: Arc<str> = node_id.into().into();
        let local_addr = listener.local_addr()?;
        let span = tracing::info_span!("wire_server", node = %node_id, addr = %local_addr, tls = auth.is_tls());
        let accept =
            tokio::spawn(accept_loop(listener, node_id, auth, handler, spawn).instrument(span));
        Ok(WireServer { local_addr, accept })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for WireServer {
    fn drop(&mut self) {
        // The accept task owns the connection tasks in a JoinSet, which aborts them
        // (and their in-flight handlers) when it is dropped.
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    node_id: Arc<str>,
    auth: LinkAuth,
    handler: CallHandler,
    spawn: Option<ConnSpawner>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    // Oldest first.
    let mut unproven: VecDeque<Unproven> = VecDeque::new();
    loop {
        // Reap finished connections so the set does not grow with the node's uptime.
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually fd exhaustion: back off instead of spinning on the error.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        unproven.retain(Unproven::still_unproven);
        if unproven.len() >= MAX_PRE_AUTH
            && let Some(oldest) = unproven.pop_front()
        {
            tracing::debug!("too many connections in their handshake; dropping the oldest");
            oldest.evict();
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many connections; refusing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Both handshakes count against one budget from the moment of accepting.
        let deadline = tokio::time::Instant::now() + PRE_AUTH_TIMEOUT;
        let (node_id, auth, handler) = (node_id.clone(), auth.clone(), handler.clone());
        let state = Arc::new(AtomicU8::new(PRE_AUTH));
        let span = tracing::info_span!("wire_conn", %peer, peer_node = tracing::field::Empty);
        let conn_state = state.clone();
        // Handed over as a std socket: it registers with the runtime that serves it.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accepted connection unusable");
                continue;
            }
        };
        let serve = async move {
            let served = async {
                let stream = TcpStream::from_std(stream)?;
                serve_stream(stream, &node_id, &auth, handler, &conn_state, deadline).await
            };
            match served.await {
                Ok(()) => tracing::debug!("connection closed by peer"),
                Err(e) => tracing::warn!(error = %e, "connection dropped"),
            }
            conn_state.store(ENDED, Ordering::Release);
            drop(slot);
        }
        .instrument(span);
        let task = match &spawn {
            None => conns.spawn(serve),
            Some(spawn) => conns.spawn(elsewhere(spawn.clone(), serve)),
        };
        unproven.push_back(Unproven { state, task });
    }
}

/// Runs `serve` through `spawn` and waits for it to end; dropping (aborting) this task
/// ends it too, so the accept loop's eviction and the server's drop reach it wherever
/// it runs.
async fn elsewhere(spawn: ConnSpawner, serve: impl Future<Output = ()> + Send + 'static) {
    // Dropping `stop` (with this task) ends `serve`; `serve` ending, or never running
    // (the spawner dropped it), drops `done` and ends this task.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (done, ended) = tokio::sync::oneshot::channel::<()>();
    spawn(Box::pin(async move {
        tokio::select! {
            () = serve => {}
            _ = stopped => {}
        }
        drop(done);
    }));
    let _ = ended.await;
    drop(stop);
}

/// One accepted connection: TLS first when the cluster has a CA, then the link.
async fn serve_stream(
    stream: TcpStream,
    node_id: &str,
    auth: &LinkAuth,
    handler: CallHandler,
    state: &AtomicU8,
    deadline: tokio::time::Instant,
) -> Result<(), LinkError> {
    type Read = Box<dyn AsyncRead + Unpin + Send>;
    type Write = Box<dyn AsyncWrite + Unpin + Send>;
    let (read, write): (Read, Write) = match &auth.tls {
        None => {
            let (read, write) = stream.into_split();
            (Box::new(read), Box::new(write))
        }
        Some(tls) => {
            let stream = tokio::time::timeout_at(deadline, tls.accept(stream))
                .await
                .map_err(|_| LinkError::Handshake("timed out"))??;
            let (read, write) = tokio::io::split(stream);
            (Box::new(read), Box::new(write))
        }
    };
    serve_conn(
        read,
        write,
        node_id,
        &auth.secrets,
        handler,
        state,
        deadline,
    )
    .await
}

async fn serve_conn<R, W>(
    read: R,
    mut write: W,
    node_id: &str,
    secret: &Secrets,
    handler: CallHandler,
    state: &AtomicU8,
    deadline: tokio::time::Instant,
) -> Result<(), LinkError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = FrameReader::new(read);
    // Established only if the accept loop did not give the connection up first.
    let admit = || {
        state
            .compare_exchange(PRE_AUTH, AUTHENTICATED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    };
    let peer = tokio::time::timeout_at(
        deadline,
        handshake::server(&mut reader, &mut write, node_id, secret, admit),
    )
    .await
    .map_err(|_| LinkError::Handshake("timed out"))??;
    reader.authenticated();
    // The peer stamps its calls with its time since its own end of the handshake, a
    // moment before this one: the difference is how long a call was on its way.
    let since = std::time::Instant::now();
    tracing::Span::current().record("peer_node", peer.as_str());

    let (tx, rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let writer = run_writer(write, rx);
    let serve = async {
        let permits = Arc::new(Semaphore::new(SERVER_IN_FLIGHT));
        // Owned here so that closing the connection aborts its in-flight handlers.
        let mut handlers = JoinSet::new();
        loop {
            while handlers.try_join_next().is_some() {}
            let Some(frame) = reader.next().await? else {
                return Ok::<(), LinkError>(());
            };
            if !matches!(frame.body, Body::Call { .. } | Body::Create { .. }) {
                return Err(LinkError::Protocol("unexpected frame after handshake"));
            }
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return Err(LinkError::Closed);
            };
            let age = match frame.sent_ms {
                0 => Duration::ZERO,
                sent => {
                    let now = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
                    Duration::from_millis(now.saturating_sub(sent))
                }
            };
            let (handler, tx) = (handler.clone(), tx.clone());
            // The caller's trace context, as span fields: every line logged for this
            // call joins the lines the calling node logged for the kiosk's request.
            let span = match &frame.trace {
                Some(t) => tracing::info_span!(
                    "wire_call",
                    id = frame.id,
                    trace_id = %t.trace_id_hex(),
                    parent_span_id = %t.parent_id_hex(),
                ),
                None => tracing::debug_span!("wire_call", id = frame.id),
            };
            let trace = frame.trace;
            handlers.spawn(
                async move {
                    let id = frame.id;
                    let body = crate::traced(trace, handler(frame.body, age)).await;
                    let bytes = match encode_frame(&Frame {
                        sent_ms: 0,
                        trace: None,
                        id,
                        body,
                    }) {
                        Ok(bytes) => bytes,
                        Err(e) => {
                            // The caller still gets an answer rather than a timeout.
                            tracing::error!(error = %e, "reply cannot be sent");
                            let body = Body::Reply(SessionReply::from(ErrorCode::Internal));
                            match encode_frame(&Frame {
                                sent_ms: 0,
                                trace: None,
                                id,
                                body,
                            }) {
                                Ok(bytes) => bytes,
                                Err(_) => return,
                            }
                        }
                    };
                    // A closed queue means the connection is going away; nothing to do.
                    let _ = tx.send(bytes).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
    };
    tokio::select! {
        served = serve => served,
        written = writer => written.map_err(LinkError::from),
    }
}
