//! The history of a run, as a Jepsen-style checker needs it: every request a kiosk or the
//! admin sent, to which node, when it started and ended, what came back (status, error
//! code, or no answer) and what it established (session, job, serial, the document's
//! SHA-256, the charge). Cards appear as fixture indices only; nothing here is printed
//! as it is (the checker's examples carry digests).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kofu_kiosk::Record;
use kofu_proto::{CertKind, ErrorCode};

/// What a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Create,
    Auth,
    /// An authentication with a wrong signature, on purpose.
    BadAuth,
    /// Another kiosk inserting a card that is in a session (must be refused).
    Duplicate,
    Job,
    Document,
    Printed,
    Close,
    /// After the run: a new session for a card at another kiosk (is its lock free?).
    Probe,
    /// Closing a probe's session.
    ProbeClose,
    /// `POST /admin/v1/residents/{card}/seal/revoke`.
    Revoke,
    /// `POST /admin/v1/residents/{card}/address`.
    Address,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Auth => "auth",
            Op::BadAuth => "bad_auth",
            Op::Duplicate => "duplicate",
            Op::Job => "job",
            Op::Document => "document",
            Op::Printed => "printed",
            Op::Close => "close",
            Op::Probe => "probe",
            Op::ProbeClose => "probe_close",
            Op::Revoke => "revoke",
            Op::Address => "address",
        }
    }
}

/// Session index of requests that belong to no kiosk session (admin calls).
pub const NO_SESSION: u32 = u32::MAX;

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Index of the kiosk session (or probe) it belongs to; [`NO_SESSION`] for admin calls.
    pub session: u32,
    /// The card concerned, as a fixture index.
    pub card: u32,
    pub op: Op,
    /// The node it was sent to.
    pub node: Option<u8>,
    /// Microseconds since the run began.
    pub start_us: u64,
    pub end_us: u64,
    /// `None`: no answer.
    pub status: Option<u16>,
    pub code: Option<ErrorCode>,
    /// No answer because the request's timeout passed.
    pub timeout: bool,
    pub session_id: Option<Arc<str>>,
    pub job_id: Option<Arc<str>>,
    pub kind: Option<CertKind>,
    /// A document's serial (from its binding) or a confirmation's.
    pub serial: Option<String>,
    /// SHA-256 of a released document's body.
    pub doc_sha: Option<[u8; 32]>,
    pub charged: Option<u32>,
}

impl Event {
    /// An event with every optional field empty.
    pub fn new(session: u32, card: u32, op: Op, start_us: u64, end_us: u64) -> Event {
        Event {
            session,
            card,
            op,
            node: None,
            start_us,
            end_us,
            status: None,
            code: None,
            timeout: false,
            session_id: None,
            job_id: None,
            kind: None,
            serial: None,
            doc_sha: None,
            charged: None,
        }
    }

    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// `503` or no answer: the request may or may not have been carried out.
    pub fn unknown(&self) -> bool {
        matches!(self.status, None | Some(503))
    }

    pub fn is(&self, code: ErrorCode) -> bool {
        self.code == Some(code)
    }
}

impl Event {
    /// The event as one JSON line (`card` is the card's digest, never its id).
    pub fn json(&self, card: &str) -> serde_json::Value {
        serde_json::json!({
            "session": self.session,
            "card": card,
            "op": self.op.as_str(),
            "node": self.node,
            "start_us": self.start_us,
            "end_us": self.end_us,
            "status": self.status,
            "code": self.code.map(ErrorCode::as_str),
            "timeout": self.timeout,
            "session_id": self.session_id.as_deref(),
            "job_id": self.job_id.as_deref(),
            "kind": self.kind.map(CertKind::as_str),
            "serial": self.serial,
            "doc_sha256": self.doc_sha.map(hex::encode),
            "charged_yen": self.charged,
        })
    }
}

/// Every event of a run, in the order they ended, plus the admin's seal revocations
/// (which the kiosks consult to tell an expected `422` from a wrong one).
pub struct History {
    origin: Instant,
    events: Mutex<Vec<Event>>,
    /// Card → start of its first revocation request (whatever it answered).
    revocations: Mutex<HashMap<u32, u64>>,
}

impl History {
    pub fn new(origin: Instant) -> History {
        History {
            origin,
            events: Mutex::new(Vec::new()),
            revocations: Mutex::new(HashMap::new()),
        }
    }

    /// Microseconds from the run's start to `at` (0 before it).
    pub fn us(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_micros() as u64
    }

    pub fn now_us(&self) -> u64 {
        self.us(Instant::now())
    }

    /// The event of one request as the kiosk client observed it.
    pub fn event(&self, session: u32, card: u32, op: Op, r: &Record) -> Event {
        let start_us = self.us(r.started);
        let mut e = Event::new(
            session,
            card,
            op,
            start_us,
            start_us + r.elapsed.as_micros() as u64,
        );
        e.node = r.target.and_then(|t| u8::try_from(t).ok());
        e.status = r.status;
        e.code = r.code;
        e.timeout = r.timeout;
        e
    }

    pub fn push(&self, e: Event) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e);
    }

    /// A seal revocation of `card` is being sent (whatever it will answer).
    pub fn revoking(&self, card: u32, start_us: u64) {
        self.revocations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(card)
            .or_insert(start_us);
    }

    /// Whether a revocation of `card`'s seal was sent before now: a `422 not_issuable`
    /// for a seal job of that holder is then the right answer.
    pub fn seal_revocation_sent(&self, card: u32) -> bool {
        self.revocations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&card)
    }

    /// Every event so far (a copy).
    pub fn snapshot(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Collects the requests one kiosk (one session) sends, through its client's observer,
/// so that the session can annotate them with what it learnt from the answer.
#[derive(Clone, Default)]
pub struct Tap {
    seen: Arc<Mutex<Vec<Record>>>,
}

impl Tap {
    /// `kiosk` telling this tap about every request it sends.
    pub fn kiosk(&self, kiosk: &kofu_kiosk::Kiosk) -> kofu_kiosk::Kiosk {
        let seen = self.seen.clone();
        let observer: kofu_kiosk::Observer = Arc::new(move |r: &Record| {
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(r.clone());
        });
        kiosk.with_client(kiosk.client().with_observer(observer))
    }

    /// The requests seen since the last call.
    pub fn take(&self) -> Vec<Record> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
