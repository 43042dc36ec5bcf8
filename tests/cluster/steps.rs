//! What the fail-closed tests share: a session brought as far as a delivered document,
//! the cards whose shards one node owns, bounded retries of a step while it answers
//! `503`, and the audit records kofu left in Redis.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kofu_kiosk::{Expected, Fetched, LongPoll};
use kofu_proto::CertKind;
use kofu_testkit::{Card, Deployment, Kiosk, RedisConn, Resp};

/// The test clusters' shard count (the node's default).
pub const SHARDS: u32 = kofu_proto::DEFAULT_SHARD_COUNT;

/// A session whose residence certificate the kiosk has received and checked.
pub struct Delivered {
    pub card: &'static Card,
    pub kiosk: Kiosk,
    pub session_id: String,
    pub job_id: String,
    pub body: Bytes,
}

/// The node (`node-<n>`) owning a card's shard, in a view of `wait_converged`.
pub fn owner_of(owners: &[Option<String>], card: &Card) -> Option<usize> {
    let shard = kofu_proto::shard_of(&card.id, SHARDS) as usize;
    owners
        .get(shard)?
        .as_ref()?
        .strip_prefix("node-")?
        .parse()
        .ok()
}

/// Up to `n` usable cards whose shards node `node` owns; fails the test if fewer.
pub fn cards_owned_by(
    d: &Deployment,
    owners: &[Option<String>],
    node: usize,
    n: usize,
) -> Vec<&'static Card> {
    let cards: Vec<&'static Card> = d
        .fixtures()
        .ordinary()
        .filter(|c| owner_of(owners, c) == Some(node))
        .take(n)
        .collect();
    assert_eq!(
        cards.len(),
        n,
        "too few usable cards on node {node}'s shards"
    );
    cards
}

/// Create and authenticate: the session id of a session ready for jobs.
pub async fn authenticated(kiosk: &Kiosk, card: &Card) -> String {
    let created = kiosk
        .create_session(card.card_id())
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    kiosk
        .authenticate(card, &created)
        .await
        .unwrap_or_else(|e| panic!("auth: {e}"));
    created.session_id
}

/// Create, authenticate, order one residence certificate and receive it, checked as a
/// kiosk checks it before printing (signature, binding, `pdftotext`).
pub async fn deliver(d: &Deployment, kiosk: &Kiosk, card: &'static Card) -> Delivered {
    let sid = authenticated(kiosk, card).await;
    let job = kiosk
        .create_job(&sid, CertKind::Residence, 1)
        .await
        .unwrap_or_else(|e| panic!("job: {e}"))
        .job_id;
    let poll = LongPoll {
        wait_ms: kofu_kiosk::MAX_WAIT_MS,
        budget: Duration::from_secs(60),
    };
    let Fetched::Ready(doc) = kiosk
        .await_document(&sid, &job, poll)
        .await
        .unwrap_or_else(|e| panic!("document: {e}"))
    else {
        panic!("document still rendering after a minute");
    };
    let order = Expected {
        session_id: &sid,
        kiosk_id: kiosk.kiosk_id(),
        card: &card.id,
        kind: CertKind::Residence,
        copies: 1,
    };
    kofu_testkit::strict(d.fixtures(), d.issuer())
        .verify(&doc, &order)
        .await
        .unwrap_or_else(|e| panic!("the delivered document: {e}"));
    Delivered {
        card,
        kiosk: kiosk.clone(),
        session_id: sid,
        job_id: job,
        body: doc.body,
    }
}

/// Whether an answer says "not now" rather than anything about the session: `503` (with
/// `Retry-After`, as API.md requires) or no answer at all.
pub fn not_now(r: &Resp) -> bool {
    r.status == 0 || (r.status == 503 && r.header("retry-after").is_some())
}

/// Sends a step again while it answers [`not_now`] (a kiosk's retry after `503`), for at
/// most `budget`; the first other answer, or the last one.
pub async fn until_answered<F, Fut>(budget: Duration, mut step: F) -> Resp
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    let deadline = Instant::now() + budget;
    // 100 ms apart: a budget of minutes still bounds the attempts.
    let most = budget.as_millis() / 100 + 1;
    let mut attempts = 0;
    loop {
        let r = step().await;
        attempts += 1;
        if !not_now(&r) || Instant::now() >= deadline || attempts >= most {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status and error code of an answer, for messages.
pub fn said(r: &Resp) -> String {
    match r.error_code() {
        Some(code) => format!("{} {code}", r.status),
        None => r.status.to_string(),
    }
}

/// Every audit record kofu wrote (the `kofu:{s<shard>}:audit` streams), as field maps.
pub fn audit_records(redis: &mut RedisConn) -> Vec<HashMap<String, String>> {
    let keys = redis.scan("kofu:*:audit");
    keys.iter()
        .flat_map(|k| redis.stream(k))
        .map(|fields| fields.into_iter().collect())
        .collect()
}

/// How many audit records name each session.
pub fn audits_per_session(redis: &mut RedisConn) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for record in audit_records(redis) {
        if let Some(sid) = record.get("session_id") {
            *n.entry(sid.clone()).or_default() += 1;
        }
    }
    n
}

/// A delivered document on each of `n` cards that node `owner` owns, each by its own
/// kiosk talking only to the nodes other than `owner` (so the sessions outlive it).
pub async fn delivered_on(
    d: &Deployment,
    owners: &[Option<String>],
    owner: usize,
    n: usize,
) -> Vec<Delivered> {
    let others: Vec<String> = (0..d.nodes.len())
        .filter(|&i| i != owner)
        .map(|i| d.node(i).api.clone())
        .collect();
    let mut delivered = Vec::new();
    for (i, card) in cards_owned_by(d, owners, owner, n).into_iter().enumerate() {
        let kiosk = d.kiosk(i).with_targets(&others);
        delivered.push(deliver(d, &kiosk, card).await);
    }
    delivered
}
