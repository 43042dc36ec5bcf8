//! What a kiosk can learn from one request: the answer it wanted, an API error (status,
//! error body, `Retry-After`), or no answer at all, in which case the request may or may
//! not have happened (API.md: a retry converges). A [`Record`] of every request is
//! available to whoever wants a history of them.

use std::time::{Duration, Instant};

use kofu_proto::{ApiError, ErrorCode};

/// The protocol step a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Create,
    Auth,
    Job,
    Document,
    Printed,
    Close,
    IssuerKey,
    /// A request built by hand (raw requests, admin calls).
    Other,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Create => "create",
            Step::Auth => "auth",
            Step::Job => "job",
            Step::Document => "document",
            Step::Printed => "printed",
            Step::Close => "close",
            Step::IssuerKey => "issuer_key",
            Step::Other => "other",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a step did not give the answer it is for.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The node answered with an error status.
    #[error("{0}")]
    Api(ErrorAnswer),
    /// No (complete) answer: connection refused or reset, timeout. The request may have
    /// been carried out.
    #[error("{0}")]
    NoAnswer(NoAnswer),
    /// An answer outside the protocol: an unexpected success status or an unreadable body.
    #[error("status {status}: {what}")]
    Malformed { status: u16, what: &'static str },
}

impl CallError {
    /// The HTTP status, if there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Api(e) => Some(e.status),
            CallError::Malformed { status, .. } => Some(*status),
            CallError::NoAnswer(_) => None,
        }
    }

    /// The API error code, if the node answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CallError::Api(e) => e.code(),
            _ => None,
        }
    }

    /// Whether repeating the same call is what a kiosk should do: `503 unavailable` or
    /// no answer (API.md: a retry converges, never does anything twice).
    pub fn is_retryable(&self) -> bool {
        match self {
            // Refused by admission control: nothing was done, and it may pass later.
            CallError::Api(e) => e.status == 503 || e.is(ErrorCode::TooManyRequests),
            CallError::NoAnswer(_) => true,
            CallError::Malformed { .. } => false,
        }
    }

    /// Whether the node answered `code` (with its status).
    pub fn is(&self, code: ErrorCode) -> bool {
        self.api().is_some_and(|e| e.is(code))
    }

    /// The API error, if this is one.
    pub fn api(&self) -> Option<&ErrorAnswer> {
        match self {
            CallError::Api(e) => Some(e),
            _ => None,
        }
    }
}

/// An error answer as a kiosk sees it: the status, the protocol's error when the body
/// kept to API.md, and `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorAnswer {
    pub status: u16,
    /// `None` when the body is not an API.md error body.
    pub body: Option<ApiError>,
    /// `Retry-After` in seconds, when present and numeric.
    pub retry_after: Option<Duration>,
}

impl ErrorAnswer {
    pub(crate) fn parse(status: u16, retry_after: Option<&str>, body: &[u8]) -> ErrorAnswer {
        ErrorAnswer {
            status,
            body: serde_json::from_slice(body).ok(),
            retry_after: retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        }
    }

    pub fn code(&self) -> Option<ErrorCode> {
        self.body.map(|b| b.code)
    }

    /// The error code as text; `no_error_body` when the answer had none.
    pub fn code_str(&self) -> &'static str {
        self.code().map_or("no_error_body", ErrorCode::as_str)
    }

    /// Whether this is `code` (with its status).
    pub fn is(&self, code: ErrorCode) -> bool {
        self.status == code.status() && self.code() == Some(code)
    }

    pub fn attempts_left(&self) -> Option<u8> {
        self.body.and_then(|b| b.attempts_left)
    }

    pub fn reason(&self) -> Option<&'static str> {
        self.body
            .and_then(|b| b.reason)
            .map(kofu_proto::NotIssuable::as_str)
    }
}

impl std::fmt::Display for ErrorAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "status {} {}", self.status, self.code_str())
    }
}

/// No answer to a request, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no answer: {detail}")]
pub struct NoAnswer {
    pub timeout: bool,
    /// The transport error and its causes (a URL at most, never a request body).
    pub detail: String,
}

impl NoAnswer {
    pub(crate) fn from_reqwest(err: &reqwest::Error) -> NoAnswer {
        // The top-level text is generic ("error sending request"); the cause is below.
        let mut detail = format!("transport error: {err}");
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            detail.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        NoAnswer {
            timeout: err.is_timeout(),
            detail,
        }
    }
}

/// One request as a history of requests needs it (a checker over a fault run, say):
/// which step, which node, when, how long, and what came back.
#[derive(Debug, Clone)]
pub struct Record {
    pub step: Step,
    /// Index into the client's targets; `None` for a request to an absolute URL.
    pub target: Option<usize>,
    pub started: Instant,
    pub elapsed: Duration,
    /// `None`: no answer.
    pub status: Option<u16>,
    /// The error code of an error answer that carried one.
    pub code: Option<ErrorCode>,
    /// No answer because the request timed out.
    pub timeout: bool,
}

/// Called after every request of a client that has one.
pub type Observer = std::sync::Arc<dyn Fn(&Record) + Send + Sync>;
