//! A kiosk driving sessions through the router as `kofu-node/src/http/kiosk.rs` does
//! (`Router::create_session`, `Router::call`), with answers reduced to what the kiosk
//! would see over HTTP. The only file naming kofu-actors' op and reply types.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signer as _, SigningKey};
use kofu_core::records::ResidentRecord;
use kofu_proto::verify::{Expected, IssuerKeys, verify_release};
use kofu_proto::wire::Body;
use kofu_proto::{
    Binding, CardId, CertKind, ErrorCode, JobId, KioskId, SessionId, SessionOp, SessionReply,
};

use super::World;

/// A resident's card: its record and the key it signs challenges with.
#[derive(Clone)]
pub struct Card {
    pub id: CardId,
    pub record: Arc<ResidentRecord>,
    key: SigningKey,
}

impl Card {
    pub fn new(record: ResidentRecord, secret: [u8; 32]) -> Card {
        Card {
            id: record.card_id.clone(),
            record: Arc::new(record),
            key: SigningKey::from_bytes(&secret),
        }
    }
}

/// A released document as the kiosk receives it.
#[derive(Clone, PartialEq, Eq)]
pub struct Doc {
    pub pdf: Vec<u8>,
    pub binding_b64: String,
    pub signature_b64: String,
}

impl std::fmt::Debug for Doc {
    // The body holds a name and an address (I6, in test output too); the binding names
    // the card by digest only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doc")
            .field("pdf_bytes", &self.pdf.len())
            .field("binding_b64", &self.binding_b64)
            .finish_non_exhaustive()
    }
}

/// What a kiosk sees: the status and the body that matters to these tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Created {
        session: SessionId,
        challenge: Vec<u8>,
    },
    Authenticated,
    JobCreated(JobId),
    Document(Doc),
    Rendering,
    Printed {
        serial: String,
        charged_yen: u32,
    },
    Closed,
    /// The owner took note of a node-internal notice.
    Noted,
    Error(ErrorCode),
}

impl Answer {
    pub fn status(&self) -> u16 {
        match self {
            Answer::Created { .. } => 201,
            Answer::Authenticated | Answer::Document(_) | Answer::Printed { .. } => 200,
            Answer::JobCreated(_) | Answer::Rendering => 202,
            Answer::Closed => 204,
            Answer::Noted => 0,
            Answer::Error(code) => code.status(),
        }
    }

    /// An answer that says the session (or its job) is gone: wrong for a live session.
    pub fn says_gone(&self) -> bool {
        matches!(self.status(), 404 | 204 | 410 | 422)
    }

    pub fn is_unavailable(&self) -> bool {
        *self == Answer::Error(ErrorCode::Unavailable)
    }

    pub fn document(self) -> Doc {
        match self {
            Answer::Document(doc) => doc,
            other => panic!("expected a document, got {other:?}"),
        }
    }

    pub fn job(self) -> JobId {
        match self {
            Answer::JobCreated(job) => job,
            other => panic!("expected a job, got {other:?}"),
        }
    }
}

fn answer(reply: SessionReply) -> Answer {
    match reply {
        SessionReply::Created(r) => Answer::Created {
            session: SessionId::parse(&r.session_id).expect("a session id"),
            challenge: kofu_proto::b64url_decode(&r.challenge).expect("a challenge"),
        },
        SessionReply::Authenticated(_) => Answer::Authenticated,
        SessionReply::JobCreated(r) => Answer::JobCreated(JobId::parse(&r.job_id).expect("job")),
        SessionReply::Document(d) => Answer::Document(Doc {
            pdf: d.pdf.to_vec(),
            binding_b64: d.binding_b64.clone(),
            signature_b64: d.signature_b64.clone(),
        }),
        SessionReply::Rendering => Answer::Rendering,
        SessionReply::Printed(r) => Answer::Printed {
            serial: r.serial,
            charged_yen: r.charged_yen,
        },
        SessionReply::Closed => Answer::Closed,
        SessionReply::Noted => Answer::Noted,
        SessionReply::Error(e) => Answer::Error(e.code),
    }
}

/// A session as its kiosk knows it.
#[derive(Clone)]
pub struct Open {
    pub id: SessionId,
    pub kiosk: KioskId,
    pub card: Card,
    challenge: Vec<u8>,
}

impl Open {
    /// The same session id in the hands of another kiosk.
    pub fn at(&self, kiosk: KioskId) -> Open {
        Open {
            kiosk,
            ..self.clone()
        }
    }
}

impl World {
    /// `POST /v1/sessions` (the handler has read the record already).
    pub async fn create(&self, card: &Card, kiosk: &KioskId) -> Answer {
        let reply = self
            .router
            .create_session(card.id.clone(), card.record.clone(), kiosk.clone())
            .await;
        answer(reply)
    }

    /// A created session, not authenticated yet.
    pub async fn created(&self, card: &Card, kiosk: &KioskId) -> Open {
        let Answer::Created { session, challenge } = self.create(card, kiosk).await else {
            panic!("the session was not created");
        };
        Open {
            id: session,
            kiosk: kiosk.clone(),
            card: card.clone(),
            challenge,
        }
    }

    /// A created and authenticated session.
    pub async fn open(&self, card: &Card, kiosk: &KioskId) -> Open {
        let open = self.created(card, kiosk).await;
        assert_eq!(self.auth(&open).await, Answer::Authenticated);
        open
    }

    /// An authenticated session of kiosk number `kiosk` for the `n`-th card of `shard`.
    pub async fn open_in(&self, shard: u32, n: usize, kiosk: usize) -> Open {
        self.open(&self.card_in(shard, n), &self.kiosk(kiosk)).await
    }

    /// `open_in`, with a residence certificate delivered (and verified): where most
    /// tests start.
    pub async fn delivered_in(&self, shard: u32, n: usize, kiosk: usize) -> (Open, JobId, Doc) {
        let s = self.open_in(shard, n, kiosk).await;
        let (job, doc) = self.delivered(&s, CertKind::Residence).await;
        (s, job, doc)
    }

    /// Two sessions in `shard` by kiosks 0 and 1: one just opened, one with a document
    /// delivered (the common start of the takeover tests).
    pub async fn open_and_delivered_in(&self, shard: u32) -> (Open, (Open, JobId, Doc)) {
        let a = self.open_in(shard, 0, 0).await;
        (a, self.delivered_in(shard, 1, 1).await)
    }

    /// Kiosk 0 inserts the `n`-th card of `shard`; the store applies the start (card
    /// lock, snapshot) and goes down before it acknowledges: the kiosk is told `503`.
    pub async fn start_lost_with_the_store(&self, shard: u32, n: usize) -> Card {
        let card = self.card_in(shard, n);
        self.gate.crash_after_apply();
        let answer = self.create(&card, &self.kiosk(0)).await;
        assert!(answer.is_unavailable(), "{answer:?}");
        card
    }

    /// Asserts that `card` is free: another kiosk opens a session with it.
    pub async fn assert_free(&self, card: &Card) {
        let other = self.create(card, &self.kiosk(1)).await;
        assert!(
            matches!(other, Answer::Created { .. }),
            "the card is not free: {other:?}"
        );
    }

    async fn call(&self, s: &Open, op: SessionOp, wait: Option<Duration>) -> Answer {
        answer(self.router.call(s.id, s.kiosk.clone(), op, wait).await)
    }

    /// `op` as another node forwards it here: through the handler of the node-to-node
    /// link, as its frame arrives (the link itself is kofu-wire's to test).
    pub async fn forwarded(&self, s: &Open, op: SessionOp) -> Answer {
        let call = Body::Call {
            session: s.id,
            kiosk: s.kiosk.clone(),
            op,
            wait_ms: 0,
        };
        match (self.router.wire_handler())(call, Duration::ZERO).await {
            Body::Reply(reply) => answer(reply),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// `POST .../auth` with the card's signature over the challenge.
    pub async fn auth(&self, s: &Open) -> Answer {
        self.call(s, self.auth_op(s), None).await
    }

    pub fn auth_op(&self, s: &Open) -> SessionOp {
        let msg = kofu_proto::auth_message(&s.id.to_string(), s.kiosk.as_str(), &s.challenge);
        let signature = s.card.key.sign(&msg).to_bytes();
        SessionOp::Auth { signature }
    }

    /// `POST .../jobs` for one copy of `kind`.
    pub async fn job(&self, s: &Open, kind: CertKind) -> Answer {
        let op = SessionOp::CreateJob { kind, copies: 1 };
        self.call(s, op, None).await
    }

    /// `GET .../document` without waiting.
    pub async fn fetch(&self, s: &Open, job: JobId) -> Answer {
        let op = SessionOp::Fetch { job, wait: false };
        self.call(s, op, None).await
    }

    /// `GET .../document?wait_ms=...`: a long poll.
    pub async fn fetch_wait(&self, s: &Open, job: JobId, wait: Duration) -> Answer {
        let op = SessionOp::Fetch { job, wait: true };
        self.call(s, op, Some(wait)).await
    }

    pub async fn printed(&self, s: &Open, job: JobId) -> Answer {
        self.call(s, SessionOp::Printed { job }, None).await
    }

    /// `DELETE /v1/sessions/{id}`.
    pub async fn close(&self, s: &Open) -> Answer {
        self.call(s, SessionOp::Close, None).await
    }

    /// Checks `doc` as a kiosk does before printing; returns its binding.
    pub fn verify(&self, s: &Open, kind: CertKind, doc: &Doc) -> Binding {
        let expected = Expected {
            session_id: &s.id.to_string(),
            kiosk_id: s.kiosk.as_str(),
            card: &s.card.id,
            kind,
            copies: 1,
        };
        verify_release(
            &IssuerKeys::single(self.issuer.verifying_key()),
            &doc.pdf,
            &doc.binding_b64,
            &doc.signature_b64,
            &expected,
        )
        .expect("the document verifies as a kiosk checks it")
    }

    /// A job of `s` created and its document fetched (long poll), verified.
    pub async fn delivered(&self, s: &Open, kind: CertKind) -> (JobId, Doc) {
        let job = self.job(s, kind).await.job();
        let doc = self
            .fetch_wait(s, job, Duration::from_secs(10))
            .await
            .document();
        self.verify(s, kind, &doc);
        (job, doc)
    }
}
