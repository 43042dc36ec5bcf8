//! The link between nodes: persistent, authenticated connections carrying
//! `kofu_proto::wire` frames, with many concurrent calls multiplexed over one connection
//! by correlation id. The router forwards a request for a shard owned elsewhere over a
//! [`WireClient`] and serves the requests others forward here behind a [`WireServer`].
//! Only tokio, rustls and kofu-proto: what a call means is the caller's business. The
//! byte format (frames, handshake proofs) is public so that a test can speak it by hand.
//! With [`ClusterTls`] the frames travel inside mutual TLS (issue 11).

mod client;
mod frame;
mod handshake;
mod server;
mod tls;
mod trace;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kofu_proto::wire::Body;

pub use client::WireClient;
pub use frame::{LEN_PREFIX, MAX_FRAME, PRE_AUTH_FRAME, WireError, decode_frame, encode_frame};
pub use handshake::{Role, Transcript, mac};
pub use server::{MAX_PRE_AUTH, WireServer};
pub use tls::{CLUSTER_SERVER_NAME, ClusterTls};
pub use trace::{current as current_trace, traced};

/// Answers one forwarded request on the owner node; the returned body goes back with
/// the request's correlation id. The `Duration` is how long the request was on its way
/// before it was read (zero when the peer did not stamp it): its caller stops waiting
/// that much sooner.
pub type CallHandler = Arc<
    dyn Fn(Body, Duration) -> Pin<Box<dyn Future<Output = Body> + Send + 'static>> + Send + Sync,
>;

/// Runs an accepted connection's task somewhere other than the listener's runtime (a
/// node hands in its HTTP workers, so that forwarded calls are read, served and answered
/// on the thread of the sessions they reach). The future registers the connection with
/// the runtime it is polled on; it must be polled on a tokio runtime.
pub type ConnSpawner =
    Arc<dyn Fn(Pin<Box<dyn Future<Output = ()> + Send + 'static>>) + Send + Sync>;

/// Connect plus handshakes (TLS, then HMAC) must finish within this on the calling side.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// An accepted connection must complete both handshakes (TLS, then HMAC) within this,
/// so a silent peer cannot hold a slot: together they are three round trips, a few
/// signatures and two HMACs, milliseconds even on a loaded machine.
const PRE_AUTH_TIMEOUT: Duration = Duration::from_secs(1);
/// Encoded frames queued for one connection's writer: bounds memory per peer.
const WRITE_QUEUE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake failed: {0}")]
    Handshake(&'static str),
    #[error("tls handshake failed: {0}")]
    Tls(String),
    #[error("tls setup: {0}")]
    TlsSetup(String),
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

    fn current(&self) -> &[u8] {
        &self.current
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

/// How a link proves itself: the cluster secret (the HMAC handshake), and mutual TLS
/// underneath when the cluster has a CA. Both ends of a link must agree on whether TLS
/// is used; a plaintext peer of a TLS node fails its handshake.
#[derive(Clone, Debug)]
pub struct LinkAuth {
    secrets: Secrets,
    tls: Option<ClusterTls>,
}

impl LinkAuth {
    pub fn new(secrets: impl Into<Secrets>) -> LinkAuth {
        LinkAuth {
            secrets: secrets.into(),
            tls: None,
        }
    }

    /// Runs every connection inside mutual TLS.
    pub fn with_tls(mut self, tls: ClusterTls) -> LinkAuth {
        self.tls = Some(tls);
        self
    }

    /// Whether connections run inside TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

impl From<Secrets> for LinkAuth {
    fn from(secrets: Secrets) -> LinkAuth {
        LinkAuth::new(secrets)
    }
}

impl<T: AsRef<[u8]> + ?Sized> From<&T> for LinkAuth {
    fn from(secret: &T) -> LinkAuth {
        LinkAuth::new(Secrets::new(secret))
    }
}

impl From<Vec<u8>> for LinkAuth {
    fn from(secret: Vec<u8>) -> LinkAuth {
        LinkAuth::new(Secrets::new(secret))
    }
}
