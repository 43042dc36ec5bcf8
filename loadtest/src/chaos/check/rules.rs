//! The checker's rules, each over an index of the history built once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use kofu_proto::{CertKind, ErrorCode};

use super::{Anomalies, Input, at, short};
use crate::chaos::audit::AuditEntry;
use crate::chaos::workload::PROBE_BASE;
use crate::history::{Event, NO_SESSION, Op};

/// Slack for timer evidence: a node's timer starts when it handles a request, after the
/// kiosk sent it, so only answers clearly before the timer could fire count.
const MARGIN_US: u64 = 250_000;
/// A request that overlaps a node's down window ends this much later still excused (a
/// pooled connection to the dead process may fail just after its restart).
const DOWN_GRACE_US: u64 = 1_000_000;
/// How long a closed session's tombstone answers a repeated close with `204`.
const TOMBSTONE_US: u64 = 60_000_000;

type JobKey = (Arc<str>, Arc<str>);

/// The history, indexed.
pub(super) struct Context<'a> {
    input: &'a Input<'a>,
    /// Kiosk sessions (and probes): their events in the order they were sent.
    sessions: HashMap<u32, Vec<&'a Event>>,
    /// Card → end of the first acknowledged (200) seal revocation.
    revoked_ack: HashMap<u32, u64>,
    /// Card → start of the first revocation sent (whatever it answered).
    revoke_sent: HashMap<u32, u64>,
    idle_us: u64,
}

fn us(d: std::time::Duration) -> u64 {
    d.as_micros() as u64
}

fn describe(e: &Event) -> String {
    let answer = match (e.status, e.code) {
        (None, _) if e.timeout => "no answer (timeout)".to_owned(),
        (None, _) => "no answer".to_owned(),
        (Some(s), Some(c)) => format!("{s} {}", c.as_str()),
        (Some(s), None) => s.to_string(),
    };
    format!(
        "{} session {} {} -> {answer}",
        at(e.start_us),
        short(e.session_id.as_deref()),
        e.op.as_str()
    )
}

impl<'a> Context<'a> {
    pub(super) fn new(input: &'a Input<'a>) -> Context<'a> {
        let mut sessions: HashMap<u32, Vec<&Event>> = HashMap::new();
        let mut revoked_ack = HashMap::new();
        let mut revoke_sent = HashMap::new();
        for e in input.events {
            if e.session != NO_SESSION {
                sessions.entry(e.session).or_default().push(e);
            }
            if e.op == Op::Revoke {
                let sent = revoke_sent.entry(e.card).or_insert(e.start_us);
                *sent = (*sent).min(e.start_us);
                if e.status == Some(200) {
                    let ack = revoked_ack.entry(e.card).or_insert(e.end_us);
                    *ack = (*ack).min(e.end_us);
                }
            }
        }
        for evs in sessions.values_mut() {
            evs.sort_by_key(|e| (e.start_us, e.end_us));
        }
        Context {
            input,
            sessions,
            revoked_ack,
            revoke_sent,
            idle_us: us(input.idle_timeout),
        }
    }

    fn kiosk_sessions(&self) -> impl Iterator<Item = (&u32, &Vec<&'a Event>)> {
        self.sessions.iter().filter(|(i, _)| **i < PROBE_BASE)
    }

    /// Wrong "gone" answers, and closes repeated after `503` that lost their `204`.
    pub(super) fn gone(&self, a: &mut Anomalies) {
        let render_us = us(self.input.render_deadline);
        for (_, evs) in self.kiosk_sessions() {
            let own = |e: &Event| !matches!(e.op, Op::Duplicate | Op::ProbeClose);
            let mut last_ok: Option<u64> = None;
            let mut first_close: Option<u64> = None;
            let mut close_unknown = false;
            let mut auth_unknown = false;
            let mut locked = false;
            for (k, e) in evs.iter().enumerate() {
                if !own(e) {
                    continue;
                }
                let later = || evs[k + 1..].iter().filter(|f| own(f));
                let later_ok = later().find(|f| f.success() && f.start_us >= e.end_us);
                let closing = first_close.is_some();
                if e.is(ErrorCode::UnknownSession) && e.op != Op::Create {
                    if e.op == Op::Close && close_unknown {
                        if first_close.is_some_and(|t| e.start_us < t + TOMBSTONE_US) {
                            a.add("retry_diverged", describe(e));
                        }
                    } else if let Some(f) = later_ok {
                        a.add("wrong_gone", answered_later(e, f));
                    } else if !closing
                        && !locked
                        && last_ok.is_some_and(|t| e.end_us + MARGIN_US < t + self.idle_us)
                    {
                        let quiet = e.end_us.saturating_sub(last_ok.unwrap_or(0));
                        a.add(
                            "wrong_gone",
                            format!(
                                "{}; {:.1} s after its last answer, below the idle timeout",
                                describe(e),
                                quiet as f64 / 1e6
                            ),
                        );
                    }
                }
                if e.is(ErrorCode::JobVoided) {
                    let doc_later = later().find(|f| {
                        f.op == Op::Document && f.status == Some(200) && f.job_id == e.job_id
                    });
                    let created = evs
                        .iter()
                        .find(|f| f.op == Op::Job && f.success() && f.job_id == e.job_id);
                    if let Some(f) = doc_later {
                        a.add(
                            "wrong_gone",
                            format!(
                                "{}; its document was released after, {}",
                                describe(e),
                                at(f.start_us)
                            ),
                        );
                    } else if let Some(j) = created.filter(|_| !closing) {
                        if e.end_us + MARGIN_US < j.start_us + render_us {
                            a.add("wrong_gone", format!("{}; {:.1} s after the job was created, below the render deadline", describe(e), (e.end_us - j.start_us) as f64 / 1e6));
                        }
                    }
                }
                if e.is(ErrorCode::NotIssuable) && matches!(e.op, Op::Job | Op::Document) {
                    let revoked = e.kind == Some(CertKind::Seal)
                        && self.revoke_sent.get(&e.card).is_some_and(|t| *t < e.end_us);
                    if !revoked {
                        a.add(
                            "wrong_gone",
                            format!(
                                "{}; no revocation of the holder's seal was sent",
                                describe(e)
                            ),
                        );
                    }
                }
                if e.op == Op::Close && e.status == Some(204) {
                    if let Some(f) = later_ok.filter(|f| f.op != Op::Close) {
                        a.add("wrong_gone", answered_later(e, f));
                    }
                }
                if e.op == Op::Auth && e.is(ErrorCode::AlreadyAuthenticated) && auth_unknown {
                    a.add("retry_diverged", describe(e));
                }
                if e.op == Op::Printed && e.is(ErrorCode::NotDelivered) {
                    let delivered = evs[..k].iter().any(|f| {
                        f.op == Op::Document && f.status == Some(200) && f.job_id == e.job_id
                    });
                    if delivered {
                        a.add("lost_state", describe(e));
                    }
                }
                if e.success() {
                    last_ok = Some(e.start_us);
                }
                if e.op == Op::Close {
                    first_close.get_or_insert(e.start_us);
                    close_unknown |= e.unknown();
                }
                auth_unknown |= e.op == Op::Auth && e.unknown();
                locked |= e.status == Some(423);
            }
            self.duplicates(evs, a);
        }
    }

    /// Another kiosk's insertion of a card whose session was alive must be refused.
    fn duplicates(&self, evs: &[&Event], a: &mut Anomalies) {
        for (k, e) in evs.iter().enumerate() {
            if e.op != Op::Duplicate || e.status != Some(201) {
                continue;
            }
            let before = &evs[..k];
            let closing = before.iter().any(|f| f.op == Op::Close);
            let last_ok = before
                .iter()
                .filter(|f| f.success() && f.op != Op::Duplicate && f.op != Op::ProbeClose)
                .map(|f| f.start_us)
                .max();
            if !closing && last_ok.is_some_and(|t| e.start_us + MARGIN_US < t + self.idle_us) {
                a.add(
                    "duplicate_session",
                    format!("{}; card {}", describe(e), (self.input.digest)(e.card)),
                );
            }
        }
    }

    /// Confirmations against the audit streams.
    pub(super) fn audits(&self, a: &mut Anomalies) {
        #[derive(Default)]
        struct Job {
            confirmed: Vec<(String, u32)>,
            unknown: bool,
            serials: HashSet<String>,
        }
        let mut jobs: HashMap<JobKey, Job> = HashMap::new();
        for e in self.input.events {
            let (Some(s), Some(j)) = (&e.session_id, &e.job_id) else {
                continue;
            };
            let job = jobs.entry((s.clone(), j.clone())).or_default();
            match e.op {
                Op::Printed if e.status == Some(200) => {
                    if let (Some(serial), Some(charged)) = (&e.serial, e.charged) {
                        job.confirmed.push((serial.clone(), charged));
                    }
                }
                Op::Printed if e.unknown() => job.unknown = true,
                Op::Document if e.status == Some(200) => {
                    job.serials.extend(e.serial.clone());
                }
                _ => {}
            }
        }
        let mut audits: HashMap<(&str, &str), Vec<&AuditEntry>> = HashMap::new();
        for r in self.input.audit {
            audits
                .entry((&r.session_id, &r.job_id))
                .or_default()
                .push(r);
        }
        let name = |s: &str, j: &str| format!("session {} job {}", short(Some(s)), short(Some(j)));
        for ((s, j), job) in &jobs {
            let records = audits.get(&(&**s, &**j)).map_or(&[][..], |v| &v[..]);
            let Some((serial, charged)) = job.confirmed.first() else {
                continue;
            };
            if job.confirmed.iter().any(|c| c != &job.confirmed[0]) {
                a.add(
                    "audit_mismatch",
                    format!(
                        "{}: its confirmations answered different serials or charges",
                        name(s, j)
                    ),
                );
            }
            match records {
                [] => a.add(
                    "printed_without_one_audit",
                    format!("{}: confirmed serial {serial}, no audit record", name(s, j)),
                ),
                [r] if r.serial != *serial || r.charged_yen != *charged => a.add(
                    "audit_mismatch",
                    format!(
                        "{}: confirmed {serial}/{charged} yen, audited {}/{} yen",
                        name(s, j),
                        r.serial,
                        r.charged_yen
                    ),
                ),
                [_] => {}
                more => a.add(
                    "printed_without_one_audit",
                    format!(
                        "{}: confirmed serial {serial}, {} audit records",
                        name(s, j),
                        more.len()
                    ),
                ),
            }
        }
        for ((s, j), records) in &audits {
            let name = name(s, j);
            if records.len() > 1 {
                a.add(
                    "duplicate_audit",
                    format!("{name}: {} audit records", records.len()),
                );
            }
            let key: JobKey = ((*s).into(), (*j).into());
            let job = jobs.get(&key);
            let confirmed = job.is_some_and(|job| !job.confirmed.is_empty());
            if !confirmed {
                if job.is_some_and(|job| job.unknown) {
                    a.add(
                        "audit_unconfirmed",
                        format!("{name}: audited, its confirmation never answered 200"),
                    );
                } else {
                    a.add(
                        "audit_without_confirmation",
                        format!(
                            "{name}: audited serial {}, never confirmed",
                            records[0].serial
                        ),
                    );
                }
            } else if let Some(job) = job.filter(|job| !job.serials.is_empty()) {
                if records.iter().any(|r| !job.serials.contains(&r.serial)) {
                    a.add(
                        "audit_mismatch",
                        format!("{name}: audited serial differs from the document's"),
                    );
                }
            }
        }
    }

    /// Seal certificates released after an acknowledged revocation.
    pub(super) fn revocations(&self, a: &mut Anomalies) {
        for e in self.input.events {
            if e.op == Op::Document && e.status == Some(200) && e.kind == Some(CertKind::Seal) {
                if let Some(ack) = self.revoked_ack.get(&e.card).filter(|t| **t < e.start_us) {
                    a.add(
                        "released_after_revocation",
                        format!(
                            "{}; card {}; revocation acknowledged {}",
                            describe(e),
                            (self.input.digest)(e.card),
                            at(*ack)
                        ),
                    );
                }
            }
        }
    }

    /// Same bytes for one job's document; one job per serial.
    pub(super) fn bytes(&self, a: &mut Anomalies) {
        let mut shas: HashMap<JobKey, HashSet<[u8; 32]>> = HashMap::new();
        let mut serials: HashMap<&str, HashSet<JobKey>> = HashMap::new();
        for e in self.input.events {
            let (Some(s), Some(j)) = (&e.session_id, &e.job_id) else {
                continue;
            };
            if e.op != Op::Document || e.status != Some(200) {
                continue;
            }
            let key = (s.clone(), j.clone());
            if let Some(sha) = e.doc_sha {
                shas.entry(key.clone()).or_default().insert(sha);
            }
            if let Some(serial) = &e.serial {
                serials.entry(serial).or_default().insert(key);
            }
        }
        for ((s, j), set) in &shas {
            if set.len() > 1 {
                a.add(
                    "changed_bytes",
                    format!(
                        "session {} job {}: {} different documents",
                        short(Some(s)),
                        short(Some(j)),
                        set.len()
                    ),
                );
            }
        }
        for (serial, jobs) in &serials {
            if jobs.len() > 1 {
                a.add(
                    "serial_reused",
                    format!("serial {serial} on {} jobs", jobs.len()),
                );
            }
        }
    }

    /// Cards locked past idle timeout + 2 TTL: at the end (the probes), or when a new
    /// session of the run found its card locked although no session of it could hold it.
    pub(super) fn locks(&self, a: &mut Anomalies) {
        let hold = self.idle_us + 2 * us(self.input.lease_ttl) + 2_000_000;
        let mut by_card: HashMap<u32, Vec<&Vec<&Event>>> = HashMap::new();
        for (_, evs) in self.kiosk_sessions() {
            if let Some(first) = evs.first() {
                by_card.entry(first.card).or_default().push(evs);
            }
        }
        let holds_at = |evs: &Vec<&Event>, t: u64| {
            let before: Vec<&&Event> = evs.iter().filter(|e| e.start_us < t).collect();
            let opened = before
                .iter()
                .any(|e| e.op == Op::Create && (e.success() || e.unknown()));
            let closed = before
                .iter()
                .any(|e| e.op == Op::Close && e.status == Some(204) && e.end_us <= t);
            let last = before.iter().map(|e| e.end_us).max().unwrap_or(0);
            opened && !closed && t < self.lock_deadline(last, hold)
        };
        // One anomaly per card, however often it was found locked.
        let mut locked: BTreeMap<u32, String> = BTreeMap::new();
        for (_, evs) in self.kiosk_sessions() {
            for e in evs
                .iter()
                .filter(|e| e.op == Op::Create && e.is(ErrorCode::CardInUse))
            {
                let sessions = by_card.get(&e.card).map_or(&[][..], |v| &v[..]);
                if !sessions.iter().any(|s| holds_at(s, e.start_us)) {
                    locked.entry(e.card).or_insert_with(|| {
                        format!(
                            "{}; card {}: no session of it could hold the lock",
                            describe(e),
                            (self.input.digest)(e.card)
                        )
                    });
                }
            }
        }
        for (_, evs) in self.sessions.iter().filter(|(i, _)| **i >= PROBE_BASE) {
            let Some(last) = evs.iter().rev().find(|e| e.op == Op::Probe) else {
                continue;
            };
            let card = (self.input.digest)(last.card);
            if last.is(ErrorCode::CardInUse) {
                let previous = by_card
                    .get(&last.card)
                    .and_then(|ss| ss.iter().flat_map(|s| s.iter()).max_by_key(|e| e.end_us))
                    .map_or_else(String::new, |p| {
                        format!("; its last request: {}", describe(p))
                    });
                locked.entry(last.card).or_insert_with(|| {
                    format!(
                        "{} card {card} still locked at the end{previous}",
                        at(last.start_us)
                    )
                });
            } else if last.unknown() {
                a.add(
                    "unavailable",
                    format!(
                        "{} probe of card {card}: {}",
                        at(last.start_us),
                        describe(last)
                    ),
                );
            }
        }
        for example in locked.into_values() {
            a.add("card_locked", example);
        }
    }

    /// When a lock last touched at `last` must be free: `hold` after `last`, or after the
    /// heal of every fault that began before that deadline (and after `last`).
    fn lock_deadline(&self, last: u64, hold: u64) -> u64 {
        let mut deadline = last + hold;
        let mut faults: Vec<(u64, u64)> = self.input.faults.to_vec();
        faults.sort_unstable();
        for (from, healed) in faults {
            if from <= deadline && healed > last {
                deadline = deadline.max(healed + hold);
            }
        }
        deadline
    }

    /// Requests without an answer from a running node, and server errors.
    pub(super) fn answers(&self, a: &mut Anomalies) {
        for e in self.input.events {
            if let Some(s) = e.status {
                if s >= 500 && s != 503 {
                    a.add("server_error", describe(e));
                }
                continue;
            }
            let Some(node) = e.node.map(usize::from) else {
                continue;
            };
            let excused = self.input.down.iter().any(|(n, from, to)| {
                *n == node && e.start_us < to + DOWN_GRACE_US && e.end_us >= *from
            });
            if !excused {
                a.add("no_answer", format!("{} to node {node}", describe(e)));
            }
        }
    }
}

/// A "gone" answer belied by a later success of the same session.
fn answered_later(e: &Event, f: &Event) -> String {
    format!(
        "{}; later {} answered {}",
        describe(e),
        f.op.as_str(),
        f.status.unwrap_or(0)
    )
}
