//! A request to a session and its answer, as one type each: the HTTP layer builds the
//! op, the router carries it to the session's actor (here or, in a frame, on the node
//! owning the shard), and the reply comes back the same way to be turned into HTTP.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::api::{ApiError, AuthResponse, CreateSessionResponse, JobResponse, PrintedResponse};
use crate::{CertKind, ErrorCode, JobId};

/// What a kiosk asks of an open session (API.md endpoints 2 to 6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionOp {
    /// The card's signature over the challenge, unchecked: the session verifies it (an
    /// undecodable one arrives as zeros and counts as a bad signature).
    Auth {
        #[serde(with = "serde_bytes")]
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
    /// Node-internal, never from a kiosk: the node that forwarded an authentication got
    /// its `200` back while the kiosk's request still waited for it, so the kiosk has
    /// it, and a repeat is the usual `409 already_authenticated`. Until this notice
    /// arrives the owner answers a repeat as done (the answer may have been lost on the
    /// link or left behind by a forwarding node that gave up).
    AuthDelivered,
}

/// A session's answer, ready to be turned into the kiosk's HTTP response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionReply {
    Created(CreateSessionResponse),
    Authenticated(AuthResponse),
    JobCreated(JobResponse),
    Document(Document),
    /// Still rendering (`202`), also when a long poll ends before the document.
    Rendering,
    Printed(PrintedResponse),
    Closed,
    /// The answer to `AuthDelivered`, which no kiosk sends.
    Noted,
    Error(ApiError),
}

impl From<ApiError> for SessionReply {
    fn from(e: ApiError) -> SessionReply {
        SessionReply::Error(e)
    }
}

impl From<ErrorCode> for SessionReply {
    fn from(code: ErrorCode) -> SessionReply {
        SessionReply::Error(code.into())
    }
}

/// A released certificate: the PDF and its two headers, `Kofu-Binding` (base64url of
/// the binding JSON) and `Kofu-Signature` (base64url of the issuer's signature over
/// those bytes). The renderer makes it, the session hands it out, a frame carries it
/// between nodes and the HTTP layer sends it; `Bytes` shares the body along the way
/// instead of copying it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub pdf: Bytes,
    pub binding_b64: String,
    pub signature_b64: String,
}

impl std::fmt::Debug for Document {
    // The body holds names and addresses (I6): its size only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("bytes", &self.pdf.len())
            .finish_non_exhaustive()
    }
}
