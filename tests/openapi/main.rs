//! `deploy/openapi.json` against the server: the documented operations are exactly the
//! routes the node registers, every error code is documented, and what a live node
//! answers to unauthenticated and malformed calls is among each operation's documented
//! statuses, and every path refuses the methods it does not document with `405` and an
//! `Allow` header naming exactly the documented ones. `fuzz.rs` runs schemathesis.

mod fuzz;

use std::collections::BTreeSet;
use std::path::Path;

use kofu_testkit::{Deployment, DeploymentOptions};
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn doc() -> Value {
    let text = std::fs::read_to_string(root().join("deploy/openapi.json")).expect("openapi.json");
    serde_json::from_str(&text).expect("openapi.json is JSON")
}

/// `(METHOD, path)` of every `serve("<path>", "<METHOD>", …)` route in the HTTP source.
fn source_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for file in ["kiosk.rs", "admin.rs"] {
        let src = std::fs::read_to_string(root().join("crates/kofu-node/src/http").join(file))
            .expect("http source");
        // Each route is `serve("<path>", "<METHOD>", web::<method>(), handler)`.
        for (at, _) in src.match_indices("serve(") {
            let mut quoted = src[at..].split('"').skip(1).step_by(2);
            let path = quoted.next().expect("a path");
            let method = quoted.next().expect("a method").to_owned();
            routes.insert((method, path.to_owned()));
        }
    }
    routes
}

#[test]
fn documented_operations_are_exactly_the_served_routes() {
    let d = doc();
    let documented: BTreeSet<(String, String)> = d["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .expect("operations")
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let served = source_routes();
    assert_eq!(
        documented, served,
        "openapi.json and the server's routes differ"
    );
}

#[test]
fn every_error_code_is_documented() {
    let d = doc();
    let documented: BTreeSet<String> =
        d["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
            .as_array()
            .expect("error enum")
            .iter()
            .map(|v| v.as_str().expect("code").to_owned())
            .collect();
    for code in &documented {
        let parsed: Result<kofu_proto::ErrorCode, _> =
            serde_json::from_value(Value::String(code.clone()));
        assert!(parsed.is_ok(), "{code} is not an error code of the server");
    }
    // Every variant of the server's enum, read from its definition.
    let src = std::fs::read_to_string(root().join("crates/kofu-proto/src/api.rs")).expect("api.rs");
    let start = src.find("pub enum ErrorCode {").expect("ErrorCode");
    let body = &src[start..start + src[start..].find('}').expect("end of enum")];
    let variants = body.lines().skip(1).filter(|l| {
        let t = l.trim();
        t.ends_with(',') && t.chars().next().is_some_and(char::is_uppercase)
    });
    assert_eq!(
        variants.count(),
        documented.len(),
        "the error enum and the server's codes differ in number"
    );
}

/// `path` with every parameter filled in (ids of the right shape that exist nowhere).
fn concrete(path: &str) -> String {
    path.replace("{session_id}", "0000AAAAAAAAAAAAAAAAAAAAAA")
        .replace("{job_id}", "j0-AAAAAAAAAAA")
        .replace("{card_id}", "0123456789ABCDEF")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_node_answers_only_documented_statuses() {
    let deployment =
        tokio::task::block_in_place(|| Deployment::start(DeploymentOptions::default()));
    let node = deployment.node(0);
    let d = doc();
    for (path, ops) in d["paths"].as_object().expect("paths") {
        let admin = !path.starts_with("/v1/");
        let base = if admin { &node.admin } else { &node.api };
        let url = format!("{base}{}", concrete(path));
        for (method, op) in ops.as_object().expect("operations") {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            // No credential: the first answer a client without one gets.
            let resp = kofu_testkit::request(m, &url, None, None).await;
            assert_ne!(
                resp.status,
                0,
                "{method} {path}: no answer: {}",
                resp.text()
            );
            let status = resp.status.to_string();
            assert!(
                op["responses"].get(&status).is_some(),
                "{method} {path} answered {status}, which openapi.json does not list"
            );
        }
    }
}

/// RFC 9110, 15.5.6: a `405` names the methods the resource supports. Every path, every
/// method it does not document, with and without a credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_refuses_other_methods_with_allow() {
    let deployment =
        tokio::task::block_in_place(|| Deployment::start(DeploymentOptions::default()));
    let node = deployment.node(0);
    let kiosk_auth = format!("Bearer {}", deployment.fixtures().kiosks[0].token);
    let d = doc();
    let all = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"];
    for (path, ops) in d["paths"].as_object().expect("paths") {
        let admin = !path.starts_with("/v1/");
        let base = if admin { &node.admin } else { &node.api };
        let url = format!("{base}{}", concrete(path));
        let documented: BTreeSet<String> = ops
            .as_object()
            .expect("operations")
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        for method in all.iter().filter(|m| !documented.contains(**m)) {
            for auth in [None, Some(kiosk_auth.as_str())] {
                let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
                let resp = kofu_testkit::request(m, &url, auth, None).await;
                assert_eq!(resp.status, 405, "{method} {path}: {}", resp.text());
                let allow: BTreeSet<String> = resp
                    .header("allow")
                    .unwrap_or_else(|| panic!("{method} {path}: 405 without Allow"))
                    .split(',')
                    .map(|m| m.trim().to_owned())
                    .collect();
                assert_eq!(allow, documented, "{method} {path}: Allow");
                let body: Value = serde_json::from_slice(&resp.body).expect("error JSON");
                assert_eq!(body["error"], "method_not_allowed", "{method} {path}");
            }
        }
    }
}
