//! What the link's test binaries share: the cluster secret, a call, the check that a
//! dropped server fails its pending calls at once, and the two checks
//! of the pre-authentication limits (a peer gets a call through a flood of idle
//! connections; a stalled connection is hung up on after about a second).

#![allow(dead_code)]

use std::time::{Duration, Instant};

use kofu_proto::wire::Body;
use kofu_proto::{KioskId, SessionId, SessionOp};
use kofu_wire::{LinkAuth, LinkError, WireClient, WireServer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

pub const SECRET: &[u8] = b"test cluster secret";
/// How soon a peer must get a call through a flood. Before the limits a flood held
/// every slot for the 5 s handshake timeout; now the oldest idle connection gives way
/// at once, so this leaves ample room for a loaded machine.
pub const THROUGH_WITHIN: Duration = Duration::from_secs(3);

pub fn call() -> Body {
    Body::Call {
        session: SessionId::new(3, [7; 16]),
        kiosk: KioskId::parse("K00001").expect("kiosk"),
        op: SessionOp::Close,
        wait_ms: 0,
    }
}

/// `n` connections to `addr` that never say a word.
pub async fn idle_connections(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut flood = Vec::with_capacity(n);
    for _ in 0..n {
        flood.push(TcpStream::connect(addr).await.expect("connect"));
    }
    flood
}

/// Connects as `node-a` with `auth()` and makes one call, again and again until it is
/// answered; fails past [`THROUGH_WITHIN`].
pub async fn call_through<A: Into<LinkAuth>>(
    addr: std::net::SocketAddr,
    auth: impl Fn() -> A,
) -> Body {
    let started = Instant::now();
    loop {
        let attempt = async {
            let client = WireClient::connect(addr, "node-a", auth()).await?;
            client.call(call(), Duration::from_secs(1)).await
        };
        match attempt.await {
            Ok(reply) => {
                assert!(started.elapsed() < THROUGH_WITHIN);
                return reply;
            }
            Err(e) => assert!(
                started.elapsed() < THROUGH_WITHIN,
                "no call got through the flood in {THROUGH_WITHIN:?}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (10 s at most) for the server to hang up on `stream`; how long that took.
pub async fn hung_up(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut sink = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut sink))
        .await
        .expect("the server must hang up");
    assert!(matches!(read, Ok(0) | Err(_)), "answered: {read:?}");
    started.elapsed()
}

/// The pre-authentication deadline is a second: allow for a loaded machine.
pub fn about_a_second(waited: Duration) {
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
}

/// Drops `server` and checks that each of `calls` (pending on it) failed with `Closed`,
/// all within a second: a server going away never leaves a caller hanging.
pub async fn dropping_fails_them_promptly(
    server: WireServer,
    calls: Vec<tokio::task::JoinHandle<Result<Body, LinkError>>>,
) {
    let dropped = Instant::now();
    drop(server);
    for task in calls {
        let result = task.await.expect("task");
        assert!(matches!(result, Err(LinkError::Closed)), "{result:?}");
    }
    assert!(
        dropped.elapsed() < Duration::from_secs(1),
        "{:?}",
        dropped.elapsed()
    );
}
