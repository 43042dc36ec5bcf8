//! What the black-box test files share: a deployment with the default population (one
//! node, or the cluster `KOFU_TEST_NODES=N` asks for), and steps and assertions that fail
//! the test with the answer, so each test states only what it checks and every error
//! answer is checked against API.md the same strict way.

use kofu_kiosk::Expected;
use kofu_proto::api::{CreateSessionResponse, JobResponse};
use kofu_proto::verify::IssuerKeys;
use kofu_proto::{Binding, CertKind, ErrorCode};

use crate::{Card, Deployment, DeploymentOptions, Fixtures, Kiosk, KofuNode, Resp};

/// A deployment serving the default population (seed 7, 200 residents, 20 kiosks).
#[derive(Debug)]
pub struct Env {
    pub deployment: Deployment,
    pub fx: &'static Fixtures,
    pub issuer: IssuerKeys,
}

/// The default population, loaded once.
pub fn default_fixtures() -> &'static Fixtures {
    let d = crate::NodeOptions::default();
    crate::fixtures(d.seed, d.residents, d.kiosks)
}

impl Env {
    /// Starts the deployment with the default population plus `args` on every node.
    pub async fn start(args: &[&str]) -> Env {
        Env::start_with(args, &[]).await
    }

    /// [`Env::start`] with `KOFU_*` variables for every node as well.
    pub async fn start_with(args: &[&str], env: &[(&str, &str)]) -> Env {
        let mut opts = DeploymentOptions::nodes(
            std::env::var("KOFU_TEST_NODES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
        );
        opts.node.args = args.iter().map(|s| (*s).to_owned()).collect();
        opts.node.env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        // Process starts block; tests run on a multi-threaded runtime.
        let deployment = tokio::task::block_in_place(|| Deployment::start(opts));
        Env {
            fx: deployment.fixtures(),
            issuer: deployment.issuer().clone(),
            deployment,
        }
    }

    /// [`Env::start`], with the first `N` kiosks and an ordinary card: where most tests
    /// begin.
    pub async fn start_kiosks<const N: usize>(args: &[&str]) -> (Env, [Kiosk; N], &'static Card) {
        let env = Env::start(args).await;
        let (kiosks, card) = (std::array::from_fn(|i| env.kiosk(i)), full_card(env.fx, 0));
        (env, kiosks, card)
    }

    /// The first node: the one tests talk to when they need one.
    pub fn node(&self) -> &KofuNode {
        self.deployment.node(0)
    }

    /// Kiosk number `i`, its requests spread over every node.
    pub fn kiosk(&self, i: usize) -> Kiosk {
        self.deployment.kiosk(i)
    }

    pub fn admin_token(&self) -> &str {
        &self.fx.admin_token
    }

    /// The strict kiosk check of a raw document answer to kiosk `k`'s order of `copies`
    /// of `kind` for `card` in session `sid`.
    pub async fn verify(
        &self,
        r: &Resp,
        k: &Kiosk,
        sid: &str,
        card: &Card,
        kind: &str,
        copies: u8,
    ) -> Result<Binding, String> {
        let kind = CertKind::parse(kind).ok_or_else(|| format!("unknown kind {kind:?}"))?;
        let order = Expected {
            session_id: sid,
            kiosk_id: k.kiosk_id(),
            card: &card.id,
            kind,
            copies,
        };
        crate::kiosk::verify_document(self.fx, &self.issuer, r, &order).await
    }

    /// Fetches kiosk `k`'s one-copy residence job `jid` (waiting as long as API.md
    /// allows) and fails the test, saying `what`, unless it passes the strict kiosk check.
    pub async fn fetch_residence(&self, k: &Kiosk, sid: &str, jid: &str, card: &Card, what: &str) {
        let r = k.raw().document(sid, jid, 10_000).await;
        if let Err(e) = self.verify(&r, k, sid, card, "residence", 1).await {
            panic!("{what}: {e}");
        }
    }
}

/// Incident 1's fault injection: every third job sleeps 1.5 s before rendering while
/// its deadline is 0.5 s, so it is voided while the jobs around it render at once.
/// Series every node exports from its start (`GET /metrics` on the admin listener);
/// histograms by one of their `_bucket` lines.
pub const SERIES: &[&str] = &[
    "kofu_sessions_open",
    "kofu_sessions_started_total",
    "kofu_sessions_ended_total",
    "kofu_http_requests_total",
    "kofu_http_request_duration_seconds_bucket",
    "kofu_documents_rendered_total",
    "kofu_documents_released_total",
    "kofu_binding_self_check_failures_total",
    "kofu_prints_confirmed_total",
    "kofu_charged_yen_total",
    "kofu_shards_owned",
    "kofu_fencing_rejections_total",
    "kofu_mailbox_backlog_messages",
    "kofu_render_duration_seconds_bucket",
    "kofu_store_op_duration_seconds_bucket",
    "kofu_admission_refusals_total",
];

pub const RENDER_TIMEOUT_FLAGS: [&str; 6] = [
    "--render-delay-ms",
    "1500",
    "--render-deadline-ms",
    "500",
    "--render-delay-every",
    "3",
];

/// The `n`-th card (in fixture order) satisfying `pred`.
pub fn card_where(fx: &Fixtures, n: usize, pred: impl Fn(&Card) -> bool) -> &Card {
    fx.cards
        .iter()
        .filter(|c| pred(c))
        .nth(n)
        .expect("the fixtures have a card of this kind (contract: R >= 50 has every status)")
}

/// An ordinary card that can be issued every kind.
pub fn full_card(fx: &Fixtures, n: usize) -> &Card {
    card_where(fx, n, |c| c.usable() && c.seal_issuable() && c.tax_record)
}

/// A well-formed card id that the population does not have.
pub fn unknown_card_id(fx: &Fixtures) -> String {
    (0u64..)
        .map(|i| format!("{:016X}", 0xF00D_0000_0000_0000u64 + i))
        .find(|id| fx.card(id).is_none())
        .expect("some id is free")
}

/// Asserts an API.md error answer: the code's status, a JSON body with `error` and a
/// non-empty `message`.
#[track_caller]
pub fn expect_error(r: &Resp, code: &str) -> serde_json::Value {
    let parsed: ErrorCode = serde_json::from_value(serde_json::Value::String(code.into()))
        .unwrap_or_else(|_| panic!("{code} is not an ErrorCode"));
    assert_eq!(
        r.status,
        parsed.status(),
        "expected {code} ({}), got {}: {}",
        parsed.status(),
        r.status,
        r.text()
    );
    assert_error_body(r);
    let v = r.value();
    assert_eq!(v["error"], code, "error code: {}", r.text());
    v
}

/// Any non-2xx answer: JSON `{"error","message"}` whose code matches the status.
#[track_caller]
pub fn assert_error_body(r: &Resp) {
    let ctype = r.header("content-type").unwrap_or_default();
    assert!(
        ctype.starts_with("application/json"),
        "status {} error content-type {ctype:?}: {}",
        r.status,
        r.text()
    );
    let v = r.value();
    let code = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("status {} body has no error code: {}", r.status, r.text()));
    let msg = v["message"].as_str().unwrap_or_default();
    assert!(!msg.is_empty(), "error body without message: {}", r.text());
    let parsed: ErrorCode = serde_json::from_value(v["error"].clone())
        .unwrap_or_else(|_| panic!("unknown error code {code:?}"));
    assert_eq!(
        parsed.status(),
        r.status,
        "{code} came with the wrong status"
    );
}

/// Opens a session (201) and returns its id and challenge.
#[track_caller]
pub fn created(r: &Resp) -> CreateSessionResponse {
    assert_eq!(r.status, 201, "create session: {}", r.text());
    r.json()
}

pub async fn open(k: &Kiosk, card: &Card) -> CreateSessionResponse {
    created(&k.raw().create_session(card.card_id()).await)
}

/// Opens and authenticates a session; returns its id.
pub async fn authed(k: &Kiosk, card: &Card) -> String {
    let s = open(k, card).await;
    let sig = card.sign_challenge(&s.session_id, k.kiosk_id(), &s.challenge);
    let r = k.raw().auth(&s.session_id, &sig).await;
    assert_eq!(r.status, 200, "auth: {}", r.text());
    s.session_id
}

/// Creates a job (202) and returns its id.
pub async fn job(k: &Kiosk, sid: &str, kind: &str, copies: u8) -> String {
    let r = k.raw().create_job(sid, kind, copies).await;
    assert_eq!(r.status, 202, "create {kind} job: {}", r.text());
    r.json::<JobResponse>().job_id
}

/// The status code in the head of an HTTP/1.1 answer read off a raw socket (0 when the
/// status line has none), for tests that speak HTTP below reqwest.
/// A POST of `body` as JSON with the bearer `auth`, answered whatever it says.
pub async fn post_json(url: &str, auth: &str, body: &serde_json::Value) -> Resp {
    raw(
        kofu_kiosk::Method::POST,
        url,
        Some(auth),
        Some(body.to_string().into()),
    )
    .await
}

pub fn head_status(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A request built by hand (any method, URL, `Authorization` value and body), for what a
/// kiosk would never send.
pub use crate::kiosk::request as raw;

/// `Resp::json`, failing the test with the body.
pub use crate::RespExt;

pub use crate::{admin_post, full_session, get};
