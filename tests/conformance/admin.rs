//! The admin listener: health, readiness, metrics, cluster view, seal revocation,
//! address updates and draining.

use kofu_testkit::{admin_post, get};
use reqwest::Method;
use serde_json::json;

use kofu_testkit::suite::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let (env, [k], card) = Env::start_kiosks(&[]).await;
    let report = full_session(&k, env.fx, card, "residence", 1, &env.issuer)
        .await
        .expect("a session for the metrics");
    assert!(report.pages >= 1);
    let r = get(&format!("{}/healthz", env.node().admin)).await;
    assert_eq!((r.status, r.value()), (200, json!({"status": "ok"})));
    let r = get(&format!("{}/readyz", env.node().admin)).await;
    assert_eq!(
        (r.status, r.value()),
        (
            200,
            json!({"status": "ready", "ready": true, "reasons": []})
        )
    );

    let r = get(&format!("{}/metrics", env.node().admin)).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain"),
        "metrics content-type"
    );
    let text = r.text();
    for name in SERIES {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "metric {name} missing"
        );
    }
    let samples: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert!(
        samples
            .iter()
            .all(|l| l.starts_with("kofu_") || l.starts_with("process_")),
        "unprefixed series"
    );
    let failures = samples
        .iter()
        .find(|l| l.starts_with("kofu_binding_self_check_failures_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(failures, Some(0.0));
    assert!(!text.contains(card.card_id()) && !text.contains(&report.session_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_need_the_admin_token() {
    let env = Env::start(&[]).await;
    let card = full_card(env.fx, 0);
    let revoke = format!("/admin/v1/residents/{}/seal/revoke", card.card_id());
    for token in ["", "wrong", env.fx.kiosks[0].token.as_str()] {
        expect_error(
            &admin_post(env.node(), &revoke, token, None).await,
            "unauthorized",
        );
        expect_error(
            &admin_post(env.node(), "/admin/v1/drain", token, None).await,
            "unauthorized",
        );
        let auth = (!token.is_empty()).then(|| format!("Bearer {token}"));
        let url = format!("{}/admin/v1/cluster", env.node().admin);
        expect_error(
            &raw(Method::GET, &url, auth.as_deref(), None).await,
            "unauthorized",
        );
    }
    // Nothing was revoked or drained by those calls.
    let k = env.kiosk(0);
    full_session(&k, env.fx, card, "seal", 1, &env.issuer)
        .await
        .expect("seal still issuable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_view_of_an_embedded_node() {
    let env = Env::start(&[]).await;
    let url = format!("{}/admin/v1/cluster", env.node().admin);
    let r = raw(
        Method::GET,
        &url,
        Some(&format!("Bearer {}", env.admin_token())),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.value();
    let mode = if env.deployment.is_cluster() {
        "redis"
    } else {
        "embedded"
    };
    assert_eq!(v["mode"], mode);
    assert_eq!(v["shard_count"], 1024);
    let node_id = v["node_id"].as_str().expect("node_id");
    let nodes = v["nodes"].as_array().expect("nodes");
    assert_eq!(
        nodes.len(),
        env.deployment.apis().len(),
        "one entry per node"
    );
    assert!(nodes.iter().any(|n| n["node_id"] == node_id));
    let shards = v["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 1024);
    for (i, s) in shards.iter().enumerate() {
        assert_eq!(s["shard"], i, "shards in order");
        assert!(nodes.iter().any(|n| n["node_id"] == s["owner"]), "{s}");
        assert!(s["epoch"].as_u64().is_some_and(|e| e >= 1), "{s}");
    }
    if !env.deployment.is_cluster() {
        assert!(shards.iter().all(|s| s["owner"] == node_id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seal_revocation_answers() {
    let env = Env::start(&[]).await;
    let t = env.admin_token();
    let card = full_card(env.fx, 0);
    let path = format!("/admin/v1/residents/{}/seal/revoke", card.card_id());
    let r = admin_post(env.node(), &path, t, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let first = r.value();
    assert_eq!(first["seal"], "revoked");
    assert!(first["record_version"].as_u64().is_some(), "{first}");
    let r = admin_post(env.node(), &path, t, None).await;
    assert_eq!(r.status, 200, "idempotent: {}", r.text());
    assert_eq!(r.value()["seal"], "revoked");

    let unregistered = card_where(env.fx, 0, |c| !c.seal_registered);
    let path = format!("/admin/v1/residents/{}/seal/revoke", unregistered.card_id());
    let v = expect_error(
        &admin_post(env.node(), &path, t, None).await,
        "not_issuable",
    );
    assert_eq!(v["reason"], "seal_not_registered");
    let path = format!(
        "/admin/v1/residents/{}/seal/revoke",
        unknown_card_id(env.fx)
    );
    expect_error(
        &admin_post(env.node(), &path, t, None).await,
        "unknown_card",
    );
    let path = "/admin/v1/residents/0123456789abcdef/seal/revoke";
    expect_error(
        &admin_post(env.node(), path, t, None).await,
        "invalid_card_id",
    );

    // The revoked holder is no longer offered a seal certificate.
    let k = env.kiosk(0);
    let s = open(&k, card).await;
    let sig = card.sign_challenge(&s.session_id, k.kiosk_id(), &s.challenge);
    let kinds = k.raw().auth(&s.session_id, &sig).await.value()["kinds"].clone();
    assert!(
        kinds
            .as_array()
            .expect("kinds")
            .iter()
            .all(|o| o["kind"] != "seal"),
        "{kinds}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_updates_bump_the_record_version() {
    let env = Env::start(&[]).await;
    let t = env.admin_token();
    let card = full_card(env.fx, 0);
    let k = env.kiosk(0);
    let before = full_session(&k, env.fx, card, "residence", 1, &env.issuer)
        .await
        .expect("before");
    let path = format!("/admin/v1/residents/{}/address", card.card_id());
    let body = json!({"address": "1-2-3 Nishi-Shinjuku, Shinjuku City, Tokyo"});
    let r = admin_post(env.node(), &path, t, Some(body.clone())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v1 = r.value()["record_version"]
        .as_u64()
        .expect("record_version");
    let v2 = admin_post(env.node(), &path, t, Some(body)).await.value()["record_version"]
        .as_u64()
        .expect("record_version");
    assert_eq!(v2, v1 + 1);
    let sid = authed(&k, card).await;
    let jid = job(&k, &sid, "residence", 1).await;
    let doc = k.raw().document(&sid, &jid, 10_000).await;
    let b = env
        .verify(&doc, &k, &sid, card, "residence", 1)
        .await
        .expect("after the update");
    assert_eq!(b.record_version, v2);
    assert_ne!(b.serial, before.serial);
    let bad = admin_post(env.node(), &path, t, Some(json!({"address": 5}))).await;
    expect_error(&bad, "invalid_request");
    // Addresses are Japanese: Unicode is taken, control characters and overlong ones
    // are refused, and no answer echoes them.
    let japanese = "〒160-0023 東京都新宿区西新宿二丁目8番1号";
    let r = admin_post(env.node(), &path, t, Some(json!({"address": japanese}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    for refused in ["東京都\n新宿区", "東京都\u{7}新宿区", &"東".repeat(201)] {
        let bad = admin_post(env.node(), &path, t, Some(json!({"address": refused}))).await;
        expect_error(&bad, "invalid_request");
        assert!(!bad.text().contains("東京都"), "{}", bad.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_refuses_new_sessions_but_serves_open_ones() {
    let (env, [k], card) = Env::start_kiosks(&[]).await;
    let sid = authed(&k, card).await;
    let r = admin_post(env.node(), "/admin/v1/drain", env.admin_token(), None).await;
    assert_eq!(
        (r.status, r.value()),
        (200, json!({"draining": true})),
        "{}",
        r.text()
    );
    // New sessions are refused by the drained node itself (in a cluster, the others
    // still take them).
    let r = k
        .with_targets([&env.node().api])
        .raw()
        .create_session(full_card(env.fx, 1).card_id())
        .await;
    expect_error(&r, "unavailable");
    let retry = r.header("retry-after").expect("503 carries Retry-After");
    assert!(retry.trim().parse::<u64>().is_ok(), "Retry-After {retry:?}");
    let r = get(&format!("{}/readyz", env.node().admin)).await;
    let v = expect_error(&r, "unavailable");
    // The reasons beside the error JSON; a cluster node may add that it is leaving.
    assert_eq!(v["ready"], false, "{v}");
    assert_eq!(v["reasons"][0], "draining", "{v}");
    let r = get(&format!("{}/healthz", env.node().admin)).await;
    assert_eq!(r.status, 200, "draining is not unhealthy");
    // The open session finishes normally.
    let jid = job(&k, &sid, "residence", 1).await;
    env.fetch_residence(&k, &sid, &jid, card, "document while draining")
        .await;
    assert_eq!(k.raw().printed(&sid, &jid).await.status, 200);
    assert_eq!(k.raw().close(&sid).await.status, 204);
}
