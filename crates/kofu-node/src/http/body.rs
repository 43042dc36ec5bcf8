//! Request bodies: read with a hard 16 KiB cap and a deadline, and parsed strictly, so
//! that oversize, slow, malformed or unexpected input gets API.md's error JSON instead
//! of a framework page or a handler held open by a client trickling bytes.

use std::time::Duration;

use actix_web::http::ConnectionType;
use actix_web::{HttpMessage as _, HttpRequest, HttpResponse, web};
use futures::StreamExt as _;
use kofu_proto::{ApiError, ErrorCode, MAX_BODY_BYTES};
use serde::de::DeserializeOwned;

/// Body deadline when the app has no state (never in a node).
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

fn body_timeout(req: &HttpRequest) -> Duration {
    req.app_data::<web::Data<super::AppState>>()
        .map_or(BODY_TIMEOUT, |s| s.admission.body_timeout())
}

/// The next chunk of the body, `Err` once the deadline passed.
async fn next_chunk(
    payload: &mut web::Payload,
    deadline: tokio::time::Instant,
) -> Result<Option<Result<web::Bytes, actix_web::error::PayloadError>>, ()> {
    tokio::time::timeout_at(deadline, payload.next())
        .await
        .map_err(|_| ())
}

/// Reads and parses the body; a body still incomplete at the deadline is
/// `invalid_request` (and `finish` closes the connection).
pub async fn read_json<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: &mut web::Payload,
) -> Result<T, ApiError> {
    if let Some(len) = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > MAX_BODY_BYTES as u64
    {
        return Err(ErrorCode::PayloadTooLarge.into());
    }
    let mut body = web::BytesMut::new();
    let deadline = tokio::time::Instant::now() + body_timeout(req);
    while let Some(chunk) = next_chunk(payload, deadline)
        .await
        .map_err(|()| ApiError::from(ErrorCode::InvalidRequest))?
    {
        let chunk = chunk.map_err(|_| ApiError::from(ErrorCode::InvalidRequest))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ErrorCode::PayloadTooLarge.into());
        }
        body.extend_from_slice(&chunk);
    }
    // JSON is the only body format; a declared non-JSON type is refused as such.
    let ct = req.content_type();
    if !ct.is_empty() && !ct.eq_ignore_ascii_case("application/json") {
        return Err(ErrorCode::UnsupportedMediaType.into());
    }
    serde_json::from_slice(&body).map_err(|_| ErrorCode::InvalidRequest.into())
}

/// Answers with `resp` after reading what is left of the request body, so the keep-alive
/// connection stays usable after an early answer (an error before the body was read).
/// A body too large to skip cheaply, or too slow, closes the connection, and says so.
pub async fn finish(
    req: &HttpRequest,
    mut resp: HttpResponse,
    mut payload: web::Payload,
) -> HttpResponse {
    let mut skipped = 0usize;
    let deadline = tokio::time::Instant::now() + body_timeout(req);
    loop {
        let Ok(chunk) = next_chunk(&mut payload, deadline).await else {
            resp.head_mut().set_connection_type(ConnectionType::Close);
            break;
        };
        let Some(chunk) = chunk else { break };
        match chunk {
            Ok(c) if skipped + c.len() <= MAX_BODY_BYTES => skipped += c.len(),
            _ => {
                resp.head_mut().set_connection_type(ConnectionType::Close);
                break;
            }
        }
    }
    resp
}
