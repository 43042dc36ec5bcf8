//! The HTTP face of a node: the kiosk API and the admin API on separate listeners,
//! sharing one state and one metrics registry.

mod access;
mod admin;
pub mod admission;
mod body;
pub mod error;
mod kiosk;
pub mod metrics;
mod receipt;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::{App, HttpRequest, web};
use kofu_actors::Router;
use kofu_coord::{Coordinator, Registry};

use crate::auth::{AdminAuth, KioskAuth};
use crate::issuer_keys::IssuerKeyring;
use crate::record::Recorder;
use admission::Admission;
use metrics::HttpMetrics;

/// What both listeners' handlers share; built once, after everything it names.
pub struct AppState {
    pub router: Router,
    pub registry: Arc<dyn Registry>,
    pub coordinator: Arc<dyn Coordinator>,
    pub kiosks: KioskAuth,
    pub admin: AdminAuth,
    /// The signing key and the key set `GET /v1/issuer-key` publishes.
    pub issuer_keys: IssuerKeyring,
    pub admission: Admission,
    pub prometheus: prometheus::Registry,
    /// `--record-traffic`: the sessions served, for kofu-load.
    pub recorder: Option<Arc<Recorder>>,
    pub drain: Drain,
}

/// Draining: readiness fails and new sessions get `503` here (calls of open sessions
/// still reach their owners), plus what the topology adds.
pub struct Drain {
    draining: AtomicBool,
    /// A cluster node hands its shards to the others; an embedded node has nothing to
    /// add (its open sessions finish here).
    action: Option<Box<dyn Fn() + Send + Sync>>,
}

impl Drain {
    pub fn new(action: Option<Box<dyn Fn() + Send + Sync>>) -> Drain {
        Drain {
            draining: AtomicBool::new(false),
            action,
        }
    }
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.drain.draining.load(Ordering::Acquire)
    }

    /// Stops admitting sessions (once).
    pub fn start_draining(&self) {
        if self.drain.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        match &self.drain.action {
            Some(action) => {
                action();
                tracing::info!("draining: handing every shard to the other nodes");
            }
            None => tracing::info!("draining: no new sessions are admitted"),
        }
    }
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Which listener an app serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Kiosk,
    Admin,
}

/// One listener's app: shared state and metrics, request tracking, admission control,
/// JSON 404s.
pub fn app(
    state: web::Data<AppState>,
    metrics: web::Data<HttpMetrics>,
    listener: Listener,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let routes = match listener {
        Listener::Kiosk => kiosk::routes,
        Listener::Admin => admin::routes,
    };
    App::new()
        .app_data(state)
        .app_data(metrics)
        .app_data(listener)
        // Outermost last: refusals by admission control are counted and timed too, and
        // every request, refused or not, gets its access log line and request id.
        .wrap(actix_web::middleware::from_fn(admission::guard))
        .wrap(actix_web::middleware::from_fn(metrics::track))
        .wrap(actix_web::middleware::from_fn(access::log))
        .configure(routes)
        .default_service(web::to(error::not_found))
}
