//! The connection to the Redis primary every component shares. With `redis://` it is one
//! self-reconnecting connection; with `redis+sentinel://h:p[,h:p...]/<name>` the primary
//! is looked up through the Sentinels and followed across failovers: a watcher asks the
//! Sentinels again every `FOLLOW_EVERY` and switches every later command to the new
//! primary. Commands in flight during a failover fail (the callers answer `503`, I7).

use std::sync::{Arc, Weak};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError};
use parking_lot::RwLock;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::unavailable;
use crate::StoreError;

/// How long one command may take before the caller is told the store is unavailable;
/// waiting longer would only hold a kiosk while safety is unknown (I7).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection attempts per failing call, and the longest pause between them: the
/// client's defaults hold a caller for over six seconds when Redis is down, but a node
/// that cannot reach Redis should answer `503` at once and let its leases lapse.
const RECONNECT_ATTEMPTS: usize = 3;
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(400);
/// How often a Sentinel-following connection asks who the primary is.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);
const SENTINEL_TIMEOUT: Duration = Duration::from_millis(500);

struct Current {
    manager: ConnectionManager,
    client: Client,
    /// `host:port` of the primary connected to.
    addr: String,
}

struct Inner {
    current: RwLock<Current>,
    watcher: RwLock<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(w) = self.watcher.get_mut().take() {
            w.abort();
        }
    }
}

/// A cheap handle on the current primary; clones share it.
#[derive(Clone)]
pub struct RedisConn {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("primary", &self.inner.current.read().addr)
            .finish()
    }
}

impl RedisConn {
    /// The connection to use for the next command.
    pub fn manager(&self) -> ConnectionManager {
        self.inner.current.read().manager.clone()
    }

    /// A client for the current primary (pub/sub needs its own connection).
    pub fn client(&self) -> Client {
        self.inner.current.read().client.clone()
    }
}

/// Opens a connection for `url`: `redis://host:port[/db]` or
/// `redis+sentinel://host:port[,host:port...]/<master name>`.
pub async fn connect(url: &str) -> Result<RedisConn, StoreError> {
    match url.strip_prefix("redis+sentinel://") {
        None => {
            let addr = url
                .strip_prefix("redis://")
                .map(|rest| {
                    rest.rsplit('@')
                        .next()
                        .unwrap_or(rest)
                        .trim_end_matches('/')
                })
                .unwrap_or_default()
                .to_owned();
            let current = open(url, addr).await?;
            Ok(wrap(current))
        }
        Some(rest) => {
            let sentinels = Sentinels::parse(rest)?;
            let addr = sentinels.primary().await?;
            let current = open(&format!("redis://{addr}/"), addr).await?;
            let conn = wrap(current);
            let weak = Arc::downgrade(&conn.inner);
            let span = tracing::info_span!("sentinel_follower", master = %sentinels.name);
            let task = tokio::spawn(follow(weak, sentinels).instrument(span));
            *conn.inner.watcher.write() = Some(task);
            Ok(conn)
        }
    }
}

fn wrap(current: Current) -> RedisConn {
    RedisConn {
        inner: Arc::new(Inner {
            current: RwLock::new(current),
            watcher: RwLock::new(None),
        }),
    }
}

async fn open(url: &str, addr: String) -> Result<Current, StoreError> {
    // The url may carry a password: never echo it.
    let client =
        Client::open(url).map_err(|_| StoreError::Unavailable("invalid redis url".into()))?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_number_of_retries(RECONNECT_ATTEMPTS)
        .set_max_delay(RECONNECT_MAX_DELAY);
    let manager = ConnectionManager::new_with_config(client.clone(), config)
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(Current {
        manager,
        client,
        addr,
    })
}

/// The Sentinels of one monitored primary.
#[derive(Debug, Clone)]
struct Sentinels {
    addrs: Vec<String>,
    name: String,
}

impl Sentinels {
    fn parse(rest: &str) -> Result<Sentinels, StoreError> {
        let bad = || StoreError::Unavailable("invalid redis+sentinel url".into());
        let (hosts, name) = rest.split_once('/').ok_or_else(bad)?;
        let name = name.trim_end_matches('/').to_owned();
        let addrs: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        if addrs.is_empty() || name.is_empty() {
            return Err(bad());
        }
        Ok(Sentinels { addrs, name })
    }

    /// The primary's `host:port` as the first Sentinel that answers reports it.
    async fn primary(&self) -> Result<String, StoreError> {
        let mut last = StoreError::Unavailable("no sentinel answered".into());
        for addr in &self.addrs {
            match tokio::time::timeout(SENTINEL_TIMEOUT, self.ask(addr)).await {
                Ok(Ok(primary)) => return Ok(primary),
                Ok(Err(e)) => last = unavailable(&e),
                Err(_) => last = StoreError::Unavailable("sentinel timed out".into()),
            }
        }
        Err(last)
    }

    async fn ask(&self, addr: &str) -> Result<String, RedisError> {
        let client = Client::open(format!("redis://{addr}/"))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let (host, port): (String, u16) = ::redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.name)
            .query_async(&mut conn)
            .await?;
        Ok(format!("{host}:{port}"))
    }
}

/// Switches the shared connection whenever the Sentinels name another primary.
async fn follow(inner: Weak<Inner>, sentinels: Sentinels) {
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let known = strong.current.read().addr.clone();
        drop(strong);
        let primary = match sentinels.primary().await {
            Ok(p) if p != known => p,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!("sentinels not reachable: {e}");
                continue;
            }
        };
        match open(&format!("redis://{primary}/"), primary.clone()).await {
            Ok(current) => {
                let Some(strong) = inner.upgrade() else {
                    return;
                };
                *strong.current.write() = current;
                tracing::warn!(primary = %primary, "redis primary changed; following it");
            }
            Err(e) => tracing::warn!(primary = %primary, "new primary not reachable yet: {e}"),
        }
    }
}
