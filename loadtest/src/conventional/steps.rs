//! BENCH-ONLY: the kiosk endpoints of the conventional design. Each request reads its
//! session from Redis, decides, and writes it back in one pipeline with whatever else
//! changed (the document, a print record): no owner, no fence, no replica wait.

use actix_web::{HttpRequest, HttpResponse, web};
use ed25519_dalek::{Signature, VerifyingKey};
use kofu_proto::api::{
    AuthRequest, AuthResponse, CreateSessionRequest, CreateSessionResponse, Holder, JobRequest,
    JobResponse, KindOffer, MunicipalityInfo, PrintedResponse,
};
use kofu_proto::{ApiError, CardId, ErrorCode, MAX_AUTH_ATTEMPTS, MAX_JOBS_PER_SESSION};
use rand::Rng as _;
use redis::aio::ConnectionManager;

use super::pdf::{Doc, Order, issue};
use super::store::{
    Answer, Job, Refused, Session, card_key, commit, doc_key, down, encode, end, load, now_ms, put,
    random_id, session_key, session_of, take_over, valid_id,
};
use super::{DOC_TTL_S, IDLE_S, Worker};

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/sessions", web::post().to(create))
        .route("/v1/sessions/{sid}/auth", web::post().to(auth))
        .route("/v1/sessions/{sid}/jobs", web::post().to(job))
        .route(
            "/v1/sessions/{sid}/jobs/{job}/document",
            web::get().to(document),
        )
        .route(
            "/v1/sessions/{sid}/jobs/{job}/printed",
            web::post().to(printed),
        )
        .route("/v1/sessions/{sid}", web::delete().to(close));
}

async fn create(
    w: web::Data<Worker>,
    req: HttpRequest,
    body: web::Json<CreateSessionRequest>,
) -> Answer {
    let r = &w.reference;
    let kiosk = r.kiosk(&req)?;
    let card = CardId::parse(&body.card_id).map_err(|_| ErrorCode::InvalidCardId)?;
    let index = r.card(&card).ok_or(ErrorCode::UnknownCard)?;
    if r.record(index)?.card_revoked {
        return Err(ErrorCode::CardRevoked.into());
    }
    let sid = random_id(16);
    let mut challenge = vec![0u8; 32];
    rand::rng().fill(&mut challenge[..]);
    let session = Session {
        kiosk: kiosk.clone(),
        card: index,
        challenge,
        created_ms: now_ms(),
        authenticated: false,
        bad_signatures: 0,
        jobs: Vec::new(),
    };
    let mut con = w.redis().await?;
    let (claim, owner) = (card_key(&card), format!("{kiosk} {sid}"));
    let (claimed, ()): (Option<String>, ()) = redis::pipe()
        .cmd("SET")
        .arg(&claim)
        .arg(&owner)
        .arg("NX")
        .arg("EX")
        .arg(DOC_TTL_S)
        .cmd("SET")
        .arg(session_key(&sid))
        .arg(encode(&session)?)
        .arg("EX")
        .arg(IDLE_S)
        .query_async(&mut con)
        .await
        .map_err(down)?;
    if claimed.is_none() {
        take_over(&mut con, &claim, &owner, &kiosk, &sid).await?;
    }
    Ok(HttpResponse::Created().json(CreateSessionResponse {
        session_id: sid,
        challenge: kofu_proto::b64url(&session.challenge),
        expires_in_s: IDLE_S,
    }))
}

/// The calling kiosk, a Redis connection and the kiosk's session `sid`.
async fn open(
    w: &Worker,
    req: &HttpRequest,
    sid: &str,
) -> Result<(String, ConnectionManager, Session), Refused> {
    let kiosk = w.reference.kiosk(req)?;
    let mut con = w.redis().await?;
    let s = load(&mut con, sid, &kiosk).await?;
    Ok((kiosk, con, s))
}

async fn auth(
    w: web::Data<Worker>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<AuthRequest>,
) -> Answer {
    let r = &w.reference;
    let sid = path.into_inner();
    let (kiosk, mut con, mut s) = open(&w, &req, &sid).await?;
    if s.authenticated {
        return Err(ErrorCode::AlreadyAuthenticated.into());
    }
    let record = r.record(s.card)?;
    let msg = kofu_proto::auth_message(&sid, &kiosk, &s.challenge);
    let signature = kofu_proto::b64url_decode(&body.signature)
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b));
    let key = VerifyingKey::from_bytes(&record.card_public_key).ok();
    let good = signature
        .zip(key)
        .is_some_and(|(sig, key)| key.verify_strict(&msg, &sig).is_ok());
    if !good {
        s.bad_signatures += 1;
        let left = MAX_AUTH_ATTEMPTS.saturating_sub(s.bad_signatures);
        if left == 0 {
            end(&mut con, r, &sid, &s).await?;
            return Err(ErrorCode::SessionLocked.into());
        }
        commit(&mut con, &put(&sid, &s)?).await?;
        return Err(ApiError::bad_signature(left).into());
    }
    s.authenticated = true;
    commit(&mut con, &put(&sid, &s)?).await?;
    Ok(HttpResponse::Ok().json(AuthResponse {
        holder: Holder {
            display_name: record.display_name(),
        },
        municipality: MunicipalityInfo {
            code: record.municipality.code.clone(),
            name: record.municipality.name.clone(),
        },
        kinds: (record.issuable_kinds().into_iter())
            .map(|kind| KindOffer {
                kind,
                fee_yen: kind.fee_yen(),
            })
            .collect(),
    }))
}

/// Renders at once, in the request: the document is in Redis before the `202`.
async fn job(
    w: web::Data<Worker>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<JobRequest>,
) -> Answer {
    let r = &w.reference;
    let sid = path.into_inner();
    let (kiosk, mut con, mut s) = open(&w, &req, &sid).await?;
    if !s.authenticated {
        return Err(ErrorCode::NotAuthenticated.into());
    }
    if !(1..=5).contains(&body.copies) {
        return Err(ErrorCode::InvalidRequest.into());
    }
    if s.jobs.len() >= MAX_JOBS_PER_SESSION {
        return Err(ErrorCode::TooManyJobs.into());
    }
    let record = r.record(s.card)?;
    record.issuable(body.kind).map_err(ApiError::not_issuable)?;
    let (job_id, serial) = (random_id(8), format!("C-{}", random_id(9)));
    let doc = issue(
        r,
        record,
        &Order {
            session_id: &sid,
            kiosk_id: &kiosk,
            kind: body.kind,
            copies: body.copies,
            serial: &serial,
        },
    )?;
    let fee_yen = body.kind.fee_yen() * u32::from(body.copies);
    s.jobs.push(Job {
        id: job_id.clone(),
        kind: body.kind,
        copies: body.copies,
        fee_yen,
        serial,
        delivered: false,
        printed: false,
    });
    let mut pipe = put(&sid, &s)?;
    pipe.cmd("SET")
        .arg(doc_key(&sid, &job_id))
        .arg(encode(&doc)?)
        .arg("EX")
        .arg(DOC_TTL_S);
    commit(&mut con, &pipe).await?;
    Ok(HttpResponse::Accepted().json(JobResponse { job_id, fee_yen }))
}

/// `wait_ms` of the query, `0..=10000`: the document is ready once the job exists, so
/// the value only has to be valid.
fn wait_ms(req: &HttpRequest) -> Result<(), Refused> {
    for pair in req.query_string().split('&') {
        if let Some(v) = pair.strip_prefix("wait_ms=") {
            v.parse::<u32>()
                .ok()
                .filter(|&ms| ms <= kofu_kiosk::MAX_WAIT_MS)
                .ok_or(ErrorCode::InvalidRequest)?;
        }
    }
    Ok(())
}

async fn document(
    w: web::Data<Worker>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Answer {
    let r = &w.reference;
    let kiosk = r.kiosk(&req)?;
    wait_ms(&req)?;
    let (sid, job_id) = path.into_inner();
    valid_id(&sid)?;
    let mut con = w.redis().await?;
    let (raw, doc): (Option<Vec<u8>>, Option<Vec<u8>>) = redis::pipe()
        .cmd("GETEX")
        .arg(session_key(&sid))
        .arg("EX")
        .arg(IDLE_S)
        .cmd("GET")
        .arg(doc_key(&sid, &job_id))
        .query_async(&mut con)
        .await
        .map_err(down)?;
    let mut s = session_of(raw, &kiosk)?;
    let j = (s.jobs.iter().position(|j| j.id == job_id)).ok_or(ErrorCode::UnknownJob)?;
    let doc: Doc =
        (doc.and_then(|d| rmp_serde::from_slice(&d).ok())).ok_or(ErrorCode::JobVoided)?;
    // Released only if the record still allows it.
    (r.record(s.card)?.issuable(s.jobs[j].kind)).map_err(ApiError::not_issuable)?;
    if !s.jobs[j].delivered {
        s.jobs[j].delivered = true;
        commit(&mut con, &put(&sid, &s)?).await?;
    }
    Ok(HttpResponse::Ok()
        .content_type("application/pdf")
        .insert_header((kofu_proto::api::BINDING_HEADER, doc.binding))
        .insert_header((kofu_proto::api::SIGNATURE_HEADER, doc.signature))
        .body(doc.pdf))
}

async fn printed(
    w: web::Data<Worker>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Answer {
    let (sid, job_id) = path.into_inner();
    let (kiosk, mut con, mut s) = open(&w, &req, &sid).await?;
    let j = (s.jobs.iter().position(|j| j.id == job_id)).ok_or(ErrorCode::UnknownJob)?;
    if !s.jobs[j].delivered {
        return Err(ErrorCode::NotDelivered.into());
    }
    if !s.jobs[j].printed {
        s.jobs[j].printed = true;
        let job = &s.jobs[j];
        let mut pipe = put(&sid, &s)?;
        // The billing record, capped: a bench runs millions of sessions.
        pipe.cmd("XADD")
            .arg("prints")
            .arg("MAXLEN")
            .arg("~")
            .arg(100_000)
            .arg("*")
            .arg("serial")
            .arg(&job.serial)
            .arg("kiosk")
            .arg(&kiosk)
            .arg("charged_yen")
            .arg(job.fee_yen);
        commit(&mut con, &pipe).await?;
    }
    let job = &s.jobs[j];
    Ok(HttpResponse::Ok().json(PrintedResponse {
        serial: job.serial.clone(),
        charged_yen: job.fee_yen,
    }))
}

async fn close(w: web::Data<Worker>, req: HttpRequest, path: web::Path<String>) -> Answer {
    let kiosk = w.reference.kiosk(&req)?;
    let sid = path.into_inner();
    valid_id(&sid)?;
    let mut con = w.redis().await?;
    let raw: Option<Vec<u8>> = redis::cmd("GET")
        .arg(session_key(&sid))
        .query_async(&mut con)
        .await
        .map_err(down)?;
    // Past its hard limit a session is closed all the same: closing is idempotent.
    if let Some(s) = raw.and_then(|r| rmp_serde::from_slice::<Session>(&r).ok()) {
        if s.kiosk != kiosk {
            return Err(ErrorCode::UnknownSession.into());
        }
        end(&mut con, &w.reference, &sid, &s).await?;
    }
    Ok(HttpResponse::NoContent().finish())
}
