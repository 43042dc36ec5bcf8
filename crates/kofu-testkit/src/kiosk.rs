//! Thin test conveniences over `kofu-kiosk`: answers parsed or the test fails with the
//! body, the strict kiosk check (with `pdftotext`) on a raw answer, a whole checked
//! session, and plain requests to any URL.

use std::future::Future;
use std::time::Duration;

use kofu_kiosk::{
    Card, Client, Expected, Fixtures, KindChoice, Kiosk, LongPoll, Method, Plan, Released, Resp,
    Retry, TextCheck, Verifier,
};
use kofu_proto::verify::IssuerKeys;
use kofu_proto::{Binding, CertKind};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::KofuNode;

/// Long enough for a 10 s long poll plus slack; short enough that a hang fails a test.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Parsing that fails the test with the status and body.
pub trait RespExt {
    fn json<T: DeserializeOwned>(&self) -> T;
}

impl RespExt for Resp {
    fn json<T: DeserializeOwned>(&self) -> T {
        self.parse().unwrap_or_else(|e| {
            panic!(
                "status {} body is not the expected JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }
}

/// A client for one-off requests to absolute URLs, on the current runtime.
pub(crate) fn client() -> Client {
    Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Any request to `url`, `authorization` being the whole header value.
pub async fn request(
    method: Method,
    url: &str,
    authorization: Option<&str>,
    body: Option<Vec<u8>>,
) -> Resp {
    client().request(method, url, authorization, body).await
}

/// Plain `GET` without credentials.
pub async fn get(url: &str) -> Resp {
    request(Method::GET, url, None, None).await
}

/// `POST` on a node's admin listener with `Authorization: Bearer <token>` (none if empty).
pub fn admin_post(
    node: &KofuNode,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> impl Future<Output = Resp> + use<> {
    let url = format!("{}{path}", node.admin);
    let auth = (!token.is_empty()).then(|| format!("Bearer {token}"));
    let body = body.map(|b| b.to_string().into_bytes());
    async move { request(Method::POST, &url, auth.as_deref(), body).await }
}

/// What a completed session produced.
#[derive(Debug, Clone)]
pub struct SessionReport {
    pub session_id: String,
    pub serial: String,
    pub doc_sha256: String,
    pub pages: u32,
}

/// The strict check of a raw document answer: `200`, signature and binding against the
/// order, then the text as `pdftotext` extracts it (holder named, title, serial, date, no
/// name from another household).
pub(crate) async fn verify_document(
    fx: &Fixtures,
    issuer: &IssuerKeys,
    resp: &Resp,
    order: &Expected<'_>,
) -> Result<Binding, String> {
    let doc = Released::from_resp(resp).ok_or_else(|| {
        format!(
            "document: expected 200, got {}: {}",
            resp.status,
            resp.text()
        )
    })?;
    strict(fx, issuer)
        .verify(&doc, order)
        .await
        .map(|v| v.binding)
        .map_err(|e| e.to_string())
}

/// The verifier of the tests: every document through `pdftotext`.
pub fn strict<'a>(fx: &'a Fixtures, issuer: &'a IssuerKeys) -> Verifier<'a> {
    Verifier {
        fixtures: fx,
        issuer,
        text: TextCheck::Pdftotext,
    }
}

/// create → auth → job → document (up to 10 s) → the strict check → printed → close.
pub async fn full_session(
    kiosk: &Kiosk,
    fx: &Fixtures,
    card: &Card,
    kind: &str,
    copies: u8,
    issuer: &IssuerKeys,
) -> Result<SessionReport, String> {
    let kind = CertKind::parse(kind).ok_or_else(|| format!("unknown kind {kind:?}"))?;
    let plan = Plan {
        kind: KindChoice::Fixed(kind),
        copies,
        poll: LongPoll {
            wait_ms: kofu_kiosk::MAX_WAIT_MS,
            budget: Duration::from_secs(10),
        },
        retry: Retry::NEVER,
    };
    let done = kiosk
        .complete_session(card, &plan, &strict(fx, issuer))
        .await
        .map_err(|e| e.to_string())?;
    Ok(SessionReport {
        pages: done.pages().unwrap_or(1),
        session_id: done.session_id,
        serial: done.binding.serial,
        doc_sha256: done.binding.doc_sha256,
    })
}
