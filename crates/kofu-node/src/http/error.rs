//! Every non-2xx answer of kofu, built from an error code so status and body always
//! agree with API.md, and never carrying request data.

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

pub async fn method_not_allowed(req: HttpRequest, payload: web::Payload) -> HttpResponse {
    super::body::finish(&req, code(ErrorCode::MethodNotAllowed), payload).await
}
