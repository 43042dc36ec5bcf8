//! The raw escape hatch: an HTTP answer exactly as it came (status, headers, body bytes),
//! for tests that assert statuses and headers to the letter and for requests sent wrong
//! on purpose. Kiosk code uses the typed steps instead.

use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::outcome::NoAnswer;

/// An HTTP answer, fully read. `status == 0` means no answer (connect error, timeout,
/// reset, body cut short); `body` then holds the transport error's text.
#[derive(Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl std::fmt::Debug for Resp {
    // A body may be a certificate full of personal data: its size only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Resp({}, {} bytes)", self.status, self.body.len())
    }
}

impl Resp {
    pub(crate) fn no_answer(e: &NoAnswer) -> Resp {
        Resp {
            status: 0,
            headers: HeaderMap::new(),
            body: Bytes::from(e.detail.clone()),
        }
    }

    /// Reads the answer to a request built with reqwest itself (headers no kiosk sends,
    /// methods no route has): a failure, also mid-body, is no answer.
    pub async fn read(sent: reqwest::Result<reqwest::Response>) -> Resp {
        match crate::client::read(sent).await {
            Ok(x) => x.into_resp(),
            Err(e) => Resp::no_answer(&e),
        }
    }

    /// Parses the body as JSON.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
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
}
