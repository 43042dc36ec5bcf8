//! One kiosk's side of the protocol (API.md endpoints 1–7): each step sends one request
//! with the kiosk's credential and returns what it means, typed; [`Raw`] sends the same
//! requests and returns the answers untouched.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kofu_proto::CertKind;
use kofu_proto::api::{
    AuthResponse, BINDING_HEADER, CreateSessionResponse, JobResponse, PrintedResponse,
    SIGNATURE_HEADER,
};
use kofu_proto::verify::IssuerKeys;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Serialize;

use crate::client::{Client, Exchange};
use crate::fixtures::{Card, KioskCred};
use crate::outcome::{CallError, Step};
use crate::raw::Resp;

/// The longest long poll API.md allows.
pub const MAX_WAIT_MS: u32 = 10_000;
/// Between polls that do not wait on the node (`wait_ms=0`).
const POLL_PAUSE: Duration = Duration::from_millis(50);

/// A kiosk: its credential on a [`Client`]. Cheap to clone.
#[derive(Clone)]
pub struct Kiosk {
    client: Client,
    kiosk_id: Arc<str>,
    token: Arc<str>,
    /// `Bearer <token>`, built once; `None` if the token cannot be a header value (the
    /// node then answers `401`, as it should).
    auth: Option<HeaderValue>,
}

impl std::fmt::Debug for Kiosk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kiosk({}, {:?})", self.kiosk_id, self.client.route())
    }
}

/// A released document as the kiosk received it.
#[derive(Clone)]
pub struct Released {
    pub body: Bytes,
    binding: Option<HeaderValue>,
    signature: Option<HeaderValue>,
    content_type: Option<HeaderValue>,
}

impl std::fmt::Debug for Released {
    // The body is a certificate full of personal data: its size only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Released({} bytes)", self.body.len())
    }
}

impl Released {
    fn from_exchange(mut x: Exchange) -> Released {
        Released {
            binding: x.headers.remove(BINDING_HEADER),
            signature: x.headers.remove(SIGNATURE_HEADER),
            content_type: x.headers.remove(CONTENT_TYPE),
            body: x.body,
        }
    }

    /// The document of a raw `200` answer; `None` for any other status.
    pub fn from_resp(r: &Resp) -> Option<Released> {
        (r.status == 200).then(|| Released {
            body: r.body.clone(),
            binding: r.headers.get(BINDING_HEADER).cloned(),
            signature: r.headers.get(SIGNATURE_HEADER).cloned(),
            content_type: r.headers.get(CONTENT_TYPE).cloned(),
        })
    }

    /// `Kofu-Binding`, if present and text.
    pub fn binding(&self) -> Option<&str> {
        self.binding.as_ref().and_then(|v| v.to_str().ok())
    }

    /// `Kofu-Signature`, if present and text.
    pub fn signature(&self) -> Option<&str> {
        self.signature.as_ref().and_then(|v| v.to_str().ok())
    }

    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_ref().and_then(|v| v.to_str().ok())
    }
}

/// What a document request gave.
#[derive(Debug, Clone)]
pub enum Fetched {
    Ready(Released),
    /// `202`: still rendering when the wait ended.
    Rendering,
}

/// How to wait for a document: each request waits up to `wait_ms` on the node, and
/// requests repeat while it is rendering, until `budget` has passed.
#[derive(Debug, Clone, Copy)]
pub struct LongPoll {
    pub wait_ms: u32,
    pub budget: Duration,
}

impl LongPoll {
    /// One request with the longest wait and no repetition.
    pub const ONCE: LongPoll = LongPoll {
        wait_ms: MAX_WAIT_MS,
        budget: Duration::ZERO,
    };
}

#[derive(Serialize)]
struct CreateBody<'a> {
    card_id: &'a str,
}

#[derive(Serialize)]
struct AuthBody<'a> {
    signature: &'a str,
}

#[derive(Serialize)]
struct JobBody<'a> {
    kind: &'a str,
    copies: u8,
}

/// Whether `text` is the base64url of 32 bytes (43 characters, unpadded or padded), checked
/// without decoding it: the card decodes it when it signs.
fn is_challenge(text: &str) -> bool {
    let text = text.strip_suffix('=').unwrap_or(text);
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn json(body: &impl Serialize) -> Option<Vec<u8>> {
    // These bodies are plain structs of strings and numbers: serializing cannot fail.
    serde_json::to_vec(body).ok()
}

impl Kiosk {
    pub(crate) fn new(client: Client, cred: &KioskCred) -> Kiosk {
        let auth = HeaderValue::from_str(&format!("Bearer {}", cred.token))
            .ok()
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        Kiosk {
            client,
            kiosk_id: cred.kiosk_id.as_str().into(),
            token: cred.token.as_str().into(),
            auth,
        }
    }

    pub fn kiosk_id(&self) -> &str {
        &self.kiosk_id
    }

    /// The bearer token (`<kiosk_id>.<secret>`): a credential, never log it.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The same kiosk sending every request to target `i mod n`.
    pub fn pinned(&self, i: usize) -> Kiosk {
        self.with_client(self.client.pinned(i))
    }

    /// The same kiosk over other nodes, on the same pool.
    pub fn with_targets<S: AsRef<str>>(&self, bases: impl IntoIterator<Item = S>) -> Kiosk {
        self.with_client(self.client.with_targets(bases))
    }

    /// The same kiosk on another client (its own pool, timeouts, observer).
    pub fn with_client(&self, client: Client) -> Kiosk {
        Kiosk {
            client,
            ..self.clone()
        }
    }

    /// The same requests, answers untouched.
    pub fn raw(&self) -> Raw<'_> {
        Raw(self)
    }

    async fn send(
        &self,
        step: Step,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Exchange, CallError> {
        self.client
            .exchange(step, method, path, self.auth.as_ref(), body)
            .await
            .map_err(CallError::NoAnswer)
    }

    /// Endpoint 1: a card was inserted. The challenge is checked to be 32 bytes.
    pub async fn create_session(&self, card_id: &str) -> Result<CreateSessionResponse, CallError> {
        let body = json(&CreateBody { card_id });
        let x = self
            .send(Step::Create, Method::POST, "/v1/sessions", body)
            .await?;
        let created: CreateSessionResponse = x.success(StatusCode::CREATED)?.json()?;
        if !is_challenge(&created.challenge) {
            return Err(CallError::Malformed {
                status: 201,
                what: "the challenge is not 32 bytes of base64url",
            });
        }
        Ok(created)
    }

    /// Endpoint 2 with the card's signature over the session's challenge.
    pub async fn authenticate(
        &self,
        card: &Card,
        created: &CreateSessionResponse,
    ) -> Result<AuthResponse, CallError> {
        let sig = card.sign_challenge(&created.session_id, &self.kiosk_id, &created.challenge);
        self.auth(&created.session_id, &sig).await
    }

    /// Endpoint 2 with any signature (base64url).
    pub async fn auth(&self, session_id: &str, signature: &str) -> Result<AuthResponse, CallError> {
        let path = format!("/v1/sessions/{session_id}/auth");
        let body = json(&AuthBody { signature });
        let x = self.send(Step::Auth, Method::POST, &path, body).await?;
        x.success(StatusCode::OK)?.json()
    }

    /// Endpoint 3: a job for `copies` of `kind`.
    pub async fn create_job(
        &self,
        session_id: &str,
        kind: CertKind,
        copies: u8,
    ) -> Result<JobResponse, CallError> {
        let path = format!("/v1/sessions/{session_id}/jobs");
        let body = json(&JobBody {
            kind: kind.as_str(),
            copies,
        });
        let x = self.send(Step::Job, Method::POST, &path, body).await?;
        x.success(StatusCode::ACCEPTED)?.json()
    }

    /// Endpoint 4, one request waiting up to `wait_ms` (at most 10 s) on the node.
    pub async fn document(
        &self,
        session_id: &str,
        job_id: &str,
        wait_ms: u32,
    ) -> Result<Fetched, CallError> {
        let path = format!(
            "/v1/sessions/{session_id}/jobs/{job_id}/document?wait_ms={}",
            wait_ms.min(MAX_WAIT_MS)
        );
        let x = self.send(Step::Document, Method::GET, &path, None).await?;
        match x.status {
            StatusCode::OK => Ok(Fetched::Ready(Released::from_exchange(x))),
            StatusCode::ACCEPTED => Ok(Fetched::Rendering),
            _ => Err(x.unexpected()),
        }
    }

    /// Endpoint 4 as a long poll: repeats while the document renders, within the poll's
    /// budget (no request waits past it). The last answer is returned as it is.
    pub async fn await_document(
        &self,
        session_id: &str,
        job_id: &str,
        poll: LongPoll,
    ) -> Result<Fetched, CallError> {
        let deadline = Instant::now() + poll.budget;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = if poll.budget.is_zero() {
                poll.wait_ms
            } else {
                u32::try_from(left.as_millis()).map_or(poll.wait_ms, |l| l.min(poll.wait_ms))
            };
            let got = self.document(session_id, job_id, wait).await?;
            if matches!(got, Fetched::Ready(_)) || Instant::now() >= deadline {
                return Ok(got);
            }
            if wait == 0 {
                tokio::time::sleep(POLL_PAUSE).await;
            }
        }
    }

    /// Endpoint 5: paper came out.
    pub async fn printed(
        &self,
        session_id: &str,
        job_id: &str,
    ) -> Result<PrintedResponse, CallError> {
        let path = format!("/v1/sessions/{session_id}/jobs/{job_id}/printed");
        let x = self.send(Step::Printed, Method::POST, &path, None).await?;
        x.success(StatusCode::OK)?.json()
    }

    /// Endpoint 6: the card was removed.
    pub async fn close(&self, session_id: &str) -> Result<(), CallError> {
        let path = format!("/v1/sessions/{session_id}");
        let x = self.send(Step::Close, Method::DELETE, &path, None).await?;
        x.success(StatusCode::NO_CONTENT).map(|_| ())
    }

    /// Endpoint 7 (sent without the credential it does not need).
    pub async fn issuer_keys(&self) -> Result<IssuerKeys, CallError> {
        self.client.issuer_keys().await
    }
}

/// A kiosk's requests with their answers untouched, for exact assertions; no answer is
/// `status == 0`.
#[derive(Debug, Clone, Copy)]
pub struct Raw<'a>(&'a Kiosk);

impl Raw<'_> {
    /// Any request on this kiosk's route with its credential: `path` after the base URL,
    /// `body` sent as JSON.
    pub async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Resp {
        self.step(Step::Other, method, path, body).await
    }

    async fn step(&self, step: Step, method: Method, path: &str, body: Option<Vec<u8>>) -> Resp {
        match self.0.send(step, method, path, body).await {
            Ok(x) => x.into_resp(),
            Err(CallError::NoAnswer(e)) => Resp::no_answer(&e),
            // `send` fails only for lack of an answer.
            Err(e) => Resp {
                status: 0,
                headers: Default::default(),
                body: Bytes::from(e.to_string()),
            },
        }
    }

    pub async fn create_session(&self, card_id: &str) -> Resp {
        let body = json(&CreateBody { card_id });
        self.step(Step::Create, Method::POST, "/v1/sessions", body)
            .await
    }

    pub async fn auth(&self, session_id: &str, signature: &str) -> Resp {
        let path = format!("/v1/sessions/{session_id}/auth");
        let body = json(&AuthBody { signature });
        self.step(Step::Auth, Method::POST, &path, body).await
    }

    /// Any `kind` text, so that unknown kinds can be sent.
    pub async fn create_job(&self, session_id: &str, kind: &str, copies: u8) -> Resp {
        let path = format!("/v1/sessions/{session_id}/jobs");
        let body = json(&JobBody { kind, copies });
        self.step(Step::Job, Method::POST, &path, body).await
    }

    /// Any `wait_ms`, so that out-of-range waits can be sent.
    pub async fn document(&self, session_id: &str, job_id: &str, wait_ms: u32) -> Resp {
        let path = format!("/v1/sessions/{session_id}/jobs/{job_id}/document?wait_ms={wait_ms}");
        self.step(Step::Document, Method::GET, &path, None).await
    }

    pub async fn printed(&self, session_id: &str, job_id: &str) -> Resp {
        let path = format!("/v1/sessions/{session_id}/jobs/{job_id}/printed");
        self.step(Step::Printed, Method::POST, &path, None).await
    }

    pub async fn close(&self, session_id: &str) -> Resp {
        let path = format!("/v1/sessions/{session_id}");
        self.step(Step::Close, Method::DELETE, &path, None).await
    }

    /// `GET /v1/issuer-key` without a credential.
    pub async fn issuer_key(&self) -> Resp {
        let answer = self
            .0
            .client
            .exchange(Step::IssuerKey, Method::GET, "/v1/issuer-key", None, None)
            .await;
        answer.map_or_else(|e| Resp::no_answer(&e), Exchange::into_resp)
    }
}
