//! The accepting side of a node-to-node link: handshake, then many requests served
//! concurrently per connection, answered by correlation id.

use super::*;

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
        secret: impl Into<Secrets>,
        handler: Handler,
    ) -> Result<WireServer, LinkError> {
        let secret: Secrets = secret.into();
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

async fn accept_loop(listener: TcpListener, node_id: Arc<str>, secret: Secrets, handler: Handler) {
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
    secret: &Secrets,
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
    secret: &Secrets,
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
    // Closing without a word tells an unauthenticated peer nothing.
    let Some(secret) = secret.matching(|s| verify_mac(s, Role::Client, &transcript, &proof)) else {
        return Err(LinkError::Handshake(
            "peer does not know the cluster secret",
        ));
    };
    // Answered with the secret the peer proved with, which it can check.
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
