//! The kiosk protocol v1 (API.md) as types: request and response bodies, and the one
//! error vocabulary with its HTTP statuses.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::CertKind;

/// `POST /v1/sessions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    pub card_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CreateSessionResponse {
    pub session_id: String,
    pub challenge: String,
    pub expires_in_s: u64,
}

/// `POST /v1/sessions/{id}/auth`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthRequest {
    pub signature: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthResponse {
    pub holder: Holder,
    pub municipality: MunicipalityInfo,
    pub kinds: Vec<KindOffer>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub display_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MunicipalityInfo {
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct KindOffer {
    pub kind: CertKind,
    pub fee_yen: u32,
}

/// `POST /v1/sessions/{id}/jobs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    pub kind: CertKind,
    pub copies: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobResponse {
    pub job_id: String,
    pub fee_yen: u32,
}

/// `202` of the document long poll.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RenderingResponse {
    pub status: String,
}

/// `POST .../printed`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PrintedResponse {
    pub serial: String,
    pub charged_yen: u32,
}

/// `GET /v1/issuer-key`: the key signing now (`public_key`, `kid`) and every key a
/// kiosk should trust (`keys`: the current one, the next one before it signs, retired
/// ones while their documents may still be in flight).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IssuerKeyResponse {
    pub alg: String,
    pub public_key: String,
    pub kid: String,
    pub keys: Vec<PublishedKey>,
}

/// One entry of `GET /v1/issuer-key`'s `keys`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishedKey {
    pub kid: String,
    pub public_key: String,
    pub status: KeyStatus,
}

/// Where an issuer key is in its rotation.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Signs the documents released now.
    Current,
    /// Published before it signs, so kiosks trust it when the nodes switch to it.
    Next,
    /// Signed before the last rotation; documents it signed may still be in flight.
    Retired,
}

/// Response headers carrying the binding and the issuer's signature over it.
pub const BINDING_HEADER: &str = "Kofu-Binding";
pub const SIGNATURE_HEADER: &str = "Kofu-Signature";

/// Every error code of the protocol. The code decides the HTTP status, so no handler
/// can answer a code with the wrong status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidCardId,
    UnauthorizedKiosk,
    Unauthorized,
    BadSignature,
    NotAuthenticated,
    CardRevoked,
    UnknownCard,
    UnknownSession,
    UnknownJob,
    NotFound,
    MethodNotAllowed,
    CardInUse,
    AlreadyAuthenticated,
    NotDelivered,
    JobVoided,
    PayloadTooLarge,
    UnsupportedMediaType,
    NotIssuable,
    SessionLocked,
    TooManyJobs,
    Unavailable,
    Internal,
    Forbidden,
    TooManyRequests,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest | ErrorCode::InvalidCardId => 400,
            ErrorCode::UnauthorizedKiosk
            | ErrorCode::Unauthorized
            | ErrorCode::BadSignature
            | ErrorCode::NotAuthenticated => 401,
            ErrorCode::CardRevoked | ErrorCode::Forbidden => 403,
            ErrorCode::UnknownCard
            | ErrorCode::UnknownSession
            | ErrorCode::UnknownJob
            | ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::CardInUse | ErrorCode::AlreadyAuthenticated | ErrorCode::NotDelivered => 409,
            ErrorCode::JobVoided => 410,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::NotIssuable => 422,
            ErrorCode::SessionLocked => 423,
            ErrorCode::TooManyJobs | ErrorCode::TooManyRequests => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidCardId => "invalid_card_id",
            ErrorCode::UnauthorizedKiosk => "unauthorized_kiosk",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::NotAuthenticated => "not_authenticated",
            ErrorCode::CardRevoked => "card_revoked",
            ErrorCode::UnknownCard => "unknown_card",
            ErrorCode::UnknownSession => "unknown_session",
            ErrorCode::UnknownJob => "unknown_job",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::CardInUse => "card_in_use",
            ErrorCode::AlreadyAuthenticated => "already_authenticated",
            ErrorCode::NotDelivered => "not_delivered",
            ErrorCode::JobVoided => "job_voided",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::NotIssuable => "not_issuable",
            ErrorCode::SessionLocked => "session_locked",
            ErrorCode::TooManyJobs => "too_many_jobs",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooManyRequests => "too_many_requests",
        }
    }

    /// A message for a person at the kiosk or in the operations room. Fixed text per
    /// code, so no request data can ever leak into an error.
    pub fn default_message(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "the request is malformed",
            ErrorCode::InvalidCardId => "the card id must be 16 upper-case hexadecimal digits",
            ErrorCode::UnauthorizedKiosk => "missing or invalid kiosk credential",
            ErrorCode::Unauthorized => "missing or invalid admin credential",
            ErrorCode::BadSignature => "the card signature does not verify",
            ErrorCode::NotAuthenticated => "the session is not authenticated yet",
            ErrorCode::CardRevoked => "the card's certificate is revoked",
            ErrorCode::UnknownCard => "no such card in the registry",
            ErrorCode::UnknownSession => "no such session",
            ErrorCode::UnknownJob => "no such job in this session",
            ErrorCode::NotFound => "no such resource",
            ErrorCode::MethodNotAllowed => "method not allowed on this resource",
            ErrorCode::CardInUse => "the card has an open session at another kiosk",
            ErrorCode::AlreadyAuthenticated => "the session is already authenticated",
            ErrorCode::NotDelivered => "the document has not been delivered yet",
            ErrorCode::JobVoided => "the job was voided; create a new job",
            ErrorCode::PayloadTooLarge => "the request body exceeds 16 KiB",
            ErrorCode::UnsupportedMediaType => "the request body must be JSON",
            ErrorCode::NotIssuable => "the certificate cannot be issued for this holder",
            ErrorCode::SessionLocked => "too many bad signatures; the session is closed",
            ErrorCode::TooManyJobs => "a session may create at most 5 jobs",
            ErrorCode::Unavailable => "no safe owner for this session right now; retry later",
            ErrorCode::Internal => "internal error",
            ErrorCode::Forbidden => "the admin credential lacks the role this endpoint needs",
            ErrorCode::TooManyRequests => {
                "this kiosk is over its request rate or open-session limit; retry later"
            }
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a kind cannot be issued to a holder now: the `reason` of `422 not_issuable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum NotIssuable {
    #[error("record_restricted")]
    RecordRestricted,
    #[error("seal_not_registered")]
    SealNotRegistered,
    #[error("seal_revoked")]
    SealRevoked,
    #[error("no_tax_record")]
    NoTaxRecord,
}

impl NotIssuable {
    pub const ALL: [NotIssuable; 4] = [
        NotIssuable::RecordRestricted,
        NotIssuable::SealNotRegistered,
        NotIssuable::SealRevoked,
        NotIssuable::NoTaxRecord,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotIssuable::RecordRestricted => "record_restricted",
            NotIssuable::SealNotRegistered => "seal_not_registered",
            NotIssuable::SealRevoked => "seal_revoked",
            NotIssuable::NoTaxRecord => "no_tax_record",
        }
    }
}

/// The protocol's one error value: decided by a session or a handler, carried between
/// nodes as it is, and serialized as the error JSON of API.md (`{"error", "message",
/// "attempts_left"?, "reason"?}`) whose message is the fixed text of its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "ErrorBody", from = "ErrorBody")]
pub struct ApiError {
    pub code: ErrorCode,
    /// Signatures left after a `bad_signature`.
    pub attempts_left: Option<u8>,
    /// Why a `not_issuable` document may not be issued.
    pub reason: Option<NotIssuable>,
}

impl ApiError {
    pub const fn new(code: ErrorCode) -> ApiError {
        ApiError {
            code,
            attempts_left: None,
            reason: None,
        }
    }

    pub const fn bad_signature(attempts_left: u8) -> ApiError {
        ApiError {
            attempts_left: Some(attempts_left),
            ..ApiError::new(ErrorCode::BadSignature)
        }
    }

    pub const fn not_issuable(reason: NotIssuable) -> ApiError {
        ApiError {
            reason: Some(reason),
            ..ApiError::new(ErrorCode::NotIssuable)
        }
    }

    /// The HTTP status, decided by the code alone.
    pub fn status(self) -> u16 {
        self.code.status()
    }

    pub fn message(self) -> &'static str {
        self.code.default_message()
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> ApiError {
        ApiError::new(code)
    }
}

/// The serialized shape of an [`ApiError`]: the error body of every non-2xx answer.
#[derive(Serialize, Deserialize)]
struct ErrorBody {
    error: ErrorCode,
    message: Cow<'static, str>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    attempts_left: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    reason: Option<NotIssuable>,
}

impl From<ApiError> for ErrorBody {
    fn from(e: ApiError) -> ErrorBody {
        ErrorBody {
            error: e.code,
            message: Cow::Borrowed(e.message()),
            attempts_left: e.attempts_left,
            reason: e.reason,
        }
    }
}

impl From<ErrorBody> for ApiError {
    // The message is the code's fixed text: nothing to keep from it.
    fn from(b: ErrorBody) -> ApiError {
        ApiError {
            code: b.error,
            attempts_left: b.attempts_left,
            reason: b.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_shape() {
        let e = ApiError::bad_signature(2);
        let json = serde_json::to_value(e).expect("serialize");
        assert_eq!(json["error"], "bad_signature");
        assert_eq!(json["attempts_left"], 2);
        assert!(json.get("reason").is_none());
        assert_eq!(json["message"], ErrorCode::BadSignature.default_message());
        let refused = serde_json::to_value(ApiError::not_issuable(NotIssuable::SealRevoked))
            .expect("serialize");
        assert_eq!(refused["reason"], "seal_revoked");
        assert!(refused.get("attempts_left").is_none());
        for e in [e, ApiError::not_issuable(NotIssuable::NoTaxRecord)] {
            let back: ApiError =
                serde_json::from_value(serde_json::to_value(e).expect("serialize")).expect("parse");
            assert_eq!(back, e);
        }
    }

    #[test]
    fn reason_names_agree_with_serde() {
        for r in NotIssuable::ALL {
            let json = serde_json::to_string(&r).expect("serialize");
            assert_eq!(json, format!("\"{}\"", r.as_str()));
            assert_eq!(r.to_string(), r.as_str());
        }
    }

    #[test]
    fn code_names_agree_with_serde() {
        for code in [
            ErrorCode::InvalidCardId,
            ErrorCode::NotIssuable,
            ErrorCode::TooManyJobs,
            ErrorCode::Forbidden,
            ErrorCode::TooManyRequests,
        ] {
            let json = serde_json::to_string(&code).expect("serialize");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn requests_reject_unknown_fields() {
        assert!(serde_json::from_str::<CreateSessionRequest>(r#"{"card_id":"A","x":1}"#).is_err());
        assert!(serde_json::from_str::<JobRequest>(r#"{"kind":"tax","copies":1}"#).is_ok());
        assert!(serde_json::from_str::<JobRequest>(r#"{"kind":"taxes","copies":1}"#).is_err());
    }
}
