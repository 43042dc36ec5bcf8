//! Security properties over real HTTP: sessions cannot be borrowed across kiosks or
//! authenticated with forged or replayed signatures, session ids are unguessable, and no
//! personal data reaches logs, metrics or error bodies (I6).

mod privacy;

use tokio::task::JoinSet;

use kofu_testkit::suite::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_kiosks_credential_finds_no_session() {
    let (_env, [owner, thief], card) = Env::start_kiosks(&[]).await;
    let s = open(&owner, card).await;
    let never = "0001AAAAAAAAAAAAAAAAAAAAAA";
    // The thief even holds a valid signature for the owner's session.
    let sig = card.sign_challenge(&s.session_id, owner.kiosk_id(), &s.challenge);
    let stolen = thief.raw().auth(&s.session_id, &sig).await;
    let nothing = thief.raw().auth(never, &sig).await;
    expect_error(&stolen, "unknown_session");
    assert_eq!(
        stolen.body, nothing.body,
        "a foreign session must look never-existing"
    );
    let thief_sig = card.sign_challenge(&s.session_id, thief.kiosk_id(), &s.challenge);
    expect_error(
        &thief.raw().auth(&s.session_id, &thief_sig).await,
        "unknown_session",
    );
    // The owner is unaffected (no strike was counted).
    assert_eq!(owner.raw().auth(&s.session_id, &sig).await.status, 200);
    let stolen = thief.raw().create_job(&s.session_id, "residence", 1).await;
    let nothing = thief.raw().create_job(never, "residence", 1).await;
    expect_error(&stolen, "unknown_session");
    assert_eq!(stolen.body, nothing.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_signatures_fail() {
    let env = Env::start(&[]).await;
    let (k0, k1) = (env.kiosk(0), env.kiosk(1));
    let (victim, attacker) = (full_card(env.fx, 0), full_card(env.fx, 1));
    let a = open(&k0, victim).await;
    let b = open(&k1, attacker).await;
    // Another card's key over the right message.
    let other_key = attacker.sign_challenge(&a.session_id, k0.kiosk_id(), &a.challenge);
    expect_error(
        &k0.raw().auth(&a.session_id, &other_key).await,
        "bad_signature",
    );
    // The right key over another session's challenge.
    let other_challenge = victim.sign_challenge(&a.session_id, k0.kiosk_id(), &b.challenge);
    expect_error(
        &k0.raw().auth(&a.session_id, &other_challenge).await,
        "bad_signature",
    );
    // A genuine signature made for session b, relayed into a.
    let for_b = attacker.sign_challenge(&b.session_id, k1.kiosk_id(), &b.challenge);
    expect_error(
        &k0.raw().auth(&a.session_id, &for_b).await,
        "session_locked",
    );
    // ...and it still works where it belongs.
    assert_eq!(k1.raw().auth(&b.session_id, &for_b).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_signature_fails_on_a_new_session() {
    let (_env, [k], card) = Env::start_kiosks(&[]).await;
    let first = open(&k, card).await;
    let sig = card.sign_challenge(&first.session_id, k.kiosk_id(), &first.challenge);
    assert_eq!(k.raw().auth(&first.session_id, &sig).await.status, 200);
    assert_eq!(k.raw().close(&first.session_id).await.status, 204);
    for _ in 0..3 {
        let next = open(&k, card).await;
        assert_ne!(next.challenge, first.challenge);
        let v = expect_error(&k.raw().auth(&next.session_id, &sig).await, "bad_signature");
        assert_eq!(v["attempts_left"], 2);
    }
}

/// Bits set per position over many samples: each position must look like a fair coin.
fn assert_balanced(samples: &[Vec<u8>], what: &str) {
    let n = samples.len() as f64;
    let bits = samples[0].len() * 8;
    let mut total = 0u64;
    for bit in 0..bits {
        let ones = samples
            .iter()
            .filter(|s| s[bit / 8] & (0x80 >> (bit % 8)) != 0)
            .count() as f64;
        total += ones as u64;
        // 6 sigma of a fair coin over n draws.
        let slack = 6.0 * (n * 0.25).sqrt();
        assert!(
            (ones - n / 2.0).abs() <= slack,
            "{what}: bit {bit} set in {ones} of {n} samples"
        );
    }
    let share = total as f64 / (n * bits as f64);
    assert!(
        (share - 0.5).abs() < 0.01,
        "{what}: {share} of all bits set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ids_are_distinct_and_carry_128_random_bits() {
    let env = Env::start(&[]).await;
    const TASKS: usize = 10;
    const PER_TASK: usize = 100;
    let cards: Vec<_> = env.fx.ordinary().cloned().collect();
    let mut set = JoinSet::new();
    for t in 0..TASKS {
        let k = env.kiosk(t);
        let mine: Vec<_> = cards.iter().skip(t).step_by(TASKS).cloned().collect();
        set.spawn(async move {
            let mut out = Vec::with_capacity(PER_TASK);
            for i in 0..PER_TASK {
                let card = &mine[i % mine.len()];
                let s = open(&k, card).await;
                assert_eq!(k.raw().close(&s.session_id).await.status, 204);
                out.push((s.session_id, s.challenge));
            }
            out
        });
    }
    let mut all = Vec::new();
    while let Some(part) = set.join_next().await {
        all.extend(part.expect("task"));
    }
    assert_eq!(all.len(), TASKS * PER_TASK);
    let mut ids: Vec<&str> = all.iter().map(|(s, _)| s.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "duplicate session ids");
    let mut randoms = Vec::new();
    for (sid, _) in &all {
        assert!(
            sid.len() >= 26 && sid.len() <= 64,
            "session id length {}",
            sid.len()
        );
        // The last 22 base64url characters carry the 128 random bits.
        let tail = &sid[sid.len() - 22..];
        let raw = kofu_proto::b64url_decode(tail).expect("random part is base64url");
        assert_eq!(raw.len(), 16);
        randoms.push(raw);
    }
    let mut distinct = randoms.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), randoms.len(), "random parts repeat");
    assert_balanced(&randoms, "session id random part");
    let challenges: Vec<Vec<u8>> = all
        .iter()
        .map(|(_, c)| kofu_proto::b64url_decode(c).expect("challenge"))
        .collect();
    assert_balanced(&challenges, "challenge");
}
