//! The calling side of a node-to-node link: one persistent connection multiplexing many
//! concurrent calls, each matched to its reply by correlation id.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use kofu_proto::wire::{Body, Frame, HANDSHAKE_ID};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::frame::{FrameReader, encode_frame, run_writer};
use crate::{HANDSHAKE_TIMEOUT, LinkAuth, LinkError, Secrets, WRITE_QUEUE, handshake};

/// Calls one client may have outstanding; later callers wait (within their timeout).
const CLIENT_IN_FLIGHT: usize = 4096;

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
    /// When the handshake completed: every call is stamped with the time since
    /// (`Frame::sent_ms`), so the peer can tell how long it was on its way.
    connected: std::time::Instant,
}

impl WireClient {
    /// Connects to `addr` over TCP (and TLS when `auth` has it) and authenticates both
    /// ends.
    pub async fn connect(
        addr: impl ToSocketAddrs,
        node_id: impl Into<String>,
        auth: impl Into<LinkAuth>,
    ) -> Result<WireClient, LinkError> {
        let auth: LinkAuth = auth.into();
        if auth.secrets.is_empty() {
            return Err(LinkError::EmptySecret);
        }
        let node_id = node_id.into();
        tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            let stream = TcpStream::connect(addr).await?;
            let _ = stream.set_nodelay(true);
            // Closing resets the connection, dropping what it has not delivered yet: a
            // call given up on (`call`) must not reach the peer later, after a partition
            // heals, when its caller has long answered `503` and the kiosk moved on.
            let _ = stream.set_zero_linger();
            let peer = stream.peer_addr()?.to_string();
            match &auth.tls {
                None => {
                    let (read, write) = stream.into_split();
                    Self::open(read, write, peer, node_id, &auth.secrets).await
                }
                Some(tls) => {
                    let stream = tls.connect(stream).await?;
                    let (read, write) = tokio::io::split(stream);
                    Self::open(read, write, peer, node_id, &auth.secrets).await
                }
            }
        })
        .await
        .map_err(|_| LinkError::Handshake("timed out"))?
    }

    /// The handshake over a connected stream, given as its two halves, then the tasks
    /// that write calls and read replies.
    async fn open<R, W>(
        read: R,
        mut write: W,
        peer: String,
        node_id: String,
        secret: &Secrets,
    ) -> Result<WireClient, LinkError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let mut reader = FrameReader::new(read);
        let peer_node_id = handshake::client(&mut reader, &mut write, &node_id, secret).await?;
        let connected = std::time::Instant::now();
        reader.authenticated();
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
            connected,
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

    /// Sends one request and waits for its reply, at most `timeout` in all. A call
    /// that times out closes the connection (a TCP connection resets): a peer answers
    /// well within a caller's timeout, so a link that did not is broken or stalled, and
    /// what it has not delivered yet (this request, still being retransmitted across a
    /// partition) must never be delivered late. Every later call fails with `Closed`.
    pub async fn call(&self, body: Body, timeout: Duration) -> Result<Body, LinkError> {
        match tokio::time::timeout(timeout, self.call_inner(body)).await {
            Ok(r) => r,
            Err(_) => {
                self.abort();
                Err(LinkError::Timeout)
            }
        }
    }

    /// Fails every pending call and drops the connection.
    fn abort(&self) {
        self.shared.close();
        for task in &self.tasks {
            task.abort();
        }
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
        // Never 0, which means "not stamped".
        let sent_ms = u64::try_from(self.connected.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let bytes = encode_frame(&Frame {
            id,
            body,
            sent_ms,
            trace: crate::trace::current(),
        })?;
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
        self.abort();
    }
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
