//! An internal listener under a flood of unauthenticated connections (issue 10: 512 of
//! them holding up to 4 MiB each for 5 s starved forwarding). Before the handshake a
//! connection may send only small frames, has a second to prove itself, and gives way
//! to newer ones past `MAX_PRE_AUTH`: peers keep connecting and calls keep flowing.

mod common;

use common::{SECRET, about_a_second, call, call_through, hung_up, idle_connections};
use futures::FutureExt;
use kofu_proto::wire::{Body, Frame, HANDSHAKE_ID};
use kofu_wire::{CallHandler, LEN_PREFIX, MAX_PRE_AUTH, PRE_AUTH_FRAME, WireServer, encode_frame};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Idle unauthenticated connections in the flood: more than the server accepts at once.
const FLOOD: usize = 600;

async fn echo_server() -> WireServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let handler: CallHandler = std::sync::Arc::new(|body: Body, _| async move { body }.boxed());
    WireServer::serve(listener, "node-b", SECRET, handler).expect("serve")
}

/// A raw connection to `server`, as an unauthenticated peer has.
async fn connected(server: &WireServer) -> TcpStream {
    TcpStream::connect(server.local_addr())
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_unauthenticated_connections_do_not_keep_peers_out() {
    const { assert!(FLOOD > MAX_PRE_AUTH) };
    let server = echo_server().await;
    let flood = idle_connections(server.local_addr(), FLOOD).await;
    assert_eq!(call_through(server.local_addr(), || SECRET).await, call());
    drop(flood);
}

/// A handshake frame larger than any handshake needs is refused before it is answered:
/// an unauthenticated peer cannot make a node buffer more than `PRE_AUTH_FRAME`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_handshake_frame_is_refused_unanswered() {
    let server = echo_server().await;
    let mut raw = connected(&server).await;
    let hello = Frame {
        sent_ms: 0,
        trace: None,
        id: HANDSHAKE_ID,
        body: Body::Hello {
            node_id: "n".repeat(2 * PRE_AUTH_FRAME),
            nonce: [1; 16],
        },
    };
    let bytes = encode_frame(&hello).expect("encode");
    assert!(bytes.len() > LEN_PREFIX + PRE_AUTH_FRAME);
    // The server may hang up before it has read all of it.
    let _ = raw.write_all(&bytes).await;
    hung_up(&mut raw).await;
}

/// A connection that says nothing is closed after the pre-authentication timeout
/// (a second), well before the calling side's own handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_a_second() {
    let server = echo_server().await;
    let mut raw = connected(&server).await;
    about_a_second(hung_up(&mut raw).await);
}
