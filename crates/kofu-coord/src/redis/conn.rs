//! The connection to the Redis primary every component shares. With `redis://` it is one
//! self-reconnecting connection (and one more per worker thread, `local.rs`); with `redis+sentinel://h:p[,h:p...]/<name>` the primary
//! is looked up through the Sentinels and followed across failovers: a watcher asks the
//! Sentinels again every `FOLLOW_EVERY` and switches every later command to the new
//! primary. Commands in flight during a failover fail (the callers answer `503`, I7).
//! `rediss://` and `rediss+sentinel://` speak TLS to every server (Sentinels included),
//! verified against the CA given in `ConnectOptions` (else the system roots); the
//! `user:password@` of the URL authenticates to the primary and to every Sentinel.

mod local;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError, TlsCertificates};
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
    /// Bumped whenever `current` names another primary, after it does.
    generation: AtomicU64,
    watcher: RwLock<Option<JoinHandle<()>>>,
}

impl Inner {
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Another connection to the current primary, configured as the shared one.
    async fn open_manager(&self) -> Result<ConnectionManager, RedisError> {
        let client = self.current.read().client.clone();
        ConnectionManager::new_with_config(client, manager_config()).await
    }
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
    /// The connection to use for the next command: this thread's own when it runs a
    /// single-threaded runtime (an actix worker), else the shared one. A `WAIT` must go
    /// on the connection of the writes it waits for: use one manager for both.
    pub fn manager(&self) -> ConnectionManager {
        if let Some(own) = local::manager(&self.inner) {
            return own;
        }
        self.inner.current.read().manager.clone()
    }

    /// A client for the current primary (pub/sub needs its own connection).
    pub fn client(&self) -> Client {
        self.inner.current.read().client.clone()
    }
}

/// What a Redis URL cannot carry.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// PEM roots the servers' certificates must chain to (`rediss`); `None`: the
    /// system's roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("ca_pem", &self.ca_pem.is_some())
            .finish()
    }
}

/// Whether `url` names a Sentinel-managed primary (so writes wait for a replica).
pub fn is_sentinel(url: &str) -> bool {
    url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://")
}

/// How every server of one URL is reached: plain or TLS, and with which credentials
/// (`user:password`, percent-encoded as in the URL).
#[derive(Clone)]
struct Access {
    tls: bool,
    userinfo: Option<String>,
    ca_pem: Option<Vec<u8>>,
}

impl Access {
    /// The URL of the server at `addr` (`host:port`), credentials included.
    fn url(&self, addr: &str) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        match &self.userinfo {
            Some(user) => format!("{scheme}://{user}@{addr}/"),
            None => format!("{scheme}://{addr}/"),
        }
    }

    /// A client for `url`, with the CA for TLS. Errors never echo the url (it may hold
    /// a password).
    fn client(&self, url: &str) -> Result<Client, StoreError> {
        let invalid = |_| StoreError::Unavailable("invalid redis url".into());
        // Without TCP_NODELAY a command written while the previous one is unacknowledged
        // waits for the peer's delayed ACK (tens of ms): commands here are small and
        // many, from concurrent sessions on one connection.
        let info = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(invalid)?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        match (&self.ca_pem, self.tls) {
            (Some(ca), true) => Client::build_with_tls(
                info,
                TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            )
            .map_err(invalid),
            _ => Client::open(info).map_err(invalid),
        }
    }
}

/// Splits `user:password@` off the front of a URL's authority part.
fn split_userinfo(rest: &str) -> (Option<String>, &str) {
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => (Some(rest[..at].to_owned()), &rest[at + 1..]),
        None => (None, rest),
    }
}

/// Opens a connection for `url`: `redis[s]://[user:password@]host:port[/db]` or
/// `redis[s]+sentinel://[user:password@]host:port[,host:port...]/<master name>`.
pub async fn connect(url: &str) -> Result<RedisConn, StoreError> {
    connect_with(url, &ConnectOptions::default()).await
}

/// [`connect`] with what the URL cannot carry (the CA for TLS).
pub async fn connect_with(url: &str, options: &ConnectOptions) -> Result<RedisConn, StoreError> {
    let sentinel = url
        .strip_prefix("redis+sentinel://")
        .map(|rest| (false, rest))
        .or_else(|| {
            url.strip_prefix("rediss+sentinel://")
                .map(|rest| (true, rest))
        });
    match sentinel {
        None => {
            let (tls, rest) = match url.strip_prefix("rediss://") {
                Some(rest) => (true, rest),
                None => (false, url.strip_prefix("redis://").unwrap_or_default()),
            };
            let (userinfo, hosts) = split_userinfo(rest);
            let access = Access {
                tls,
                userinfo,
                ca_pem: options.ca_pem.clone(),
            };
            let addr = hosts.trim_end_matches('/').to_owned();
            let current = open(&access, url, addr).await?;
            Ok(wrap(current))
        }
        Some((tls, rest)) => {
            let (userinfo, hosts) = split_userinfo(rest);
            let access = Access {
                tls,
                userinfo,
                ca_pem: options.ca_pem.clone(),
            };
            let sentinels = Sentinels::parse(hosts, access)?;
            let addr = sentinels.primary().await?;
            let current = open(&sentinels.access, &sentinels.access.url(&addr), addr).await?;
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
            generation: AtomicU64::new(0),
            watcher: RwLock::new(None),
        }),
    }
}

async fn open(access: &Access, url: &str, addr: String) -> Result<Current, StoreError> {
    // The url may carry a password: never echo it.
    let client = access.client(url)?;
    let manager = ConnectionManager::new_with_config(client.clone(), manager_config())
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(Current {
        manager,
        client,
        addr,
    })
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_number_of_retries(RECONNECT_ATTEMPTS)
        .set_max_delay(RECONNECT_MAX_DELAY)
}

/// The Sentinels of one monitored primary, and how to reach them and the primary.
#[derive(Clone)]
struct Sentinels {
    addrs: Vec<String>,
    name: String,
    access: Access,
}

impl Sentinels {
    fn parse(rest: &str, access: Access) -> Result<Sentinels, StoreError> {
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
        Ok(Sentinels {
            addrs,
            name,
            access,
        })
    }

    /// The primary's `host:port` as the first Sentinel that answers reports it.
    async fn primary(&self) -> Result<String, StoreError> {
        let mut last = StoreError::Unavailable("no sentinel answered".into());
        for addr in &self.addrs {
            match tokio::time::timeout(SENTINEL_TIMEOUT, self.ask(addr)).await {
                Ok(Ok(primary)) => return Ok(primary),
                Ok(Err(e)) => last = e,
                Err(_) => last = StoreError::Unavailable("sentinel timed out".into()),
            }
        }
        Err(last)
    }

    async fn ask(&self, addr: &str) -> Result<String, StoreError> {
        let client = self.access.client(&self.access.url(addr))?;
        self.ask_with(&client).await.map_err(|e| unavailable(&e))
    }

    async fn ask_with(&self, client: &Client) -> Result<String, RedisError> {
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
        match open(
            &sentinels.access,
            &sentinels.access.url(&primary),
            primary.clone(),
        )
        .await
        {
            Ok(current) => {
                let Some(strong) = inner.upgrade() else {
                    return;
                };
                *strong.current.write() = current;
                strong.generation.fetch_add(1, Ordering::AcqRel);
                tracing::warn!(primary = %primary, "redis primary changed; following it");
            }
            Err(e) => tracing::warn!(primary = %primary, "new primary not reachable yet: {e}"),
        }
    }
}
