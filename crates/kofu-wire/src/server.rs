//! The accepting side of a node-to-node link: handshake, then many requests served
//! concurrently per connection, answered by correlation id.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kofu_proto::wire::{Body, Frame};
use kofu_proto::{ErrorCode, SessionReply};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

use crate::frame::{FrameReader, encode_frame, run_writer};
use crate::{CallHandler, HANDSHAKE_TIMEOUT, LinkError, Secrets, WRITE_QUEUE, handshake};

/// Requests one connection may have in the handler at once; past it the server stops
/// reading that connection, which pushes back on the sender through TCP.
const SERVER_IN_FLIGHT: usize = 1024;
/// Connections one server accepts at once; a cluster has few peers, so this is generous.
const MAX_CONNECTIONS: usize = 512;

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
        secret: impl Into<Secrets>,
        handler: CallHandler,
    ) -> Result<WireServer, LinkError> {
        let secret: Secrets = secret.into();
        if secret.is_empty() {
            return Err(LinkError::EmptySecret);
        }
        let node_id: Arc<str> = node_id.into().into();
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
    secret: Secrets,
    handler: CallHandler,
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
                let (read, write) = stream.into_split();
                match serve_conn(read, write, &node_id, &secret, handler).await {
                    Ok(()) => tracing::debug!("connection closed by peer"),
                    Err(e) => tracing::warn!(error = %e, "connection dropped"),
                }
                drop(slot);
            }
            .instrument(span),
        );
    }
}

/// One connection, given as its two halves so any stream can carry it.
async fn serve_conn<R, W>(
    read: R,
    mut write: W,
    node_id: &str,
    secret: &Secrets,
    handler: CallHandler,
) -> Result<(), LinkError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = FrameReader::new(read);
    let peer = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake::server(&mut reader, &mut write, node_id, secret),
    )
    .await
    .map_err(|_| LinkError::Handshake("timed out"))??;
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
                            let body = Body::Reply(SessionReply::from(ErrorCode::Internal));
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
