//! The Redis-coordinated half of a node: connection, registry checks, the coordinator,
//! the internal listener for forwarded requests, and the tasks that hand shards off and
//! start hosts as leases come and go. The coordinator and the router need each other
//! (the router asks who holds a shard; the coordinator has the router drain a shard it
//! gives up): a channel made before either carries the handoffs, so each is complete
//! when it is built.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::FutureExt as _;
use kofu_actors::{Remote, Router, ShardStart};
use kofu_coord::redis::{IMPORT_LABEL_PREFIX, RedisCoordinator, RedisRegistry, RedisStore};
use kofu_coord::{Fence, HandoffHook};
use kofu_wire::{ClusterTls, LinkAuth, Secrets, WireServer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use crate::config::ServeConfig;

/// How long a starting node keeps trying to reach Redis before giving up.
const CONNECT_FOR: Duration = Duration::from_secs(30);
/// Snapshots and card locks outlive the session hard limit by this much.
const STATE_TTL_MARGIN: Duration = Duration::from_secs(60);

/// A shard the coordinator gives up, and who waits for its sessions to be detached.
type Handoff = (Fence, oneshot::Sender<()>);

/// What `plane` builds before the router: a coordinator that has joined, and what
/// the router's cluster half is made of.
pub(super) struct Plane {
    coordinator: Arc<RedisCoordinator>,
    internal: TcpListener,
    handoffs: mpsc::UnboundedReceiver<Handoff>,
    node_id: String,
    auth: LinkAuth,
}

/// How this node reaches its peers and Redis securely (from `NodeTls`).
pub(super) struct Link {
    pub tls: Option<ClusterTls>,
    /// PEM roots for a `rediss://` Redis.
    pub redis_ca: Option<Vec<u8>>,
}

/// A running cluster node's coordination parts.
pub(super) struct Cluster {
    coordinator: Arc<RedisCoordinator>,
    wire: WireServer,
}

impl Plane {
    /// This node's links to the others, for the router.
    pub(super) fn remote(&self) -> Remote {
        Remote::new(&self.node_id, self.auth.clone())
    }

    /// Serves forwarded calls and the coordinator's handoffs with `router`.
    pub(super) fn serve(self, router: &Router) -> anyhow::Result<Cluster> {
        let handler = router.wire_handler();
        #[cfg(feature = "otlp")]
        let handler = crate::telemetry::traced_handler(handler);
        let spawn = Some(router.conn_spawner());
        let wire = WireServer::serve_on(self.internal, self.node_id, self.auth, handler, spawn)
            .context("serving the internal listener")?;
        let mut handoffs = self.handoffs;
        let drains = router.clone();
        let serve_handoffs = async move {
            while let Some((fence, detached)) = handoffs.recv().await {
                let router = drains.clone();
                actix_rt::spawn(async move {
                    router.hand_off(fence.shard).await;
                    let _ = detached.send(());
                });
            }
        };
        actix_rt::spawn(serve_handoffs.instrument(tracing::info_span!("handoffs")));
        Ok(Cluster {
            coordinator: self.coordinator,
            wire,
        })
    }
}

impl Cluster {
    pub(super) fn internal_addr(&self) -> SocketAddr {
        self.wire.local_addr()
    }

    /// Starts and stops shard hosts as this node's leases come and go.
    pub(super) fn follow_leases(&self, router: Router) {
        let mut leases = self.coordinator.subscribe();
        let follow = async move {
            let mut current: HashSet<Fence> = HashSet::new();
            loop {
                let now: HashSet<Fence> = leases.borrow_and_update().iter().copied().collect();
                for gone in current.difference(&now) {
                    router.drop_shard(*gone);
                }
                for new in now.difference(&current) {
                    router.add_shard(*new, ShardStart::TakenOver);
                }
                current = now;
                if leases.changed().await.is_err() {
                    break;
                }
            }
        };
        actix_rt::spawn(follow.instrument(tracing::info_span!("lease_follower")));
    }

    /// What draining adds in a cluster: every shard goes to the other nodes.
    pub(super) fn drain_action(&self) -> Box<dyn Fn() + Send + Sync> {
        let coordinator = self.coordinator.clone();
        Box::new(move || {
            let coordinator = coordinator.clone();
            actix_rt::spawn(
                async move { coordinator.shutdown().await }
                    .instrument(tracing::info_span!("drain")),
            );
        })
    }

    /// Hands every shard off, releases the leases and leaves the membership.
    pub(super) async fn leave(&self) {
        self.coordinator.shutdown().await;
    }
}

async fn connect(
    url: &str,
    options: &kofu_coord::redis::ConnectOptions,
) -> anyhow::Result<kofu_coord::redis::RedisConn> {
    let until = tokio::time::Instant::now() + CONNECT_FOR;
    loop {
        match kofu_coord::redis::connect_with(url, options).await {
            Ok(conn) => return Ok(conn),
            Err(e) if tokio::time::Instant::now() < until => {
                tracing::warn!(error = %e, "redis not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e).context("cannot reach redis"),
        }
    }
}

/// The coordinator's handoff hook: asks whoever serves `handoffs` to drain the shard
/// and waits until it has.
fn handoff_hook() -> (HandoffHook, mpsc::UnboundedReceiver<Handoff>) {
    let (tx, rx) = mpsc::unbounded_channel::<Handoff>();
    let hook: HandoffHook = Arc::new(move |fence: Fence| {
        let tx = tx.clone();
        async move {
            let (detached, done) = oneshot::channel();
            if tx.send((fence, detached)).is_ok() {
                let _ = done.await;
            }
        }
        .boxed()
    });
    (hook, rx)
}

/// Whether this node serves the registry Redis holds: a fixture population must be the
/// node's own (same seed and size: the kiosks and card keys it serves derive from them);
/// an imported registry (`kofu registry import`) is served by nodes configured without
/// a fixture seed, which is what says they do not expect a fixture population.
fn check_label(cfg: &ServeConfig, stored: Option<String>) -> anyhow::Result<()> {
    let label = format!(
        "seed={}/residents={}",
        cfg.fixture_seed(),
        cfg.fixture_residents
    );
    match stored {
        Some(stored) if stored.starts_with(IMPORT_LABEL_PREFIX) => match cfg.fixture_seed {
            None => {
                tracing::info!(registry = %stored, "serving an imported registry");
                Ok(())
            }
            Some(_) => anyhow::bail!(
                "the registry holds imported records ({stored}), this node is configured for fixture population {label}: start it without --fixture-seed"
            ),
        },
        Some(stored) if stored == label => Ok(()),
        Some(stored) => anyhow::bail!(
            "the registry holds population {stored}, this node is configured for {label}"
        ),
        None => anyhow::bail!(
            "the registry in redis is empty: run `kofu registry import --redis URL FILE` (or `kofu registry load` for a fixture population) first"
        ),
    }
}

/// Joins the cluster behind `url`, announcing `internal` (already bound) as this node's
/// address for forwarded requests.
pub(super) async fn plane(
    cfg: &ServeConfig,
    url: &str,
    prom: &prometheus::Registry,
    internal: TcpListener,
    link: Link,
) -> anyhow::Result<super::Plane> {
    let mut secret = Secrets::new(cfg.secret()?);
    if let Some(other) = cfg.other_secret()? {
        secret = secret.also_accepting(other);
    }
    let auth = match link.tls {
        Some(tls) => LinkAuth::new(secret).with_tls(tls),
        None => LinkAuth::new(secret),
    };
    let node_id = cfg.node_id();
    let options = kofu_coord::redis::ConnectOptions {
        ca_pem: link.redis_ca,
    };
    let conn = connect(url, &options).await?;
    // Behind Sentinel, every change (session state, leases, registry updates) must reach
    // a replica before it is acknowledged, or a failover could lose it (asynchronous
    // replication).
    let replicas = u32::from(kofu_coord::redis::is_sentinel(url));
    let registry = RedisRegistry::new(conn.clone(), cfg.shard_count).with_replicas(replicas);
    registry
        .check_shard_count()
        .await
        .context("this node cannot join the cluster")?;
    check_label(cfg, registry.loaded_population().await?)?;
    let advertise = match &cfg.internal_advertise {
        Some(addr) => addr.clone(),
        None => internal.local_addr()?.to_string(),
    };
    let (hook, handoffs) = handoff_hook();
    let coordinator = Arc::new(RedisCoordinator::start_with_replicas(
        conn.clone(),
        node_id.clone(),
        advertise,
        cfg.shard_count,
        cfg.lease_ttl(),
        replicas,
        Some(hook),
    ));
    let lease = coordinator.metrics();
    prom.register(Box::new(lease.renew_failures.clone()))?;
    prom.register(Box::new(lease.losses.clone()))?;
    coordinator.listen(conn.clone());
    let store = RedisStore::new(
        conn,
        node_id.clone(),
        Duration::from_millis(cfg.hard_limit_ms) + STATE_TTL_MARGIN,
    )
    .with_replicas(replicas)
    .with_audit_retention(cfg.audit_retention);
    Ok(super::Plane {
        store: Arc::new(store),
        registry: Arc::new(registry),
        coordinator: coordinator.clone(),
        cluster: Some(Plane {
            coordinator,
            internal,
            handoffs,
            node_id,
            auth,
        }),
        embedded_registry: None,
    })
}
