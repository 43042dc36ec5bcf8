//! The kiosk protocol v1 endpoints (API.md). Handlers only authenticate, parse and
//! translate: every decision about a session is made by its actor.

use std::time::Duration;

use tracing::Instrument as _;

use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, web};
use kofu_proto::api::{AuthRequest, CreateSessionRequest, JobRequest, RenderingResponse};
use kofu_proto::{CardId, Document, ErrorCode, JobId, KioskId, SessionId, SessionOp, SessionReply};

use super::admission::Refusal;
use super::body::{finish, read_json};
use super::error::{code, error_response, serve};
use super::{AppState, header};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(serve("/v1/sessions", "POST", web::post(), create_session))
        .service(serve(
            "/v1/sessions/{session_id}",
            "DELETE",
            web::delete(),
            close_session,
        ))
        .service(serve(
            "/v1/sessions/{session_id}/auth",
            "POST",
            web::post(),
            authenticate,
        ))
        .service(serve(
            "/v1/sessions/{session_id}/jobs",
            "POST",
            web::post(),
            create_job,
        ))
        .service(serve(
            "/v1/sessions/{session_id}/jobs/{job_id}/document",
            "GET",
            web::get(),
            document,
        ))
        .service(serve(
            "/v1/sessions/{session_id}/jobs/{job_id}/printed",
            "POST",
            web::post(),
            printed,
        ))
        .service(serve("/v1/issuer-key", "GET", web::get(), issuer_key));
}

/// Longest long poll a kiosk may ask for (API.md: `wait_ms=0..10000`).
const MAX_WAIT_MS: u64 = 10_000;
/// A job id that no session ever issues: malformed job ids still go to the session, so
/// that a foreign session answers `unknown_session` before anything about the job.
const NO_SUCH_JOB: JobId = JobId::new(99, [0; 8]);

/// The authenticated kiosk, within its request rate.
fn kiosk(state: &AppState, req: &HttpRequest) -> Result<KioskId, HttpResponse> {
    let kiosk = state
        .kiosks
        .check(header(req, "authorization"))
        .map_err(code)?;
    // With client certificates required, the token's kiosk must be the certificate's.
    crate::tls::check_kiosk_cert(req, &kiosk).map_err(code)?;
    state.admission.check_rate(&kiosk).map_err(code)?;
    Ok(kiosk)
}

/// Counts a create refused because the kiosk holds its limit of open sessions (the
/// owner's shard host decides; the refusal is counted where the kiosk is answered).
fn count_refusal(state: &AppState, reply: &SessionReply) {
    if matches!(reply, SessionReply::Error(e) if e.code == ErrorCode::TooManyRequests) {
        state.admission.refused(Refusal::KioskSessions);
    }
}

fn session_id(req: &HttpRequest) -> Result<SessionId, HttpResponse> {
    req.match_info()
        .get("session_id")
        .and_then(|s| SessionId::parse(s).ok())
        .ok_or_else(|| code(ErrorCode::UnknownSession))
}

fn job_id(req: &HttpRequest) -> JobId {
    req.match_info()
        .get("job_id")
        .and_then(|s| JobId::parse(s).ok())
        .unwrap_or(NO_SUCH_JOB)
}

/// The HTTP answer for a session's reply, wherever the session lives.
fn respond(reply: SessionReply) -> HttpResponse {
    match reply {
        SessionReply::Created(r) => HttpResponse::Created().json(r),
        SessionReply::Authenticated(r) => HttpResponse::Ok().json(r),
        SessionReply::JobCreated(r) => HttpResponse::Accepted().json(r),
        SessionReply::Document(doc) => released(doc),
        SessionReply::Rendering => rendering(),
        SessionReply::Printed(r) => HttpResponse::Ok().json(r),
        SessionReply::Closed => HttpResponse::NoContent().finish(),
        // Answers a node-internal notice that no kiosk request carries.
        SessionReply::Noted => error_response(ErrorCode::Internal.into()),
        SessionReply::Error(e) => error_response(e),
    }
}

/// `200` with a released document and its binding and signature headers.
fn released(doc: Document) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/pdf")
        .insert_header((kofu_proto::api::BINDING_HEADER, doc.binding_b64))
        .insert_header((kofu_proto::api::SIGNATURE_HEADER, doc.signature_b64))
        .body(doc.pdf)
}

fn rendering() -> HttpResponse {
    HttpResponse::Accepted().json(RenderingResponse {
        status: "rendering".to_owned(),
    })
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(resp) => return resp,
        }
    };
}

/// Authenticates the kiosk and parses the session id, in that order (API.md: the
/// credential is checked before anything else).
fn caller(state: &AppState, req: &HttpRequest) -> Result<(KioskId, SessionId), HttpResponse> {
    Ok((kiosk(state, req)?, session_id(req)?))
}

/// Sends `op` to its session; with `wait`, a document still rendering after that long
/// answers `202`.
async fn call(
    state: &AppState,
    (kiosk, session): (KioskId, SessionId),
    op: SessionOp,
    wait: Option<Duration>,
) -> HttpResponse {
    let span = tracing::debug_span!("session_call", session_id = %session, shard = session.shard());
    let recorded = state.recorder.as_ref().map(|r| (r, op.clone()));
    let (reply, receipt) = state
        .router
        .call_receipted(session, kiosk, op, wait)
        .instrument(span)
        .await;
    if let Some((recorder, op)) = recorded
        && let Some(action) = recorded_action(op, &reply, wait)
    {
        recorder.call(session, action);
    }
    super::receipt::with_receipt(respond(reply), receipt)
}

/// The trace step a successful answer stands for (failed answers are not replayed).
fn recorded_action(
    op: SessionOp,
    reply: &SessionReply,
    wait: Option<Duration>,
) -> Option<kofu_proto::trace::Action> {
    use kofu_proto::trace::Action;
    Some(match (op, reply) {
        (SessionOp::Auth { .. }, SessionReply::Authenticated(_)) => Action::Auth { valid: true },
        (SessionOp::Auth { .. }, SessionReply::Error(e)) if e.code == ErrorCode::BadSignature => {
            Action::Auth { valid: false }
        }
        (SessionOp::CreateJob { kind, copies }, SessionReply::JobCreated(_)) => {
            Action::Job { kind, copies }
        }
        (SessionOp::Fetch { .. }, SessionReply::Document(_)) => Action::Fetch {
            wait_ms: wait.map_or(0, |w| w.as_millis() as u32),
        },
        (SessionOp::Printed { .. }, SessionReply::Printed(_)) => Action::Printed,
        (SessionOp::Close, SessionReply::Closed) => Action::Close,
        _ => return None,
    })
}

/// Wraps a handler so that whatever it answers, the request body is consumed first.
macro_rules! with_body {
    ($name:ident, $inner:ident) => {
        async fn $name(
            state: web::Data<AppState>,
            req: HttpRequest,
            mut payload: web::Payload,
        ) -> HttpResponse {
            let resp = $inner(&state, &req, &mut payload).await;
            finish(&req, resp, payload).await
        }
    };
}

with_body!(create_session, create_session_inner);
with_body!(authenticate, authenticate_inner);
with_body!(create_job, create_job_inner);
with_body!(document, document_inner);
with_body!(printed, printed_inner);
with_body!(close_session, close_session_inner);

async fn create_session_inner(
    state: &AppState,
    req: &HttpRequest,
    payload: &mut web::Payload,
) -> HttpResponse {
    let kiosk = tri!(kiosk(state, req));
    let body: CreateSessionRequest = tri!(read_json(req, payload).await.map_err(error_response));
    let card = tri!(CardId::parse(&body.card_id).map_err(|_| code(ErrorCode::InvalidCardId)));
    // A draining node takes no new sessions (API.md, drain); the other nodes of a
    // cluster still do.
    if state.is_draining() {
        return code(ErrorCode::Unavailable);
    }
    let record = match state.registry.record(&card).await {
        Ok(Some(r)) => r,
        Ok(None) => return code(ErrorCode::UnknownCard),
        Err(e) => {
            tracing::warn!(error = %e, "registry read failed");
            return code(ErrorCode::Unavailable);
        }
    };
    if record.card_revoked {
        return code(ErrorCode::CardRevoked);
    }
    let Some(recorder) = &state.recorder else {
        let reply = state.router.create_session(card, record, kiosk).await;
        count_refusal(state, &reply);
        return respond(reply);
    };
    let reply = state
        .router
        .create_session(card.clone(), record, kiosk.clone())
        .await;
    count_refusal(state, &reply);
    let created = match &reply {
        SessionReply::Created(r) => SessionId::parse(&r.session_id).ok(),
        _ => None,
    };
    let in_use = matches!(&reply, SessionReply::Error(e) if e.code == ErrorCode::CardInUse);
    recorder.create(&kiosk, &card, created, in_use);
    respond(reply)
}

async fn authenticate_inner(
    state: &AppState,
    req: &HttpRequest,
    payload: &mut web::Payload,
) -> HttpResponse {
    let who = tri!(caller(state, req));
    let body: AuthRequest = tri!(read_json(req, payload).await.map_err(error_response));
    // Undecodable signatures are bad signatures: they count as an attempt.
    let signature = kofu_proto::b64url_decode(&body.signature)
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .unwrap_or([0u8; 64]);
    call(state, who, SessionOp::Auth { signature }, None).await
}

async fn create_job_inner(
    state: &AppState,
    req: &HttpRequest,
    payload: &mut web::Payload,
) -> HttpResponse {
    let who = tri!(caller(state, req));
    let body: JobRequest = tri!(read_json(req, payload).await.map_err(error_response));
    if !(1..=5).contains(&body.copies) {
        return code(ErrorCode::InvalidRequest);
    }
    let op = SessionOp::CreateJob {
        kind: body.kind,
        copies: body.copies,
    };
    call(state, who, op, None).await
}

fn wait_ms(req: &HttpRequest) -> Result<u64, HttpResponse> {
    let mut wait = 0;
    for pair in req.query_string().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "wait_ms" {
            wait = v
                .parse::<u64>()
                .ok()
                .filter(|w| *w <= MAX_WAIT_MS)
                .ok_or_else(|| code(ErrorCode::InvalidRequest))?;
        }
    }
    Ok(wait)
}

async fn document_inner(state: &AppState, req: &HttpRequest, _: &mut web::Payload) -> HttpResponse {
    let who = tri!(caller(state, req));
    let wait = tri!(wait_ms(req));
    let op = SessionOp::Fetch {
        job: job_id(req),
        wait: wait > 0,
    };
    call(
        state,
        who,
        op,
        (wait > 0).then(|| Duration::from_millis(wait)),
    )
    .await
}

async fn printed_inner(state: &AppState, req: &HttpRequest, _: &mut web::Payload) -> HttpResponse {
    let who = tri!(caller(state, req));
    call(state, who, SessionOp::Printed { job: job_id(req) }, None).await
}

async fn close_session_inner(
    state: &AppState,
    req: &HttpRequest,
    _: &mut web::Payload,
) -> HttpResponse {
    let who = tri!(caller(state, req));
    call(state, who, SessionOp::Close, None).await
}

async fn issuer_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let resp = HttpResponse::Ok()
        .insert_header(ContentType::json())
        .json(&*state.issuer_keys.published());
    finish(&req, resp, payload).await
}
