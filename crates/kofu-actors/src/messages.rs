//! The messages between the HTTP layer, shard hosts and sessions. Replies travel on a
//! oneshot inside the message, so a session answers the waiting request directly.

use std::sync::Arc;

use actix::Message;
use kofu_core::records::ResidentRecord;
use kofu_proto::api::{AuthResponse, CreateSessionResponse, JobResponse, PrintedResponse};
use kofu_proto::{CardId, CertKind, ErrorCode, JobId, KioskId, SessionId};
use kofu_render::Document;
use tokio::sync::oneshot;

/// An API error as an actor decides it; the HTTP layer turns it into the error JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub attempts_left: Option<u8>,
    pub reason: Option<&'static str>,
}

impl ApiError {
    /// A write refused by the fence: nothing happened here, and the shard's new owner
    /// can take the request (the router retries it there, never the kiosk's problem).
    pub const MOVED: ApiError = ApiError {
        code: ErrorCode::Unavailable,
        attempts_left: None,
        reason: Some("moved"),
    };
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> ApiError {
        ApiError {
            code,
            attempts_left: None,
            reason: None,
        }
    }
}

#[derive(Debug, Clone)]
pub enum SessionOp {
    Auth {
        signature: [u8; 64],
    },
    CreateJob {
        kind: CertKind,
        copies: u8,
    },
    /// `wait`: park the request while the job renders instead of answering `Rendering`.
    Fetch {
        job: JobId,
        wait: bool,
    },
    Printed {
        job: JobId,
    },
    Close,
}

#[derive(Debug)]
pub enum SessionReply {
    Created(CreateSessionResponse),
    Authenticated(AuthResponse),
    JobCreated(JobResponse),
    Document(Arc<Document>),
    /// A document released by another node, as it came over the wire.
    Forwarded(ForwardedDocument),
    Rendering,
    Printed(PrintedResponse),
    Closed,
    Error(ApiError),
    /// This node does not (or no longer) act for the shard: nothing was done, and the
    /// router tries the owner again (never sent to a kiosk).
    Moving,
}

/// The three parts of a released document the kiosk receives.
#[derive(Debug, Clone)]
pub struct ForwardedDocument {
    pub pdf: Vec<u8>,
    pub binding_b64: String,
    pub signature_b64: String,
}

impl From<ApiError> for SessionReply {
    fn from(e: ApiError) -> SessionReply {
        if e == ApiError::MOVED {
            SessionReply::Moving
        } else {
            SessionReply::Error(e)
        }
    }
}

impl From<ErrorCode> for SessionReply {
    fn from(code: ErrorCode) -> SessionReply {
        SessionReply::Error(code.into())
    }
}

pub type ReplyTo = oneshot::Sender<SessionReply>;

/// A request for an existing session, routed by its shard.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionCall {
    pub session: SessionId,
    pub kiosk: KioskId,
    pub op: SessionOp,
    pub reply: ReplyTo,
}

/// A card was inserted; the registry already knows it and it is not revoked.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CreateSession {
    pub card: CardId,
    /// The card's Ed25519 public key from its record.
    pub card_key: [u8; 32],
    /// The record as the receiving node just read it, when the session starts on that
    /// node: authentication then needs no second read.
    pub record: Option<Arc<ResidentRecord>>,
    pub kiosk: KioskId,
    pub reply: ReplyTo,
}

/// A session ended and persisted its end; the host forgets it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionEnded {
    pub session: SessionId,
    pub kiosk: KioskId,
    pub card_digest: [u8; 32],
}

/// Stop acting for the session without ending it (its shard moves or was lost): the
/// snapshot and card lock stay for the next owner. Handled after any transition in
/// flight, since a session waits for its store writes before reading its mailbox.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach;

/// Messages that carry their reply channel, so a refused send can still be answered.
pub trait Replying {
    fn into_reply(self) -> ReplyTo;
}

impl Replying for SessionCall {
    fn into_reply(self) -> ReplyTo {
        self.reply
    }
}

impl Replying for CreateSession {
    fn into_reply(self) -> ReplyTo {
        self.reply
    }
}
