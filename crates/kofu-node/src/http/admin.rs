//! The admin listener: metrics, health, the cluster view, registry changes that must
//! take effect everywhere once acknowledged, and drain.

use actix_web::{HttpRequest, HttpResponse, web};
use kofu_coord::RevokeOutcome;
use kofu_proto::{ApiError, CardId, ErrorCode, NotIssuable};
use prometheus::{Encoder as _, TextEncoder};
use serde::Deserialize;
use serde_json::json;

use super::body::{finish, read_json};
use super::error::{code, error_response, serve};
use super::{AppState, header};
use crate::auth::Role;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(serve("/metrics", "GET", web::get(), metrics))
        .service(serve("/healthz", "GET", web::get(), healthz))
        .service(serve("/readyz", "GET", web::get(), readyz))
        .service(serve("/admin/v1/cluster", "GET", web::get(), cluster))
        .service(serve(
            "/admin/v1/residents/{card_id}/seal/revoke",
            "POST",
            web::post(),
            revoke,
        ))
        .service(serve(
            "/admin/v1/residents/{card_id}/address",
            "POST",
            web::post(),
            address,
        ))
        .service(serve("/admin/v1/drain", "POST", web::post(), drain));
}

/// The admin token's name, when it is valid and has `role` (`401` / `403` otherwise).
fn admin(state: &AppState, req: &HttpRequest, role: Role) -> Result<String, HttpResponse> {
    state
        .admin
        .check(header(req, "authorization"), role)
        .map_err(code)
}

fn card(req: &HttpRequest) -> Result<CardId, HttpResponse> {
    req.match_info()
        .get("card_id")
        .and_then(|c| CardId::parse(c).ok())
        .ok_or_else(|| code(ErrorCode::InvalidCardId))
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut buf = Vec::with_capacity(16 * 1024);
    if let Err(e) = TextEncoder::new().encode(&state.prometheus.gather(), &mut buf) {
        tracing::error!(error = %e, "metrics encoding failed");
        return code(ErrorCode::Internal);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(buf)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when the node can serve its share: not draining and, in a cluster, its
/// heartbeat reaching Redis and its shards held or being taken up (README
/// "Readiness"). Not ready is `503` with the error JSON plus the reasons.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut reasons = state.coordinator.unready_reasons();
    if state.is_draining() {
        reasons.insert(0, "draining");
    }
    if reasons.is_empty() {
        return HttpResponse::Ok().json(json!({"status": "ready", "ready": true, "reasons": []}));
    }
    let mut body = json!(ApiError::from(ErrorCode::Unavailable));
    if let Some(fields) = body.as_object_mut() {
        fields.insert("ready".into(), json!(false));
        fields.insert("reasons".into(), json!(reasons));
    }
    // The error answer's status and headers (`Retry-After`), with the longer body.
    code(ErrorCode::Unavailable).set_body(actix_web::body::BoxBody::new(body.to_string()))
}

async fn cluster(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if let Err(r) = admin(&state, &req, Role::Read) {
        return r;
    }
    HttpResponse::Ok().json(state.coordinator.view())
}

async fn revoke(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let by = match admin(&state, &req, Role::Registry) {
        Ok(name) => name,
        Err(r) => return r,
    };
    let card = match card(&req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let today = kofu_actors::clock::today();
    match state.registry.revoke_seal(&card, today).await {
        Ok(RevokeOutcome::Revoked { record_version }) => {
            tracing::info!(card = %card.short_digest(), record_version, admin = %by, "seal registration revoked");
            HttpResponse::Ok().json(json!({"record_version": record_version, "seal": "revoked"}))
        }
        Ok(RevokeOutcome::AlreadyRevoked { record_version }) => {
            HttpResponse::Ok().json(json!({"record_version": record_version, "seal": "revoked"}))
        }
        Ok(RevokeOutcome::NotRegistered) => {
            error_response(ApiError::not_issuable(NotIssuable::SealNotRegistered))
        }
        Ok(RevokeOutcome::UnknownCard) => code(ErrorCode::UnknownCard),
        Err(e) => {
            tracing::warn!(error = %e, "revocation not stored");
            code(ErrorCode::Unavailable)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddressChange {
    address: String,
}

async fn address(
    state: web::Data<AppState>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> HttpResponse {
    let resp = address_inner(&state, &req, &mut payload).await;
    finish(&req, resp, payload).await
}

async fn address_inner(
    state: &AppState,
    req: &HttpRequest,
    payload: &mut web::Payload,
) -> HttpResponse {
    let by = match admin(state, req, Role::Registry) {
        Ok(name) => name,
        Err(r) => return r,
    };
    let card = match card(req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let body: AddressChange = match read_json(req, payload).await {
        Ok(b) => b,
        Err(e) => return error_response(e),
    };
    let address = body.address.trim().to_owned();
    if !acceptable_address(&address) {
        return code(ErrorCode::InvalidRequest);
    }
    match state.registry.update_address(&card, address).await {
        Ok(Some(record_version)) => {
            tracing::info!(card = %card.short_digest(), record_version, admin = %by, "address updated");
            HttpResponse::Ok().json(json!({"record_version": record_version}))
        }
        Ok(None) => code(ErrorCode::UnknownCard),
        Err(e) => {
            tracing::warn!(error = %e, "address change not stored");
            code(ErrorCode::Unavailable)
        }
    }
}

/// Longest address accepted, in characters (a Japanese address is rarely over 60).
const MAX_ADDRESS_CHARS: usize = 200;

/// An address as certificates print it: Unicode (Japanese), not empty, bounded in
/// characters, and free of control characters (a line break would be a second line).
fn acceptable_address(address: &str) -> bool {
    !address.is_empty()
        && address.chars().count() <= MAX_ADDRESS_CHARS
        && !address
            .chars()
            .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
}

async fn drain(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match admin(&state, &req, Role::Drain) {
        Ok(by) => tracing::info!(admin = %by, "drain requested"),
        Err(r) => return r,
    }
    state.start_draining();
    HttpResponse::Ok().json(json!({"draining": true}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_unicode_bounded_and_single_line() {
        assert!(acceptable_address(
            "〒160-0023 東京都新宿区西新宿二丁目8番1号"
        ));
        assert!(acceptable_address(
            "1-2-3 Nishi-Shinjuku, Shinjuku City, Tokyo"
        ));
        assert!(acceptable_address(&"東".repeat(MAX_ADDRESS_CHARS)));
        assert!(!acceptable_address(&"東".repeat(MAX_ADDRESS_CHARS + 1)));
        assert!(!acceptable_address(""));
        for bad in [
            "東京都\n新宿区",
            "a\tb",
            "a\u{0}b",
            "a\u{7f}b",
            "a\u{2028}b",
            "a\u{85}b",
        ] {
            assert!(!acceptable_address(bad), "{bad:?}");
        }
    }
}
