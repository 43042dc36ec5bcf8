//! Request bodies: read with a hard 16 KiB cap and parsed strictly, so that oversize,
//! malformed or unexpected input gets API.md's error JSON instead of a framework page.

use actix_web::{HttpMessage as _, HttpRequest, web};
use futures::StreamExt as _;
use kofu_actors::ApiError;
use kofu_proto::{ErrorCode, MAX_BODY_BYTES};
use serde::de::DeserializeOwned;

pub async fn read_json<T: DeserializeOwned>(
    req: &HttpRequest,
    mut payload: web::Payload,
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
    while let Some(chunk) = payload.next().await {
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
