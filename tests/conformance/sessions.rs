//! Endpoint 1 (`POST /v1/sessions`), endpoint 6 (`DELETE`) and the session rules.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use kofu_testkit::suite::*;

fn url_safe(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_answers_201_with_id_challenge_and_expiry() {
    let (env, [k], card) = Env::start_kiosks(&[]).await;
    let r = k.raw().create_session(card.card_id()).await;
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json"),
        "content-type"
    );
    let a = created(&r);
    assert!(!a.session_id.is_empty() && a.session_id.len() <= 64);
    assert!(url_safe(&a.session_id), "session id not URL-safe");
    let challenge = kofu_proto::b64url_decode(&a.challenge).expect("challenge is base64url");
    assert_eq!(challenge.len(), 32);
    assert!(url_safe(&a.challenge), "challenge must be base64url");
    assert_eq!(a.expires_in_s, 180);
    let b = open(&k, full_card(env.fx, 1)).await;
    assert_ne!(a.session_id, b.session_id);
    assert_ne!(a.challenge, b.challenge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_rejects_malformed_unknown_and_revoked_cards() {
    let env = Env::start(&[]).await;
    let k = env.kiosk(0);
    // Each one step away from a well-formed id: lower case, a digit short or too many,
    // a letter past F, nothing, a leading space.
    let good = "0123456789ABCDEF";
    let (short, long) = (&good[..15], format!("{good}0"));
    for bad in [
        good.to_lowercase(),
        short.to_owned(),
        long,
        format!("{short}G"),
        String::new(),
        format!(" {short}"),
    ] {
        expect_error(&k.raw().create_session(&bad).await, "invalid_card_id");
    }
    let r = k.raw().create_session(&unknown_card_id(env.fx)).await;
    expect_error(&r, "unknown_card");
    let revoked = card_where(env.fx, 0, |c| c.card_revoked);
    expect_error(
        &k.raw().create_session(revoked.card_id()).await,
        "card_revoked",
    );

    let url = format!("{}/v1/sessions", env.node().api);
    let auth = format!("Bearer {}", k.token());
    let id = &full_card(env.fx, 0).card_id();
    for body in [
        json!({"card_id": id, "extra": 1}).to_string(),
        "{\"card_id\":".to_string(),
        "not json".to_string(),
        "[]".to_string(),
    ] {
        let r = raw(Method::POST, &url, Some(&auth), Some(body.into_bytes())).await;
        expect_error(&r, "invalid_request");
    }
    // Wrong type or missing id: either code is a faithful reading of API.md.
    for body in [json!({"card_id": 12}), json!({})] {
        let r = post_json(&url, &auth, &body).await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_error_body(&r);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_in_use_at_another_kiosk_and_same_kiosk_reopens() {
    let (_env, [a, b], card) = Env::start_kiosks(&[]).await;
    let first = open(&a, card).await;
    expect_error(&b.raw().create_session(card.card_id()).await, "card_in_use");

    // Same kiosk: the old session is closed first, the new one works.
    let second = open(&a, card).await;
    assert_ne!(first.session_id, second.session_id);
    let sig = card.sign_challenge(&first.session_id, a.kiosk_id(), &first.challenge);
    expect_error(
        &a.raw().auth(&first.session_id, &sig).await,
        "unknown_session",
    );
    let sig = card.sign_challenge(&second.session_id, a.kiosk_id(), &second.challenge);
    assert_eq!(a.raw().auth(&second.session_id, &sig).await.status, 200);
    expect_error(&b.raw().create_session(card.card_id()).await, "card_in_use");

    // Once closed, the card is free for any kiosk.
    assert_eq!(a.raw().close(&second.session_id).await.status, 204);
    open(&b, card).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_is_204_idempotent_and_ends_the_session() {
    let (env, [k], card) = Env::start_kiosks(&[]).await;
    let sid = authed(&k, card).await;
    let jid = job(&k, &sid, "residence", 1).await;
    assert_eq!(k.raw().document(&sid, &jid, 10_000).await.status, 200);
    for _ in 0..2 {
        let r = k.raw().close(&sid).await;
        assert_eq!(r.status, 204, "{}", r.text());
        assert!(r.body.is_empty(), "204 with a body");
    }
    expect_error(&k.raw().auth(&sid, "AAAA").await, "unknown_session");
    expect_error(
        &k.raw().create_job(&sid, "residence", 1).await,
        "unknown_session",
    );
    expect_error(&k.raw().document(&sid, &jid, 0).await, "unknown_session");
    expect_error(&k.raw().printed(&sid, &jid).await, "unknown_session");
    // The card is free again, also for another kiosk.
    open(&env.kiosk(1), card).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_kiosk_sees_unknown_session_on_every_endpoint() {
    let (env, [owner, other], card) = Env::start_kiosks(&[]).await;
    let sid = authed(&owner, card).await;
    let jid = job(&owner, &sid, "residence", 1).await;

    let never = "0000AAAAAAAAAAAAAAAAAAAAAA";
    let reference = expect_error(
        &other.raw().create_job(never, "residence", 1).await,
        "unknown_session",
    );
    let answers = [
        other.raw().auth(&sid, "AAAA").await,
        other.raw().create_job(&sid, "residence", 1).await,
        other.raw().document(&sid, &jid, 0).await,
        other.raw().printed(&sid, &jid).await,
    ];
    for r in &answers {
        assert_eq!(
            expect_error(r, "unknown_session"),
            reference,
            "must look never-existing"
        );
    }
    // DELETE is idempotent, so a never-existing session may answer 204 or 404; another
    // kiosk's session must answer exactly the same way.
    let (mine, nobodys) = (
        other.raw().close(&sid).await,
        other.raw().close(never).await,
    );
    assert_eq!((mine.status, &mine.body), (nobodys.status, &nobodys.body));
    assert!(matches!(mine.status, 204 | 404), "DELETE: {}", mine.status);
    if mine.status == 404 {
        expect_error(&mine, "unknown_session");
    }
    // None of that touched the owner's session.
    env.fetch_residence(&owner, &sid, &jid, card, "owner's document")
        .await;
    assert_eq!(owner.raw().printed(&sid, &jid).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire() {
    let (env, [k], card) = Env::start_kiosks(&["--idle-timeout-ms", "500"]).await;
    let s = open(&k, card).await;
    assert_eq!(
        s.expires_in_s, 1,
        "idle timeout rounded up to whole seconds"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let sig = card.sign_challenge(&s.session_id, k.kiosk_id(), &s.challenge);
    expect_error(&k.raw().auth(&s.session_id, &sig).await, "unknown_session");
    // The expired session released the card.
    open(&env.kiosk(1), card).await;
}
