//! Wiring of one node: population and registry, fenced store, coordinator, issuer,
//! actors and the two HTTP listeners, plus the explicit graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{HttpServer, web};
use anyhow::Context as _;
use kofu_actors::{ActorMetrics, Deps, RenderFaults, Router, SessionConfig};
use kofu_coord::Coordinator as _;
use kofu_coord::embedded::{AuditSink, EmbeddedCoordinator, EmbeddedRegistry, EmbeddedStore};
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
    pub async fn start(cfg: &ServeConfig, population: Population) -> anyhow::Result<Node> {
        let issuer = Arc::new(issuer(cfg)?);
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1);
        let prom = prometheus::Registry::new();
        let metrics = ActorMetrics::new(&prom).context("registering actor metrics")?;
        let http_metrics =
            web::Data::new(HttpMetrics::new(&prom, "http_").context("registering http metrics")?);
        let sink = match &cfg.audit_file {
            Some(p) => AuditSink::append_to(p)
                .with_context(|| format!("cannot open audit file {}", p.display()))?,
            None => AuditSink::Memory,
        };
        let kiosks = KioskAuth::new(&population.kiosks);
        let admin = AdminAuth::new(&population.admin_token);
        let registry = Arc::new(EmbeddedRegistry::new(population.residents));
        let store = Arc::new(EmbeddedStore::new(cfg.shard_count, epoch, sink));
        let coordinator = Arc::new(EmbeddedCoordinator::new(
            cfg.node_id(),
            cfg.shard_count,
            epoch,
        ));
        let deps = Arc::new(Deps {
            store,
            registry: registry.clone(),
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
        });
        let router = Router::new(cfg.shard_count, coordinator.local_leases(), deps);
        let state = web::Data::new(AppState::new(
            router,
            registry,
            coordinator,
            kiosks,
            admin,
            issuer.public_key_b64(),
            prom,
        ));

        let (s, m) = (state.clone(), http_metrics.clone());
        let workers = cfg.http_workers.unwrap_or_else(ServeConfig::cores);
        let next_worker = Arc::new(AtomicUsize::new(0));
        let kiosk_server = HttpServer::new(move || {
            // Runs once on each worker thread: that thread hosts its share of shards.
            let worker = next_worker.fetch_add(1, Ordering::Relaxed);
            if worker < workers {
                s.router.place_hosts(worker, workers);
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
            anyhow::ensure!(Instant::now() < placed_by, "shard hosts did not start");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(Node {
            state,
            kiosk_addr,
            admin_addr,
            kiosk,
            admin,
            drain_timeout: cfg.drain_timeout(),
        })
    }

    /// Graceful shutdown: stop admitting, let open sessions finish until the drain
    /// deadline, close the rest (voiding unconfirmed jobs), then stop the listeners.
    pub async fn shutdown(self) {
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
        tracing::info!("stopped");
    }
}

fn first_addr(addrs: &[SocketAddr]) -> anyhow::Result<SocketAddr> {
    addrs
        .first()
        .copied()
        .context("listener bound to no address")
}
