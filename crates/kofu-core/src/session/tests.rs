//! Tests of the session state machine: every representative state × every command
//! against an independent reference model, the API rules as named cases, and random
//! command sequences checking the invariants the whole system rests on (props.rs).

mod model;
mod props;

use std::collections::BTreeSet;

use kofu_proto::{CertKind, JobId, MAX_AUTH_ATTEMPTS, MAX_JOBS_PER_SESSION};

use super::*;
use crate::records::NotIssuable;
use model::expected;

const NOT_ISSUABLE: [NotIssuable; 4] = [
    NotIssuable::RecordRestricted,
    NotIssuable::SealNotRegistered,
    NotIssuable::SealRevoked,
    NotIssuable::NoTaxRecord,
];

const CLOSE_REASONS: [CloseReason; 6] = [
    CloseReason::Removed,
    CloseReason::Locked,
    CloseReason::IdleTimeout,
    CloseReason::HardLimit,
    CloseReason::Replaced,
    CloseReason::Shutdown,
];

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

fn authenticated() -> Session {
    let mut s = Session::new();
    assert_eq!(
        s.apply(Command::Authenticate { valid: true }),
        Outcome::Authenticated
    );
    s
}

fn create(s: &mut Session, i: u8, kind: CertKind, copies: u8) -> Outcome {
    s.apply(Command::CreateJob {
        id: jid(i),
        kind,
        copies,
        issuable: Ok(()),
    })
}

fn deliver(s: &mut Session, i: u8) {
    assert_eq!(
        s.apply(Command::RenderDone { job: jid(i) }),
        Outcome::Changed
    );
    let fetch = Command::Fetch {
        job: jid(i),
        revalidation: Ok(()),
    };
    assert_eq!(s.apply(fetch), Outcome::Release);
}

#[test]
fn third_bad_signature_locks_and_closes() {
    let mut s = Session::new();
    let bad = Command::Authenticate { valid: false };
    assert_eq!(
        s.apply(bad.clone()),
        Outcome::BadSignature { attempts_left: 2 }
    );
    assert_eq!(
        s.apply(bad.clone()),
        Outcome::BadSignature { attempts_left: 1 }
    );
    assert_eq!(s.apply(bad.clone()), Outcome::LockedOut);
    assert_eq!(s.phase, Phase::Closed(CloseReason::Locked));
    assert!(s.is_closed());
    // A good signature after the lock is too late.
    let good = Command::Authenticate { valid: true };
    assert_eq!(s.apply(good), Outcome::Rejected(Rejection::UnknownSession));
    assert_eq!(s.apply(bad), Outcome::Rejected(Rejection::UnknownSession));
}

#[test]
fn a_good_signature_after_bad_ones_authenticates() {
    let mut s = Session::new();
    s.apply(Command::Authenticate { valid: false });
    s.apply(Command::Authenticate { valid: false });
    assert_eq!(
        s.apply(Command::Authenticate { valid: true }),
        Outcome::Authenticated
    );
    let again = s.apply(Command::Authenticate { valid: true });
    assert_eq!(again, Outcome::Rejected(Rejection::AlreadyAuthenticated));
}

#[test]
fn sixth_job_is_too_many() {
    let mut s = authenticated();
    for i in 0..5 {
        assert!(matches!(
            create(&mut s, i, CertKind::Residence, 1),
            Outcome::JobCreated { .. }
        ));
    }
    let sixth = create(&mut s, 5, CertKind::Residence, 1);
    assert_eq!(sixth, Outcome::Rejected(Rejection::TooManyJobs));
    assert_eq!(s.jobs.len(), 5);
    // Finished or voided jobs still count: the limit is per session.
    for i in 0..5 {
        s.apply(Command::RenderDeadline { job: jid(i) });
    }
    let seventh = create(&mut s, 6, CertKind::Residence, 1);
    assert_eq!(seventh, Outcome::Rejected(Rejection::TooManyJobs));
}

#[test]
fn job_fee_is_per_copy() {
    let mut s = authenticated();
    let created = create(&mut s, 0, CertKind::FamilyRegister, 3);
    assert_eq!(created, Outcome::JobCreated { fee_yen: 450 * 3 });
}

#[test]
fn printed_before_fetch_is_not_delivered() {
    let mut s = authenticated();
    create(&mut s, 0, CertKind::Residence, 1);
    let printed = Command::Printed { job: jid(0) };
    assert_eq!(
        s.apply(printed.clone()),
        Outcome::Rejected(Rejection::NotDelivered)
    );
    s.apply(Command::RenderDone { job: jid(0) });
    assert_eq!(s.apply(printed), Outcome::Rejected(Rejection::NotDelivered));
    assert_eq!(s.jobs[0].phase, JobPhase::Ready);
}

#[test]
fn printed_twice_charges_once_with_the_same_amount() {
    let mut s = authenticated();
    create(&mut s, 0, CertKind::Tax, 2);
    deliver(&mut s, 0);
    let printed = Command::Printed { job: jid(0) };
    assert_eq!(
        s.apply(printed.clone()),
        Outcome::Charge { charged_yen: 600 }
    );
    assert_eq!(
        s.apply(printed.clone()),
        Outcome::AlreadyCharged { charged_yen: 600 }
    );
    assert_eq!(
        s.apply(printed),
        Outcome::AlreadyCharged { charged_yen: 600 }
    );
    // The kiosk may fetch the same bytes again after printing.
    let fetch = Command::Fetch {
        job: jid(0),
        revalidation: Ok(()),
    };
    assert_eq!(s.apply(fetch), Outcome::Release);
}

#[test]
fn closing_voids_unconfirmed_jobs_but_not_printed_ones() {
    let mut s = authenticated();
    for i in 0..4 {
        create(&mut s, i, CertKind::Residence, 1);
    }
    // 0 rendering, 1 ready, 2 delivered, 3 printed
    s.apply(Command::RenderDone { job: jid(1) });
    deliver(&mut s, 2);
    deliver(&mut s, 3);
    s.apply(Command::Printed { job: jid(3) });
    let closed = s.apply(Command::Close(CloseReason::Removed));
    assert_eq!(
        closed,
        Outcome::Closed {
            voided: vec![jid(0), jid(1), jid(2)]
        }
    );
    let voided = JobPhase::Voided(VoidReason::SessionClosed);
    let phases: Vec<JobPhase> = s.jobs.iter().map(|j| j.phase).collect();
    assert_eq!(phases, vec![voided, voided, voided, JobPhase::Printed]);
    // Closing again is a no-op (DELETE is idempotent) and voids nothing more.
    assert_eq!(
        s.apply(Command::Close(CloseReason::Removed)),
        Outcome::Ignored
    );
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
fn a_deadline_voids_only_its_own_job() {
    let mut s = authenticated();
    create(&mut s, 0, CertKind::Residence, 1);
    create(&mut s, 1, CertKind::Residence, 1);
    assert_eq!(
        s.apply(Command::RenderDeadline { job: jid(0) }),
        Outcome::Changed
    );
    // The late render of the voided job must not revive it.
    assert_eq!(
        s.apply(Command::RenderDone { job: jid(0) }),
        Outcome::Ignored
    );
    s.apply(Command::RenderDone { job: jid(1) });
    let fetch = |i| Command::Fetch {
        job: jid(i),
        revalidation: Ok(()),
    };
    assert_eq!(s.apply(fetch(0)), Outcome::Rejected(Rejection::JobVoided));
    assert_eq!(s.apply(fetch(1)), Outcome::Release);
    let printed = s.apply(Command::Printed { job: jid(0) });
    assert_eq!(printed, Outcome::Rejected(Rejection::JobVoided));
}

#[test]
fn a_refused_job_stays_dead() {
    let mut s = authenticated();
    create(&mut s, 0, CertKind::Seal, 1);
    s.apply(Command::RenderDone { job: jid(0) });
    let revoked = Command::Fetch {
        job: jid(0),
        revalidation: Err(NotIssuable::SealRevoked),
    };
    let refusal = Outcome::Rejected(Rejection::NotIssuable(NotIssuable::SealRevoked));
    assert_eq!(s.apply(revoked), refusal);
    // Even if the registry answered differently later, the job is never released.
    let fine = Command::Fetch {
        job: jid(0),
        revalidation: Ok(()),
    };
    assert_eq!(s.apply(fine), refusal);
    let printed = s.apply(Command::Printed { job: jid(0) });
    assert_eq!(printed, Outcome::Rejected(Rejection::NotDelivered));
    let closed = s.apply(Command::Close(CloseReason::Removed));
    assert_eq!(closed, Outcome::Closed { voided: vec![] });
}

#[test]
fn a_revocation_after_delivery_stops_further_releases() {
    let mut s = authenticated();
    create(&mut s, 0, CertKind::Seal, 1);
    deliver(&mut s, 0);
    let revoked = Command::Fetch {
        job: jid(0),
        revalidation: Err(NotIssuable::SealRevoked),
    };
    let refusal = Outcome::Rejected(Rejection::NotIssuable(NotIssuable::SealRevoked));
    assert_eq!(s.apply(revoked), refusal);
}

#[test]
fn unknown_jobs_are_rejected_or_ignored() {
    let mut s = authenticated();
    let job = unknown_job();
    let fetch = Command::Fetch {
        job,
        revalidation: Ok(()),
    };
    assert_eq!(s.apply(fetch), Outcome::Rejected(Rejection::UnknownJob));
    assert_eq!(
        s.apply(Command::Printed { job }),
        Outcome::Rejected(Rejection::UnknownJob)
    );
    assert_eq!(s.apply(Command::RenderDone { job }), Outcome::Ignored);
    assert_eq!(s.apply(Command::RenderDeadline { job }), Outcome::Ignored);
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
