//! The HTTP face of a node: the kiosk API and the admin API on separate listeners,
//! sharing one state and one metrics registry.

mod admin;
mod body;
pub mod error;
#[cfg(feature = "fault-swap-documents")]
mod fault;
mod kiosk;
pub mod metrics;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use actix_web::{App, HttpRequest, web};
use kofu_actors::Router;
use kofu_coord::{Coordinator, Registry};

use crate::auth::{AdminAuth, KioskAuth};
use metrics::HttpMetrics;

pub struct AppState {
    pub router: Router,
    pub registry: Arc<dyn Registry>,
    pub coordinator: Arc<dyn Coordinator>,
    pub kiosks: KioskAuth,
    pub admin: AdminAuth,
    pub issuer_key_b64: String,
    pub prometheus: prometheus::Registry,
    draining: AtomicBool,
    /// What draining does besides failing readiness: a cluster node hands its shards
    /// off; without it (embedded) the node stops admitting new sessions.
    drain_action: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// `--record-traffic`: the sessions served, for kofu-load.
    pub recorder: OnceLock<Arc<crate::record::Recorder>>,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        router: Router,
        registry: Arc<dyn Registry>,
        coordinator: Arc<dyn Coordinator>,
        kiosks: KioskAuth,
        admin: AdminAuth,
        issuer_key_b64: String,
        prometheus: prometheus::Registry,
    ) -> AppState {
        AppState {
            router,
            registry,
            coordinator,
            kiosks,
            admin,
            issuer_key_b64,
            prometheus,
            draining: AtomicBool::new(false),
            drain_action: OnceLock::new(),
            recorder: OnceLock::new(),
        }
    }

    /// Sets the cluster's drain action (once).
    pub fn on_drain(&self, action: Box<dyn Fn() + Send + Sync>) {
        let _ = self.drain_action.set(action);
    }

    /// Whether new sessions get `503` here (API.md: a drained node hands its shards
    /// over and stops taking new sessions; calls of open sessions still reach their
    /// owners).
    pub fn refuses_new_sessions(&self) -> bool {
        self.is_draining()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Stops admitting sessions: readiness fails and new sessions get `503`.
    pub fn start_draining(&self) {
        if !self.draining.swap(true, Ordering::AcqRel) {
            match self.drain_action.get() {
                Some(action) => {
                    action();
                    tracing::info!("draining: handing every shard to the other nodes");
                }
                None => {
                    self.router.stop_accepting();
                    tracing::info!("draining: no new sessions are admitted");
                }
            }
        }
    }
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub use admin::routes as admin_routes;
pub use kiosk::routes as kiosk_routes;

/// One listener's app: shared state and metrics, request tracking, JSON 404s.
pub fn app(
    state: web::Data<AppState>,
    metrics: web::Data<HttpMetrics>,
    routes: fn(&mut web::ServiceConfig),
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .app_data(metrics)
        .wrap(actix_web::middleware::from_fn(metrics::track))
        .configure(routes)
        .default_service(web::to(error::not_found))
}
