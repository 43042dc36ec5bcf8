//! The reference model of the session lifecycle, written from API.md and DESIGN.md
//! rather than from `session.rs`: a table of rules, one per (phase, command, job phase)
//! case, that the implementation must match on every pair of the test matrix.

use kofu_proto::MAX_JOBS_PER_SESSION;

use crate::session::{
    CloseReason, Command, Job, JobMeta, JobPhase, Outcome, Phase, Rejection, Session, VoidReason,
};

/// What a rule says happens: the answer plus how the state changes.
enum Effect {
    /// Answer, state unchanged.
    Keep(Outcome),
    /// Answer and move the session to a new phase (jobs untouched).
    ToPhase(Outcome, Phase),
    /// Answer and move the targeted job to a new phase.
    JobTo(Outcome, JobPhase),
    /// A new job, rendering.
    Push(Outcome, Job),
    /// The session ends for this reason: unconfirmed jobs are voided, never charged.
    End(CloseReason, Outcome),
}

/// The predicted answer and state after `cmd` is applied to `before`.
pub(super) fn expected(before: &Session, cmd: &Command) -> (Outcome, Session) {
    let target = match cmd {
        Command::RenderDone { job }
        | Command::RenderDeadline { job }
        | Command::Fetch { job, .. }
        | Command::Printed { job } => before.jobs.iter().position(|j| j.id == *job),
        _ => None,
    };
    let job = target.map(|i| &before.jobs[i]);
    let effect = rule(before.phase, cmd, job, before.jobs.len());

    let mut after = before.clone();
    let outcome = match effect {
        Effect::Keep(o) => o,
        Effect::ToPhase(o, phase) => {
            after.phase = phase;
            o
        }
        Effect::JobTo(o, phase) => {
            if let Some(i) = target {
                after.jobs[i].phase = phase;
            }
            o
        }
        Effect::Push(o, job) => {
            after.jobs.push(job);
            o
        }
        Effect::End(reason, o) => {
            let mut voided = Vec::new();
            for j in &mut after.jobs {
                let unconfirmed = matches!(
                    j.phase,
                    JobPhase::Rendering | JobPhase::Ready | JobPhase::Delivered
                );
                if unconfirmed {
                    j.phase = JobPhase::Voided(VoidReason::SessionClosed);
                    voided.push(j.id);
                }
            }
            after.phase = Phase::Closed(reason);
            match o {
                Outcome::Closed { .. } => Outcome::Closed { voided },
                other => other,
            }
        }
    };
    (outcome, after)
}

fn fee(job: &Job) -> u32 {
    job.kind.fee_yen() * u32::from(job.copies)
}

/// The rule table. Reading order is precedence order.
fn rule(phase: Phase, cmd: &Command, job: Option<&Job>, jobs: usize) -> Effect {
    use Command as C;
    use Effect::{End, JobTo, Keep, Push, ToPhase};
    use JobPhase as J;
    use Outcome as O;
    use Rejection as R;
    let job_phase = job.map(|j| j.phase);
    match (phase, cmd, job_phase) {
        // Closed is absorbing: kiosk calls meet an unknown session (404), late timers and
        // repeated closes change nothing.
        (Phase::Closed(_), C::Close(_) | C::RenderDone { .. } | C::RenderDeadline { .. }, _) => {
            Keep(O::Ignored)
        }
        (Phase::Closed(_), _, _) => Keep(O::Rejected(R::UnknownSession)),

        // Removing the card (or any other end) works from every open state.
        (_, C::Close(reason), _) => End(*reason, O::Closed { voided: Vec::new() }),

        // Authentication: three tries, the third bad one locks the session (423).
        (Phase::Challenged { .. }, C::Authenticate { valid: true }, _) => {
            ToPhase(O::Authenticated, Phase::Authenticated)
        }
        (Phase::Challenged { attempts_left: 1 }, C::Authenticate { valid: false }, _) => {
            End(CloseReason::Locked, O::LockedOut)
        }
        (Phase::Challenged { attempts_left: n }, C::Authenticate { valid: false }, _) => ToPhase(
            O::BadSignature {
                attempts_left: n - 1,
            },
            Phase::Challenged {
                attempts_left: n - 1,
            },
        ),
        (Phase::Authenticated, C::Authenticate { .. }, _) => {
            Keep(O::Rejected(R::AlreadyAuthenticated))
        }

        // Before authentication there are no jobs and no job requests.
        (
            Phase::Challenged { .. },
            C::CreateJob { .. } | C::Fetch { .. } | C::Printed { .. },
            _,
        ) => Keep(O::Rejected(R::NotAuthenticated)),
        (Phase::Challenged { .. }, C::RenderDone { .. } | C::RenderDeadline { .. }, _) => {
            Keep(O::Ignored)
        }

        // Job creation: at most five, only what the registry allows now.
        (Phase::Authenticated, C::CreateJob { .. }, _) if jobs >= MAX_JOBS_PER_SESSION => {
            Keep(O::Rejected(R::TooManyJobs))
        }
        (
            Phase::Authenticated,
            C::CreateJob {
                issuable: Err(r), ..
            },
            _,
        ) => Keep(O::Rejected(R::NotIssuable(*r))),
        (
            Phase::Authenticated,
            C::CreateJob {
                id,
                kind,
                copies,
                issuable: Ok(()),
            },
            _,
        ) => {
            let job = Job {
                id: *id,
                kind: *kind,
                copies: *copies,
                phase: J::Rendering,
                meta: JobMeta::default(),
            };
            Push(O::JobCreated { fee_yen: fee(&job) }, job)
        }

        // Render timers only move a job that is still rendering: a late render never
        // revives a voided job, a late deadline never voids a finished one.
        (Phase::Authenticated, C::RenderDone { .. }, Some(J::Rendering)) => {
            JobTo(O::Changed, J::Ready)
        }
        (Phase::Authenticated, C::RenderDeadline { .. }, Some(J::Rendering)) => {
            JobTo(O::Changed, J::Voided(VoidReason::Deadline))
        }
        (Phase::Authenticated, C::RenderDone { .. } | C::RenderDeadline { .. }, _) => {
            Keep(O::Ignored)
        }

        // Fetch: release only a rendered document that the registry still allows.
        (Phase::Authenticated, C::Fetch { .. }, None) => Keep(O::Rejected(R::UnknownJob)),
        (Phase::Authenticated, C::Fetch { .. }, Some(J::Rendering)) => Keep(O::Pending),
        (Phase::Authenticated, C::Fetch { .. }, Some(J::Voided(_))) => {
            Keep(O::Rejected(R::JobVoided))
        }
        (Phase::Authenticated, C::Fetch { .. }, Some(J::Refused(r))) => {
            Keep(O::Rejected(R::NotIssuable(r)))
        }
        (
            Phase::Authenticated,
            C::Fetch {
                revalidation: Err(r),
                ..
            },
            Some(J::Ready),
        ) => JobTo(O::Rejected(R::NotIssuable(*r)), J::Refused(*r)),
        (
            Phase::Authenticated,
            C::Fetch {
                revalidation: Err(r),
                ..
            },
            Some(J::Delivered | J::Printed),
        ) => Keep(O::Rejected(R::NotIssuable(*r))),
        (
            Phase::Authenticated,
            C::Fetch {
                revalidation: Ok(()),
                ..
            },
            Some(J::Ready),
        ) => JobTo(O::Release, J::Delivered),
        (
            Phase::Authenticated,
            C::Fetch {
                revalidation: Ok(()),
                ..
            },
            Some(J::Delivered | J::Printed),
        ) => Keep(O::Release),

        // Printed: charge once, after delivery; repeat the same answer afterwards.
        (Phase::Authenticated, C::Printed { .. }, None) => Keep(O::Rejected(R::UnknownJob)),
        (Phase::Authenticated, C::Printed { .. }, Some(J::Delivered)) => JobTo(
            O::Charge {
                charged_yen: job.map(fee).unwrap_or_default(),
            },
            J::Printed,
        ),
        (Phase::Authenticated, C::Printed { .. }, Some(J::Printed)) => Keep(O::AlreadyCharged {
            charged_yen: job.map(fee).unwrap_or_default(),
        }),
        (Phase::Authenticated, C::Printed { .. }, Some(J::Voided(_))) => {
            Keep(O::Rejected(R::JobVoided))
        }
        (
            Phase::Authenticated,
            C::Printed { .. },
            Some(J::Rendering | J::Ready | J::Refused(_)),
        ) => Keep(O::Rejected(R::NotDelivered)),
    }
}
