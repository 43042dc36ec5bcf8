//! The access log: one info line per request on the kiosk and admin listeners, with the
//! route *pattern* (paths carry session ids, and admin paths card ids), status,
//! duration and a request id, inside a span carrying the request id and the W3C trace
//! context, which forwarded calls take to the owner node (`kofu_wire::traced`). Nothing
//! in it names a person: a client's request id that could hold a card id is replaced.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use kofu_proto::TraceParent;
use tracing::Instrument as _;

use super::Listener;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const TRACEPARENT: &str = "traceparent";
/// Longest client request id kept.
const MAX_REQUEST_ID: usize = 64;
/// A run of this many uppercase hex digits could be a card id (API.md: 16 of them).
const CARD_ID_RUN: usize = 16;

/// A client's `X-Request-Id` is kept when it is 1 to 64 characters of `A-Z a-z 0-9 . _
/// : -` and holds no run of 16 uppercase hex digits (the shape of a card id, which
/// must never reach a log); otherwise the node makes its own.
pub fn acceptable_request_id(id: &str) -> bool {
    let mut run = 0usize;
    for c in id.chars() {
        if !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')) {
            return false;
        }
        run = if c.is_ascii_digit() || ('A'..='F').contains(&c) {
            run + 1
        } else {
            0
        };
        if run >= CARD_ID_RUN {
            return false;
        }
    }
    (1..=MAX_REQUEST_ID).contains(&id.len())
}

fn nonzero<const N: usize>() -> [u8; N] {
    loop {
        let id: [u8; N] = rand::random();
        if id != [0; N] {
            return id;
        }
    }
}

/// A span of this node's in the kiosk's trace, or in a new one.
fn own_trace(incoming: Option<TraceParent>) -> TraceParent {
    let span_id = nonzero::<8>();
    match incoming {
        Some(incoming) => incoming.child(span_id),
        None => TraceParent {
            trace_id: nonzero(),
            parent_id: span_id,
            flags: 0,
        },
    }
}

/// Middleware, outermost: the span, the trace context for forwarded calls, the
/// `X-Request-Id` answer header and the log line.
pub async fn log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = match req.headers().get(&REQUEST_ID).map(HeaderValue::to_str) {
        Some(Ok(id)) if acceptable_request_id(id) => id.to_owned(),
        _ => hex::encode(nonzero::<16>()),
    };
    let incoming = req
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let listener = match req.app_data::<Listener>() {
        Some(Listener::Admin) => "admin",
        _ => "kiosk",
    };
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    // This node's span continues the kiosk's trace, or starts one; with OTLP export
    // the exported span's own ids.
    #[cfg(feature = "otlp")]
    let trace =
        crate::telemetry::continue_trace(&span, incoming).unwrap_or_else(|| own_trace(incoming));
    #[cfg(not(feature = "otlp"))]
    let trace = own_trace(incoming);
    // The ids in hex only for a span that is recorded (the log level may leave it out).
    if !span.is_disabled() {
        span.record("trace_id", tracing::field::display(trace.trace_id_hex()));
        span.record("span_id", tracing::field::display(trace.parent_id_hex()));
    }
    let result = kofu_wire::traced(Some(trace), next.call(req))
        .instrument(span.clone())
        .await;
    let (route, status) = match &result {
        Ok(res) => (
            super::error::route_pattern(res.request()),
            res.status().as_u16(),
        ),
        Err(e) => (
            "unmatched".into(),
            e.as_response_error().status_code().as_u16(),
        ),
    };
    let route = &*route;
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    span.in_scope(|| {
        tracing::info!(listener, method = %method, route, status, micros, "request");
    });
    result.map(|mut res| {
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            res.headers_mut().insert(REQUEST_ID, value);
        }
        res
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_that_could_hold_a_card_id_are_not_kept() {
        for good in [
            "a",
            "req-42",
            "f47ac10b-58cc-4372-a567-0e02b2c3d479",
            "F47AC10B-58CC-4372-A567-0E02B2C3D479",
            "kiosk.SEJ-13104-0042-01:7",
            &"x".repeat(MAX_REQUEST_ID),
        ] {
            assert!(acceptable_request_id(good), "{good:?}");
        }
        for bad in [
            "",
            "0123456789ABCDEF",
            "req-0123456789ABCDEF-1",
            "4BF92F3577B34DA6A3CE929D0E0E4736",
            "with space",
            "a/b",
            "名前",
            &"x".repeat(MAX_REQUEST_ID + 1),
        ] {
            assert!(!acceptable_request_id(bad), "{bad:?}");
        }
    }
}
