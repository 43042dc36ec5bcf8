//! The Redis-coordinated half of a node: connection, registry checks, the internal
//! listener for forwarded requests, the coordinator, and the task that starts and stops
//! shard hosts as leases come and go.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::web;
use anyhow::Context as _;
use futures::FutureExt as _;
use kofu_actors::wire_link::{Secrets, WireServer};
use kofu_actors::{Remote, Router, wire_handler};
use kofu_coord::redis::{RedisCoordinator, RedisRegistry, RedisStore};
use kofu_coord::{Fence, HandoffHook};
use kofu_proto::wire::{Body, WireReply};
use tracing::Instrument as _;

use crate::config::ServeConfig;
use crate::http::AppState;

/// How long a starting node keeps trying to reach Redis before giving up.
const CONNECT_FOR: Duration = Duration::from_secs(30);
/// Snapshots and card locks outlive the session hard limit by this much.
const STATE_TTL_MARGIN: Duration = Duration::from_secs(60);

/// What `plane` builds before the router exists.
pub(super) struct Plane {
    coordinator: Arc<RedisCoordinator>,
    wire: WireServer,
    router: Arc<OnceLock<Router>>,
    node_id: String,
    secret: Secrets,
}

/// A running cluster node's coordination parts.
pub(super) struct Cluster {
    coordinator: Arc<RedisCoordinator>,
    wire: WireServer,
}

impl Cluster {
    pub(super) fn internal_addr(&self) -> SocketAddr {
        self.wire.local_addr()
    }

    /// Hands every shard off, releases the leases and leaves the membership.
    pub(super) async fn leave(&self) {
        self.coordinator.shutdown().await;
    }
}

async fn connect(url: &str) -> anyhow::Result<kofu_coord::redis::RedisConn> {
    let until = tokio::time::Instant::now() + CONNECT_FOR;
    loop {
        match kofu_coord::redis::connect(url).await {
            Ok(conn) => return Ok(conn),
            Err(e) if tokio::time::Instant::now() < until => {
                tracing::warn!(error = %e, "redis not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e).context("cannot reach redis"),
        }
    }
}

pub(super) async fn plane(
    cfg: &ServeConfig,
    url: &str,
    prom: &prometheus::Registry,
) -> anyhow::Result<super::Plane> {
    let mut secret = Secrets::new(cfg.secret()?);
    if let Some(other) = cfg.other_secret()? {
        secret = secret.also_accepting(other);
    }
    let node_id = cfg.node_id();
    let conn = connect(url).await?;
    let registry = RedisRegistry::new(conn.clone(), cfg.shard_count);
    registry
        .check_shard_count()
        .await
        .context("this node cannot join the cluster")?;
    let label = format!(
        "seed={}/residents={}",
        cfg.fixture_seed, cfg.fixture_residents
    );
    match registry.loaded_population().await? {
        Some(stored) if stored == label => {}
        Some(stored) => anyhow::bail!(
            "the registry holds population {stored}, this node is configured for {label}"
        ),
        None => anyhow::bail!(
            "the registry in redis is empty: run `kofu registry load --redis URL` first"
        ),
    }
    // Bound before joining, so the address announced in the heartbeat already answers.
    let router: Arc<OnceLock<Router>> = Arc::new(OnceLock::new());
    let handler = {
        let router = router.clone();
        Arc::new(move |body: Body| match router.get() {
            Some(r) => wire_handler(r.clone())(body),
            None => async {
                Body::Reply(WireReply::Error {
                    code: kofu_proto::ErrorCode::Unavailable,
                    attempts_left: None,
                    reason: None,
                })
            }
            .boxed(),
        })
    };
    let wire = WireServer::bind(
        cfg.internal_listen,
        node_id.clone(),
        secret.clone(),
        handler,
    )
    .await
    .with_context(|| format!("cannot listen on {}", cfg.internal_listen))?;
    let advertise = cfg
        .internal_advertise
        .clone()
        .unwrap_or_else(|| wire.local_addr().to_string());
    let coordinator = Arc::new(RedisCoordinator::start(
        conn.clone(),
        node_id.clone(),
        advertise,
        cfg.shard_count,
        cfg.lease_ttl(),
    ));
    let lease = coordinator.metrics();
    prom.register(Box::new(lease.renew_failures.clone()))?;
    prom.register(Box::new(lease.losses.clone()))?;
    coordinator.listen(conn.clone());
    // Behind Sentinel, a confirmed print or a serial must reach a replica before it is
    // acknowledged, or a failover could lose it (asynchronous replication).
    let replicas = u32::from(url.starts_with("redis+sentinel://"));
    let store = RedisStore::new(
        conn,
        Duration::from_millis(cfg.hard_limit_ms) + STATE_TTL_MARGIN,
    )
    .with_replicas(replicas);
    Ok(super::Plane {
        store: Arc::new(store),
        registry: Arc::new(registry),
        coordinator: coordinator.clone(),
        cluster: Some(Plane {
            coordinator,
            wire,
            router,
            node_id,
            secret,
        }),
    })
}

/// Connects the router to the coordinator: forwarding, handoffs, and hosts that follow
/// the leases this node holds.
pub(super) fn start(plane: Plane, state: &web::Data<AppState>) -> Cluster {
    let router = state.router.clone();
    router.set_remote(Remote::new(&plane.node_id, plane.secret.clone()));
    let _ = plane.router.set(router.clone());
    let hook: HandoffHook = {
        let router = router.clone();
        Arc::new(move |fence: Fence| {
            let router = router.clone();
            async move { router.hand_off(fence.shard).await }.boxed()
        })
    };
    plane.coordinator.set_handoff(hook);
    let mut leases = plane.coordinator.subscribe();
    let follow = async move {
        let mut current: HashSet<Fence> = HashSet::new();
        loop {
            let now: HashSet<Fence> = leases.borrow_and_update().iter().copied().collect();
            for gone in current.difference(&now) {
                router.drop_shard(*gone);
            }
            for new in now.difference(&current) {
                router.add_shard(*new);
            }
            current = now;
            if leases.changed().await.is_err() {
                break;
            }
        }
    };
    actix_rt::spawn(follow.instrument(tracing::info_span!("lease_follower")));
    let coordinator = plane.coordinator.clone();
    state.on_drain(Box::new(move || {
        let coordinator = coordinator.clone();
        actix_rt::spawn(
            async move { coordinator.shutdown().await }.instrument(tracing::info_span!("drain")),
        );
    }));
    Cluster {
        coordinator: plane.coordinator,
        wire: plane.wire,
    }
}
