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

/// The cluster secret, and during a rotation the one before (or after) it. A node proves
/// itself with `current` and accepts a peer's proof made with either, so a rolling
/// rotation never splits the cluster: first every node accepts the new secret, then
/// every node proves with it, then the old one is dropped (README "Operations").
#[derive(Clone)]
pub struct Secrets {
    current: Arc<[u8]>,
    other: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

impl Secrets {
    pub fn new(current: impl AsRef<[u8]>) -> Secrets {
        Secrets {
            current: current.as_ref().into(),
            other: None,
        }
    }

    /// Also accept proofs made with `other` (an empty one is ignored).
    pub fn also_accepting(mut self, other: impl AsRef<[u8]>) -> Secrets {
        let other = other.as_ref();
        self.other = (!other.is_empty()).then(|| other.into());
        self
    }

    fn is_empty(&self) -> bool {
        self.current.is_empty()
    }

    /// The secret a peer's proof was made with, if it is one of ours.
    fn matching(&self, check: impl Fn(&[u8]) -> bool) -> Option<&[u8]> {
        std::iter::once(&self.current)
            .chain(self.other.as_ref())
            .map(|s| &**s)
            .find(|s| check(s))
    }
}

impl<T: AsRef<[u8]> + ?Sized> From<&T> for Secrets {
    fn from(secret: &T) -> Secrets {
        Secrets::new(secret)
    }
}

impl From<Vec<u8>> for Secrets {
    fn from(secret: Vec<u8>) -> Secrets {
        Secrets::new(secret)
    }
}

fn fresh_nonce() -> [u8; 16] {
    rand::random()
}

mod client;
mod server;

pub use client::WireClient;
pub use server::WireServer;
