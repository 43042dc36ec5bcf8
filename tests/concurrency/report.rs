//! What one run of the 2,000-session test observed, and the checks every run must pass.

use std::time::Duration;

use crate::MAX_CREATE_SPAN;

/// Everything one test run observed.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) create_span: Duration,
    /// p50, p90, p99 of the creates' send instants, after the first one.
    pub(crate) create_quantiles: [Duration; 3],
    pub(crate) elapsed: Duration,
    pub(crate) sessions_completed: usize,
    pub(crate) released: usize,
    pub(crate) voided: usize,
    /// Documents that reached the kiosk but fail the kiosk's check: each one is an I1 breach.
    pub(crate) misdeliveries: Vec<String>,
    /// Any other deviation from API.md (wrong status, transport failure, lost job).
    pub(crate) errors: Vec<String>,
    pub(crate) duplicate_serials: usize,
    pub(crate) duplicate_sessions: usize,
}

impl Report {
    pub(crate) fn print(&self, what: &str) {
        eprintln!(
            "{what}: {} sessions, creates sent within {:?} (p50/p90/p99 {:?}), {} released, \
             {} voided, {} misdeliveries, {} errors, {:?} in all",
            self.sessions_completed,
            self.create_span,
            self.create_quantiles,
            self.released,
            self.voided,
            self.misdeliveries.len(),
            self.errors.len(),
            self.elapsed
        );
    }

    pub(crate) fn assert_clean(&self) {
        assert!(
            self.misdeliveries.is_empty(),
            "{} MISDELIVERIES, first: {:#?}",
            self.misdeliveries.len(),
            &self.misdeliveries[..self.misdeliveries.len().min(10)]
        );
        assert!(
            self.errors.is_empty(),
            "{} errors, first: {:#?}",
            self.errors.len(),
            &self.errors[..self.errors.len().min(10)]
        );
        assert_eq!(self.duplicate_serials, 0, "serials are unique");
        assert_eq!(self.duplicate_sessions, 0, "session ids are unique");
        assert!(
            self.create_span <= MAX_CREATE_SPAN,
            "the 2,000 creates were sent over {:?}, not within a few ms",
            self.create_span
        );
    }
}
