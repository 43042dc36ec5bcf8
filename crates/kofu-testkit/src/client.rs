//! The kiosk's side of the protocol over real HTTP, plus plain helpers for the admin
//! listener. Transport failures become `status == 0` rather than panics, so fault tests
//! can count them instead of losing a task.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::Signer;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{Card, KioskCred, KofuNode};

/// Long enough for a 10 s long poll plus slack; short enough that a hang fails a test.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// An HTTP answer, fully read. `status == 0` means no answer (connect error, timeout,
/// reset); `body` then holds the transport error's text.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// Parses the body; panics with the status and body when it does not fit `T`.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not the expected JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    /// The body as JSON, or `Value::Null` when it is not JSON.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The `error` field of an error body.
    pub fn error_code(&self) -> Option<String> {
        self.value()
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// The body as (lossy) text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn transport_error(err: &reqwest::Error) -> Resp {
        // The top-level text is generic ("error sending request"); the cause is below.
        let mut text = format!("transport error: {err}");
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        Resp {
            status: 0,
            headers: HeaderMap::new(),
            body: Bytes::from(text),
        }
    }

    /// Reads a whole response; a failure mid-body counts as no answer.
    pub async fn read(result: reqwest::Result<reqwest::Response>) -> Resp {
        match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                match resp.bytes().await {
                    Ok(body) => Resp {
                        status,
                        headers,
                        body,
                    },
                    Err(e) => Resp::transport_error(&e),
                }
            }
            Err(e) => Resp::transport_error(&e),
        }
    }
}

/// A client with the harness's timeouts; one per kiosk keeps its keep-alive pool.
pub fn new_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        // Below the node's keep-alive (75 s), so the pool never reuses a connection the
        // node is closing (that race loses the request).
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|e| panic!("cannot build an HTTP client: {e}"))
}

/// A kiosk: async client over one reqwest::Client (keep-alive pool) against a base URL.
#[derive(Debug, Clone)]
pub struct Kiosk {
    pub kiosk_id: String,
    pub token: String,
    pub base: String,
    /// With more than one entry, every request goes to one of these at random (a
    /// cluster behind a load balancer); `base` otherwise.
    spread: std::sync::Arc<Vec<String>>,
    client: reqwest::Client,
}

impl Kiosk {
    pub fn new(base: &str, cred: &KioskCred) -> Kiosk {
        Kiosk::with_client(base, cred, new_client())
    }

    pub fn with_client(base: &str, cred: &KioskCred, client: reqwest::Client) -> Kiosk {
        Kiosk {
            kiosk_id: cred.kiosk_id.clone(),
            token: cred.token.clone(),
            base: base.trim_end_matches('/').to_owned(),
            spread: std::sync::Arc::new(Vec::new()),
            client,
        }
    }

    /// The same kiosk sending each request to a random one of `bases`.
    pub fn spread(&self, bases: &[String]) -> Kiosk {
        Kiosk {
            spread: std::sync::Arc::new(
                bases
                    .iter()
                    .map(|b| b.trim_end_matches('/').to_owned())
                    .collect(),
            ),
            ..self.clone()
        }
    }

    /// Where the next request goes.
    pub fn target(&self) -> &str {
        match self.spread.len() {
            0 | 1 => &self.base,
            n => &self.spread[rand::random_range(0..n)],
        }
    }

    /// The same kiosk talking to another node of the cluster.
    pub fn at(&self, base: &str) -> Kiosk {
        Kiosk {
            base: base.trim_end_matches('/').to_owned(),
            spread: std::sync::Arc::new(Vec::new()),
            ..self.clone()
        }
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    async fn post(&self, path: &str, body: Value) -> Resp {
        let req = self
            .client
            .post(format!("{}{path}", self.target()))
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .json(&body);
        Resp::read(req.send().await).await
    }

    pub async fn create_session(&self, card_id: &str) -> Resp {
        self.post("/v1/sessions", json!({ "card_id": card_id }))
            .await
    }

    pub async fn auth(&self, session_id: &str, signature_b64: &str) -> Resp {
        let path = format!("/v1/sessions/{session_id}/auth");
        self.post(&path, json!({ "signature": signature_b64 }))
            .await
    }

    pub async fn create_job(&self, session_id: &str, kind: &str, copies: u8) -> Resp {
        let path = format!("/v1/sessions/{session_id}/jobs");
        self.post(&path, json!({ "kind": kind, "copies": copies }))
            .await
    }

    pub async fn document(&self, session_id: &str, job_id: &str, wait_ms: u32) -> Resp {
        let url = format!(
            "{}/v1/sessions/{session_id}/jobs/{job_id}/document?wait_ms={wait_ms}",
            self.target()
        );
        let req = self
            .client
            .get(url)
            .header(AUTHORIZATION, format!("Bearer {}", self.token));
        Resp::read(req.send().await).await
    }

    pub async fn printed(&self, session_id: &str, job_id: &str) -> Resp {
        let url = format!(
            "{}/v1/sessions/{session_id}/jobs/{job_id}/printed",
            self.target()
        );
        let req = self
            .client
            .post(url)
            .header(AUTHORIZATION, format!("Bearer {}", self.token));
        Resp::read(req.send().await).await
    }

    pub async fn close(&self, session_id: &str) -> Resp {
        let req = self
            .client
            .delete(format!("{}/v1/sessions/{session_id}", self.target()))
            .header(AUTHORIZATION, format!("Bearer {}", self.token));
        Resp::read(req.send().await).await
    }

    pub async fn issuer_key(&self) -> Resp {
        let req = self.client.get(format!("{}/v1/issuer-key", self.target()));
        Resp::read(req.send().await).await
    }

    /// Signs the challenge as the card would (API.md endpoint 2).
    pub fn sign_challenge(
        card: &Card,
        session_id: &str,
        kiosk_id: &str,
        challenge_b64: &str,
    ) -> String {
        let challenge = kofu_proto::b64url_decode(challenge_b64)
            .unwrap_or_else(|| panic!("challenge is not base64url: {challenge_b64:?}"));
        let msg = kofu_proto::auth_message(session_id, kiosk_id, &challenge);
        kofu_proto::b64url(&card.signing_key.sign(&msg).to_bytes())
    }
}

/// `POST` on the admin listener with `Authorization: Bearer <token>` (none if empty).
pub fn admin_post(
    node: &KofuNode,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> impl Future<Output = Resp> + use<> {
    let mut req = new_client().post(format!("{}{path}", node.admin));
    if !token.is_empty() {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    async move { Resp::read(req.send().await).await }
}

/// Plain `GET` without credentials.
pub async fn get(url: &str) -> Resp {
    Resp::read(new_client().get(url).send().await).await
}
