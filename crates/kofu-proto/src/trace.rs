//! The trace format of `kofu-load` and of `kofu serve --record-traffic`: a versioned
//! MessagePack document of kiosk sessions, each a sequence of timed steps. Cards and
//! kiosks are indices into the fixture file of the population served (`kofu fixtures`),
//! so a trace never holds a card id (loadtest/README.md). Bytes only: callers do the I/O.

use crate::CertKind;
use serde::{Deserialize, Serialize};

/// The first field of every trace file.
pub const FORMAT: &str = "kofu-trace";
/// Bumped on any incompatible change; readers refuse other versions.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub format: String,
    pub version: u32,
    pub meta: Meta,
    /// Sorted by `start_us`.
    pub sessions: Vec<SessionTrace>,
}

/// Where a trace came from and which population it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// `synth` or `record`.
    pub source: String,
    /// The synthesizer's seed (synth only).
    pub seed: Option<u64>,
    /// The population the card and kiosk indices refer to (`kofu fixtures --seed ...`).
    pub fixture_seed: u64,
    pub residents: u32,
    pub kiosks: u32,
    /// Human summary: the model's parameters, or the recording node.
    pub description: String,
}

/// One kiosk session: when it starts (µs from the trace's origin), where, with which
/// card, and what the kiosk does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionTrace {
    pub start_us: u64,
    pub kiosk: u32,
    pub card: u32,
    pub steps: Vec<Step>,
}

/// A step's intended time is `start_us + at_us` (scaled by the replay speed); it is sent
/// then, or as soon as the previous step has finished if that is later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub at_us: u64,
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Insert the card: `POST /v1/sessions`.
    Create,
    /// Sign the challenge; `valid: false` sends a wrong signature (a misread card).
    Auth { valid: bool },
    /// Order a certificate.
    Job { kind: CertKind, copies: u8 },
    /// Long-poll the document of the session's latest job until it is ready.
    Fetch { wait_ms: u32 },
    /// Confirm the print of the latest job.
    Printed,
    /// End the session: `DELETE`.
    Close,
    /// Walk away: nothing more is sent (the node's idle timeout ends the session).
    Abandon,
    /// Send the previous request once more (a kiosk retrying after a network error).
    Retry,
    /// Another kiosk inserts the same card meanwhile (must be refused `409`).
    DuplicateCard { kiosk: u32 },
}

impl Action {
    /// The step name reports group latencies by.
    pub fn step_name(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Auth { valid: true } => "auth",
            Action::Auth { valid: false } => "auth_bad",
            Action::Job { .. } => "job",
            Action::Fetch { .. } => "fetch",
            Action::Printed => "printed",
            Action::Close => "close",
            Action::Abandon => "abandon",
            Action::Retry => "retry",
            Action::DuplicateCard { .. } => "duplicate_card",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("not a kofu trace: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("the trace cannot be encoded: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("not a kofu trace (format {0:?})")]
    Format(String),
    #[error("trace version {found} is not supported (this build reads version {VERSION})")]
    Version { found: u32 },
    #[error("invalid trace: {0}")]
    Invalid(String),
}

impl Trace {
    pub fn new(meta: Meta, mut sessions: Vec<SessionTrace>) -> Trace {
        sessions.sort_by_key(|s| s.start_us);
        Trace {
            format: FORMAT.to_owned(),
            version: VERSION,
            meta,
            sessions,
        }
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, TraceError> {
        Ok(rmp_serde::to_vec_named(self)?)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Trace, TraceError> {
        let trace: Trace = rmp_serde::from_slice(bytes)?;
        if trace.format != FORMAT {
            return Err(TraceError::Format(trace.format));
        }
        if trace.version != VERSION {
            return Err(TraceError::Version {
                found: trace.version,
            });
        }
        trace.validate()?;
        Ok(trace)
    }

    /// Indices within the population, steps in time order, every session opening with
    /// a create, sessions in start order.
    pub fn validate(&self) -> Result<(), TraceError> {
        let bad = |msg: String| Err(TraceError::Invalid(msg));
        let mut last_start = 0;
        for (i, s) in self.sessions.iter().enumerate() {
            if s.start_us < last_start {
                return bad(format!("session {i} starts before the one before it"));
            }
            last_start = s.start_us;
            if s.card >= self.meta.residents || s.kiosk >= self.meta.kiosks {
                return bad(format!(
                    "session {i} names a card or kiosk outside the population"
                ));
            }
            if s.steps.first().map(|st| st.action) != Some(Action::Create) {
                return bad(format!("session {i} does not start with a create"));
            }
            let mut at = 0;
            for st in &s.steps {
                if st.at_us < at {
                    return bad(format!("session {i} has steps out of time order"));
                }
                at = st.at_us;
                if let Action::DuplicateCard { kiosk } = st.action
                    && kiosk >= self.meta.kiosks
                {
                    return bad(format!("session {i} names a kiosk outside the population"));
                }
            }
        }
        Ok(())
    }

    /// µs from the first start to the last step's intended time.
    pub fn span_us(&self) -> u64 {
        self.sessions
            .iter()
            .map(|s| s.start_us + s.steps.last().map_or(0, |st| st.at_us))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            source: "synth".into(),
            seed: Some(1),
            fixture_seed: 7,
            residents: 10,
            kiosks: 2,
            description: String::new(),
        }
    }

    fn session(start_us: u64) -> SessionTrace {
        SessionTrace {
            start_us,
            kiosk: 1,
            card: 3,
            steps: vec![
                Step {
                    at_us: 0,
                    action: Action::Create,
                },
                Step {
                    at_us: 10,
                    action: Action::Auth { valid: true },
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_refuses_other_versions_and_garbage() {
        let t = Trace::new(meta(), vec![session(5), session(1)]);
        assert_eq!(t.sessions[0].start_us, 1, "sorted by start");
        let bytes = t.to_bytes().expect("encode");
        assert_eq!(Trace::from_bytes(&bytes).expect("decode"), t);
        let mut v2 = t.clone();
        v2.version = 2;
        let err = Trace::from_bytes(&v2.to_bytes().expect("encode")).expect_err("v2");
        assert!(matches!(err, TraceError::Version { found: 2 }));
        assert!(Trace::from_bytes(b"not msgpack at all").is_err());
    }

    #[test]
    fn validation_catches_out_of_population_indices_and_missing_creates() {
        let mut t = Trace::new(meta(), vec![session(0)]);
        t.sessions[0].card = 10;
        assert!(t.validate().is_err());
        let mut t = Trace::new(meta(), vec![session(0)]);
        t.sessions[0].steps.remove(0);
        assert!(t.validate().is_err());
        let mut t = Trace::new(meta(), vec![session(0)]);
        t.sessions[0].steps[1].at_us = 0;
        t.sessions[0].steps[0].at_us = 5;
        assert!(t.validate().is_err());
    }
}
