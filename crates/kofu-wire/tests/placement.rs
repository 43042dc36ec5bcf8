//! Accepted connections placed on another runtime (`WireServer::serve_on`, how a node
//! serves its peers on its HTTP workers): calls are read and answered there, and
//! dropping the server still ends them at once.

mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use kofu_proto::wire::Body;
use kofu_proto::{KioskId, SessionId, SessionOp};
use kofu_wire::{CallHandler, ConnSpawner, WireClient, WireServer};
use parking_lot::Mutex;
use tokio::net::TcpListener;

use common::SECRET;

const LONG: Duration = Duration::from_secs(30);
const PLACED: &str = "placed-runtime";

type Conn = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A thread running its own single-threaded runtime, serving whatever it is handed.
fn placed_runtime() -> ConnSpawner {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Conn>();
    std::thread::Builder::new()
        .name(PLACED.into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                while let Some(conn) = rx.recv().await {
                    tokio::spawn(conn);
                }
            });
        })
        .expect("thread");
    let tx = Mutex::new(tx);
    Arc::new(move |conn| {
        let _ = tx.lock().send(conn);
    })
}

/// Answers after `wait_ms` with the call unchanged, noting the thread it ran on.
fn recording(threads: Arc<Mutex<Vec<String>>>) -> CallHandler {
    Arc::new(move |body: Body, _| {
        let threads = threads.clone();
        async move {
            let name = std::thread::current().name().unwrap_or("?").to_owned();
            threads.lock().push(name);
            if let Body::Call { wait_ms, .. } = &body {
                tokio::time::sleep(Duration::from_millis(u64::from(*wait_ms))).await;
            }
            body
        }
        .boxed()
    })
}

fn call(i: u32, wait_ms: u32) -> Body {
    Body::Call {
        session: SessionId::new(i % 1024, [i as u8; 16]),
        kiosk: KioskId::parse(&format!("K{i:05}")).expect("valid kiosk"),
        op: SessionOp::Close,
        wait_ms,
    }
}

async fn placed_server(threads: Arc<Mutex<Vec<String>>>) -> WireServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let spawn = Some(placed_runtime());
    WireServer::serve_on(listener, "node-b", SECRET, recording(threads), spawn).expect("serve")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_served_on_the_runtime_the_connection_was_placed_on() {
    let threads = Arc::new(Mutex::new(Vec::new()));
    let server = placed_server(threads.clone()).await;
    let client = WireClient::connect(server.local_addr(), "node-a", SECRET)
        .await
        .expect("connect");
    for i in 0..20 {
        let reply = client.call(call(i, 0), LONG).await.expect("answered");
        assert_eq!(reply, call(i, 0));
    }
    let threads = threads.lock().clone();
    assert_eq!(threads.len(), 20);
    assert!(threads.iter().all(|t| t == PLACED), "{threads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_server_ends_a_placed_connection_promptly() {
    let threads = Arc::new(Mutex::new(Vec::new()));
    let server = placed_server(threads.clone()).await;
    let client = Arc::new(
        WireClient::connect(server.local_addr(), "node-a", SECRET)
            .await
            .expect("connect"),
    );
    let calls: Vec<_> = (0..10u32)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.call(call(i, 60_000), LONG).await })
        })
        .collect();
    // Until every call is in its handler, on the placed runtime (bounded).
    let until = Instant::now() + LONG;
    while threads.lock().len() < 10 {
        assert!(Instant::now() < until, "calls never reached the handler");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    common::dropping_fails_them_promptly(server, calls).await;
}
