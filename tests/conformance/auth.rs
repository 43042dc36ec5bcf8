//! Endpoint 2 (`POST /v1/sessions/{id}/auth`): the answer's shape, the three-strikes
//! lock and the states in which auth is refused.

use ed25519_dalek::Signer;
use kofu_proto::CertKind;
use kofu_proto::api::AuthResponse;
use kofu_testkit::Card;

use kofu_testkit::suite::*;

/// What API.md and the record model say this holder may be issued now.
fn expected_kinds(card: &Card) -> Vec<(String, u32)> {
    if card.restricted {
        return Vec::new();
    }
    CertKind::ALL
        .into_iter()
        .filter(|k| match k {
            CertKind::Seal => card.seal_registered && !card.seal_revoked,
            CertKind::Tax => card.tax_record,
            CertKind::Residence | CertKind::FamilyRegister => true,
        })
        // API.md's fee table, spelled out so a wrong table in proto cannot hide here.
        .map(|k| {
            let fee = match k {
                CertKind::Residence | CertKind::Seal => 200,
                CertKind::Tax => 300,
                CertKind::FamilyRegister => 450,
            };
            (k.as_str().to_owned(), fee)
        })
        .collect()
}

/// The kiosk screen's mask: a Japanese name shows the first character of a family name
/// of two or more characters and a fixed `＊＊` per part (`佐藤 太郎` → `佐＊＊ ＊＊`); a
/// romanized name keeps each word's initial (`Y*** T***`).
fn masked(full_name: &str) -> String {
    let words = full_name.split_whitespace();
    if full_name.is_ascii() {
        return words
            .map(|w| format!("{}***", w.chars().next().unwrap_or('?')))
            .collect::<Vec<_>>()
            .join(" ");
    }
    words
        .enumerate()
        .map(|(i, w)| {
            let chars: Vec<char> = w.chars().collect();
            match chars.as_slice() {
                [first, _, ..] if i == 0 => format!("{first}＊＊"),
                _ => "＊＊".to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_answers_masked_holder_municipality_and_issuable_kinds() {
    let env = Env::start(&[]).await;
    let k = env.kiosk(0);
    // A spread of statuses: every combination the fixtures have, plus restricted.
    let mut cards: Vec<&Card> = env.fx.ordinary().take(12).collect();
    for pred in [
        (|c: &Card| !c.seal_registered) as fn(&Card) -> bool,
        |c| c.seal_revoked,
        |c| !c.tax_record,
        |c| c.restricted,
    ] {
        cards.push(card_where(env.fx, 0, |c| !c.card_revoked && pred(c)));
    }
    for card in cards {
        let s = open(&k, card).await;
        let sig = card.sign_challenge(&s.session_id, k.kiosk_id(), &s.challenge);
        let r = k.raw().auth(&s.session_id, &sig).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let a: AuthResponse = r.json();
        assert_eq!(a.holder.display_name, masked(&card.full_name));
        assert_eq!(a.municipality.code, card.municipality_code);
        assert!(!a.municipality.name.is_empty());
        let mut got: Vec<(String, u32)> = a
            .kinds
            .iter()
            .map(|o| (o.kind.as_str().to_owned(), o.fee_yen))
            .collect();
        let mut want = expected_kinds(card);
        got.sort();
        want.sort();
        assert_eq!(got, want, "kinds for {card:?}");
        let text = r.text();
        for word in card.full_name.split_whitespace() {
            assert!(!text.contains(word), "auth answer spells out a name");
        }
        assert!(
            !text.contains(card.card_id()),
            "auth answer echoes the card id"
        );
        assert_eq!(k.raw().close(&s.session_id).await.status, 204);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_bad_signatures_lock_the_session() {
    let (env, [k], card) = Env::start_kiosks(&[]).await;
    let impostor = full_card(env.fx, 1);
    let s = open(&k, card).await;
    let forged = impostor.sign_challenge(&s.session_id, k.kiosk_id(), &s.challenge);
    for left in [2, 1] {
        let v = expect_error(&k.raw().auth(&s.session_id, &forged).await, "bad_signature");
        assert_eq!(v["attempts_left"], left, "{v}");
    }
    expect_error(
        &k.raw().auth(&s.session_id, &forged).await,
        "session_locked",
    );
    // Locked means closed: even the genuine signature now finds no session.
    let genuine = card.sign_challenge(&s.session_id, k.kiosk_id(), &s.challenge);
    expect_error(
        &k.raw().auth(&s.session_id, &genuine).await,
        "unknown_session",
    );
    expect_error(
        &k.raw().create_job(&s.session_id, "residence", 1).await,
        "unknown_session",
    );
    // And the card can start over.
    authed(&k, card).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_signature_after_a_bad_one_still_authenticates() {
    let (env, [k], card) = Env::start_kiosks(&[]).await;
    let s = open(&k, card).await;
    // Signed over the wrong kiosk id: a relay for another store must not verify.
    let wrong_kiosk = card.sign_challenge(&s.session_id, &env.fx.kiosks[1].kiosk_id, &s.challenge);
    let v = expect_error(
        &k.raw().auth(&s.session_id, &wrong_kiosk).await,
        "bad_signature",
    );
    assert_eq!(v["attempts_left"], 2);
    // Not even a signature: still just a bad signature.
    let junk = kofu_proto::b64url(&card.signing_key.sign(b"something else").to_bytes());
    let v = expect_error(&k.raw().auth(&s.session_id, &junk).await, "bad_signature");
    assert_eq!(v["attempts_left"], 1);
    let genuine = card.sign_challenge(&s.session_id, k.kiosk_id(), &s.challenge);
    assert_eq!(k.raw().auth(&s.session_id, &genuine).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_on_an_authenticated_session_is_409() {
    let (env, [k], card) = Env::start_kiosks(&[]).await;
    let s = open(&k, card).await;
    let sig = card.sign_challenge(&s.session_id, k.kiosk_id(), &s.challenge);
    assert_eq!(k.raw().auth(&s.session_id, &sig).await.status, 200);
    expect_error(
        &k.raw().auth(&s.session_id, &sig).await,
        "already_authenticated",
    );
    // Even a bad signature on an authenticated session is no strike against it.
    let other = full_card(env.fx, 1).sign_challenge(&s.session_id, k.kiosk_id(), &s.challenge);
    expect_error(
        &k.raw().auth(&s.session_id, &other).await,
        "already_authenticated",
    );
    job(&k, &s.session_id, "residence", 1).await;
}
