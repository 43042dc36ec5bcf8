//! The API rules of the session lifecycle as named cases, each a short story told
//! through `Session::apply`.

use super::*;

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
