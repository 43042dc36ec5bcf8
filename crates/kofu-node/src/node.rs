//! Wiring of one node: population and registry, fenced store, coordinator, issuer,
//! actors and the two HTTP listeners, plus the explicit graceful shutdown. The embedded
//! and the Redis-coordinated node differ only in the parts built by `Plane` (DESIGN.md,
//! scenario 6: no safety feature depends on the topology).

mod cluster;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{HttpServer, web};
use anyhow::Context as _;
use kofu_actors::{
    ActorMetrics, ClusterMetrics, Deps, RenderFaults, Router, RouterConfig, SessionConfig,
};
use kofu_coord::embedded::{AuditSink, EmbeddedCoordinator, EmbeddedRegistry, EmbeddedStore};
use kofu_coord::{Coordinator, FencedStore, Registry};
use kofu_core::Population;
use kofu_core::session::CloseReason;
use kofu_render::Issuer;
use tracing::Instrument as _;

use crate::auth::{AdminAuth, KioskAuth};
use crate::config::ServeConfig;
use crate::http::{self, AppState, metrics::HttpMetrics};

pub struct Node {
    pub state: web::Data<AppState>,
    pub kiosk_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    kiosk: ServerHandle,
    admin: ServerHandle,
    drain_timeout: Duration,
    cluster: Option<cluster::Cluster>,
}

/// The coordination plane a node runs on: embedded, or a Redis cluster.
struct Plane {
    store: Arc<dyn FencedStore>,
    registry: Arc<dyn Registry>,
    coordinator: Arc<dyn Coordinator>,
    cluster: Option<cluster::Plane>,
}

async fn embedded_plane(cfg: &ServeConfig, population: &mut Population) -> anyhow::Result<Plane> {
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1);
    let sink = match &cfg.audit_file {
        Some(p) => AuditSink::append_to(p)
            .with_context(|| format!("cannot open audit file {}", p.display()))?,
        None => AuditSink::Memory,
    };
    let residents = std::mem::take(&mut population.residents);
    Ok(Plane {
        store: Arc::new(EmbeddedStore::new(cfg.shard_count, epoch, sink)),
        registry: Arc::new(EmbeddedRegistry::new(residents)),
        coordinator: Arc::new(EmbeddedCoordinator::new(
            cfg.node_id(),
            cfg.shard_count,
            epoch,
        )),
        cluster: None,
    })
}

/// The issuer key: from the key file when given, else derived from the fixture seed so
/// every node started with the same seed signs alike.
fn issuer(cfg: &ServeConfig) -> anyhow::Result<Issuer> {
    let Some(path) = &cfg.issuer_key_file else {
        return Ok(Issuer::from_seed(kofu_core::issuer_seed(cfg.fixture_seed)));
    };
    let raw = std::fs::read(path)
        .with_context(|| format!("cannot read issuer key file {}", path.display()))?;
    let seed: Option<[u8; 32]> = if raw.len() == 32 {
        raw.as_slice().try_into().ok()
    } else {
        let text = String::from_utf8_lossy(&raw);
        let text = text.trim();
        let hex = (text.len() == 64)
            .then(|| {
                (0..32)
                    .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
                    .collect::<Option<Vec<u8>>>()
            })
            .flatten();
        hex.or_else(|| kofu_proto::b64url_decode(text))
            .and_then(|b| b.try_into().ok())
    };
    let seed = seed.with_context(|| {
        format!(
            "issuer key file {} must hold 32 raw bytes, 64 hex digits or base64url of 32 bytes",
            path.display()
        )
    })?;
    Ok(Issuer::from_seed(seed))
}

impl Node {
    /// Starts a node serving `population`; must run inside an actix system.
    pub async fn start(cfg: &ServeConfig, mut population: Population) -> anyhow::Result<Node> {
        let issuer = Arc::new(issuer(cfg)?);
        let prom = prometheus::Registry::new();
        let metrics = ActorMetrics::new(&prom).context("registering actor metrics")?;
        let cluster_metrics = ClusterMetrics::new(&prom).context("registering cluster metrics")?;
        let http_metrics =
            web::Data::new(HttpMetrics::new(&prom, "http_").context("registering http metrics")?);
        let kiosks = KioskAuth::new(&population.kiosks);
        let admin = AdminAuth::new(&population.admin_token);
        let recorder = cfg.record_traffic.as_ref().map(|path| {
            Arc::new(crate::record::Recorder::new(
                path.clone(),
                &population,
                cfg.fixture_seed,
                &cfg.node_id(),
            ))
        });
        let plane = match &cfg.redis_url {
            None => embedded_plane(cfg, &mut population).await?,
            Some(url) => cluster::plane(cfg, url, &prom).await?,
        };
        let registry = plane.registry.clone();
        let coordinator = plane.coordinator.clone();
        let deps = Arc::new(Deps {
            store: plane.store.clone(),
            registry: registry.clone(),
            coordinator: coordinator.clone(),
            issuer: issuer.clone(),
            config: SessionConfig {
                idle_timeout: cfg.idle_timeout(),
                hard_limit: Duration::from_millis(cfg.hard_limit_ms),
                render_deadline: Duration::from_millis(cfg.render_deadline_ms),
                ..SessionConfig::default()
            },
            faults: RenderFaults::new(
                Duration::from_millis(cfg.render_delay_ms),
                cfg.render_delay_every,
            ),
            metrics,
            cluster: cluster_metrics,
        });
        let workers = cfg.http_workers.unwrap_or_else(ServeConfig::cores);
        let router = Router::new(
            cfg.shard_count,
            workers,
            deps,
            RouterConfig {
                move_wait: Duration::from_millis(cfg.move_wait_ms),
                ..RouterConfig::default()
            },
        );
        let state = web::Data::new(AppState::new(
            router,
            registry,
            coordinator.clone(),
            kiosks,
            admin,
            issuer.public_key_b64(),
            prom,
        ));

        if let Some(r) = recorder {
            let _ = state.recorder.set(r);
        }
        let (s, m) = (state.clone(), http_metrics.clone());
        let next_worker = Arc::new(AtomicUsize::new(0));
        let kiosk_server = HttpServer::new(move || {
            // Runs once on each worker thread: that thread hosts its share of shards.
            let worker = next_worker.fetch_add(1, Ordering::Relaxed);
            if worker < workers {
                s.router.register_worker(worker);
            }
            http::app(s.clone(), m.clone(), http::kiosk_routes)
        })
        .workers(workers)
        // Kiosks keep connections between steps of a session; a client pool must idle
        // out before the server does, and common pools use 30-60 s.
        .keep_alive(Duration::from_secs(75))
        .disable_signals()
        .backlog(4096)
        .shutdown_timeout(1)
        .bind(cfg.listen)
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let kiosk_addr = first_addr(&kiosk_server.addrs())?;
        let (s, m) = (state.clone(), http_metrics);
        let admin_server =
            HttpServer::new(move || http::app(s.clone(), m.clone(), http::admin_routes))
                .workers(1)
                .disable_signals()
                .shutdown_timeout(1)
                .bind(cfg.admin_listen)
                .with_context(|| format!("cannot listen on {}", cfg.admin_listen))?;
        let admin_addr = first_addr(&admin_server.addrs())?;
        let kiosk_server = kiosk_server.run();
        let admin_server = admin_server.run();
        let (kiosk, admin) = (kiosk_server.handle(), admin_server.handle());
        actix_rt::spawn(kiosk_server.instrument(tracing::info_span!("kiosk_listener")));
        actix_rt::spawn(admin_server.instrument(tracing::info_span!("admin_listener")));
        let placed_by = Instant::now() + Duration::from_secs(30);
        while !state.router.ready() {
            anyhow::ensure!(Instant::now() < placed_by, "http workers did not start");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let cluster = match plane.cluster {
            None => {
                for fence in coordinator.local_leases() {
                    state.router.add_shard(fence);
                }
                None
            }
            Some(plane) => Some(cluster::start(plane, &state)),
        };
        Ok(Node {
            state,
            kiosk_addr,
            admin_addr,
            kiosk,
            admin,
            drain_timeout: cfg.drain_timeout(),
            cluster,
        })
    }

    /// The internal listener's address (cluster mode).
    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.cluster.as_ref().map(cluster::Cluster::internal_addr)
    }

    /// Graceful shutdown: stop admitting, let open sessions finish until the drain
    /// deadline, close the rest (voiding unconfirmed jobs), then stop the listeners.
    pub async fn shutdown(self) {
        self.stop_serving().await;
        if let Some(recorder) = self.state.recorder.get() {
            match recorder.finish() {
                Ok(n) => tracing::info!(sessions = n, "recorded traffic written"),
                Err(e) => tracing::error!(error = %e, "recorded traffic not written"),
            }
        }
        tracing::info!("stopped");
    }

    async fn stop_serving(&self) {
        if let Some(cluster) = &self.cluster {
            // A cluster node hands its shards (and their open sessions) to the others
            // instead of waiting for its sessions to end.
            self.state.start_draining();
            cluster.leave().await;
            self.kiosk.stop(true).await;
            self.admin.stop(true).await;
            return;
        }
        self.state.start_draining();
        let router = &self.state.router;
        let deadline = Instant::now() + self.drain_timeout;
        while router.open_sessions() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = router.open_sessions();
        if left > 0 {
            tracing::info!(open = left, "drain deadline reached; closing open sessions");
            router.close_all(CloseReason::Shutdown).await;
            let hard = Instant::now() + Duration::from_secs(5);
            while router.open_sessions() > 0 && Instant::now() < hard {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.kiosk.stop(true).await;
        self.admin.stop(true).await;
    }
}

fn first_addr(addrs: &[SocketAddr]) -> anyhow::Result<SocketAddr> {
    addrs
        .first()
        .copied()
        .context("listener bound to no address")
}
