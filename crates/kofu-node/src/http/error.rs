//! Every non-2xx answer of kofu, built from an error code so status and body always
//! agree with API.md, and never carrying request data.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, http::header, web};
use kofu_actors::ApiError;
use kofu_proto::{ErrorBody, ErrorCode};

/// Seconds a kiosk should wait before retrying after `503`.
const RETRY_AFTER_S: &str = "1";

pub fn error_response(e: ApiError) -> HttpResponse {
    let body = ErrorBody {
        attempts_left: e.attempts_left,
        reason: e.reason.map(str::to_owned),
        ..ErrorBody::new(e.code)
    };
    let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = HttpResponse::build(status);
    if e.code == ErrorCode::Unavailable {
        resp.insert_header((header::RETRY_AFTER, RETRY_AFTER_S));
    }
    resp.json(body)
}

pub fn code(code: ErrorCode) -> HttpResponse {
    error_response(code.into())
}

pub async fn not_found(payload: web::Payload) -> HttpResponse {
    super::body::finish(code(ErrorCode::NotFound), payload).await
}

pub async fn method_not_allowed(payload: web::Payload) -> HttpResponse {
    super::body::finish(code(ErrorCode::MethodNotAllowed), payload).await
}
