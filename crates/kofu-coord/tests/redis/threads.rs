//! Which connection a command goes on: a single-threaded runtime (an actix worker, where
//! a node's sessions run) keeps its own, so replies never cross threads; anything else
//! shares one.

use std::time::Duration;

use kofu_coord::redis::{RedisConn, connect};
use kofu_testkit::RedisServer;

use crate::round_trip;

/// Redis's id of the connection `conn` hands out here.
async fn client_id(conn: &RedisConn) -> i64 {
    let mut m = conn.manager();
    redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut m)
        .await
        .expect("client id")
}

/// On a fresh single-threaded runtime of its own thread: the id commands go on once
/// the thread's own connection is open (it opens in the background; until then the
/// shared one serves), then a SET and GET on it, and the id of the command after that.
fn on_a_worker_thread(conn: &RedisConn, shared: i64) -> (i64, i64) {
    let conn = conn.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let own = loop {
                let id = client_id(&conn).await;
                if id != shared {
                    break id;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the thread never got a connection of its own"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            round_trip(&conn).await;
            (own, client_id(&conn).await)
        })
    })
    .join()
    .expect("worker thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_thread_keeps_its_own_connection() {
    let server = tokio::task::block_in_place(RedisServer::start);
    let conn = connect(&server.url()).await.expect("connect");
    let shared = client_id(&conn).await;
    assert_eq!(client_id(&conn).await, shared, "one shared connection");
    let (a1, a2) = tokio::task::block_in_place(|| on_a_worker_thread(&conn, shared));
    let (b1, b2) = tokio::task::block_in_place(|| on_a_worker_thread(&conn, shared));
    assert_eq!(
        a1, a2,
        "a thread reuses its connection, across a SET and GET"
    );
    assert_eq!(
        b1, b2,
        "a thread reuses its connection, across a SET and GET"
    );
    assert_ne!(a1, b1, "threads do not share one");
    assert!(a1 != shared && b1 != shared, "nor use the shared one");
    // A connection of its own answers like the shared one: the same keyspace.
    let mut m = conn.manager();
    let shared_view: Option<String> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut m)
        .await
        .expect("get");
    assert_eq!(shared_view.as_deref(), Some("v"));
}
