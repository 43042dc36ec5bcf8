//! Wiring of one node, in the order the parts need each other: every socket is bound
//! first, then the coordination plane, the actors and the HTTP servers are built on
//! top, each from what was built before it (nothing is set after construction). Plus
//! the explicit graceful shutdown. The embedded and the Redis-coordinated node differ
//! only in the parts built by `Plane` (DESIGN.md, scenario 6: no safety feature
//! depends on the topology).

mod cluster;
mod creds;
mod registry_file;

pub use creds::BadConfig;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{HttpServer, web};
use anyhow::Context as _;
use kofu_actors::{
    ActorMetrics, ClusterMetrics, Deps, KioskSessions, RenderFaults, Router, RouterConfig,
    SessionConfig, ShardStart,
};
use kofu_coord::embedded::{AuditSink, EmbeddedCoordinator, EmbeddedRegistry, EmbeddedStore};
use kofu_coord::{Coordinator, FencedStore, Registry};
use kofu_core::Population;
use kofu_core::records::ResidentRecord;
use kofu_core::session::CloseReason;
use tokio::net::{TcpListener, TcpSocket};
use tracing::Instrument as _;

use crate::config::ServeConfig;
use crate::http::admission::Admission;
use crate::http::{self, AppState, Drain, Listener, metrics::HttpMetrics};
use crate::record::Recorder;
use crate::reload::Reloader;
use crate::tls::NodeTls;

/// How long the HTTP workers may take to start.
const WORKERS_START: Duration = Duration::from_secs(30);
/// After the drain deadline, how long the sessions closed then may take to end.
const CLOSE_REST: Duration = Duration::from_secs(5);
/// Pending connections the kiosk listener queues: kiosks reconnect in bursts.
const KIOSK_BACKLOG: u32 = 4096;
const ADMIN_BACKLOG: u32 = 1024;
/// How long both listeners keep an idle connection. Kiosks keep theirs between steps of
/// a session, scrapers and admin clients between calls; a client's pool must idle out
/// before the server does (a request sent as the server closes the connection is lost),
/// and common pools use 30-60 s.
const KEEP_ALIVE: Duration = Duration::from_secs(75);

pub struct Node {
    pub kiosk_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    state: web::Data<AppState>,
    kiosk: ServerHandle,
    admin: ServerHandle,
    drain_timeout: Duration,
    cluster: Option<cluster::Cluster>,
    /// What SIGHUP reads again.
    reloader: Reloader,
}

/// The node's sockets, bound before anything is built: a taken port fails the start
/// at once, and the internal address is known before the node announces it.
struct Sockets {
    kiosk: std::net::TcpListener,
    admin: std::net::TcpListener,
    /// Forwarded requests from other nodes (cluster mode only).
    internal: Option<TcpListener>,
}

impl Sockets {
    async fn bind(cfg: &ServeConfig) -> anyhow::Result<Sockets> {
        let kiosk = listen(cfg.listen, KIOSK_BACKLOG)?.into_std()?;
        let admin = listen(cfg.admin_listen, ADMIN_BACKLOG)?.into_std()?;
        let internal = match cfg.redis_url {
            Some(_) => Some(
                TcpListener::bind(cfg.internal_listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", cfg.internal_listen))?,
            ),
            None => None,
        };
        Ok(Sockets {
            kiosk,
            admin,
            internal,
        })
    }
}

fn listen(addr: SocketAddr, backlog: u32) -> anyhow::Result<TcpListener> {
    let bind = || {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(backlog)
    };
    bind().with_context(|| format!("cannot listen on {addr}"))
}

/// The coordination plane a node runs on: embedded, or a Redis cluster.
struct Plane {
    store: Arc<dyn FencedStore>,
    registry: Arc<dyn Registry>,
    coordinator: Arc<dyn Coordinator>,
    cluster: Option<cluster::Plane>,
    /// The embedded registry itself, for the registry file's SIGHUP hook.
    embedded_registry: Option<Arc<EmbeddedRegistry>>,
}

fn embedded_plane(cfg: &ServeConfig, residents: Vec<ResidentRecord>) -> anyhow::Result<Plane> {
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1);
    let sink = match &cfg.audit_file {
        Some(p) => AuditSink::append_to(p)
            .with_context(|| format!("cannot open audit file {}", p.display()))?,
        None => AuditSink::Memory,
    };
    let registry = Arc::new(EmbeddedRegistry::new(residents));
    Ok(Plane {
        store: Arc::new(EmbeddedStore::new(cfg.shard_count, epoch, sink)),
        registry: registry.clone(),
        coordinator: Arc::new(EmbeddedCoordinator::new(
            cfg.node_id(),
            cfg.shard_count,
            epoch,
        )),
        cluster: None,
        embedded_registry: Some(registry),
    })
}

fn session_config(cfg: &ServeConfig) -> SessionConfig {
    SessionConfig {
        idle_timeout: cfg.idle_timeout(),
        hard_limit: Duration::from_millis(cfg.hard_limit_ms),
        render_deadline: Duration::from_millis(cfg.render_deadline_ms),
        activity_grain: (cfg.idle_timeout() / 4).min(cfg.lease_ttl()),
        ..SessionConfig::default()
    }
}

impl Node {
    /// Starts a node serving `population`; must run inside an actix system.
    pub async fn start(cfg: &ServeConfig, population: Population) -> anyhow::Result<Node> {
        let sockets = Sockets::bind(cfg).await?;
        let tls = NodeTls::load(&cfg.tls)?;
        warn_plaintext(cfg, &tls);
        let prom = prometheus::Registry::new();
        crate::process_metrics::register(&prom).context("registering process metrics")?;
        let metrics = ActorMetrics::new(&prom).context("registering actor metrics")?;
        let cluster_metrics = ClusterMetrics::new(&prom).context("registering cluster metrics")?;
        let http_metrics =
            web::Data::new(HttpMetrics::new(&prom, "http_").context("registering http metrics")?);

        // The population's parts go where they are needed; the residents last, since an
        // embedded registry takes them over.
        let Population {
            residents,
            kiosks,
            admin_token,
            ..
        } = population;
        let creds = creds::Credentials::load(cfg, &kiosks, &admin_token)?;
        let residents = match &cfg.registry.registry_file {
            Some(path) => registry_file::read(path)?,
            None => residents,
        };
        let issuer = creds.issuer.issuer();
        let recorder = cfg.record_traffic.as_ref().map(|path| {
            Arc::new(Recorder::new(
                path.clone(),
                &residents,
                &kiosks,
                cfg.fixture_seed(),
                &cfg.node_id(),
            ))
        });
        let plane = match (&cfg.redis_url, sockets.internal) {
            (Some(url), Some(internal)) => {
                let link = cluster::Link {
                    tls: tls.cluster.clone(),
                    redis_ca: tls.redis_ca.clone(),
                };
                cluster::plane(cfg, url, &prom, internal, link).await?
            }
            _ => embedded_plane(cfg, residents)?,
        };

        let deps = Arc::new(Deps {
            store: plane.store,
            registry: plane.registry.clone(),
            coordinator: plane.coordinator.clone(),
            issuer: issuer.clone(),
            config: session_config(cfg),
            faults: RenderFaults::new(
                Duration::from_millis(cfg.render_delay_ms),
                cfg.render_delay_every,
            ),
            metrics,
            cluster: cluster_metrics,
            kiosk_sessions: match cfg.admission.kiosk_max_sessions {
                0 => KioskSessions::unlimited(),
                n => KioskSessions::new(n),
            },
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
            plane.cluster.as_ref().map(cluster::Plane::remote),
        );
        // Forwarded calls are served from here on; until the leases are followed they
        // answer `Moved`, and the caller retries.
        let cluster = plane.cluster.map(|p| p.serve(&router)).transpose()?;
        let state = web::Data::new(AppState {
            router: router.clone(),
            registry: plane.registry,
            coordinator: plane.coordinator.clone(),
            kiosks: creds.kiosks,
            admin: creds.admin,
            issuer_keys: creds.issuer,
            admission: Admission::new(&cfg.admission, &prom)
                .context("registering admission metrics")?,
            prometheus: prom,
            recorder,
            drain: Drain::new(cluster.as_ref().map(cluster::Cluster::drain_action)),
        });

        let (s, m) = (state.clone(), http_metrics.clone());
        let next_worker = Arc::new(AtomicUsize::new(0));
        let kiosk_server = HttpServer::new(move || {
            // Runs once on each worker thread: that thread hosts its share of shards.
            let worker = next_worker.fetch_add(1, Ordering::Relaxed);
            if worker < workers {
                s.router.register_worker(worker);
            }
            http::app(s.clone(), m.clone(), Listener::Kiosk)
        })
        .workers(workers)
        // Slow clients (slowloris) are cut off; see README "Admission control".
        .client_request_timeout(cfg.admission.header_timeout())
        .client_disconnect_timeout(cfg.admission.disconnect_timeout())
        .max_connections(cfg.admission.connections_per_worker(workers))
        .keep_alive(KEEP_ALIVE)
        .disable_signals()
        .shutdown_timeout(1)
        .on_connect(crate::tls::on_connect(
            tls.kiosk.as_ref().is_some_and(|(_, required)| *required),
        ));
        let kiosk_server = match tls.kiosk {
            Some((config, _)) => kiosk_server.listen_rustls_0_23(sockets.kiosk, config),
            None => kiosk_server.listen(sockets.kiosk),
        }
        .context("serving the kiosk listener")?;
        let kiosk_addr = first_addr(&kiosk_server.addrs())?;
        let (s, m) = (state.clone(), http_metrics);
        let admin_server =
            HttpServer::new(move || http::app(s.clone(), m.clone(), Listener::Admin))
                .workers(1)
                .client_request_timeout(cfg.admission.header_timeout())
                .client_disconnect_timeout(cfg.admission.disconnect_timeout())
                .max_connections(cfg.admission.connections_per_worker(1))
                .keep_alive(KEEP_ALIVE)
                .disable_signals()
                .shutdown_timeout(1);
        let admin_server = match tls.admin {
            Some(config) => admin_server.listen_rustls_0_23(sockets.admin, config),
            None => admin_server.listen(sockets.admin),
        }
        .context("serving the admin listener")?;
        let admin_addr = first_addr(&admin_server.addrs())?;
        let kiosk_server = kiosk_server.run();
        let admin_server = admin_server.run();
        let (kiosk, admin) = (kiosk_server.handle(), admin_server.handle());
        actix_rt::spawn(kiosk_server.instrument(tracing::info_span!("kiosk_listener")));
        actix_rt::spawn(admin_server.instrument(tracing::info_span!("admin_listener")));

        tokio::time::timeout(WORKERS_START, router.workers_registered())
            .await
            .context("http workers did not start")?;
        match &cluster {
            None => {
                for fence in plane.coordinator.local_leases() {
                    router.add_shard(fence, ShardStart::Fresh);
                }
            }
            Some(cluster) => cluster.follow_leases(router),
        }
        let mut reloader = Reloader::default();
        creds::add_hooks(&mut reloader, cfg, &state);
        if let (Some(path), Some(registry)) = (&cfg.registry.registry_file, plane.embedded_registry)
        {
            registry_file::add_hook(&mut reloader, path.clone(), registry);
        }
        for part in tls.reloaders {
            reloader.add_part(part);
        }
        Ok(Node {
            state,
            kiosk_addr,
            admin_addr,
            kiosk,
            admin,
            drain_timeout: cfg.drain_timeout(),
            cluster,
            reloader,
        })
    }

    /// SIGHUP: reads every file-backed setting again (README "Operations"); answers how
    /// many parts were refused (each logged).
    pub fn reload(&self) -> usize {
        self.reloader.reload()
    }

    /// The internal listener's address (cluster mode).
    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.cluster.as_ref().map(cluster::Cluster::internal_addr)
    }

    /// Graceful shutdown: stop admitting, let open sessions finish until the drain
    /// deadline, close the rest (voiding unconfirmed jobs), then stop the listeners.
    pub async fn shutdown(self) {
        self.stop_serving().await;
        if let Some(recorder) = &self.state.recorder {
            match recorder.finish() {
                Ok(n) => tracing::info!(sessions = n, "recorded traffic written"),
                Err(e) => tracing::error!(error = %e, "recorded traffic not written"),
            }
        }
        tracing::info!("stopped");
    }

    async fn stop_serving(&self) {
        self.state.start_draining();
        if let Some(cluster) = &self.cluster {
            // A cluster node hands its shards (and their open sessions) to the others
            // instead of waiting for its sessions to end.
            cluster.leave().await;
        } else {
            let router = &self.state.router;
            let drained = tokio::time::timeout(self.drain_timeout, router.sessions_closed());
            if drained.await.is_err() {
                tracing::info!(
                    open = router.open_sessions(),
                    "drain deadline reached; closing open sessions"
                );
                router.close_all(CloseReason::Shutdown).await;
                let _ = tokio::time::timeout(CLOSE_REST, router.sessions_closed()).await;
            }
        }
        self.kiosk.stop(true).await;
        self.admin.stop(true).await;
    }
}

/// Says once, at start, what travels in clear: the explicit insecure mode of a cluster,
/// and a kiosk or admin listener without TLS on an address other machines can reach.
fn warn_plaintext(cfg: &ServeConfig, tls: &NodeTls) {
    if cfg.redis_url.is_some() && tls.cluster.is_none() {
        tracing::warn!(
            "insecure: --insecure-plaintext: traffic between nodes (certificates, card ids) \
             travels in clear; for local development only"
        );
    }
    for (listener, addr, secured) in [
        ("kiosk", cfg.listen, tls.kiosk.is_some()),
        ("admin", cfg.admin_listen, tls.admin.is_some()),
    ] {
        if !secured && !addr.ip().is_loopback() {
            tracing::warn!(
                listener,
                %addr,
                "plain http on a non-loopback address: terminate tls in front of it, or set the tls certificate settings"
            );
        }
    }
}

fn first_addr(addrs: &[SocketAddr]) -> anyhow::Result<SocketAddr> {
    addrs
        .first()
        .copied()
        .context("listener bound to no address")
}
