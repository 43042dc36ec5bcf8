//! Endpoints 4 and 5: the released document and its kiosk-side verification, the long
//! poll, release-time re-validation, voided jobs and the printed confirmation.

use std::time::{Duration, Instant};

use kofu_proto::CertKind;
use kofu_proto::api::PrintedResponse;
use kofu_testkit::admin_post;
use reqwest::Method;

use kofu_testkit::suite::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_verify_and_fetching_again_returns_the_same_bytes() {
    let (env, [k], card) = Env::start_kiosks(&[]).await;
    let sid = authed(&k, card).await;
    for (kind, copies) in [
        ("residence", 1),
        ("seal", 2),
        ("tax", 3),
        ("family_register", 1),
    ] {
        let jid = job(&k, &sid, kind, copies).await;
        let first = k.raw().document(&sid, &jid, 10_000).await;
        let b = env
            .verify(&first, &k, &sid, card, kind, copies)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(first.body.starts_with(b"%PDF-"), "not a PDF");
        assert!(b.record_version >= 1, "record_version {}", b.record_version);
        let again = k.raw().document(&sid, &jid, 0).await;
        assert_eq!(again.status, 200);
        assert_eq!(again.body, first.body, "{kind}: refetch differs");
        assert_eq!(again.header("kofu-binding"), first.header("kofu-binding"));
        assert_eq!(
            again.header("kofu-signature"),
            first.header("kofu-signature")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_jobs_and_bad_wait_values() {
    let (env, [k], card) = Env::start_kiosks(&[]).await;
    let sid = authed(&k, card).await;
    let jid = job(&k, &sid, "residence", 1).await;
    for unknown in ["j4-AAAAAAAAAAA", "j0-AAAAAAAAAAA", "nope"] {
        expect_error(&k.raw().document(&sid, unknown, 0).await, "unknown_job");
        expect_error(&k.raw().printed(&sid, unknown).await, "unknown_job");
    }
    let auth = format!("Bearer {}", k.token());
    let base = format!("{}/v1/sessions/{sid}/jobs/{jid}/document", env.node().api);
    for q in [
        "?wait_ms=10001",
        "?wait_ms=-1",
        "?wait_ms=abc",
        "?wait_ms=1.5",
        "?wait_ms=",
    ] {
        let r = raw(Method::GET, &format!("{base}{q}"), Some(&auth), None).await;
        expect_error(&r, "invalid_request");
    }
    let r = raw(
        Method::GET,
        &format!("{base}?wait_ms=10000"),
        Some(&auth),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendering_answers_202_and_the_long_poll_returns_when_ready() {
    let (env, [k], card) = Env::start_kiosks(&["--render-delay-ms", "1500"]).await;
    let sid = authed(&k, card).await;
    let jid = job(&k, &sid, "residence", 1).await;
    let t = Instant::now();
    let r = k.raw().document(&sid, &jid, 0).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.value(), serde_json::json!({"status": "rendering"}));
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "wait_ms=0 must not wait"
    );
    // Not delivered yet, so not printable.
    expect_error(&k.raw().printed(&sid, &jid).await, "not_delivered");
    let r = k.raw().document(&sid, &jid, 200).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let r = k.raw().document(&sid, &jid, 3000).await;
    let waited = t.elapsed();
    env.verify(&r, &k, &sid, card, "residence", 1)
        .await
        .expect("long-polled document");
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_millis(3500),
        "long poll returned after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_seal_is_never_released_even_for_earlier_jobs() {
    let (env, [k], card) = Env::start_kiosks(&[]).await;
    let sid = authed(&k, card).await;
    let seal = job(&k, &sid, "seal", 1).await;
    let residence = job(&k, &sid, "residence", 1).await;
    // Let it render, so only the release-time check can stop it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let path = format!("/admin/v1/residents/{}/seal/revoke", card.card_id());
    let r = admin_post(env.node(), &path, env.admin_token(), None).await;
    assert_eq!(r.status, 200, "revoke: {}", r.text());
    for _ in 0..2 {
        let v = expect_error(&k.raw().document(&sid, &seal, 1000).await, "not_issuable");
        assert!(v["reason"].is_string(), "422 without reason: {v}");
    }
    let v = expect_error(&k.raw().create_job(&sid, "seal", 1).await, "not_issuable");
    assert_eq!(v["reason"], "seal_revoked");
    expect_error(&k.raw().printed(&sid, &seal).await, "not_delivered");
    // The holder's other documents are unaffected.
    env.fetch_residence(
        &k,
        &sid,
        &residence,
        card,
        "residence after a seal revocation",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_during_rendering_refuses_the_release() {
    let env = Env::start(&["--render-delay-ms", "1000"]).await;
    let k = env.kiosk(0);
    let card = full_card(env.fx, 1);
    let sid = authed(&k, card).await;
    let seal = job(&k, &sid, "seal", 1).await;
    let path = format!("/admin/v1/residents/{}/seal/revoke", card.card_id());
    let r = admin_post(env.node(), &path, env.admin_token(), None).await;
    assert_eq!(r.status, 200, "revoke: {}", r.text());
    let v = expect_error(&k.raw().document(&sid, &seal, 5000).await, "not_issuable");
    assert!(v["reason"].is_string(), "422 without reason: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_render_deadline_is_voided_for_good() {
    let (_env, [k], card) =
        Env::start_kiosks(&["--render-deadline-ms", "300", "--render-delay-ms", "1000"]).await;
    let sid = authed(&k, card).await;
    let jid = job(&k, &sid, "residence", 1).await;
    let t = Instant::now();
    let r = k.raw().document(&sid, &jid, 5000).await;
    expect_error(&r, "job_voided");
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "voided late: {:?}",
        t.elapsed()
    );
    // After the render would have finished: still voided, never a document.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    expect_error(&k.raw().document(&sid, &jid, 0).await, "job_voided");
    expect_error(&k.raw().document(&sid, &jid, 500).await, "job_voided");
    assert_ne!(
        k.raw().printed(&sid, &jid).await.status,
        200,
        "a voided job was charged"
    );
    // The kiosk may create a new job.
    let next = k.raw().create_job(&sid, "residence", 1).await;
    assert_eq!(next.status, 202, "{}", next.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_needs_delivery_and_is_idempotent() {
    let (env, [k], card) = Env::start_kiosks(&[]).await;
    let sid = authed(&k, card).await;
    let jid = job(&k, &sid, "tax", 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    expect_error(&k.raw().printed(&sid, &jid).await, "not_delivered");
    let doc = k.raw().document(&sid, &jid, 10_000).await;
    let b = env
        .verify(&doc, &k, &sid, card, "tax", 2)
        .await
        .expect("tax document");
    let fee = CertKind::Tax.fee_yen() * 2;
    let first = k.raw().printed(&sid, &jid).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let p: PrintedResponse = first.json();
    assert_eq!((p.serial.as_str(), p.charged_yen), (b.serial.as_str(), fee));
    for _ in 0..2 {
        let again = k.raw().printed(&sid, &jid).await;
        assert_eq!(again.status, 200);
        assert_eq!(again.json::<PrintedResponse>(), p);
    }
    // Still fetchable until the session ends.
    assert_eq!(k.raw().document(&sid, &jid, 0).await.body, doc.body);
    assert_eq!(k.raw().close(&sid).await.status, 204);
}
