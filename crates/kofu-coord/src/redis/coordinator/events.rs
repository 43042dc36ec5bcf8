//! The cluster's announcement channel: every membership or lease change is published,
//! and each node wakes its loop on any announcement it hears (DESIGN.md: "joins and
//! leaves are announced on a pub/sub channel for fast convergence").

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;

use super::Shared;
use crate::redis::RedisConn;

pub(super) const CHANNEL: &str = "kofu:events";
const RESUBSCRIBE_AFTER: Duration = Duration::from_millis(500);

/// Publishes `what` (e.g. `join`, `released`); a lost announcement only costs speed,
/// since every node also runs its loop on a timer.
pub(super) async fn announce(conn: &RedisConn, node_id: &str, what: &str) {
    let mut conn = conn.manager();
    let sent: Result<i64, _> = ::redis::cmd("PUBLISH")
        .arg(CHANNEL)
        .arg(format!("{node_id} {what}"))
        .query_async(&mut conn)
        .await;
    if let Err(e) = sent {
        tracing::debug!("announcement not sent: {}", super::super::unavailable(&e));
    }
}

/// Subscribes (again after any failure) and pokes the loop on every message.
pub(super) async fn listen(conn: RedisConn, shared: Arc<Shared>) {
    loop {
        // The current primary's client: after a failover the subscription moves too.
        match conn.client().get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(CHANNEL).await.is_ok() {
                    // Whatever was announced while unsubscribed: look now.
                    shared.poke.notify_one();
                    let mut messages = pubsub.on_message();
                    while messages.next().await.is_some() {
                        shared.poke.notify_one();
                    }
                }
            }
            Err(e) => tracing::debug!("subscription failed: {}", super::super::unavailable(&e)),
        }
        tokio::time::sleep(RESUBSCRIBE_AFTER).await;
    }
}
