//! The checker: after the run, the kiosks' whole history (every request, its answer and
//! what it established), the nemesis's record of when nodes could not answer, and
//! Redis's audit streams are compared against what DESIGN.md promises under faults.
//! Every kind of anomaly is counted, with a few examples that carry session-id prefixes,
//! serials and card digests only (never a card id or a name).

mod rules;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::audit::AuditEntry;
use crate::history::Event;

/// Examples kept per kind.
const EXAMPLES: usize = 10;

/// Every kind of anomaly the checker knows, with what it means.
pub const KINDS: [(&str, &str); 17] = [
    (
        "misdelivery",
        "a released document failed the kiosk's check (binding, signature, holder, household)",
    ),
    (
        "wrong_gone",
        "404/410/422/204 for a session or job that was alive (a later call succeeded, or no idle timeout, render deadline, close or revocation explains it)",
    ),
    (
        "printed_without_one_audit",
        "a print confirmed 200 without exactly one audit record",
    ),
    (
        "audit_without_confirmation",
        "an audit record (a charge) for a job no kiosk confirmed nor tried to",
    ),
    (
        "audit_unconfirmed",
        "an audit record for a job whose confirmation got 503 or no answer, and whose retries never converged on a 200",
    ),
    ("duplicate_audit", "two or more audit records for one job"),
    (
        "audit_mismatch",
        "an audit record whose serial or charge differs from the confirmation or the document",
    ),
    (
        "released_after_revocation",
        "a seal certificate released after a revocation of that holder's seal was acknowledged",
    ),
    (
        "changed_bytes",
        "fetching one job's document again gave other bytes",
    ),
    ("serial_reused", "one serial on documents of different jobs"),
    (
        "card_locked",
        "a card still locked past idle timeout + 2 x TTL after its sessions ended (at the end, or at a new session during the run)",
    ),
    (
        "no_answer",
        "a request to a node that was running got no answer within its timeout",
    ),
    (
        "duplicate_session",
        "a second session for a card whose session was alive (another kiosk's insertion was accepted)",
    ),
    (
        "retry_diverged",
        "a call repeated after 503 or no answer did not converge on what was done: auth answered 409 already_authenticated, or close 404 instead of 204",
    ),
    (
        "lost_state",
        "a print confirmation answered 409 not_delivered after the document was delivered",
    ),
    ("server_error", "an answer 5xx other than 503"),
    (
        "unavailable",
        "after every fault healed, a probe got only 503 or no answer; or a node exited without being killed",
    ),
];

/// What the checker needs besides the history.
pub struct Input<'a> {
    pub events: &'a [Event],
    pub audit: &'a [AuditEntry],
    /// `(node, from_us, to_us)`: a node killed, paused or restarting.
    pub down: &'a [(usize, u64, u64)],
    pub idle_timeout: Duration,
    pub lease_ttl: Duration,
    pub render_deadline: Duration,
    /// What the kiosks' document check refused.
    pub misdeliveries: &'a [String],
    /// Every fault injected: `(from_us, healed_us)`. A session's idle expiry is a store
    /// write, so a lock's deadline runs from the end of the faults it met (DESIGN.md:
    /// liveness comes back "when the fault ends").
    pub faults: &'a [(u64, u64)],
    /// Nodes that exited by themselves: `(node, at_ms)`.
    pub deaths: &'a [(usize, u64)],
    /// A card's short digest (examples never show card ids).
    pub digest: &'a dyn Fn(u32) -> String,
}

/// Anomalies by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Anomalies {
    pub counts: BTreeMap<&'static str, u64>,
    pub examples: BTreeMap<&'static str, Vec<String>>,
}

impl Anomalies {
    fn new() -> Anomalies {
        let mut a = Anomalies::default();
        for (kind, _) in KINDS {
            a.counts.insert(kind, 0);
        }
        a
    }

    pub(crate) fn add(&mut self, kind: &'static str, example: String) {
        debug_assert!(KINDS.iter().any(|(k, _)| *k == kind), "unknown kind {kind}");
        *self.counts.entry(kind).or_default() += 1;
        let ex = self.examples.entry(kind).or_default();
        if ex.len() < EXAMPLES {
            ex.push(example);
        }
    }

    #[cfg(test)]
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    #[cfg(test)]
    pub fn count(&self, kind: &str) -> u64 {
        self.counts.get(kind).copied().unwrap_or(0)
    }
}

/// Runs every rule over the run.
pub fn check(input: &Input<'_>) -> Anomalies {
    let mut a = Anomalies::new();
    for why in input.misdeliveries {
        a.add("misdelivery", why.clone());
    }
    for (node, at_ms) in input.deaths {
        a.add(
            "unavailable",
            format!(
                "node {node} exited by itself at t={:.1}s",
                *at_ms as f64 / 1e3
            ),
        );
    }
    let ctx = rules::Context::new(input);
    ctx.gone(&mut a);
    ctx.audits(&mut a);
    ctx.revocations(&mut a);
    ctx.bytes(&mut a);
    ctx.locks(&mut a);
    ctx.answers(&mut a);
    a
}

/// `t=12.3s`
pub(crate) fn at(us: u64) -> String {
    format!("t={:.1}s", us as f64 / 1e6)
}

/// The first characters of a session or job id: enough to find it in node logs.
pub(crate) fn short(id: Option<&str>) -> String {
    id.map_or_else(|| "-".to_owned(), |s| s.chars().take(8).collect())
}
