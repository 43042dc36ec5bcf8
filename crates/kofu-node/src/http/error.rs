//! Every non-2xx answer of kofu, built from an error code so status and body always
//! agree with API.md, and never carrying request data.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, http::header, web};
use kofu_proto::{ApiError, ErrorCode};

/// Seconds a kiosk should wait before retrying after `503` or `429 too_many_requests`;
/// the admission guard replaces it with a jittered value of the configured one.
const RETRY_AFTER_S: &str = "2";

pub fn error_response(e: ApiError) -> HttpResponse {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = HttpResponse::build(status);
    if matches!(e.code, ErrorCode::Unavailable | ErrorCode::TooManyRequests) {
        resp.insert_header((header::RETRY_AFTER, RETRY_AFTER_S));
    }
    resp.json(e)
}

pub fn code(code: ErrorCode) -> HttpResponse {
    error_response(code.into())
}

pub async fn not_found(req: HttpRequest, payload: web::Payload) -> HttpResponse {
    super::body::finish(&req, code(ErrorCode::NotFound), payload).await
}

/// A resource that answers any method it does not serve with `405` and the `Allow`
/// header (RFC 9110, 15.5.6) naming the ones it does: `allow` must list exactly the
/// methods of the routes added to it (tests/openapi checks it against openapi.json).
pub fn resource(path: &'static str, allow: &'static str) -> actix_web::Resource {
    web::resource(path)
        .app_data(RoutePattern(path))
        .default_service(web::to(move |req: HttpRequest, payload| {
            method_not_allowed(req, payload, allow)
        }))
}

/// The pattern of the resource a request was routed to, kept as the resource's app data.
#[derive(Debug, Clone, Copy)]
struct RoutePattern(&'static str);

/// The route pattern of a request, for its log line and metrics (never its path: paths
/// carry session ids, and admin paths card ids). A routed request finds it in its
/// resource's data; `HttpRequest::match_pattern` would match the path against every
/// pattern again, once for the log and once for the metrics (5 % of an embedded
/// node's CPU in a bench profile). Requests that never reached a resource (refused by
/// admission, or matching none) still take that path.
pub fn route_pattern(req: &HttpRequest) -> Cow<'static, str> {
    match req.app_data::<RoutePattern>() {
        Some(p) => Cow::Borrowed(p.0),
        None => req
            .match_pattern()
            .map_or(Cow::Borrowed("unmatched"), Cow::Owned),
    }
}

/// A resource served by one method, `allow` (as `route` matches it), with `handler`.
pub fn serve<F, Args>(
    path: &'static str,
    allow: &'static str,
    route: actix_web::Route,
    handler: F,
) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    resource(path, allow).route(route.to(handler))
}

async fn method_not_allowed(
    req: HttpRequest,
    payload: web::Payload,
    allow: &'static str,
) -> HttpResponse {
    let mut resp = code(ErrorCode::MethodNotAllowed);
    resp.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    super::body::finish(&req, resp, payload).await
}
