//! I6 end to end: a busy, error-heavy workload against a node logging at debug level,
//! then every byte the node let out (logs, metrics, error bodies) is scanned for
//! personal data of every fixture resident.

use kofu_testkit::{Resp, admin_post, contains_name, full_session, get};
use serde_json::json;

use kofu_testkit::suite::*;

/// Collects every non-2xx answer so its body can be scanned at the end.
#[derive(Default)]
struct Seen {
    errors: Vec<Resp>,
}

impl Seen {
    fn keep(&mut self, r: Resp) -> Resp {
        if !(200..300).contains(&r.status) {
            self.errors.push(r.clone());
        }
        r
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_personal_data_in_logs_metrics_or_errors() {
    let env = Env::start(&["--log-level", "debug"]).await;
    let fx = env.fx;
    let t = env.admin_token();
    let (k0, k1, k2) = (env.kiosk(0), env.kiosk(1), env.kiosk(2));
    let mut seen = Seen::default();
    let mut touched = Vec::new();
    let mut secrets: Vec<String> = Vec::new();

    // Complete sessions of every kind.
    for (i, card) in fx.ordinary().take(24).enumerate() {
        let kind = ["residence", "family_register", "seal", "tax"][i % 4];
        let r = full_session(&k0, fx, card, kind, 1, &env.issuer).await;
        // Some of these holders cannot get seal or tax: that is an error path too.
        if r.is_err() {
            let sid = authed(&k0, card).await;
            seen.keep(k0.raw().create_job(&sid, kind, 1).await);
            seen.keep(k0.raw().close(&sid).await);
        }
        touched.push(card);
    }
    // Bad signatures up to the lock, card_in_use, and the 409s of a second auth.
    for card in fx.ordinary().skip(24).take(8) {
        let s = open(&k1, card).await;
        seen.keep(k2.raw().create_session(card.card_id()).await);
        let wrong = full_card(fx, 0).sign_challenge(&s.session_id, k1.kiosk_id(), &s.challenge);
        for _ in 0..3 {
            seen.keep(k1.raw().auth(&s.session_id, &wrong).await);
        }
        seen.keep(k1.raw().create_job(&s.session_id, "residence", 1).await);
        let sid = authed(&k1, card).await;
        seen.keep(k1.raw().auth(&sid, &wrong).await);
        seen.keep(k1.raw().printed(&sid, "j0-AAAAAAAAAAA").await);
        touched.push(card);
    }
    // Special cards: revoked, restricted, no seal, revoked seal, no tax.
    for card in fx
        .cards
        .iter()
        .filter(|c| !c.card_revoked && c.restricted)
        .take(2)
    {
        let sid = authed(&k2, card).await;
        seen.keep(k2.raw().create_job(&sid, "residence", 1).await);
        touched.push(card);
    }
    for card in fx.cards.iter().filter(|c| c.card_revoked).take(3) {
        seen.keep(k2.raw().create_session(card.card_id()).await);
        touched.push(card);
    }
    for card in fx
        .ordinary()
        .filter(|c| !c.seal_registered || !c.tax_record)
        .take(4)
    {
        let sid = authed(&k2, card).await;
        seen.keep(k2.raw().create_job(&sid, "seal", 1).await);
        seen.keep(k2.raw().create_job(&sid, "tax", 1).await);
        seen.keep(k2.raw().close(&sid).await);
        touched.push(card);
    }
    // Admin: revocations (granted, repeated, refused), address updates.
    for card in fx
        .ordinary()
        .filter(|c| c.seal_registered && !c.seal_revoked)
        .take(3)
    {
        let path = format!("/admin/v1/residents/{}/seal/revoke", card.card_id());
        for _ in 0..2 {
            seen.keep(admin_post(env.node(), &path, t, None).await);
        }
        let sid = authed(&k0, card).await;
        seen.keep(k0.raw().create_job(&sid, "seal", 1).await);
        touched.push(card);
        let address = format!("{} Kabukicho Secret-Lane, Shinjuku City", 7 + secrets.len());
        let path = format!("/admin/v1/residents/{}/address", card.card_id());
        seen.keep(admin_post(env.node(), &path, t, Some(json!({"address": address}))).await);
        secrets.push(address);
    }
    for card in fx.ordinary().filter(|c| !c.seal_registered).take(2) {
        let path = format!("/admin/v1/residents/{}/seal/revoke", card.card_id());
        seen.keep(admin_post(env.node(), &path, t, None).await);
        seen.keep(admin_post(env.node(), &path, "wrong-token", None).await);
    }
    // Unknown and malformed card ids, some made of personal data themselves.
    for i in 0..4u64 {
        let unknown = format!("{:016X}", 0xDEAD_BEEF_0000_0000u64 + i);
        if fx.card(&unknown).is_none() {
            seen.keep(k0.raw().create_session(&unknown).await);
            let path = format!("/admin/v1/residents/{unknown}/seal/revoke");
            seen.keep(admin_post(env.node(), &path, t, None).await);
            secrets.push(unknown);
        }
    }
    for card in fx.ordinary().take(3) {
        seen.keep(k0.raw().create_session(&card.full_name).await);
        seen.keep(
            k0.raw()
                .create_session(&card.card_id().to_lowercase())
                .await,
        );
        secrets.push(card.card_id().to_lowercase());
    }
    let lots = (0..600)
        .map(|i| fx.cards[i % fx.cards.len()].card_id().to_owned())
        .collect::<Vec<_>>();
    seen.keep(k0.raw().create_session(&lots.join("")).await);
    let url = format!("{}/v1/sessions", env.node().api);
    let body = format!(
        "{{\"card_id\":\"{}\",\"name\":\"{}\"}}",
        fx.cards[0].card_id(),
        fx.cards[0].full_name
    );
    let auth = format!("Bearer {}", k0.token());
    seen.keep(
        raw(
            reqwest::Method::POST,
            &url,
            Some(&auth),
            Some(body.into_bytes()),
        )
        .await,
    );

    let metrics = get(&format!("{}/metrics", env.node().admin)).await;
    assert_eq!(metrics.status, 200);
    let cluster_url = format!("{}/admin/v1/cluster", env.node().admin);
    seen.keep(raw(reqwest::Method::GET, &cluster_url, None, None).await);
    let logs = env.node().logs();
    // Only a sanity check that the log was captured: how much a node logs is its choice.
    assert!(logs.lines().count() >= 5, "the node's log was not captured");
    assert!(
        seen.errors.len() > 50,
        "the workload produced too few errors"
    );

    let mut sources: Vec<(String, String)> = vec![
        ("node log".into(), logs),
        ("/metrics".into(), metrics.text()),
    ];
    for r in &seen.errors {
        assert_error_body(r);
        sources.push((format!("{} error body", r.status), r.text()));
    }
    let mut leaks = Vec::new();
    for (what, text) in &sources {
        for (i, card) in fx.cards.iter().enumerate() {
            if text.contains(card.card_id()) {
                leaks.push(format!("{what}: card id of fixture card #{i}"));
            }
            if text.contains(&card.full_name) {
                leaks.push(format!("{what}: full name of fixture card #{i}"));
            }
        }
        for (i, s) in secrets.iter().enumerate() {
            if text.contains(s.as_str()) {
                leaks.push(format!("{what}: sensitive input #{i} (address or card id)"));
            }
        }
        for fragment in ["Kabukicho", "Secret-Lane"] {
            if text.contains(fragment) {
                leaks.push(format!("{what}: address fragment {fragment:?}"));
            }
        }
        for card in &touched {
            let family = card.full_name.split_whitespace().last().unwrap_or_default();
            if family.len() > 2 && contains_name(text, family) {
                leaks.push(format!("{what}: family name of {card:?}"));
            }
        }
    }
    leaks.sort();
    leaks.dedup();
    assert!(
        leaks.is_empty(),
        "personal data leaked:\n{}",
        leaks.join("\n")
    );
}
