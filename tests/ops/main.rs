//! An operable node (issue 11, item 5): readiness with its reasons (draining; Redis
//! gone and back), the access log (route pattern, status, duration, request id; never a
//! card id), `X-Request-Id` echoed, and one request's W3C trace context in the lines of
//! both nodes of a forwarded call.

use std::time::{Duration, Instant};

use kofu_proto::{CardId, shard_of};
use kofu_testkit::{Deployment, DeploymentOptions, KofuNode, admin_post, get};
use serde_json::{Value, json};

/// The node's JSON log lines.
fn log_lines(node: &KofuNode) -> Vec<Value> {
    node.logs()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The access log lines (`"message": "request"`).
fn access_lines(node: &KofuNode) -> Vec<Value> {
    log_lines(node)
        .into_iter()
        .filter(|l| l["message"] == "request" && l["level"] == "INFO")
        .collect()
}

async fn readyz(node: &KofuNode) -> (u16, Value) {
    let r = get(&format!("{}/readyz", node.admin)).await;
    (r.status, r.value())
}

/// Polls `/readyz` until `pred` holds (at most `within`); the last answer.
async fn readyz_until(
    node: &KofuNode,
    within: Duration,
    pred: impl Fn(u16, &Value) -> bool,
) -> (u16, Value) {
    let until = Instant::now() + within;
    loop {
        let (status, body) = readyz(node).await;
        if pred(status, &body) || Instant::now() > until {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `X-Request-Id` an answer carries.
fn request_id(r: &reqwest::Response) -> String {
    r.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_node_is_ready_until_it_drains() {
    let d = tokio::task::block_in_place(|| Deployment::start(DeploymentOptions::default()));
    let node = d.node(0);
    assert_eq!(
        readyz(node).await,
        (
            200,
            json!({"status": "ready", "ready": true, "reasons": []})
        )
    );
    let r = admin_post(node, "/admin/v1/drain", &d.fixtures().admin_token, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (status, body) = readyz(node).await;
    assert_eq!(status, 503, "{body}");
    // Still the error JSON of API.md, with the reasons beside it.
    assert_eq!(body["error"], "unavailable", "{body}");
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["reasons"], json!(["draining"]), "{body}");
}

/// A scraper or an admin client keeps its connection between calls, and common pools
/// idle out after 30-90 s: the admin listener must not close an idle connection first
/// (a request sent as the server closes it fails on the client's side, unanswered).
/// Six idle seconds outlast actix-web's default keep-alive of five.
#[test]
fn the_admin_listener_keeps_an_idle_connection_open_as_long_as_the_kiosk_listener() {
    use std::io::{Read, Write};
    let d = Deployment::start(DeploymentOptions::default());
    for base in [&d.node(0).admin, &d.node(0).api] {
        let addr = base.trim_start_matches("http://");
        let mut conn = std::net::TcpStream::connect(addr).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        let answer = |conn: &mut std::net::TcpStream| {
            conn.write_all(request.as_bytes()).expect("write");
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).unwrap_or(0);
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        assert!(
            answer(&mut conn).starts_with("HTTP/1.1 "),
            "{base}: no answer"
        );
        std::thread::sleep(Duration::from_secs(6));
        let again = answer(&mut conn);
        assert!(
            again.starts_with("HTTP/1.1 "),
            "{base}: the idle connection was closed: {again:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_is_not_ready_without_redis_and_ready_again_after() {
    // One node on its own Redis: a cluster node, not an embedded one.
    let opts = DeploymentOptions::durable(1);
    let mut d = tokio::task::block_in_place(|| Deployment::start(opts));
    let (status, body) = readyz(d.node(0)).await;
    assert_eq!((status, &body["reasons"]), (200, &json!([])), "{body}");

    let redis = d.redis.as_mut().expect("own redis");
    tokio::task::block_in_place(|| redis.stop());
    let (status, body) = readyz_until(d.node(0), Duration::from_secs(20), |s, _| s == 503).await;
    assert_eq!(status, 503, "still ready without redis: {body}");
    assert_eq!(body["error"], "unavailable", "{body}");
    assert_eq!(body["ready"], false, "{body}");
    let reasons = body["reasons"].as_array().cloned().unwrap_or_default();
    assert!(reasons.contains(&json!("redis unreachable")), "{body}");
    // Liveness is another matter: the process is fine, restarting it would not help.
    assert_eq!(
        get(&format!("{}/healthz", d.node(0).admin)).await.status,
        200
    );

    let redis = d.redis.as_mut().expect("own redis");
    tokio::task::block_in_place(|| redis.start_again());
    let (status, body) = readyz_until(d.node(0), Duration::from_secs(30), |s, _| s == 200).await;
    assert_eq!(status, 200, "not ready again after redis came back: {body}");
    assert_eq!(body["reasons"], json!([]), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_an_access_log_line_and_a_request_id() {
    let d = tokio::task::block_in_place(|| Deployment::start(DeploymentOptions::default()));
    let (node, fx, http) = (d.node(0), d.fixtures(), client());
    let token = fx.admin_token.clone();
    let card = fx.ordinary().next().expect("a card");

    // A request id of the client's is kept and echoed; a bad one is replaced.
    let r = http
        .get(format!("{}/v1/issuer-key", node.api))
        .header("x-request-id", "kiosk-req-0001")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.headers()["x-request-id"], "kiosk-req-0001");
    let mut generated = Vec::new();
    for bad in [
        "has space".to_owned(),
        card.card_id().to_owned(),
        format!("req-{}", card.card_id()),
        "x".repeat(65),
    ] {
        let r = http
            .get(format!("{}/v1/issuer-key", node.api))
            .header("x-request-id", &bad)
            .send()
            .await
            .expect("answer");
        let id = request_id(&r);
        assert_ne!(id, bad);
        assert_eq!(id.len(), 32, "{id}");
        generated.push(id);
    }
    // Without one, the node makes one up; errors carry it too.
    let r = http
        .get(format!("{}/v1/no/such/path", node.api))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 404);
    let nf_id = request_id(&r);

    // An admin revocation with a card id in its path.
    let path = format!("/admin/v1/residents/{}/seal/revoke", card.card_id());
    let r = http
        .post(format!("{}{path}", node.admin))
        .bearer_auth(&token)
        .header("x-request-id", "oncall-7")
        .send()
        .await
        .expect("answer");
    let revoke_status = r.status().as_u16();
    assert_eq!(r.headers()["x-request-id"], "oncall-7");

    let lines = access_lines(node);
    let by_id = |id: &str| {
        lines
            .iter()
            .find(|l| l["span"]["request_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no access line for request {id}: {lines:#?}"))
    };
    // Listener, method, route pattern and status of a request's access line.
    let summary = |id: &str| {
        let l = by_id(id);
        json!([l["listener"], l["method"], l["route"], l["status"]])
    };
    assert_eq!(
        summary("kiosk-req-0001"),
        json!(["kiosk", "GET", "/v1/issuer-key", 200])
    );
    let l = by_id("kiosk-req-0001");
    assert!(l["micros"].as_u64().is_some(), "duration: {l}");
    for id in &generated {
        by_id(id);
    }
    let l = by_id(&nf_id);
    assert_eq!(
        (&l["route"], &l["status"]),
        (&json!("unmatched"), &json!(404))
    );
    let revoke = "/admin/v1/residents/{card_id}/seal/revoke";
    assert_eq!(
        summary("oncall-7"),
        json!(["admin", "POST", revoke, revoke_status])
    );
    // Nothing the node logged holds the card id (the path had it, a request id tried).
    let all = node.logs();
    assert!(!all.contains(card.card_id()), "a card id reached the log");
    assert!(!all.contains(&card.full_name), "a name reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forwarded_call_carries_the_trace_to_the_owner() {
    let d = tokio::task::block_in_place(|| Deployment::start(DeploymentOptions::nodes(2)));
    let owners = tokio::task::block_in_place(|| d.wait_converged());
    let fx = d.fixtures();
    // A card whose shard node 1 owns, its session opened through node 0.
    let card = fx
        .ordinary()
        .find(|c| {
            let id = CardId::parse(c.card_id()).expect("fixture card id");
            let shard = shard_of(&id, u32::try_from(owners.len()).expect("shards"));
            owners[shard as usize].as_deref() == Some("node-1")
        })
        .expect("a card of node 1's shards");
    let kiosk = d.kiosk(0);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let tp = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let l = traced_create(d.node(0), kiosk.token(), card.card_id(), &tp).await;
    assert_eq!(l["span"]["trace_id"], trace_id, "{l}");
    assert_eq!(l["route"], "/v1/sessions", "{l}");
    let span_id = l["span"]["span_id"].as_str().expect("span id").to_owned();
    assert_eq!(span_id.len(), 16);
    assert_ne!(span_id, "00f067aa0ba902b7", "node 0 continues the trace");

    // Node 1: the forwarded call, same trace, node 0's span as its parent.
    let until = Instant::now() + Duration::from_secs(10);
    let served = loop {
        let found = log_lines(d.node(1))
            .into_iter()
            .find(|l| l["message"] == "forwarded call" && l["span"]["trace_id"] == trace_id);
        match found {
            Some(l) => break l,
            None if Instant::now() < until => tokio::time::sleep(Duration::from_millis(50)).await,
            None => panic!("node 1 logged no forwarded call of the trace"),
        }
    };
    assert_eq!(
        served["span"]["parent_span_id"],
        span_id.as_str(),
        "{served}"
    );
    assert_eq!(
        (&served["call"], &served["outcome"]),
        (&json!("create"), &json!("answered"))
    );

    // A malformed traceparent is ignored: the node starts a trace of its own.
    let card2 = fx.ordinary().nth(40).expect("another card");
    let l = traced_create(
        d.node(0),
        d.kiosk(1).token(),
        card2.card_id(),
        "00-ZZZ-not-a-trace",
    )
    .await;
    let t = l["span"]["trace_id"].as_str().expect("trace id");
    assert!(
        t.len() == 32 && t != "00000000000000000000000000000000",
        "{l}"
    );
}

/// Opens a session at `node` with a `traceparent` header; the node's access line of it.
async fn traced_create(node: &KofuNode, token: &str, card_id: &str, traceparent: &str) -> Value {
    let r = client()
        .post(format!("{}/v1/sessions", node.api))
        .bearer_auth(token)
        .header("traceparent", traceparent)
        .json(&json!({"card_id": card_id}))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 201);
    let rid = request_id(&r);
    access_lines(node)
        .into_iter()
        .find(|l| l["span"]["request_id"] == rid.as_str())
        .expect("the node logged the request")
}

/// Every alert has a `runbook_url` naming a README section that exists (GitHub's
/// anchor of a heading: lowercase, spaces to `-`, punctuation dropped).
#[test]
fn every_alert_has_a_runbook_in_the_readme() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let alerts = std::fs::read_to_string(root.join("deploy/prometheus/rules/kofu-alerts.yml"))
        .expect("alert rules");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let anchors: Vec<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| {
            h.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let mut alert = None;
    let mut checked = 0;
    for line in alerts.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert:") {
            assert!(alert.is_none(), "alert {alert:?} has no runbook_url");
            alert = Some(name.trim().to_owned());
        }
        if let Some(url) = line.strip_prefix("runbook_url:") {
            let name = alert.take().expect("a runbook_url inside an alert");
            let url = url.trim().trim_matches('"');
            let anchor = url
                .strip_prefix("README.md#")
                .unwrap_or_else(|| panic!("{name}: {url} is not a README section"));
            assert_eq!(anchor, name.to_lowercase(), "{name}");
            assert!(
                anchors.iter().any(|a| a == anchor),
                "{name}: no README section #{anchor}"
            );
            checked += 1;
        }
    }
    assert!(alert.is_none(), "alert {alert:?} has no runbook_url");
    assert!(checked >= 9, "only {checked} alerts");
}
