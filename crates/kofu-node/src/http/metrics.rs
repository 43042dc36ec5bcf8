//! Request counters and latency histograms by route pattern and status (never by id).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    pub fn new(reg: &Registry, prefix: &str) -> prometheus::Result<HttpMetrics> {
        let requests = IntCounterVec::new(
            Opts::new(
                format!("kofu_{prefix}requests_total"),
                "HTTP requests answered, by route pattern and status.",
            ),
            &["route", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                format!("kofu_{prefix}request_duration_seconds"),
                "HTTP request duration, by route pattern.",
            )
            .buckets(vec![
                0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
                1.0, 5.0, 10.0,
            ]),
            &["route"],
        )?;
        reg.register(Box::new(requests.clone()))?;
        reg.register(Box::new(duration.clone()))?;
        Ok(HttpMetrics { requests, duration })
    }

    fn observe(&self, route: &str, status: u16, started: Instant) {
        let mut buf = itoa_status(status);
        let status = std::str::from_utf8_mut(&mut buf).map_or("000", |s| &*s);
        self.requests.with_label_values(&[route, status]).inc();
        self.duration
            .with_label_values(&[route])
            .observe(started.elapsed().as_secs_f64());
    }
}

fn itoa_status(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

/// Middleware: times the request and records it under its route pattern.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<actix_web::web::Data<HttpMetrics>>().cloned();
    let res = next.call(req).await?;
    if let Some(m) = metrics {
        let route = super::error::route_pattern(res.request());
        let status = res.status().as_u16();
        // The route pattern, never the path: paths carry session ids and card ids.
        m.observe(&route, status, started);
    }
    Ok(res)
}
