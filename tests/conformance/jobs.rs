//! Endpoint 3 (`POST /v1/sessions/{id}/jobs`): fees, validation, issuability and the
//! five-jobs limit.

use kofu_proto::CertKind;
use kofu_proto::api::JobResponse;
use reqwest::Method;
use serde_json::json;

use kofu_testkit::suite::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_answer_202_with_fee_times_copies() {
    let env = Env::start(&[]).await;
    let k = env.kiosk(0);
    for (i, kind) in CertKind::ALL.into_iter().enumerate() {
        let sid = authed(&k, full_card(env.fx, i)).await;
        for copies in 1..=5u8 {
            let r = k.raw().create_job(&sid, kind.as_str(), copies).await;
            assert_eq!(r.status, 202, "{kind} x{copies}: {}", r.text());
            let j: JobResponse = r.json();
            assert!(!j.job_id.is_empty());
            assert_eq!(
                j.fee_yen,
                kind.fee_yen() * u32::from(copies),
                "{kind} x{copies}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_need_an_authenticated_session() {
    let (_env, [k], card) = Env::start_kiosks(&[]).await;
    let s = open(&k, card).await;
    expect_error(
        &k.raw().create_job(&s.session_id, "residence", 1).await,
        "not_authenticated",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_job_requests_are_400() {
    let (env, [k], card) = Env::start_kiosks(&[]).await;
    let sid = authed(&k, card).await;
    let url = format!("{}/v1/sessions/{sid}/jobs", env.node().api);
    let auth = format!("Bearer {}", k.token());
    let bodies = [
        json!({"kind": "passport", "copies": 1}),
        json!({"kind": "Residence", "copies": 1}),
        json!({"kind": "residence", "copies": 0}),
        json!({"kind": "residence", "copies": 6}),
        json!({"kind": "residence", "copies": -1}),
        json!({"kind": "residence", "copies": 1.5}),
        json!({"kind": "residence", "copies": "1"}),
        json!({"kind": "residence", "copies": 256}),
        json!({"kind": "residence"}),
        json!({"copies": 1}),
        json!({"kind": "residence", "copies": 1, "color": true}),
        json!(null),
        json!([1, 2]),
    ];
    for body in bodies {
        let r = post_json(&url, &auth, &body).await;
        expect_error(&r, "invalid_request");
    }
    let r = raw(
        Method::POST,
        &url,
        Some(&auth),
        Some(b"{\"kind\":".to_vec()),
    )
    .await;
    expect_error(&r, "invalid_request");
    // Refused requests created nothing: all five jobs are still available.
    for _ in 0..5 {
        job(&k, &sid, "residence", 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_issuable_names_its_reason() {
    let env = Env::start(&[]).await;
    let k = env.kiosk(0);
    let fx = env.fx;
    let cases = [
        (
            card_where(fx, 0, |c| {
                !c.card_revoked && !c.restricted && !c.seal_registered
            }),
            "seal",
            "seal_not_registered",
        ),
        (
            card_where(fx, 0, |c| {
                !c.card_revoked && !c.restricted && c.seal_revoked
            }),
            "seal",
            "seal_revoked",
        ),
        (
            card_where(fx, 0, |c| !c.card_revoked && !c.restricted && !c.tax_record),
            "tax",
            "no_tax_record",
        ),
        (
            card_where(fx, 0, |c| !c.card_revoked && c.restricted),
            "residence",
            "record_restricted",
        ),
        (
            card_where(fx, 0, |c| !c.card_revoked && c.restricted),
            "family_register",
            "record_restricted",
        ),
    ];
    for (card, kind, reason) in cases {
        let sid = authed(&k, card).await;
        let v = expect_error(&k.raw().create_job(&sid, kind, 1).await, "not_issuable");
        assert_eq!(v["reason"], reason, "{kind}: {v}");
        assert_eq!(k.raw().close(&sid).await.status, 204);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sixth_job_is_429() {
    let (_env, [k], card) = Env::start_kiosks(&[]).await;
    let sid = authed(&k, card).await;
    let mut ids = Vec::new();
    for kind in ["residence", "seal", "tax", "family_register", "residence"] {
        ids.push(job(&k, &sid, kind, 1).await);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "job ids must be distinct");
    expect_error(
        &k.raw().create_job(&sid, "residence", 1).await,
        "too_many_jobs",
    );
    expect_error(&k.raw().create_job(&sid, "tax", 2).await, "too_many_jobs");
}
