//! Random command sequences: every step must match the reference model, and the
//! invariants behind I1 and I5 must hold over whole histories — a document is released
//! only for a rendered, live job; a job is charged at most once and only after delivery;
//! a voided job never yields a document again; closed is absorbing; five jobs at most.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::{CLOSE_REASONS, NOT_ISSUABLE, expected, jid};
use crate::records::NotIssuable;
use crate::session::{Command, JobPhase, Outcome, Phase, Session};
use kofu_proto::{CertKind, JobId, MAX_JOBS_PER_SESSION};

/// Job ids a random command may aim at: the five a session can create plus two it never
/// has.
const POOL: u8 = 7;

#[derive(Debug, Clone)]
enum Step {
    Auth(bool),
    Create {
        kind: usize,
        copies: u8,
        issuable: Option<usize>,
    },
    RenderDone(u8),
    RenderDeadline(u8),
    Fetch(u8, Option<usize>),
    Printed(u8),
    Close(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let refusal = prop::option::weighted(0.2, 0..NOT_ISSUABLE.len());
    prop_oneof![
        3 => prop::bool::weighted(0.7).prop_map(Step::Auth),
        4 => (0..CertKind::ALL.len(), 1u8..=5, refusal.clone())
            .prop_map(|(kind, copies, issuable)| Step::Create { kind, copies, issuable }),
        4 => (0..POOL).prop_map(Step::RenderDone),
        2 => (0..POOL).prop_map(Step::RenderDeadline),
        5 => ((0..POOL), refusal).prop_map(|(j, r)| Step::Fetch(j, r)),
        4 => (0..POOL).prop_map(Step::Printed),
        1 => (0..CLOSE_REASONS.len()).prop_map(Step::Close),
    ]
}

fn refusal(r: Option<usize>) -> Result<(), NotIssuable> {
    match r {
        Some(i) => Err(NOT_ISSUABLE[i]),
        None => Ok(()),
    }
}

/// New jobs take the next unused id, as the actor does, so ids never repeat.
fn command(step: &Step, session: &Session) -> Command {
    match *step {
        Step::Auth(valid) => Command::Authenticate { valid },
        Step::Create {
            kind,
            copies,
            issuable,
        } => Command::CreateJob {
            id: jid(session.jobs.len() as u8),
            kind: CertKind::ALL[kind],
            copies,
            issuable: refusal(issuable),
        },
        Step::RenderDone(j) => Command::RenderDone { job: jid(j) },
        Step::RenderDeadline(j) => Command::RenderDeadline { job: jid(j) },
        Step::Fetch(j, r) => Command::Fetch {
            job: jid(j),
            revalidation: refusal(r),
        },
        Step::Printed(j) => Command::Printed { job: jid(j) },
        Step::Close(r) => Command::Close(CLOSE_REASONS[r]),
    }
}

fn target(cmd: &Command) -> Option<JobId> {
    match cmd {
        Command::Fetch { job, .. } | Command::Printed { job } => Some(*job),
        Command::RenderDone { job } | Command::RenderDeadline { job } => Some(*job),
        _ => None,
    }
}

/// What the history so far has shown, per job.
#[derive(Default)]
struct Ledger {
    released: HashSet<JobId>,
    charged: HashMap<JobId, u32>,
    voided: HashSet<JobId>,
    closed: Option<Session>,
}

fn check_step(
    ledger: &mut Ledger,
    before: &Session,
    cmd: &Command,
    outcome: &Outcome,
    after: &Session,
) -> Result<(), TestCaseError> {
    let job_before = target(cmd).and_then(|id| before.job(id));
    match outcome {
        Outcome::Release => {
            let job = job_before.ok_or_else(|| TestCaseError::fail("release of no job"))?;
            prop_assert!(
                matches!(
                    job.phase,
                    JobPhase::Ready | JobPhase::Delivered | JobPhase::Printed
                ),
                "release from {:?}",
                job.phase
            );
            prop_assert!(!ledger.voided.contains(&job.id), "voided job released");
            ledger.released.insert(job.id);
        }
        Outcome::Charge { charged_yen } => {
            let job = job_before.ok_or_else(|| TestCaseError::fail("charge of no job"))?;
            prop_assert!(ledger.released.contains(&job.id), "charged before delivery");
            prop_assert!(!ledger.voided.contains(&job.id), "voided job charged");
            let first = ledger.charged.insert(job.id, *charged_yen);
            prop_assert!(first.is_none(), "charged twice");
            prop_assert_eq!(*charged_yen, job.fee_yen());
        }
        Outcome::AlreadyCharged { charged_yen } => {
            let job = job_before.ok_or_else(|| TestCaseError::fail("repeat of no job"))?;
            prop_assert_eq!(ledger.charged.get(&job.id), Some(charged_yen));
        }
        Outcome::Closed { voided } => {
            for id in voided {
                prop_assert!(!ledger.charged.contains_key(id), "printed job voided");
            }
        }
        _ => {}
    }
    for j in &after.jobs {
        if matches!(j.phase, JobPhase::Voided(_)) {
            ledger.voided.insert(j.id);
        }
        // Voided is final.
        if ledger.voided.contains(&j.id) {
            prop_assert!(matches!(j.phase, JobPhase::Voided(_)), "voided job revived");
        }
    }
    prop_assert!(after.jobs.len() <= MAX_JOBS_PER_SESSION);
    let ids: HashSet<JobId> = after.jobs.iter().map(|j| j.id).collect();
    prop_assert_eq!(ids.len(), after.jobs.len(), "duplicate job ids");
    match &ledger.closed {
        Some(closed) => {
            prop_assert_eq!(after, closed, "a closed session changed");
            prop_assert!(matches!(
                outcome,
                Outcome::Ignored | Outcome::Rejected(crate::session::Rejection::UnknownSession)
            ));
        }
        None if after.is_closed() => ledger.closed = Some(after.clone()),
        None => {}
    }
    if matches!(after.phase, Phase::Closed(_)) {
        let open = after.jobs.iter().any(|j| {
            matches!(
                j.phase,
                JobPhase::Rendering | JobPhase::Ready | JobPhase::Delivered
            )
        });
        prop_assert!(!open, "a closed session holds an unconfirmed job");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn random_histories_keep_the_invariants(steps in prop::collection::vec(step(), 0..60)) {
        let mut session = Session::new();
        let mut ledger = Ledger::default();
        for s in &steps {
            let cmd = command(s, &session);
            let before = session.clone();
            let (want_outcome, want_state) = expected(&before, &cmd);
            let outcome = session.apply(cmd.clone());
            prop_assert_eq!(&outcome, &want_outcome, "outcome of {:?}", cmd);
            prop_assert_eq!(&session, &want_state, "state after {:?}", cmd);
            check_step(&mut ledger, &before, &cmd, &outcome, &session)?;
        }
    }
}
