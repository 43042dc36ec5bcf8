//! BENCH-ONLY: how the conventional design keeps a session in Redis: one MessagePack
//! value per session (`sess:{id}`, idle TTL refreshed on every read), one per document
//! (`doc:{session}:{job}`) and a claim per card (`card:{digest}`), read and written back
//! with plain commands: no fence, no version check, no replica acknowledgement.

use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{HttpResponse, ResponseError};
use kofu_proto::{ApiError, CardId, CertKind, ErrorCode};
use rand::Rng as _;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use super::{DOC_TTL_S, HARD_LIMIT_MS, IDLE_S, Reference, error};

/// A refusal as an actix error, so handlers use `?`.
#[derive(Debug)]
pub(super) struct Refused(pub(super) ApiError);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.code.as_str())
    }
}

impl ResponseError for Refused {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::from_u16(self.0.status())
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR)
    }
    fn error_response(&self) -> HttpResponse {
        error(self.0)
    }
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Refused {
        Refused(e)
    }
}

impl From<ErrorCode> for Refused {
    fn from(code: ErrorCode) -> Refused {
        Refused(ApiError::new(code))
    }
}

pub(super) type Answer = Result<HttpResponse, Refused>;

/// The session value (MessagePack) under `sess:{id}`.
#[derive(Serialize, Deserialize)]
pub(super) struct Session {
    pub(super) kiosk: String,
    /// The holder's position in the registry.
    pub(super) card: u32,
    #[serde(with = "serde_bytes")]
    pub(super) challenge: Vec<u8>,
    pub(super) created_ms: u64,
    pub(super) authenticated: bool,
    pub(super) bad_signatures: u8,
    pub(super) jobs: Vec<Job>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Job {
    pub(super) id: String,
    pub(super) kind: CertKind,
    pub(super) copies: u8,
    pub(super) fee_yen: u32,
    pub(super) serial: String,
    pub(super) delivered: bool,
    pub(super) printed: bool,
}

pub(super) fn session_key(sid: &str) -> String {
    format!("sess:{sid}")
}

pub(super) fn doc_key(sid: &str, job: &str) -> String {
    format!("doc:{sid}:{job}")
}

pub(super) fn card_key(card: &CardId) -> String {
    format!("card:{}", card.digest())
}

/// Deletes the card's claim only if it is still this session's.
const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

pub(super) fn down(_: redis::RedisError) -> Refused {
    ErrorCode::Unavailable.into()
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(super) fn random_id(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rng().fill(&mut raw[..]);
    kofu_proto::b64url(&raw)
}

/// A path's session id, as long as it could be one (no odd bytes in Redis keys).
pub(super) fn valid_id(id: &str) -> Result<(), Refused> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ErrorCode::UnknownSession.into())
    }
}

/// The session `raw` holds, if it belongs to `kiosk` and is within its hard limit.
pub(super) fn session_of(raw: Option<Vec<u8>>, kiosk: &str) -> Result<Session, Refused> {
    let s: Session = raw
        .and_then(|r| rmp_serde::from_slice(&r).ok())
        .ok_or(ErrorCode::UnknownSession)?;
    if s.kiosk != kiosk || now_ms().saturating_sub(s.created_ms) > HARD_LIMIT_MS {
        return Err(ErrorCode::UnknownSession.into());
    }
    Ok(s)
}

/// Reads the session (refreshing its idle timeout).
pub(super) async fn load(
    con: &mut ConnectionManager,
    sid: &str,
    kiosk: &str,
) -> Result<Session, Refused> {
    valid_id(sid)?;
    let raw: Option<Vec<u8>> = redis::cmd("GETEX")
        .arg(session_key(sid))
        .arg("EX")
        .arg(IDLE_S)
        .query_async(con)
        .await
        .map_err(down)?;
    session_of(raw, kiosk)
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Refused> {
    rmp_serde::to_vec(value).map_err(|_| ErrorCode::Internal.into())
}

/// A pipeline whose first command writes the session back (only if it still exists);
/// the caller adds the rest and [`commit`]s.
pub(super) fn put(sid: &str, s: &Session) -> Result<redis::Pipeline, Refused> {
    let mut pipe = redis::pipe();
    pipe.cmd("SET")
        .arg(session_key(sid))
        .arg(encode(s)?)
        .arg("XX")
        .arg("KEEPTTL");
    Ok(pipe)
}

pub(super) async fn commit(
    con: &mut ConnectionManager,
    pipe: &redis::Pipeline,
) -> Result<(), Refused> {
    let replies: Vec<redis::Value> = pipe.query_async(con).await.map_err(down)?;
    match replies.first() {
        Some(redis::Value::Nil) | None => Err(ErrorCode::UnknownSession.into()),
        Some(_) => Ok(()),
    }
}

/// The card is claimed: by this kiosk (its old session closes) or by a session that is
/// gone (the claim is stale), the new session takes the claim; else `409`.
pub(super) async fn take_over(
    con: &mut ConnectionManager,
    claim: &str,
    owner: &str,
    kiosk: &str,
    sid: &str,
) -> Result<(), Refused> {
    let previous: Option<String> = redis::cmd("GET")
        .arg(claim)
        .query_async(con)
        .await
        .map_err(down)?;
    let previous = previous.unwrap_or_default();
    let (k, old) = previous.split_once(' ').unwrap_or(("", ""));
    let alive: bool = if k == kiosk || old.is_empty() {
        false
    } else {
        redis::cmd("EXISTS")
            .arg(session_key(old))
            .query_async(con)
            .await
            .map_err(down)?
    };
    let mut pipe = redis::pipe();
    if alive {
        pipe.cmd("DEL").arg(session_key(sid));
    } else {
        pipe.cmd("DEL")
            .arg(session_key(old))
            .cmd("SET")
            .arg(claim)
            .arg(owner)
            .arg("EX")
            .arg(DOC_TTL_S);
    }
    pipe.query_async::<()>(con).await.map_err(down)?;
    if alive {
        Err(ErrorCode::CardInUse.into())
    } else {
        Ok(())
    }
}

/// Deletes the session, its documents and its claim on the card.
pub(super) async fn end(
    con: &mut ConnectionManager,
    r: &Reference,
    sid: &str,
    s: &Session,
) -> Result<(), Refused> {
    let card = &r.record(s.card)?.card_id;
    let mut pipe = redis::pipe();
    pipe.cmd("DEL").arg(session_key(sid));
    for j in &s.jobs {
        pipe.cmd("DEL").arg(doc_key(sid, &j.id));
    }
    pipe.cmd("EVAL")
        .arg(RELEASE)
        .arg(1)
        .arg(card_key(card))
        .arg(format!("{} {sid}", s.kiosk));
    pipe.query_async::<()>(con).await.map_err(down)
}
