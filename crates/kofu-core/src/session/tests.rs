//! Tests of the session state machine: every representative state × every command
//! against an independent reference model, the API rules as named cases, and random
//! command sequences checking the invariants the whole system rests on (props.rs).

mod model;
mod props;
mod rules;

use std::collections::BTreeSet;

use kofu_proto::{CertKind, JobId, MAX_AUTH_ATTEMPTS, MAX_JOBS_PER_SESSION};

use super::*;
use crate::records::NotIssuable;
use model::expected;

const NOT_ISSUABLE: [NotIssuable; 4] = NotIssuable::ALL;
const CLOSE_REASONS: [CloseReason; 6] = CloseReason::ALL;

/// The job ids the matrix uses: jobs 0..5 of a session, plus one no session has.
fn jid(i: u8) -> JobId {
    JobId::new(i, [i.wrapping_mul(37); 8])
}

fn unknown_job() -> JobId {
    JobId::new(9, [0xEE; 8])
}

/// Job `i` with a kind and copy count that differ per index, so fees differ too.
fn job(i: u8, phase: JobPhase) -> Job {
    Job {
        id: jid(i),
        kind: CertKind::ALL[usize::from(i) % CertKind::ALL.len()],
        copies: i % 5 + 1,
        phase,
        meta: JobMeta::default(),
    }
}

fn session(phase: Phase, phases: &[JobPhase]) -> Session {
    Session {
        phase,
        jobs: phases.iter().zip(0u8..).map(|(p, i)| job(i, *p)).collect(),
    }
}

fn every_job_phase() -> Vec<JobPhase> {
    let mut out = vec![
        JobPhase::Rendering,
        JobPhase::Ready,
        JobPhase::Delivered,
        JobPhase::Printed,
        JobPhase::Voided(VoidReason::Deadline),
        JobPhase::Voided(VoidReason::SessionClosed),
    ];
    out.extend(NOT_ISSUABLE.map(JobPhase::Refused));
    out
}

/// Representative states, named for failure messages.
fn states() -> Vec<(String, Session)> {
    let mut out = Vec::new();
    for n in (1..=MAX_AUTH_ATTEMPTS).rev() {
        let s = session(Phase::Challenged { attempts_left: n }, &[]);
        out.push((format!("challenged({n})"), s));
    }
    out.push((
        "authenticated, no jobs".into(),
        session(Phase::Authenticated, &[]),
    ));
    for p in every_job_phase() {
        let s = session(Phase::Authenticated, &[p]);
        out.push((format!("authenticated, one job {p:?}"), s));
    }
    use JobPhase::*;
    let four = [Rendering, Ready, Delivered, Printed];
    out.push((
        "authenticated, 4 jobs".into(),
        session(Phase::Authenticated, &four),
    ));
    let five_rendering = [Rendering; 5];
    out.push((
        "authenticated, 5 jobs rendering".into(),
        session(Phase::Authenticated, &five_rendering),
    ));
    let five_mixed = [
        Rendering,
        Ready,
        Delivered,
        Printed,
        Voided(VoidReason::Deadline),
    ];
    out.push((
        "authenticated, 5 mixed jobs".into(),
        session(Phase::Authenticated, &five_mixed),
    ));
    for r in CLOSE_REASONS {
        out.push((format!("closed({r:?})"), session(Phase::Closed(r), &[])));
    }
    let leftovers = [
        Printed,
        Voided(VoidReason::SessionClosed),
        Refused(NotIssuable::SealRevoked),
        Voided(VoidReason::Deadline),
    ];
    out.push((
        "closed with jobs".into(),
        session(Phase::Closed(CloseReason::Removed), &leftovers),
    ));
    out
}

/// Every command, aimed at each job a state may hold and at an unknown job.
fn commands() -> Vec<Command> {
    let mut out = vec![
        Command::Authenticate { valid: true },
        Command::Authenticate { valid: false },
    ];
    let new = jid(MAX_JOBS_PER_SESSION as u8);
    let creates = [(CertKind::Residence, 1), (CertKind::FamilyRegister, 3)];
    for (kind, copies) in creates {
        out.push(Command::CreateJob {
            id: new,
            kind,
            copies,
            issuable: Ok(()),
        });
    }
    for reason in NOT_ISSUABLE {
        out.push(Command::CreateJob {
            id: new,
            kind: CertKind::Seal,
            copies: 1,
            issuable: Err(reason),
        });
    }
    let targets = (0..MAX_JOBS_PER_SESSION as u8)
        .map(jid)
        .chain([unknown_job()]);
    for job in targets {
        out.push(Command::RenderDone { job });
        out.push(Command::RenderDeadline { job });
        out.push(Command::Fetch {
            job,
            revalidation: Ok(()),
        });
        out.push(Command::Fetch {
            job,
            revalidation: Err(NotIssuable::SealRevoked),
        });
        out.push(Command::Printed { job });
    }
    out.extend(CLOSE_REASONS.map(Command::Close));
    out
}

/// Variant names, so the matrix can prove it produced every kind of answer.
fn outcome_tag(o: &Outcome) -> String {
    match o {
        Outcome::Authenticated => "authenticated".into(),
        Outcome::BadSignature { .. } => "bad_signature".into(),
        Outcome::LockedOut => "locked_out".into(),
        Outcome::JobCreated { .. } => "job_created".into(),
        Outcome::Pending => "pending".into(),
        Outcome::Release => "release".into(),
        Outcome::Charge { .. } => "charge".into(),
        Outcome::AlreadyCharged { .. } => "already_charged".into(),
        Outcome::Changed => "changed".into(),
        Outcome::Ignored => "ignored".into(),
        Outcome::Closed { .. } => "closed".into(),
        Outcome::Rejected(r) => format!("rejected:{}", r.code().as_str()),
    }
}

#[test]
fn every_state_times_every_command_matches_the_model() {
    let states = states();
    let commands = commands();
    let mut seen = BTreeSet::new();
    let mut pairs = 0;
    for (name, state) in &states {
        for cmd in &commands {
            let (want_outcome, want_state) = expected(state, cmd);
            let mut got_state = state.clone();
            let got_outcome = got_state.apply(cmd.clone());
            assert_eq!(got_outcome, want_outcome, "outcome of {cmd:?} in {name}");
            assert_eq!(got_state, want_state, "state after {cmd:?} in {name}");
            seen.insert(outcome_tag(&got_outcome));
            pairs += 1;
        }
    }
    assert_eq!(pairs, states.len() * commands.len());
    let all = [
        "authenticated",
        "bad_signature",
        "locked_out",
        "job_created",
        "pending",
        "release",
        "charge",
        "already_charged",
        "changed",
        "ignored",
        "closed",
        "rejected:unknown_session",
        "rejected:unknown_job",
        "rejected:not_authenticated",
        "rejected:already_authenticated",
        "rejected:too_many_jobs",
        "rejected:not_issuable",
        "rejected:job_voided",
        "rejected:not_delivered",
    ];
    let all: BTreeSet<String> = all.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(seen, all, "the matrix must exercise every answer");
}

#[test]
fn the_matrix_covers_every_job_phase_and_close_reason() {
    let states = states();
    let phases: Vec<JobPhase> = states
        .iter()
        .flat_map(|(_, s)| s.jobs.iter().map(|j| j.phase))
        .collect();
    for p in every_job_phase() {
        assert!(phases.contains(&p), "{p:?}");
    }
    for r in CLOSE_REASONS {
        assert!(
            states.iter().any(|(_, s)| s.phase == Phase::Closed(r)),
            "{r:?}"
        );
    }
}

#[test]
fn nothing_ever_leaves_closed() {
    for (name, state) in states().into_iter().filter(|(_, s)| s.is_closed()) {
        let mut s = state.clone();
        for cmd in commands() {
            let out = s.apply(cmd.clone());
            let allowed = [
                Outcome::Ignored,
                Outcome::Rejected(Rejection::UnknownSession),
            ];
            assert!(allowed.contains(&out), "{cmd:?} in {name}: {out:?}");
            assert_eq!(s, state, "{cmd:?} changed {name}");
        }
    }
}

#[test]
fn snapshots_round_trip() {
    for (name, s) in states() {
        let json = serde_json::to_string(&s).expect("serialize");
        let back: Session = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, s, "{name}");
    }
}

#[test]
fn rejections_map_to_their_api_codes() {
    use kofu_proto::ErrorCode as E;
    let cases = [
        (Rejection::UnknownSession, E::UnknownSession, 404),
        (Rejection::UnknownJob, E::UnknownJob, 404),
        (Rejection::NotAuthenticated, E::NotAuthenticated, 401),
        (
            Rejection::AlreadyAuthenticated,
            E::AlreadyAuthenticated,
            409,
        ),
        (Rejection::TooManyJobs, E::TooManyJobs, 429),
        (
            Rejection::NotIssuable(NotIssuable::SealRevoked),
            E::NotIssuable,
            422,
        ),
        (Rejection::JobVoided, E::JobVoided, 410),
        (Rejection::NotDelivered, E::NotDelivered, 409),
    ];
    for (r, code, status) in cases {
        assert_eq!(r.code(), code);
        assert_eq!(code.status(), status);
    }
}
