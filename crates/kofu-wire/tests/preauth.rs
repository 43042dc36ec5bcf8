//! An internal listener under a flood of unauthenticated connections (issue 10: 512 of
//! them holding up to 4 MiB each for 5 s starved forwarding). Before the handshake a
//! connection may send only small frames, has a second to prove itself, and gives way
//! to newer ones past `MAX_PRE_AUTH`: peers keep connecting and calls keep flowing.

use std::time::{Duration, Instant};

use futures::FutureExt;
use kofu_proto::wire::{Body, Frame, HANDSHAKE_ID};
use kofu_proto::{KioskId, SessionId, SessionOp};
use kofu_wire::{
    CallHandler, LEN_PREFIX, MAX_PRE_AUTH, PRE_AUTH_FRAME, WireClient, WireServer, encode_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &[u8] = b"test cluster secret";
/// Idle unauthenticated connections in the flood: more than the server accepts at once.
const FLOOD: usize = 600;
/// How soon a peer must get a call through the flood. Before the fix the flood held
/// every slot for the 5 s handshake timeout; now the oldest idle connection gives way
/// at once, so this leaves ample room for a loaded machine.
const THROUGH_WITHIN: Duration = Duration::from_secs(3);

async fn echo_server() -> WireServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let handler: CallHandler = std::sync::Arc::new(|body: Body, _| async move { body }.boxed());
    WireServer::serve(listener, "node-b", SECRET, handler).expect("serve")
}

fn call() -> Body {
    Body::Call {
        session: SessionId::new(3, [7; 16]),
        kiosk: KioskId::parse("K00001").expect("kiosk"),
        op: SessionOp::Close,
        wait_ms: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_unauthenticated_connections_do_not_keep_peers_out() {
    const { assert!(FLOOD > MAX_PRE_AUTH) };
    let server = echo_server().await;
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        flood.push(
            TcpStream::connect(server.local_addr())
                .await
                .expect("connect"),
        );
    }
    let started = Instant::now();
    let through = loop {
        let attempt = async {
            let client = WireClient::connect(server.local_addr(), "node-a", SECRET).await?;
            client.call(call(), Duration::from_secs(1)).await
        };
        match attempt.await {
            Ok(reply) => break reply,
            Err(e) => assert!(
                started.elapsed() < THROUGH_WITHIN,
                "no call got through the flood in {THROUGH_WITHIN:?}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(through, call());
    assert!(started.elapsed() < THROUGH_WITHIN);
    drop(flood);
}

/// A handshake frame larger than any handshake needs is refused before it is answered:
/// an unauthenticated peer cannot make a node buffer more than `PRE_AUTH_FRAME`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_handshake_frame_is_refused_unanswered() {
    let server = echo_server().await;
    let mut raw = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    let hello = Frame {
        sent_ms: 0,
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
    let mut answer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), raw.read(&mut answer))
        .await
        .expect("the server must hang up");
    assert!(matches!(read, Ok(0) | Err(_)), "answered: {read:?}");
}

/// A connection that says nothing is closed after the pre-authentication timeout
/// (a second), well before the calling side's own handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_a_second() {
    let server = echo_server().await;
    let mut raw = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    let started = Instant::now();
    let mut sink = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), raw.read(&mut sink))
        .await
        .expect("the server must hang up");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
}
