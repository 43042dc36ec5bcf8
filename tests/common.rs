//! Shared setup and assertions of the black-box test files, so each test states only
//! what it checks and every error answer is checked against API.md the same strict way.
#![allow(dead_code)] // each test crate uses its own subset

use std::sync::OnceLock;

use ed25519_dalek::VerifyingKey;
use kofu_proto::ErrorCode;
use kofu_proto::api::{CreateSessionResponse, JobResponse};
use kofu_testkit::{
    Card, ClusterOptions, Fixtures, Kiosk, KofuCluster, KofuNode, NodeOptions, Resp, get,
};

/// A node with the default population (seed 7, 200 residents, 20 kiosks).
pub struct Env {
    /// The node under test; with `KOFU_TEST_NODES=N` (N > 1) node 0 of a cluster.
    pub node: KofuNode,
    /// Kiosk API bases of every node; kiosks spread their requests over them.
    pub apis: Vec<String>,
    /// The rest of the cluster (its other nodes and its Redis), if any.
    pub cluster: Option<KofuCluster>,
    pub fx: &'static Fixtures,
    pub issuer: VerifyingKey,
}

pub fn fixtures() -> &'static Fixtures {
    static FX: OnceLock<Fixtures> = OnceLock::new();
    let d = NodeOptions::default();
    FX.get_or_init(|| Fixtures::load(d.seed, d.residents, d.kiosks))
}

impl Env {
    /// Starts a node with the default population plus `args`.
    pub async fn start(args: &[&str]) -> Env {
        Env::start_with(args, &[]).await
    }

    pub async fn start_with(args: &[&str], env: &[(&str, &str)]) -> Env {
        let fx = tokio::task::block_in_place(fixtures);
        let opts = NodeOptions {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..NodeOptions::default()
        };
        let nodes: usize = std::env::var("KOFU_TEST_NODES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let (node, cluster) = if nodes > 1 {
            let mut cluster = tokio::task::block_in_place(|| {
                KofuCluster::start(ClusterOptions {
                    nodes,
                    node: opts,
                    ..ClusterOptions::default()
                })
            });
            let first = cluster.nodes[0].take().expect("node 0 runs");
            (first, Some(cluster))
        } else {
            (tokio::task::block_in_place(|| KofuNode::start(opts)), None)
        };
        let mut apis = vec![node.api.clone()];
        if let Some(c) = &cluster {
            apis.extend(c.apis());
        }
        let r = get(&format!("{}/v1/issuer-key", node.api)).await;
        assert_eq!(r.status, 200, "issuer-key: {}", r.text());
        let key: kofu_proto::api::IssuerKeyResponse = r.json();
        let issuer = kofu_proto::verify::issuer_key(&key.public_key).expect("issuer key parses");
        Env {
            node,
            apis,
            cluster,
            fx,
            issuer,
        }
    }

    /// Kiosk number `i` of the fixtures, talking to this node.
    pub fn kiosk(&self, i: usize) -> Kiosk {
        Kiosk::new(&self.node.api, &self.fx.kiosks[i]).spread(&self.apis)
    }

    pub fn admin_token(&self) -> &str {
        &self.fx.admin_token
    }
}

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
    card_where(fx, n, |c| {
        !c.card_revoked && !c.restricted && c.seal_registered && !c.seal_revoked && c.tax_record
    })
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
    created(&k.create_session(&card.card_id).await)
}

/// Opens and authenticates a session; returns its id.
pub async fn authed(k: &Kiosk, card: &Card) -> String {
    let s = open(k, card).await;
    let sig = Kiosk::sign_challenge(card, &s.session_id, &k.kiosk_id, &s.challenge);
    let r = k.auth(&s.session_id, &sig).await;
    assert_eq!(r.status, 200, "auth: {}", r.text());
    s.session_id
}

/// Creates a job (202) and returns its id.
pub async fn job(k: &Kiosk, sid: &str, kind: &str, copies: u8) -> String {
    let r = k.create_job(sid, kind, copies).await;
    assert_eq!(r.status, 202, "create {kind} job: {}", r.text());
    r.json::<JobResponse>().job_id
}

/// A well-formed card id that the population does not have.
pub fn unknown_card_id(fx: &Fixtures) -> String {
    (0u64..)
        .map(|i| format!("{:016X}", 0xF00D_0000_0000_0000u64 + i))
        .find(|id| fx.card(id).is_none())
        .expect("some id is free")
}

/// A raw request with the given kiosk token (or none), for the cases `Kiosk` cannot send.
pub async fn raw(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> Resp {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .expect("client");
    let mut req = client.request(method, url);
    if let Some(t) = token {
        req = req.header("authorization", t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    Resp::read(req.send().await).await
}
