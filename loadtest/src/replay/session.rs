//! One kiosk session of a replay, a bench or a chaos run: its steps at their intended
//! times, each answer checked against what that step must get, every document checked
//! like a kiosk before printing. How patient the kiosk is, and whether every request goes
//! into a history, is the run's choice (`Config::patience`, `Shared::history`).

use std::sync::Arc;
use std::time::Duration;

use kofu_kiosk::{CallError, Expected, Fetched, Kiosk, MAX_WAIT_MS, TextCheck, Verifier};
use kofu_proto::api::{CreateSessionResponse, PrintedResponse};
use kofu_proto::{CertKind, ErrorCode};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use super::Shared;
use super::call::{Caller, Note, gone};
use crate::history::{Op, Tap};
use kofu_proto::trace::{Action, SessionTrace};

/// How a session ended, for whoever hands out cards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended {
    /// Every step got the answer it must get.
    pub(crate) completed: bool,
    /// The session was closed (`204`): its card is free.
    pub(crate) closed: bool,
}

/// The session's current job.
struct Job {
    id: Arc<str>,
    kind: CertKind,
    copies: u8,
}

/// What one session knows between steps.
struct State<'a> {
    shared: &'a Shared,
    caller: Caller<'a>,
    /// The session's kiosk (pinned to target `index mod n`, or spread per request).
    kiosk: Kiosk,
    card: usize,
    created: Option<CreateSessionResponse>,
    sid: Option<Arc<str>>,
    job: Option<Job>,
    printed: Option<PrintedResponse>,
    last: Option<Action>,
    /// The job was refused because the holder's seal was revoked meanwhile: the kiosk
    /// says so and the card comes out.
    refused: bool,
    closed: bool,
}

pub(crate) async fn run(shared: &Shared, index: usize, s: &SessionTrace) -> Ended {
    let caller = Caller {
        shared,
        index: index as u32,
        card: s.card,
        tap: shared.history.as_ref().map(|_| Tap::default()),
    };
    let base = &shared.kiosks[s.kiosk as usize];
    let kiosk = if shared.config.spread {
        caller.kiosk(base)
    } else {
        caller.kiosk(&base.pinned(index))
    };
    let mut st = State {
        shared,
        caller,
        kiosk,
        card: s.card as usize,
        created: None,
        sid: None,
        job: None,
        printed: None,
        last: None,
        refused: false,
        closed: false,
    };
    for step in &s.steps {
        let intended = shared.at(s.start_us + step.at_us);
        shared.wait_until(intended).await;
        let action = match step.action {
            Action::Retry => match st.last {
                Some(a) => a,
                None => continue,
            },
            a => a,
        };
        if matches!(action, Action::Abandon) {
            return st.ended(false);
        }
        if st.refused && action != Action::Close {
            continue;
        }
        let name = step.action.step_name();
        let error = st.step(action).await.err();
        let now = Instant::now();
        let failed = error.is_some();
        shared.with(|c| {
            c.request(
                name,
                now.saturating_duration_since(intended),
                now.saturating_duration_since(shared.origin),
                error,
            )
        });
        if failed {
            // A session that went wrong stops, as a kiosk would show an error screen.
            return st.ended(false);
        }
        st.last = Some(action);
    }
    let at = Instant::now().saturating_duration_since(shared.origin);
    shared.with(|c| c.completed(at));
    st.ended(true)
}

/// `step status code` of an answer that is not the one the step must get; a success is
/// `success` (its status) with no code, no answer is `599` with why.
fn unexpected(name: &str, e: &CallError, success: u16) -> String {
    match e {
        CallError::Api(e) => format!("{name} {} {}", e.status, e.code_str()),
        CallError::NoAnswer(e) if e.timeout => format!("{name} 599 timeout"),
        CallError::NoAnswer(_) => format!("{name} 599 transport"),
        CallError::Malformed { status, .. } if *status == success => format!("{name} bad body"),
        CallError::Malformed { status, .. } => format!("{name} {status} "),
    }
}

/// A step that must be refused with `want`: `Ok` if it was.
fn refused<T>(name: &str, r: Result<T, CallError>, want: u16, success: u16) -> Result<(), String> {
    match r {
        Err(CallError::Api(e)) if e.status == want => Ok(()),
        Err(e) => Err(unexpected(name, &e, success)),
        Ok(_) => Err(format!("{name} {success} ")),
    }
}

fn never(_: &CallError) -> bool {
    false
}

impl State<'_> {
    fn ended(&self, completed: bool) -> Ended {
        Ended {
            completed,
            closed: self.closed,
        }
    }

    fn budget(&self) -> Duration {
        self.shared
            .config
            .patience
            .map_or(Duration::ZERO, |p| p.budget)
    }

    /// The card id, which only card insertions send.
    fn card_id(&self) -> &str {
        self.shared.fx.cards[self.card].card_id()
    }

    fn sid(&self) -> Result<&str, String> {
        self.sid.as_deref().ok_or_else(|| "no session".to_owned())
    }

    /// The history's context of a request about the session (and its job).
    fn note(&self) -> Note {
        Note {
            session_id: self.sid.clone(),
            job_id: self.job.as_ref().map(|j| j.id.clone()),
            kind: self.job.as_ref().map(|j| j.kind),
            ..Note::default()
        }
    }

    /// Whether a `422 not_issuable` about a seal is explained by a revocation the run sent.
    fn revoked(&self, e: &CallError, kind: CertKind) -> bool {
        kind == CertKind::Seal
            && e.is(ErrorCode::NotIssuable)
            && self
                .shared
                .history
                .as_ref()
                .is_some_and(|h| h.seal_revocation_sent(self.caller.card))
    }

    /// Performs `action`; `Err` names the unexpected outcome (`step status code`).
    async fn step(&mut self, action: Action) -> Result<(), String> {
        let name = action.step_name();
        let card = &self.shared.fx.cards[self.card];
        let kiosk = &self.kiosk;
        let budget = self.budget();
        match action {
            Action::Create => {
                let card_id = self.card_id();
                let created = self
                    .caller
                    .send(
                        Op::Create,
                        budget,
                        &Note::default(),
                        || kiosk.create_session(card_id),
                        |c, n| n.session_id = Some(c.session_id.as_str().into()),
                        never,
                    )
                    .await
                    .map_err(|e| unexpected(name, &e, 201))?;
                self.sid = Some(created.session_id.as_str().into());
                self.created = Some(created);
                Ok(())
            }
            Action::Auth { valid: true } => {
                let created = self.created.as_ref().ok_or("no session")?;
                self.caller
                    .send(
                        Op::Auth,
                        budget,
                        &self.note(),
                        || kiosk.authenticate(card, created),
                        |_, _| {},
                        gone,
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| unexpected(name, &e, 200))
            }
            Action::Auth { valid: false } => {
                let created = self.created.as_ref().ok_or("no session")?;
                let challenge = kofu_proto::b64url_decode(&created.challenge).unwrap_or_default();
                let sid = &created.session_id;
                let mut sig = card.signature(sid, kiosk.kiosk_id(), &challenge);
                sig[0] ^= 0xff;
                let sig = kofu_proto::b64url(&sig);
                let r = self
                    .caller
                    .send(
                        Op::BadAuth,
                        budget,
                        &self.note(),
                        || kiosk.auth(sid, &sig),
                        |_, _| {},
                        gone,
                    )
                    .await;
                refused(name, r, 401, 200)
            }
            Action::Job { kind, copies } => self.job(kind, copies).await,
            Action::Fetch { wait_ms } => self.fetch(wait_ms).await,
            Action::Printed => self.printed().await,
            Action::Close => {
                let sid = self.sid()?;
                self.caller
                    .send(
                        Op::Close,
                        budget,
                        &self.note(),
                        || kiosk.close(sid),
                        |_, _| {},
                        never,
                    )
                    .await
                    .map_err(|e| unexpected(name, &e, 204))?;
                self.closed = true;
                Ok(())
            }
            Action::DuplicateCard { kiosk: other } => self.duplicate(other as usize).await,
            Action::Abandon | Action::Retry => Ok(()),
        }
    }

    async fn job(&mut self, kind: CertKind, copies: u8) -> Result<(), String> {
        let sid = self.sid()?;
        let kiosk = &self.kiosk;
        let context = Note {
            kind: Some(kind),
            ..self.note()
        };
        let r = self
            .caller
            .send(
                Op::Job,
                self.budget(),
                &context,
                || kiosk.create_job(sid, kind, copies),
                |j, n| n.job_id = Some(j.job_id.as_str().into()),
                |e| gone(e) && !self.revoked(e, kind),
            )
            .await;
        match r {
            Ok(job) => {
                self.job = Some(Job {
                    id: job.job_id.as_str().into(),
                    kind,
                    copies,
                });
                Ok(())
            }
            Err(e) if self.revoked(&e, kind) => {
                self.refused = true;
                Ok(())
            }
            Err(e) => Err(unexpected("job", &e, 202)),
        }
    }

    /// Polls until the document is released (each request waiting up to `wait_ms` on the
    /// node, within the run's fetch budget), then checks it like a kiosk: issuer
    /// signature, `doc_sha256`, binding (session, kiosk, card, kind, copies), the
    /// holder's name in the PDF and no resident's name from outside the household.
    async fn fetch(&mut self, wait_ms: u32) -> Result<(), String> {
        let sid = self.sid()?;
        let job = self.job.as_ref().ok_or("fetch without a job")?;
        let (kiosk, context) = (&self.kiosk, self.note());
        let deadline = Instant::now() + self.shared.config.fetch_budget;
        let doc = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = u32::try_from(left.as_millis()).map_or(wait_ms, |l| l.min(wait_ms));
            let r = self
                .caller
                .send(
                    Op::Document,
                    self.budget(),
                    &context,
                    || kiosk.document(sid, &job.id, wait.min(MAX_WAIT_MS)),
                    |f, n| {
                        if let Fetched::Ready(doc) = f {
                            n.doc_sha = Some(Sha256::digest(&doc.body).into());
                            n.serial = serial_of(doc.binding());
                        }
                    },
                    |e| gone(e) && !self.revoked(e, job.kind),
                )
                .await;
            match r {
                Ok(Fetched::Ready(doc)) => break doc,
                Ok(Fetched::Rendering) if Instant::now() < deadline => {
                    if wait == 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                Ok(Fetched::Rendering) => return Err("fetch 202 ".to_owned()),
                Err(e) if self.revoked(&e, job.kind) => {
                    self.refused = true;
                    return Ok(());
                }
                Err(e) => return Err(unexpected("fetch", &e, 200)),
            }
        };
        let fx = &self.shared.fx;
        let order = Expected {
            session_id: sid,
            kiosk_id: self.kiosk.kiosk_id(),
            card: &fx.cards[self.card].id,
            kind: job.kind,
            copies: job.copies,
        };
        let verifier = Verifier {
            fixtures: fx,
            issuer: &self.shared.issuer,
            text: TextCheck::Bytes,
        };
        match verifier.verify(&doc, &order).await {
            Ok(_) => {
                self.shared.with(|c| c.counts.documents_verified += 1);
                Ok(())
            }
            Err(why) => {
                // The why names no personal data: binding field names and fixed texts.
                self.shared
                    .with(|c| c.misdelivery(format!("session {sid}: {why}")));
                Err("fetch misdelivery".to_owned())
            }
        }
    }

    async fn printed(&mut self) -> Result<(), String> {
        let sid = self.sid()?;
        let job = self.job.as_ref().ok_or("printed without a job")?;
        let kiosk = &self.kiosk;
        let budget = self
            .shared
            .config
            .patience
            .map_or(Duration::ZERO, |p| p.confirm_budget);
        let answer = self
            .caller
            .send(
                Op::Printed,
                budget,
                &self.note(),
                || kiosk.printed(sid, &job.id),
                |p, n| {
                    n.serial = Some(p.serial.clone());
                    n.charged = Some(p.charged_yen);
                },
                gone,
            )
            .await
            .map_err(|e| unexpected("printed", &e, 200))?;
        match &self.printed {
            Some(before) if *before != answer => Err("printed answered differently".to_owned()),
            _ => {
                self.printed = Some(answer);
                Ok(())
            }
        }
    }

    /// Another kiosk inserts the session's card: it must be refused `409`. A session it
    /// opened anyway is closed again.
    async fn duplicate(&mut self, other: usize) -> Result<(), String> {
        let base = &self.shared.kiosks[other];
        let kiosk = self.caller.kiosk(&if self.shared.config.spread {
            base.clone()
        } else {
            base.pinned(self.caller.index as usize)
        });
        let card_id = self.card_id();
        let r = self
            .caller
            .send(
                Op::Duplicate,
                self.budget(),
                &Note::default(),
                || kiosk.create_session(card_id),
                |c, n| n.session_id = Some(c.session_id.as_str().into()),
                never,
            )
            .await;
        if let Ok(created) = &r {
            let sid: Arc<str> = created.session_id.as_str().into();
            let context = Note {
                session_id: Some(sid.clone()),
                ..Note::default()
            };
            let _ = self
                .caller
                .send(
                    Op::ProbeClose,
                    self.budget(),
                    &context,
                    || kiosk.close(&sid),
                    |_, _| {},
                    never,
                )
                .await;
        }
        refused("duplicate_card", r, 409, 201)
    }
}

/// The serial a document's binding names (unverified: the kiosk's check comes after).
fn serial_of(binding_b64: Option<&str>) -> Option<String> {
    let bytes = kofu_proto::b64url_decode(binding_b64?)?;
    kofu_proto::Binding::from_bytes(&bytes)
        .ok()
        .map(|b| b.serial)
}
