//! What Redis holds, and when a change counts as made: a seal revocation is acknowledged
//! only once a replica has it, so a failover cannot undo it (API.md's admin API, issue
//! 10's incident 6 on Sentinel); and whatever sessions did, Redis holds no card id (I6).

use std::time::Duration;

use futures::future::join_all;
use kofu_testkit::{Card, Kiosk, Method, SentinelSetup};

use super::steps::{SHARDS, authenticated, deliver, not_now, owner_of, said, until_answered};
use super::*;

/// A busy 2-core machine's time for a replica's full sync, a Sentinel failover or a
/// shard's move; conditions are polled, so the budget costs nothing when they come fast.
const BUDGET: Duration = Duration::from_secs(90);

/// Opens and authenticates a session for `card` at `kiosk` (retrying while `503`), then
/// orders a seal certificate: the answer to the order, or to the document request if the
/// order was taken. The session is closed.
async fn seal_order(kiosk: &Kiosk, card: &Card) -> kofu_testkit::Resp {
    let r = until_answered(BUDGET, || async {
        kiosk.raw().create_session(card.card_id()).await
    })
    .await;
    assert_eq!(r.status, 201, "create: {}", said(&r));
    let sid = r.value()["session_id"].as_str().unwrap_or("").to_owned();
    let challenge = r.value()["challenge"].as_str().unwrap_or("").to_owned();
    let sig = card.sign_challenge(&sid, kiosk.kiosk_id(), &challenge);
    let r = until_answered(BUDGET, || async { kiosk.raw().auth(&sid, &sig).await }).await;
    assert_eq!(r.status, 200, "auth: {}", said(&r));
    let ordered = until_answered(BUDGET, || async {
        kiosk.raw().create_job(&sid, "seal", 1).await
    })
    .await;
    let answer = if ordered.status == 202 {
        let job = ordered.value()["job_id"].as_str().unwrap_or("").to_owned();
        until_answered(BUDGET, || async {
            kiosk
                .raw()
                .document(&sid, &job, kofu_kiosk::MAX_WAIT_MS)
                .await
        })
        .await
    } else {
        ordered
    };
    let r = until_answered(BUDGET, || async { kiosk.raw().close(&sid).await }).await;
    assert_eq!(r.status, 204, "close: {}", said(&r));
    answer
}

/// Issue 10, "an acknowledged seal revocation lost in a failover": with the replica cut
/// off a revocation answers `503` (it may be applied, it is not acknowledged); with the
/// replica back the retry answers `200`; after the primary is killed and the replica
/// promoted, no node issues a seal certificate to those holders.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_is_acknowledged_only_once_a_replica_has_it() {
    let mut sentinel = tokio::task::block_in_place(SentinelSetup::start);
    let opts = DeploymentOptions {
        redis_url: Some(sentinel.url()),
        ..DeploymentOptions::nodes(3)
    };
    let cluster = tokio::task::block_in_place(|| Deployment::start(opts));
    let owners = tokio::task::block_in_place(|| cluster.wait_converged());
    let fx = cluster.fixtures();
    let sealed: Vec<&Card> = fx.ordinary().filter(|c| c.seal_issuable()).collect();
    // Six holders, two in the shards of each node, and one holder left alone.
    let mut holders = Vec::new();
    for node in 0..3 {
        holders.extend(
            sealed
                .iter()
                .filter(|c| owner_of(&owners, c) == Some(node))
                .take(2)
                .copied(),
        );
    }
    assert_eq!(holders.len(), 6, "too few seal holders");
    let control = sealed
        .iter()
        .find(|c| !holders.iter().any(|h| h.id == c.id))
        .expect("another seal holder");
    let revoke = |card: &Card| format!("/admin/v1/residents/{}/seal/revoke", card.card_id());

    // Each revocation through another node; all at once (each waits for the replica).
    tokio::task::block_in_place(|| sentinel.replica.stop());
    let answers = join_all(holders.iter().enumerate().map(|(i, card)| {
        let (path, cluster) = (revoke(card), &cluster);
        async move { cluster.admin(i, Method::POST, &path, None).await }
    }))
    .await;
    for r in &answers {
        assert_eq!(
            r.status,
            503,
            "a revocation no replica has was answered {}",
            said(r)
        );
        assert!(not_now(r), "503 without Retry-After");
    }

    tokio::task::block_in_place(|| sentinel.replica.start_again());
    let answers = join_all(holders.iter().enumerate().map(|(i, card)| {
        let (path, cluster) = (revoke(card), &cluster);
        async move {
            until_answered(BUDGET, || async {
                cluster.admin(i, Method::POST, &path, None).await
            })
            .await
        }
    }))
    .await;
    for r in &answers {
        assert_eq!(
            r.status,
            200,
            "revocation with the replica back: {}",
            said(r)
        );
        assert_eq!(r.value()["seal"], "revoked");
    }

    let took = tokio::task::block_in_place(|| sentinel.fail_over());
    // Writes need a replica: the old primary comes back as one.
    tokio::task::block_in_place(|| sentinel.rejoin_old_primary());
    println!("failover took {took:?}");
    for node in cluster.live() {
        let kiosk = cluster.kiosk(node).pinned(node);
        for card in &holders {
            let r = seal_order(&kiosk, card).await;
            assert_eq!(
                (said(&r).as_str(), r.value()["reason"].as_str()),
                ("422 not_issuable", Some("seal_revoked")),
                "a revoked holder's seal certificate through node {node}"
            );
        }
    }
    // The refusals are the revocations' doing: another holder still gets one.
    let r = seal_order(&cluster.kiosk(5), control).await;
    assert_eq!(
        r.status,
        200,
        "control holder's seal certificate: {}",
        said(&r)
    );
}

/// Card ids in any case, as Redis would hold them in a key or a value.
fn card_id_in(haystack: &[u8], card_ids: &[String]) -> bool {
    let lower = haystack.to_ascii_lowercase();
    card_ids.iter().any(|id| {
        let id = id.to_ascii_lowercase();
        lower.windows(id.len()).any(|w| w == id.as_bytes())
    })
}

/// Issue 10: "snapshots contain the raw card id". After sessions of every kind ran
/// (printed and closed, delivered and left open, merely authenticated), no key and no
/// value in Redis holds a card id those sessions used, in any case, nor a holder's
/// name. The registry's records are the one exception: they are the resident data
/// itself (name, address, the card's serial), kept under the card's digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_holds_no_card_id_of_any_session() {
    let cluster = cluster_with(3, &[]);
    let fx = cluster.fixtures();
    let cards: Vec<&'static Card> = fx.ordinary().take(24).collect();
    for (i, card) in cards.iter().enumerate() {
        let kiosk = cluster.kiosk(i % fx.kiosks.len());
        match i % 3 {
            // Printed and closed: tombstone, audit record.
            0 => {
                let s = deliver(&cluster, &kiosk, card).await;
                let r = kiosk.raw().printed(&s.session_id, &s.job_id).await;
                assert_eq!(r.status, 200, "printed: {}", said(&r));
                let r = kiosk.raw().close(&s.session_id).await;
                assert_eq!(r.status, 204, "close: {}", said(&r));
            }
            // Delivered and still open: snapshot with a job, card lock, index entry.
            1 => {
                deliver(&cluster, &kiosk, card).await;
            }
            // Authenticated only.
            _ => {
                authenticated(&kiosk, card).await;
            }
        }
    }
    let card_ids: Vec<String> = cards.iter().map(|c| c.card_id().to_owned()).collect();
    let names: Vec<Vec<u8>> = cards
        .iter()
        .flat_map(|c| {
            [
                c.full_name.clone(),
                c.full_name.replace([' ', '\u{3000}'], ""),
            ]
        })
        .map(String::into_bytes)
        .collect();
    let mut redis = cluster.redis.as_ref().expect("own redis").conn();
    let keys = redis.scan("*");
    let (mut kinds, mut leaks) = (
        std::collections::BTreeMap::<String, usize>::new(),
        Vec::new(),
    );
    for key in &keys {
        let text = String::from_utf8_lossy(key).into_owned();
        if card_id_in(key, &card_ids) {
            leaks.push(format!("a key of {} bytes", key.len()));
        }
        // `kofu:{s<n>}:rec:<digest>` and its kept versions `...@<version>`.
        if text.contains(":rec:") {
            continue;
        }
        *kinds.entry(kind_of(&text)).or_default() += 1;
        for value in redis.contents(key) {
            if card_id_in(&value, &card_ids) {
                leaks.push(format!("card id in {}", kind_of(&text)));
            }
            if names
                .iter()
                .any(|n| value.windows(n.len()).any(|w| w == n.as_slice()))
            {
                leaks.push(format!("name in {}", kind_of(&text)));
            }
        }
    }
    println!("{} keys; outside the registry: {kinds:?}", keys.len());
    assert!(leaks.is_empty(), "personal data in Redis: {leaks:?}");
    // What the sessions left is among what was scanned: a snapshot or tombstone each,
    // the open ones' card locks, the printed ones' audit records.
    let kinds_of = |k: &str| kinds.get(k).copied().unwrap_or(0);
    assert!(kinds_of("snap") >= cards.len(), "session keys: {kinds:?}");
    assert!(
        kinds_of("lock") >= 2 * cards.len() / 3,
        "card locks: {kinds:?}"
    );
    assert!(kinds_of("audit") >= 1, "audit streams: {kinds:?}");
    // The card ids are known to the scan: the registry holds them, as it should.
    let shard = kofu_proto::shard_of(&cards[0].id, SHARDS);
    let rec = redis.scan(&format!("kofu:{{s{shard}}}:rec:*"));
    let held = rec
        .iter()
        .flat_map(|k| redis.contents(k))
        .any(|v| card_id_in(&v, &card_ids[..1]));
    assert!(held, "the scan finds no card id even in the registry");
}

/// The kind of a kofu key without its session id or digest: `kofu:{s12}:snap:...` is
/// `snap`.
fn kind_of(key: &str) -> String {
    key.split(':').nth(2).unwrap_or("?").to_owned()
}
