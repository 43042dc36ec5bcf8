//! The checker on synthetic histories: a clean one passes, and each kind of anomaly is
//! found in a history made to show it (and only it).

use std::sync::Arc;
use std::time::Duration;

use kofu_proto::{CertKind, ErrorCode};

use super::{Anomalies, Input, KINDS, check};
use crate::chaos::audit::AuditEntry;
use crate::chaos::workload::PROBE_BASE;
use crate::history::{Event, NO_SESSION, Op};

const S: u64 = 1_000_000;

/// A history under construction: one session's requests at given seconds.
#[derive(Default)]
struct H {
    events: Vec<Event>,
    audit: Vec<AuditEntry>,
    down: Vec<(usize, u64, u64)>,
    faults: Vec<(u64, u64)>,
    misdeliveries: Vec<String>,
}

fn sid(session: u32) -> Arc<str> {
    format!("sess{session:04}abcdefgh").into()
}

fn jid(session: u32) -> Arc<str> {
    format!("job{session:04}").into()
}

impl H {
    /// Request `op` of session `session` (card = session) from `at` s for 0.1 s.
    /// Session 9's job charged 200 yen in the audit stream.
    fn charged_9(&mut self) {
        self.audit.push(AuditEntry {
            shard: 3,
            session_id: sid(9).to_string(),
            job_id: jid(9).to_string(),
            serial: "S-9".into(),
            charged_yen: 200,
            card_digest: "d".into(),
        });
    }

    /// Session `session`'s `op` at `at` s answered `404 unknown_session`.
    fn unknown(&mut self, session: u32, op: Op, at: f64) -> &mut Event {
        self.ev(session, op, at, Some(404), Some(ErrorCode::UnknownSession))
    }

    fn ev(
        &mut self,
        session: u32,
        op: Op,
        at: f64,
        status: Option<u16>,
        code: Option<ErrorCode>,
    ) -> &mut Event {
        let start = (at * S as f64) as u64;
        let mut e = Event::new(session, session, op, start, start + S / 10);
        e.node = Some(0);
        e.status = status;
        e.code = code;
        if op != Op::Create || status == Some(201) {
            e.session_id = Some(sid(session));
        }
        if matches!(op, Op::Document | Op::Printed) || (op == Op::Job && status == Some(202)) {
            e.job_id = Some(jid(session));
            e.kind = Some(CertKind::Residence);
        }
        self.events.push(e);
        self.events.last_mut().expect("just pushed")
    }

    /// A whole clean session starting at `t`: create, auth, job, fetch (twice), printed,
    /// close, and its audit record.
    fn session(&mut self, session: u32, t: f64) {
        self.ev(session, Op::Create, t, Some(201), None);
        self.ev(session, Op::Auth, t + 0.5, Some(200), None);
        self.ev(session, Op::Job, t + 1.0, Some(202), None);
        for k in 0..2 {
            let e = self.ev(
                session,
                Op::Document,
                t + 1.5 + f64::from(k),
                Some(200),
                None,
            );
            e.serial = Some(format!("S-{session}"));
            e.doc_sha = Some([session as u8; 32]);
        }
        let p = self.ev(session, Op::Printed, t + 4.0, Some(200), None);
        p.serial = Some(format!("S-{session}"));
        p.charged = Some(200);
        self.ev(session, Op::Close, t + 5.0, Some(204), None);
        self.audit.push(AuditEntry {
            shard: 0,
            session_id: sid(session).to_string(),
            job_id: jid(session).to_string(),
            serial: format!("S-{session}"),
            charged_yen: 200,
            card_digest: "d".into(),
        });
    }

    /// The end-of-run probe of `card` at `t`, answered `status`.
    fn probe(&mut self, card: u32, t: f64, status: Option<u16>, code: Option<ErrorCode>) {
        let start = (t * S as f64) as u64;
        let mut e = Event::new(PROBE_BASE + card, card, Op::Probe, start, start + S / 10);
        e.node = Some(1);
        e.status = status;
        e.code = code;
        self.events.push(e);
    }

    fn check(&self) -> Anomalies {
        let digest = |c: u32| format!("card{c}");
        check(&Input {
            events: &self.events,
            audit: &self.audit,
            down: &self.down,
            idle_timeout: Duration::from_secs(15),
            lease_ttl: Duration::from_secs(2),
            render_deadline: Duration::from_secs(30),
            misdeliveries: &self.misdeliveries,
            faults: &self.faults,
            deaths: &[],
            digest: &digest,
        })
    }
}

fn clean() -> H {
    let mut h = H::default();
    for s in 0..5 {
        h.session(s, f64::from(s));
        h.probe(s, 100.0, Some(201), None);
    }
    h
}

/// Nothing found, for the reason given.
fn passes(h: &H, why: &str) {
    let a = h.check();
    assert_eq!(a.total(), 0, "{why}: {a:?}");
}

/// Exactly `kind` found (at least once), nothing else.
fn only(h: &H, kind: &str) {
    let a = h.check();
    assert!(a.count(kind) > 0, "{kind} not found: {a:?}");
    for (k, n) in &a.counts {
        assert!(
            *k == kind || *n == 0,
            "{k} found too ({n}) looking for {kind}: {a:?}"
        );
    }
    assert!(!a.examples[kind].is_empty());
}

#[test]
fn a_clean_history_passes_and_every_kind_is_reported() {
    let a = clean().check();
    assert_eq!(a.total(), 0, "{a:?}");
    assert_eq!(
        a.counts.len(),
        KINDS.len(),
        "every kind is listed, found or not"
    );
}

#[test]
fn the_kiosks_refusals_are_misdeliveries() {
    let mut h = clean();
    h.misdeliveries
        .push("session x: binding names another card".into());
    only(&h, "misdelivery");
}

#[test]
fn a_404_followed_by_a_success_is_a_wrong_gone() {
    let mut h = clean();
    // Session 9: fetch answered 404 under a fault, then the same session printed.
    h.session(9, 10.0);
    h.unknown(9, Op::Document, 11.8);
    only(&h, "wrong_gone");
}

#[test]
fn a_404_long_after_the_last_answer_is_an_idle_timeout_and_one_before_is_wrong() {
    let mut h = clean();
    h.ev(9, Op::Create, 10.0, Some(201), None);
    h.unknown(9, Op::Auth, 40.0);
    passes(&h, "30 s of silence: the idle timeout (15 s) explains it");
    h.ev(10, Op::Create, 10.0, Some(201), None);
    h.unknown(10, Op::Auth, 14.0);
    only(&h, "wrong_gone");
}

#[test]
fn a_422_is_right_only_after_a_revocation_was_sent() {
    let mut h = clean();
    h.ev(9, Op::Create, 10.0, Some(201), None);
    h.ev(9, Op::Job, 10.5, Some(202), None).kind = Some(CertKind::Seal);
    h.ev(
        9,
        Op::Document,
        11.0,
        Some(422),
        Some(ErrorCode::NotIssuable),
    )
    .kind = Some(CertKind::Seal);
    only(&h, "wrong_gone");
    let mut revoke = Event::new(NO_SESSION, 9, Op::Revoke, 10 * S, 10 * S + 1000);
    revoke.status = Some(503);
    h.events.push(revoke);
    passes(&h, "a revocation was sent (even unacknowledged)");
}

#[test]
fn a_confirmation_without_its_audit_record_is_found() {
    let mut h = clean();
    h.audit.remove(0);
    only(&h, "printed_without_one_audit");
}

#[test]
fn a_charge_for_a_job_never_confirmed_is_found() {
    let mut h = clean();
    h.ev(9, Op::Create, 10.0, Some(201), None);
    h.ev(9, Op::Job, 10.5, Some(202), None);
    h.ev(9, Op::Close, 11.0, Some(204), None);
    h.charged_9();
    only(&h, "audit_without_confirmation");
}

#[test]
fn a_charge_after_an_unanswered_confirmation_needs_a_converged_retry() {
    let mut h = clean();
    h.ev(9, Op::Create, 10.0, Some(201), None);
    h.ev(9, Op::Job, 10.5, Some(202), None);
    h.ev(9, Op::Document, 11.0, Some(200), None).serial = Some("S-9".into());
    h.ev(
        9,
        Op::Printed,
        12.0,
        Some(503),
        Some(ErrorCode::Unavailable),
    );
    h.charged_9();
    only(&h, "audit_unconfirmed");
    let p = h.ev(9, Op::Printed, 13.0, Some(200), None);
    p.serial = Some("S-9".into());
    p.charged = Some(200);
    h.ev(9, Op::Close, 14.0, Some(204), None);
    passes(&h, "the retry converged on the audited charge");
}

#[test]
fn two_audit_records_for_one_job_are_found() {
    let mut h = clean();
    let again = h.audit[0].clone();
    h.audit.push(again);
    let a = h.check();
    assert_eq!(a.count("duplicate_audit"), 1, "{a:?}");
    assert_eq!(a.count("printed_without_one_audit"), 1, "{a:?}");
    assert_eq!(a.total(), 2, "{a:?}");
}

#[test]
fn an_audit_record_with_another_serial_is_found() {
    let mut h = clean();
    h.audit[0].serial = "S-other".into();
    let a = h.check();
    assert!(a.count("audit_mismatch") >= 1, "{a:?}");
    assert_eq!(a.total(), a.count("audit_mismatch"), "{a:?}");
}

#[test]
fn a_seal_released_after_an_acknowledged_revocation_is_found() {
    let mut h = clean();
    let mut revoke = Event::new(NO_SESSION, 2, Op::Revoke, S, S + 1000);
    revoke.status = Some(200);
    h.events.push(revoke);
    for e in h.events.iter_mut().filter(|e| e.session == 2) {
        e.kind = Some(CertKind::Seal);
    }
    only(&h, "released_after_revocation");
}

#[test]
fn other_bytes_for_the_same_job_are_found() {
    let mut h = clean();
    let e = h
        .events
        .iter_mut()
        .rfind(|e| e.session == 1 && e.op == Op::Document)
        .expect("a fetch");
    e.doc_sha = Some([0xee; 32]);
    only(&h, "changed_bytes");
}

#[test]
fn one_serial_on_two_jobs_is_found() {
    let mut h = clean();
    for e in h
        .events
        .iter_mut()
        .filter(|e| e.session == 1 && e.op == Op::Document)
    {
        e.serial = Some("S-0".into());
    }
    let a = h.check();
    assert_eq!(a.count("serial_reused"), 1, "{a:?}");
}

#[test]
fn a_card_locked_at_the_end_is_found() {
    let mut h = clean();
    h.probe(3, 101.0, Some(409), Some(ErrorCode::CardInUse));
    only(&h, "card_locked");
}

#[test]
fn a_card_locked_after_its_session_closed_is_found_during_the_run() {
    let mut h = clean();
    // Session 20 uses card 0 again, long after session 0 closed it.
    let e = h.ev(20, Op::Create, 60.0, Some(409), Some(ErrorCode::CardInUse));
    e.card = 0;
    only(&h, "card_locked");
}

#[test]
fn a_lock_held_through_a_fault_runs_from_its_heal() {
    let mut h = clean();
    // Card 0 left open at t=0.5 s; found locked at 40 s: past idle + 2 TTL + 2 s (21 s)
    // of its last answer, but a Redis fault from 10 s to 25 s delayed its expiry.
    h.events.retain(|e| !(e.session == 0 && e.start_us > S));
    h.audit.retain(|a| a.session_id != sid(0).to_string());
    h.events.retain(|e| e.session != PROBE_BASE);
    let e = h.ev(20, Op::Create, 40.0, Some(409), Some(ErrorCode::CardInUse));
    e.card = 0;
    only(&h, "card_locked");
    h.faults.push((10 * S, 25 * S));
    passes(&h, "the fault explains the lock");
    // Still locked 21 s after the heal: the lock outlived the fault.
    let e = h.ev(21, Op::Create, 47.0, Some(409), Some(ErrorCode::CardInUse));
    e.card = 0;
    only(&h, "card_locked");
}

#[test]
fn a_request_without_answer_counts_unless_its_node_was_down() {
    let mut h = clean();
    h.ev(9, Op::Create, 10.0, None, None).timeout = true;
    only(&h, "no_answer");
    h.down.push((0, 9 * S, 10 * S));
    passes(&h, "node 0 was being restarted");
}

/// A clean history plus session 9's steps: (op, start in seconds, status, code).
fn with_session_9(steps: &[Step]) -> H {
    let mut h = clean();
    for &(op, at, status, code) in steps {
        h.ev(9, op, at, Some(status), code);
    }
    h
}

type Step = (Op, f64, u16, Option<ErrorCode>);

/// Each history of session 9 shows exactly one kind of anomaly: a second session for a
/// card in use; a repeated close answered 404, or a repeated authentication answered
/// `already_authenticated`, after a 503 (the retry must converge); a confirmation
/// refused as not delivered after delivery; a 500; a close answered 204 while the
/// session lives on; a 410 before the render deadline.
#[test]
fn each_wrong_answer_of_one_session_is_found() {
    use ErrorCode::{
        AlreadyAuthenticated, Internal, JobVoided, NotDelivered, Unavailable, UnknownSession,
    };
    let open: Step = (Op::Create, 10.0, 201, None);
    let cases: [(&str, &[Step]); 7] = [
        (
            "duplicate_session",
            &[open, (Op::Duplicate, 11.0, 201, None)],
        ),
        (
            "retry_diverged",
            &[
                open,
                (Op::Close, 11.0, 503, Some(Unavailable)),
                (Op::Close, 12.0, 404, Some(UnknownSession)),
            ],
        ),
        (
            "retry_diverged",
            &[
                open,
                (Op::Auth, 11.0, 503, Some(Unavailable)),
                (Op::Auth, 12.0, 409, Some(AlreadyAuthenticated)),
            ],
        ),
        (
            "lost_state",
            &[
                open,
                (Op::Job, 10.5, 202, None),
                (Op::Document, 11.0, 200, None),
                (Op::Printed, 12.0, 409, Some(NotDelivered)),
            ],
        ),
        ("server_error", &[(Op::Create, 10.0, 500, Some(Internal))]),
        (
            "wrong_gone",
            &[
                open,
                (Op::Close, 10.5, 204, None),
                (Op::Auth, 11.0, 200, None),
            ],
        ),
        (
            "wrong_gone",
            &[
                open,
                (Op::Job, 10.5, 202, None),
                (Op::Document, 11.0, 410, Some(JobVoided)),
            ],
        ),
    ];
    for (kind, steps) in cases {
        only(&with_session_9(steps), kind);
    }
}

#[test]
fn a_probe_that_never_got_an_answer_means_unavailable() {
    let mut h = clean();
    h.probe(3, 101.0, Some(503), Some(ErrorCode::Unavailable));
    only(&h, "unavailable");
}
