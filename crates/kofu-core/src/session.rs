//! The session state machine as a pure value: every request and timer of a session is a
//! `Command`, and `Session::apply` decides the outcome. The session actor only performs
//! the effects this type asks for, so every rule of API.md's session lifecycle lives
//! (and is tested) here.

use kofu_proto::{CertKind, ErrorCode, JobId, MAX_AUTH_ATTEMPTS, MAX_JOBS_PER_SESSION};
use serde::{Deserialize, Serialize};

use crate::records::NotIssuable;

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CloseReason {
    /// `DELETE` from the kiosk: the card was removed.
    Removed,
    /// The third bad signature.
    Locked,
    IdleTimeout,
    HardLimit,
    /// The same kiosk opened a new session for the same card.
    Replaced,
    /// The node stopped serving the shard and could not hand the session over.
    Shutdown,
}

impl CloseReason {
    pub const ALL: [CloseReason; 6] = [
        CloseReason::Removed,
        CloseReason::Locked,
        CloseReason::IdleTimeout,
        CloseReason::HardLimit,
        CloseReason::Replaced,
        CloseReason::Shutdown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Removed => "removed",
            CloseReason::Locked => "locked",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::HardLimit => "hard_limit",
            CloseReason::Replaced => "replaced",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Challenged { attempts_left: u8 },
    Authenticated,
    Closed(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VoidReason {
    /// Rendering missed its deadline.
    Deadline,
    /// The session ended before the print was confirmed.
    SessionClosed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobPhase {
    Rendering,
    Ready,
    Delivered,
    Printed,
    Voided(VoidReason),
    /// Revalidation at release found the record no longer allows this document.
    Refused(NotIssuable),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub kind: CertKind,
    pub copies: u8,
    pub phase: JobPhase,
    /// Persisted with the job; the rules never read or change it.
    pub meta: JobMeta,
}

/// What a job's document is issued with, filled in by the session actor (serial from
/// the store, issue time and record version at render) and persisted with the job, so
/// that any node re-renders the same bytes after a resume. Empty when the job is created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMeta {
    /// Unix milliseconds of the job's creation: its render deadline runs from here, on
    /// whichever node renders it.
    pub created_ms: u64,
    pub serial: Option<String>,
    pub issued_at: Option<String>,
    pub record_version: u64,
}

impl Job {
    pub fn fee_yen(&self) -> u32 {
        self.kind.fee_yen() * u32::from(self.copies)
    }
}

/// Everything a session is, minus document bytes and the card's personal data: this is
/// also what gets snapshotted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub phase: Phase,
    pub jobs: Vec<Job>,
}

/// One input to the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A signature arrived; `valid` says whether it verified.
    Authenticate {
        valid: bool,
    },
    /// The holder chose a certificate; `issuable` is the registry's answer for the kind.
    CreateJob {
        id: JobId,
        kind: CertKind,
        copies: u8,
        issuable: Result<(), NotIssuable>,
    },
    RenderDone {
        job: JobId,
    },
    RenderDeadline {
        job: JobId,
    },
    /// A document fetch; `revalidation` is the registry's answer at release time.
    Fetch {
        job: JobId,
        revalidation: Result<(), NotIssuable>,
    },
    Printed {
        job: JobId,
    },
    Close(CloseReason),
}

/// What the actor must do (or answer) as a result of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Authenticated,
    BadSignature {
        attempts_left: u8,
    },
    /// The last bad signature closed the session (`423`).
    LockedOut,
    JobCreated {
        fee_yen: u32,
    },
    /// Still rendering: the caller may wait.
    Pending,
    /// Release the document (first delivery or an idempotent repeat).
    Release,
    /// Charge and audit exactly once.
    Charge {
        charged_yen: u32,
    },
    /// Print was confirmed before: answer the same, charge nothing.
    AlreadyCharged {
        charged_yen: u32,
    },
    /// A state change with nothing to answer (timers).
    Changed,
    /// Nothing changed (a late timer, a repeated close).
    Ignored,
    /// Session closed: these jobs were voided, never charged.
    Closed {
        voided: Vec<JobId>,
    },
    Rejected(Rejection),
}

/// A refusal, mapped one-to-one onto an API error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    UnknownSession,
    UnknownJob,
    NotAuthenticated,
    AlreadyAuthenticated,
    TooManyJobs,
    NotIssuable(NotIssuable),
    JobVoided,
    NotDelivered,
}

impl Rejection {
    pub fn code(self) -> ErrorCode {
        match self {
            Rejection::UnknownSession => ErrorCode::UnknownSession,
            Rejection::UnknownJob => ErrorCode::UnknownJob,
            Rejection::NotAuthenticated => ErrorCode::NotAuthenticated,
            Rejection::AlreadyAuthenticated => ErrorCode::AlreadyAuthenticated,
            Rejection::TooManyJobs => ErrorCode::TooManyJobs,
            Rejection::NotIssuable(_) => ErrorCode::NotIssuable,
            Rejection::JobVoided => ErrorCode::JobVoided,
            Rejection::NotDelivered => ErrorCode::NotDelivered,
        }
    }
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl Session {
    pub fn new() -> Session {
        Session {
            phase: Phase::Challenged {
                attempts_left: MAX_AUTH_ATTEMPTS,
            },
            jobs: Vec::new(),
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed(_))
    }

    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.iter().find(|j| j.id == id)
    }

    /// Applies one command. The machine never panics and never moves out of `Closed`.
    pub fn apply(&mut self, cmd: Command) -> Outcome {
        if let Phase::Closed(_) = self.phase {
            return match cmd {
                Command::Close(_) | Command::RenderDone { .. } | Command::RenderDeadline { .. } => {
                    Outcome::Ignored
                }
                _ => Outcome::Rejected(Rejection::UnknownSession),
            };
        }
        match cmd {
            Command::Authenticate { valid } => self.authenticate(valid),
            Command::CreateJob {
                id,
                kind,
                copies,
                issuable,
            } => self.create_job(id, kind, copies, issuable),
            Command::RenderDone { job } => self.job_step(job, |j| match j.phase {
                JobPhase::Rendering => {
                    j.phase = JobPhase::Ready;
                    Outcome::Changed
                }
                _ => Outcome::Ignored,
            }),
            Command::RenderDeadline { job } => self.job_step(job, |j| match j.phase {
                JobPhase::Rendering => {
                    j.phase = JobPhase::Voided(VoidReason::Deadline);
                    Outcome::Changed
                }
                _ => Outcome::Ignored,
            }),
            Command::Fetch { job, revalidation } => {
                self.authenticated_job_step(job, |j| fetch(j, revalidation))
            }
            Command::Printed { job } => self.authenticated_job_step(job, printed),
            Command::Close(reason) => self.close(reason),
        }
    }

    fn authenticate(&mut self, valid: bool) -> Outcome {
        match self.phase {
            Phase::Authenticated => Outcome::Rejected(Rejection::AlreadyAuthenticated),
            Phase::Challenged { attempts_left } => {
                if valid {
                    self.phase = Phase::Authenticated;
                    return Outcome::Authenticated;
                }
                let left = attempts_left.saturating_sub(1);
                if left == 0 {
                    self.close(CloseReason::Locked);
                    Outcome::LockedOut
                } else {
                    self.phase = Phase::Challenged {
                        attempts_left: left,
                    };
                    Outcome::BadSignature {
                        attempts_left: left,
                    }
                }
            }
            Phase::Closed(_) => Outcome::Rejected(Rejection::UnknownSession),
        }
    }

    fn create_job(
        &mut self,
        id: JobId,
        kind: CertKind,
        copies: u8,
        issuable: Result<(), NotIssuable>,
    ) -> Outcome {
        if self.phase != Phase::Authenticated {
            return Outcome::Rejected(Rejection::NotAuthenticated);
        }
        if self.jobs.len() >= MAX_JOBS_PER_SESSION {
            return Outcome::Rejected(Rejection::TooManyJobs);
        }
        if let Err(reason) = issuable {
            return Outcome::Rejected(Rejection::NotIssuable(reason));
        }
        let job = Job {
            id,
            kind,
            copies,
            phase: JobPhase::Rendering,
            meta: JobMeta::default(),
        };
        let fee_yen = job.fee_yen();
        self.jobs.push(job);
        Outcome::JobCreated { fee_yen }
    }

    fn close(&mut self, reason: CloseReason) -> Outcome {
        let mut voided = Vec::new();
        for j in &mut self.jobs {
            if matches!(
                j.phase,
                JobPhase::Rendering | JobPhase::Ready | JobPhase::Delivered
            ) {
                j.phase = JobPhase::Voided(VoidReason::SessionClosed);
                voided.push(j.id);
            }
        }
        self.phase = Phase::Closed(reason);
        Outcome::Closed { voided }
    }

    fn job_step(&mut self, id: JobId, f: impl FnOnce(&mut Job) -> Outcome) -> Outcome {
        match self.jobs.iter_mut().find(|j| j.id == id) {
            Some(j) => f(j),
            None => Outcome::Ignored,
        }
    }

    fn authenticated_job_step(
        &mut self,
        id: JobId,
        f: impl FnOnce(&mut Job) -> Outcome,
    ) -> Outcome {
        if self.phase != Phase::Authenticated {
            return Outcome::Rejected(Rejection::NotAuthenticated);
        }
        match self.jobs.iter_mut().find(|j| j.id == id) {
            Some(j) => f(j),
            None => Outcome::Rejected(Rejection::UnknownJob),
        }
    }
}

fn fetch(job: &mut Job, revalidation: Result<(), NotIssuable>) -> Outcome {
    match job.phase {
        JobPhase::Rendering => Outcome::Pending,
        JobPhase::Voided(_) => Outcome::Rejected(Rejection::JobVoided),
        JobPhase::Refused(reason) => Outcome::Rejected(Rejection::NotIssuable(reason)),
        JobPhase::Ready => match revalidation {
            Ok(()) => {
                job.phase = JobPhase::Delivered;
                Outcome::Release
            }
            Err(reason) => {
                // Never delivered: the job is dead for good and will never be charged.
                job.phase = JobPhase::Refused(reason);
                Outcome::Rejected(Rejection::NotIssuable(reason))
            }
        },
        // Already in the kiosk's hands: repeat the same bytes, unless the record changed
        // so that releasing them again would be an issuance the registry forbids now.
        JobPhase::Delivered | JobPhase::Printed => match revalidation {
            Ok(()) => Outcome::Release,
            Err(reason) => Outcome::Rejected(Rejection::NotIssuable(reason)),
        },
    }
}

fn printed(job: &mut Job) -> Outcome {
    match job.phase {
        JobPhase::Delivered => {
            job.phase = JobPhase::Printed;
            Outcome::Charge {
                charged_yen: job.fee_yen(),
            }
        }
        JobPhase::Printed => Outcome::AlreadyCharged {
            charged_yen: job.fee_yen(),
        },
        JobPhase::Voided(_) => Outcome::Rejected(Rejection::JobVoided),
        JobPhase::Rendering | JobPhase::Ready | JobPhase::Refused(_) => {
            Outcome::Rejected(Rejection::NotDelivered)
        }
    }
}

#[cfg(test)]
mod tests;
