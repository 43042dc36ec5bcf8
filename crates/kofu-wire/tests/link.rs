//! Loopback tests of the inter-node link: the handshake, multiplexing of many calls
//! over one connection, and that every failure ends calls promptly instead of hanging.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::FutureExt;
use kofu_proto::wire::{Body, Frame, HANDSHAKE_ID};
use kofu_proto::{KioskId, SessionId, SessionOp};
use kofu_wire::{
    CallHandler, LEN_PREFIX, LinkError, MAX_FRAME, Role, Secrets, Transcript, WireClient,
    WireServer, decode_frame, encode_frame, mac,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &[u8] = b"test cluster secret";
const LONG: Duration = Duration::from_secs(30);

/// Echoes every request after sleeping its `wait_ms`, and tracks how many requests were
/// in the handler at once (to prove calls really overlap).
fn echo(busy: Arc<AtomicUsize>, peak: Arc<AtomicUsize>) -> CallHandler {
    Arc::new(move |body: Body, _| {
        let (busy, peak) = (busy.clone(), peak.clone());
        async move {
            let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            if let Body::Call { wait_ms, .. } = &body {
                tokio::time::sleep(Duration::from_millis(u64::from(*wait_ms))).await;
            }
            busy.fetch_sub(1, Ordering::SeqCst);
            body
        }
        .boxed()
    })
}

async fn serve(node_id: &str, secret: impl Into<Secrets>, handler: CallHandler) -> WireServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    WireServer::serve(listener, node_id, secret.into(), handler).expect("serve")
}

async fn echo_server() -> (WireServer, Arc<AtomicUsize>) {
    let peak = Arc::new(AtomicUsize::new(0));
    let handler = echo(Arc::new(AtomicUsize::new(0)), peak.clone());
    (serve("node-b", SECRET, handler).await, peak)
}

/// A call whose every field depends on `i`, so a crossed reply cannot go unnoticed.
fn call(i: u32, wait_ms: u32) -> Body {
    let mut random = [0u8; 16];
    random[..4].copy_from_slice(&i.to_be_bytes());
    Body::Call {
        session: SessionId::new(i % 1024, random),
        kiosk: KioskId::parse(&format!("K{i:05}")).expect("valid kiosk"),
        op: SessionOp::Auth {
            signature: std::array::from_fn(|b| i.to_be_bytes()[b % 4]),
        },
        wait_ms,
    }
}

/// A client linked to `server` as `node-a` with the cluster secret.
async fn connected(server: &WireServer) -> WireClient {
    WireClient::connect(server.local_addr(), "node-a", SECRET)
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_succeeds_and_a_call_is_answered() {
    let (server, _) = echo_server().await;
    let client = connected(&server).await;
    assert_eq!(client.peer_node_id(), "node-b");
    let reply = client.call(call(7, 0), LONG).await.expect("call");
    assert_eq!(reply, call(7, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_rejected_and_the_server_keeps_serving() {
    let (server, _) = echo_server().await;
    let good = connected(&server).await;
    let bad = WireClient::connect(server.local_addr(), "node-x", b"not the secret").await;
    assert!(
        matches!(bad, Err(LinkError::Handshake(_))),
        "{:?}",
        bad.err()
    );
    assert_eq!(good.call(call(1, 0), LONG).await.expect("call"), call(1, 0));
    let later = WireClient::connect(server.local_addr(), "node-c", SECRET)
        .await
        .expect("connect after a rejection");
    assert_eq!(
        later.call(call(2, 0), LONG).await.expect("call"),
        call(2, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_secret_is_refused_up_front() {
    let (server, _) = echo_server().await;
    let client = WireClient::connect(server.local_addr(), "node-a", b"").await;
    assert!(matches!(client, Err(LinkError::EmptySecret)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_concurrent_calls_each_get_their_own_answer() {
    let (server, peak) = echo_server().await;
    let client = Arc::new(connected(&server).await);
    let calls: Vec<_> = (0..500u32)
        .map(|i| {
            let client = client.clone();
            // Random handler delays make replies come back out of order.
            let wait = rand::random_range(0..=5u32);
            tokio::spawn(async move { (i, wait, client.call(call(i, wait), LONG).await) })
        })
        .collect();
    for task in calls {
        let (i, wait, reply) = task.await.expect("task");
        assert_eq!(reply.expect("call"), call(i, wait), "call {i}");
    }
    assert!(
        peak.load(Ordering::SeqCst) > 1,
        "calls were served one at a time"
    );
    assert!(!client.is_closed());
}

/// A call given up on must not be acted on later: across a partition its request may
/// still be in flight (retransmitted once the partition heals), long after the caller
/// answered `503` and the kiosk moved on. So a timeout resets the connection, which
/// also ends the peer's handler of the call, and the next call needs a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_call_resets_the_connection_and_is_never_completed() {
    let (started, completed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let handler: CallHandler = {
        let (started, completed) = (started.clone(), completed.clone());
        Arc::new(move |body: Body, _| {
            let (started, completed) = (started.clone(), completed.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                if let Body::Call { wait_ms, .. } = &body {
                    tokio::time::sleep(Duration::from_millis(u64::from(*wait_ms))).await;
                }
                completed.fetch_add(1, Ordering::SeqCst);
                body
            }
            .boxed()
        })
    };
    let server = serve("node-b", SECRET, handler).await;
    let client = connected(&server).await;
    let slow = client.call(call(1, 500), Duration::from_millis(100)).await;
    assert!(matches!(slow, Err(LinkError::Timeout)), "{slow:?}");
    assert!(client.is_closed());
    assert!(matches!(
        client.call(call(2, 0), LONG).await,
        Err(LinkError::Closed)
    ));
    // Long enough for the abandoned handler to finish, had it not been ended.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(started.load(Ordering::SeqCst), 1);
    assert_eq!(
        completed.load(Ordering::SeqCst),
        0,
        "an abandoned call completed"
    );
    let again = connected(&server).await;
    assert_eq!(
        again.call(call(3, 0), LONG).await.expect("call"),
        call(3, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_server_fails_pending_calls_promptly() {
    let (server, _) = echo_server().await;
    let client = Arc::new(connected(&server).await);
    let calls: Vec<_> = (0..20u32)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.call(call(i, 60_000), LONG).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    common::dropping_fails_them_promptly(server, calls).await;
    assert!(client.is_closed());
    let after = client.call(call(99, 0), LONG).await;
    assert!(matches!(after, Err(LinkError::Closed)), "{after:?}");
}

async fn read_frame(stream: &mut TcpStream) -> Frame {
    let mut bytes = vec![0u8; LEN_PREFIX];
    stream.read_exact(&mut bytes).await.expect("prefix");
    let mut prefix = [0u8; LEN_PREFIX];
    prefix.copy_from_slice(&bytes);
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).await.expect("body");
    bytes.extend_from_slice(&body);
    decode_frame(&bytes).expect("decode").expect("whole").0
}

async fn write_frame(stream: &mut TcpStream, body: Body) {
    let frame = Frame {
        sent_ms: 0,
        trace: None,
        id: HANDSHAKE_ID,
        body,
    };
    let bytes = encode_frame(&frame).expect("encode");
    stream.write_all(&bytes).await.expect("write");
}

/// A peer that authenticates properly, by hand.
async fn raw_peer(server: &WireServer) -> TcpStream {
    let mut raw = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    let client_nonce = [5u8; 16];
    write_frame(
        &mut raw,
        Body::Hello {
            node_id: "node-raw".into(),
            nonce: client_nonce,
        },
    )
    .await;
    let Body::Welcome {
        node_id: server_id,
        nonce: server_nonce,
    } = read_frame(&mut raw).await.body
    else {
        panic!("expected welcome");
    };
    let transcript = Transcript {
        client_id: "node-raw",
        client_nonce: &client_nonce,
        server_id: &server_id,
        server_nonce: &server_nonce,
    };
    write_frame(
        &mut raw,
        Body::Proof {
            mac: mac(SECRET, Role::Client, &transcript),
        },
    )
    .await;
    assert!(matches!(
        read_frame(&mut raw).await.body,
        Body::Proof { .. }
    ));
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_frame_closes_only_that_connection() {
    let (server, _) = echo_server().await;
    let good = connected(&server).await;

    // A peer that authenticates properly, then announces a frame over the limit.
    let mut raw = raw_peer(&server).await;
    let oversize = u32::try_from(MAX_FRAME + 1).expect("fits");
    raw.write_all(&oversize.to_be_bytes()).await.expect("write");
    raw.write_all(&[0u8; 1024]).await.expect("write");

    // The server hangs up on it: end of stream (or a reset), promptly.
    let mut sink = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(2), raw.read(&mut sink))
        .await
        .expect("server must close the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // Everyone else is unaffected.
    assert_eq!(good.call(call(1, 0), LONG).await.expect("call"), call(1, 0));
    assert!(!good.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_secret_rotation_never_splits_the_cluster() {
    let (old, new) = (
        b"old cluster secret 0123".as_slice(),
        b"new cluster secret 4567".as_slice(),
    );
    // The three phases of a rotation, plus the nodes before and after it.
    let before = || Secrets::new(old);
    let accepting = || Secrets::new(old).also_accepting(new);
    let proving = || Secrets::new(new).also_accepting(old);
    let after = || Secrets::new(new);
    let connects = |client: Secrets, server: Secrets| async move {
        let handler = echo(Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let s = serve("node-s", server, handler).await;
        match WireClient::connect(s.local_addr(), "node-c", client).await {
            Ok(c) => c.call(call(1, 0), LONG).await.is_ok(),
            Err(_) => false,
        }
    };
    // Neighbouring phases always talk, both ways.
    for (a, b) in [
        (before(), accepting()),
        (accepting(), proving()),
        (proving(), after()),
    ] {
        assert!(connects(a.clone(), b.clone()).await, "{a:?} -> {b:?}");
        assert!(connects(b.clone(), a.clone()).await, "{b:?} -> {a:?}");
    }
    // Skipping a phase does not, and neither do strangers.
    assert!(!connects(before(), after()).await);
    assert!(!connects(after(), before()).await);
    assert!(!connects(Secrets::new(b"someone else's secret"), accepting()).await);
}

/// The handler learns how long a call was on its way (its stamp against the time since
/// the handshake), so that the owner can refuse a call its caller gave up on: here one
/// stamped as sent just after the handshake but written 1.2 s later (as a call held up
/// by a partition arrives), beside a fresh one from a `WireClient`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_learns_how_long_a_call_was_on_its_way() {
    let ages = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let handler: CallHandler = {
        let ages = ages.clone();
        Arc::new(move |body: Body, age: Duration| {
            ages.lock().push(age);
            async move { body }.boxed()
        })
    };
    let server = serve("node-b", SECRET, handler).await;
    let client = connected(&server).await;
    assert_eq!(
        client.call(call(1, 0), LONG).await.expect("call"),
        call(1, 0)
    );
    let mut raw = raw_peer(&server).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let late = Frame {
        id: 9,
        body: call(2, 0),
        sent_ms: 1,
        trace: None,
    };
    raw.write_all(&encode_frame(&late).expect("encode"))
        .await
        .expect("write");
    assert_eq!(read_frame(&mut raw).await.body, call(2, 0));
    let ages = ages.lock().clone();
    assert_eq!(ages.len(), 2);
    assert!(ages[0] < Duration::from_millis(500), "{ages:?}");
    assert!(ages[1] >= Duration::from_millis(1100), "{ages:?}");
}
