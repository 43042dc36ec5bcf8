//! The transport of inter-node forwarding: persistent, authenticated TCP connections
//! carrying `kofu_proto::wire` frames, with many concurrent calls multiplexed over one
//! connection by correlation id. Groundwork for the router's remote path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use kofu_proto::ErrorCode;
use kofu_proto::wire::{
    Body, Frame, HANDSHAKE_ID, Role, Transcript, WireError, WireReply, decode_frame, encode_frame,
    mac, verify_mac,
};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

/// Answers one forwarded request. Runs on the owner node; the returned body goes back
/// with the request's correlation id.
pub type Handler = Arc<dyn Fn(Body) -> BoxFuture<'static, Body> + Send + Sync>;

/// Connect plus handshake must finish within this, so a silent peer cannot hold a slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Encoded frames queued for one connection's writer: bounds memory per peer.
const WRITE_QUEUE: usize = 256;
/// Requests one connection may have in the handler at once; past it the server stops
/// reading that connection, which pushes back on the sender through TCP.
const SERVER_IN_FLIGHT: usize = 1024;
/// Calls one client may have outstanding; later callers wait (within their timeout).
const CLIENT_IN_FLIGHT: usize = 4096;
/// Connections one server accepts at once; a cluster has few peers, so this is generous.
const MAX_CONNECTIONS: usize = 512;
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake failed: {0}")]
    Handshake(&'static str),
    #[error("bad frame: {0}")]
    Wire(#[from] WireError),
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    #[error("the cluster secret must not be empty")]
    EmptySecret,
    #[error("connection closed")]
    Closed,
    #[error("call timed out")]
    Timeout,
}

/// Reads whole frames off a byte stream, keeping any surplus bytes for the next one.
struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    chunk: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: Vec::new(),
            chunk: vec![0u8; READ_CHUNK].into_boxed_slice(),
        }
    }

    /// `Ok(None)` on a clean end of stream between frames.
    async fn next(&mut self) -> Result<Option<Frame>, LinkError> {
        loop {
            if let Some((frame, used)) = decode_frame(&self.buf)? {
                self.buf.drain(..used);
                return Ok(Some(frame));
            }
            let n = self.inner.read(&mut self.chunk).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(LinkError::Closed)
                };
            }
            self.buf.extend_from_slice(&self.chunk[..n]);
        }
    }

    /// The next frame, where the end of the stream is an error (during the handshake).
    async fn expect(&mut self) -> Result<Frame, LinkError> {
        self.next().await?.ok_or(LinkError::Closed)
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &Frame) -> Result<(), LinkError> {
    w.write_all(&encode_frame(frame)?).await?;
    w.flush().await?;
    Ok(())
}

/// Drains the queue onto the socket, flushing only when the queue is momentarily empty
/// so bursts of small replies share syscalls.
async fn run_writer<W: AsyncWrite + Unpin>(
    w: W,
    mut queue: mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let mut w = BufWriter::new(w);
    while let Some(bytes) = queue.recv().await {
        w.write_all(&bytes).await?;
        while let Ok(more) = queue.try_recv() {
            w.write_all(&more).await?;
        }
        w.flush().await?;
    }
    Ok(())
}

fn fresh_nonce() -> [u8; 16] {
    rand::random()
}

/// Accepts authenticated connections from other nodes and serves their calls.
/// Dropping it closes the listener and every connection, failing the peers' calls.
pub struct WireServer {
    local_addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl WireServer {
    pub async fn bind(
        addr: impl ToSocketAddrs,
        node_id: impl Into<String>,
        secret: impl Into<Vec<u8>>,
        handler: Handler,
    ) -> Result<WireServer, LinkError> {
        let secret: Arc<[u8]> = secret.into().into();
        if secret.is_empty() {
            return Err(LinkError::EmptySecret);
        }
        let node_id: Arc<str> = node_id.into().into();
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let span = tracing::info_span!("wire_server", node = %node_id, addr = %local_addr);
        let accept = tokio::spawn(accept_loop(listener, node_id, secret, handler).instrument(span));
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
    secret: Arc<[u8]>,
    handler: Handler,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many connections; refusing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (node_id, secret, handler) = (node_id.clone(), secret.clone(), handler.clone());
        let span = tracing::info_span!("wire_conn", %peer, peer_node = tracing::field::Empty);
        conns.spawn(
            async move {
                match serve_conn(stream, &node_id, &secret, handler).await {
                    Ok(()) => tracing::debug!("connection closed by peer"),
                    Err(e) => tracing::warn!(error = %e, "connection dropped"),
                }
                drop(slot);
            }
            .instrument(span),
        );
    }
}

async fn serve_conn(
    stream: TcpStream,
    node_id: &str,
    secret: &[u8],
    handler: Handler,
) -> Result<(), LinkError> {
    let (read, write) = stream.into_split();
    let mut reader = FrameReader::new(read);
    let mut write = write;
    tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        server_handshake(&mut reader, &mut write, node_id, secret),
    )
    .await
    .map_err(|_| LinkError::Handshake("timed out"))??;

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
            let (handler, tx) = (handler.clone(), tx.clone());
            let span = tracing::debug_span!("wire_call", id = frame.id);
            handlers.spawn(
                async move {
                    let id = frame.id;
                    let body = handler(frame.body).await;
                    let bytes = match encode_frame(&Frame { id, body }) {
                        Ok(bytes) => bytes,
                        Err(e) => {
                            // The caller still gets an answer rather than a timeout.
                            tracing::error!(error = %e, "reply cannot be sent");
                            let body = Body::Reply(WireReply::Error {
                                code: ErrorCode::Internal,
                                attempts_left: None,
                                reason: Some("reply_too_large".into()),
                            });
                            match encode_frame(&Frame { id, body }) {
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

async fn server_handshake<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut FrameReader<R>,
    write: &mut W,
    node_id: &str,
    secret: &[u8],
) -> Result<(), LinkError> {
    let Body::Hello {
        node_id: client_id,
        nonce: client_nonce,
    } = reader.expect().await?.body
    else {
        return Err(LinkError::Handshake("expected hello"));
    };
    let server_nonce = fresh_nonce();
    let welcome = Body::Welcome {
        node_id: node_id.to_owned(),
        nonce: server_nonce,
    };
    write_frame(
        write,
        &Frame {
            id: HANDSHAKE_ID,
            body: welcome,
        },
    )
    .await?;
    let Body::Proof { mac: proof } = reader.expect().await?.body else {
        return Err(LinkError::Handshake("expected proof"));
    };
    let transcript = Transcript {
        client_id: &client_id,
        client_nonce: &client_nonce,
        server_id: node_id,
        server_nonce: &server_nonce,
    };
    if !verify_mac(secret, Role::Client, &transcript, &proof) {
        // Closing without a word tells an unauthenticated peer nothing.
        return Err(LinkError::Handshake(
            "peer does not know the cluster secret",
        ));
    }
    let ours = Body::Proof {
        mac: mac(secret, Role::Server, &transcript),
    };
    write_frame(
        write,
        &Frame {
            id: HANDSHAKE_ID,
            body: ours,
        },
    )
    .await?;
    tracing::Span::current().record("peer_node", client_id.as_str());
    Ok(())
}

type Pending = HashMap<u64, oneshot::Sender<Body>>;

/// State shared by the client handle and its connection tasks.
struct Shared {
    /// `None` once the connection is gone: no call can register after that, so none can
    /// wait for a reply that will never come.
    pending: Mutex<Option<Pending>>,
    closed: AtomicBool,
}

impl Shared {
    /// Fails every pending call with `Closed` (dropping its sender) and refuses new ones.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.pending.lock().take();
    }
}

/// Removes a call's entry however the call ends (reply, timeout, or caller dropped),
/// so abandoned calls do not accumulate.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Some(pending) = self.shared.pending.lock().as_mut() {
            pending.remove(&self.id);
        }
    }
}

/// One persistent, authenticated connection to another node, shared by all calls to it.
/// Once it reports `Closed` it stays closed: the owner of the handle reconnects.
pub struct WireClient {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Vec<u8>>,
    next_id: AtomicU64,
    in_flight: Semaphore,
    peer_node_id: String,
    tasks: [JoinHandle<()>; 2],
}

impl WireClient {
    pub async fn connect(
        addr: impl ToSocketAddrs,
        node_id: impl Into<String>,
        secret: impl AsRef<[u8]>,
    ) -> Result<WireClient, LinkError> {
        let secret = secret.as_ref();
        if secret.is_empty() {
            return Err(LinkError::EmptySecret);
        }
        let node_id = node_id.into();
        let (peer, reader, write, peer_node_id) = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            let stream = TcpStream::connect(addr).await?;
            let _ = stream.set_nodelay(true);
            let peer = stream.peer_addr()?;
            let (read, mut write) = stream.into_split();
            let mut reader = FrameReader::new(read);
            let peer_node_id = client_handshake(&mut reader, &mut write, &node_id, secret).await?;
            Ok::<_, LinkError>((peer, reader, write, peer_node_id))
        })
        .await
        .map_err(|_| LinkError::Handshake("timed out"))??;

        let shared = Arc::new(Shared {
            pending: Mutex::new(Some(HashMap::new())),
            closed: AtomicBool::new(false),
        });
        let (queue, rx) = mpsc::channel(WRITE_QUEUE);
        let span = tracing::info_span!("wire_client", node = %node_id, peer = %peer, peer_node = %peer_node_id);
        let writer = {
            let shared = shared.clone();
            tokio::spawn(
                async move {
                    if let Err(e) = run_writer(write, rx).await {
                        tracing::warn!(error = %e, "write failed");
                    }
                    shared.close();
                }
                .instrument(span.clone()),
            )
        };
        let reader = {
            let shared = shared.clone();
            tokio::spawn(read_replies(reader, shared).instrument(span))
        };
        Ok(WireClient {
            shared,
            queue,
            next_id: AtomicU64::new(HANDSHAKE_ID + 1),
            in_flight: Semaphore::new(CLIENT_IN_FLIGHT),
            peer_node_id,
            tasks: [writer, reader],
        })
    }

    /// The node id the peer proved itself as during the handshake.
    pub fn peer_node_id(&self) -> &str {
        &self.peer_node_id
    }

    /// Whether the connection is gone (every later call fails with `Closed`).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Sends one request and waits for its reply, at most `timeout` in all.
    pub async fn call(&self, body: Body, timeout: Duration) -> Result<Body, LinkError> {
        tokio::time::timeout(timeout, self.call_inner(body))
            .await
            .map_err(|_| LinkError::Timeout)?
    }

    async fn call_inner(&self, body: Body) -> Result<Body, LinkError> {
        if self.is_closed() {
            return Err(LinkError::Closed);
        }
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| LinkError::Closed)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Encoding first: a frame too large fails this call only, not the connection.
        let bytes = encode_frame(&Frame { id, body })?;
        let (tx, rx) = oneshot::channel();
        match self.shared.pending.lock().as_mut() {
            Some(pending) => pending.insert(id, tx),
            None => return Err(LinkError::Closed),
        };
        let _guard = PendingGuard {
            shared: &self.shared,
            id,
        };
        self.queue
            .send(bytes)
            .await
            .map_err(|_| LinkError::Closed)?;
        rx.await.map_err(|_| LinkError::Closed)
    }
}

impl Drop for WireClient {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.close();
    }
}

async fn client_handshake<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut FrameReader<R>,
    write: &mut W,
    node_id: &str,
    secret: &[u8],
) -> Result<String, LinkError> {
    let client_nonce = fresh_nonce();
    let hello = Body::Hello {
        node_id: node_id.to_owned(),
        nonce: client_nonce,
    };
    write_frame(
        write,
        &Frame {
            id: HANDSHAKE_ID,
            body: hello,
        },
    )
    .await?;
    let Body::Welcome {
        node_id: server_id,
        nonce: server_nonce,
    } = reader.expect().await?.body
    else {
        return Err(LinkError::Handshake("expected welcome"));
    };
    let transcript = Transcript {
        client_id: node_id,
        client_nonce: &client_nonce,
        server_id: &server_id,
        server_nonce: &server_nonce,
    };
    let proof = Body::Proof {
        mac: mac(secret, Role::Client, &transcript),
    };
    write_frame(
        write,
        &Frame {
            id: HANDSHAKE_ID,
            body: proof,
        },
    )
    .await?;
    // A server that rejects our proof just closes: report that as a handshake failure.
    let answer = match reader.next().await {
        Ok(Some(frame)) => frame.body,
        Ok(None) | Err(LinkError::Closed | LinkError::Io(_)) => {
            return Err(LinkError::Handshake("rejected by peer"));
        }
        Err(e) => return Err(e),
    };
    let Body::Proof { mac: theirs } = answer else {
        return Err(LinkError::Handshake("expected proof"));
    };
    if !verify_mac(secret, Role::Server, &transcript, &theirs) {
        return Err(LinkError::Handshake(
            "peer does not know the cluster secret",
        ));
    }
    Ok(server_id)
}

/// Hands each reply to its waiting call; on any read failure fails them all at once.
async fn read_replies<R: AsyncRead + Unpin>(mut reader: FrameReader<R>, shared: Arc<Shared>) {
    loop {
        match reader.next().await {
            Ok(Some(frame)) => {
                let waiter = shared
                    .pending
                    .lock()
                    .as_mut()
                    .and_then(|pending| pending.remove(&frame.id));
                match waiter {
                    // The caller may have given up meanwhile; its loss.
                    Some(tx) => {
                        let _ = tx.send(frame.body);
                    }
                    None => tracing::debug!(id = frame.id, "reply for an abandoned call"),
                }
            }
            Ok(None) => {
                tracing::info!("peer closed the connection");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "connection failed");
                break;
            }
        }
    }
    shared.close();
}
