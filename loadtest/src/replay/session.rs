//! One kiosk session of a replay: its steps at their intended times, each answer checked
//! against what that step must get, every document checked like a kiosk before printing.

use kofu_kiosk::{CallError, Expected, Fetched, Kiosk, LongPoll, MAX_WAIT_MS, TextCheck, Verifier};
use kofu_proto::CertKind;
use kofu_proto::api::CreateSessionResponse;
use tokio::time::Instant;

use super::Shared;
use kofu_proto::trace::{Action, SessionTrace};

/// What one session knows between steps.
struct State<'a> {
    shared: &'a Shared,
    /// The session's kiosk, on the session's target.
    kiosk: Kiosk,
    /// Index of the session: every request of it goes to target `index mod n`.
    index: usize,
    card: usize,
    created: Option<CreateSessionResponse>,
    job: Option<(String, CertKind, u8)>,
    last: Option<Action>,
    failed: bool,
}

pub(crate) async fn run(shared: &Shared, index: usize, s: &SessionTrace) {
    let mut st = State {
        shared,
        kiosk: shared.kiosks[s.kiosk as usize].pinned(index),
        index,
        card: s.card as usize,
        created: None,
        job: None,
        last: None,
        failed: false,
    };
    for step in &s.steps {
        let intended = shared.at(s.start_us + step.at_us);
        tokio::time::sleep_until(intended).await;
        let action = match step.action {
            Action::Retry => match st.last {
                Some(a) => a,
                None => continue,
            },
            a => a,
        };
        if matches!(action, Action::Abandon) {
            return;
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
            st.failed = true;
            return;
        }
        st.last = Some(action);
    }
    if !st.failed {
        let at = Instant::now().saturating_duration_since(shared.origin);
        shared.with(|c| c.completed(at));
    }
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

impl State<'_> {
    /// The card id, which only card insertions send.
    fn card_id(&self) -> &str {
        self.shared.fx.cards[self.card].card_id()
    }

    fn sid(&self) -> Result<&str, String> {
        self.created
            .as_ref()
            .map(|c| c.session_id.as_str())
            .ok_or_else(|| "no session".to_owned())
    }

    /// Performs `action`; `Err` names the unexpected outcome (`step status code`).
    async fn step(&mut self, action: Action) -> Result<(), String> {
        let name = action.step_name();
        let card = &self.shared.fx.cards[self.card];
        match action {
            Action::Create => {
                let created = self
                    .kiosk
                    .create_session(self.card_id())
                    .await
                    .map_err(|e| unexpected(name, &e, 201))?;
                self.created = Some(created);
                Ok(())
            }
            Action::Auth { valid: true } => {
                let created = self.created.as_ref().ok_or("no session")?;
                self.kiosk
                    .authenticate(card, created)
                    .await
                    .map(|_| ())
                    .map_err(|e| unexpected(name, &e, 200))
            }
            Action::Auth { valid: false } => {
                let created = self.created.as_ref().ok_or("no session")?;
                let challenge = kofu_proto::b64url_decode(&created.challenge).unwrap_or_default();
                let sid = &created.session_id;
                let mut sig = card.signature(sid, self.kiosk.kiosk_id(), &challenge);
                sig[0] ^= 0xff;
                let r = self.kiosk.auth(sid, &kofu_proto::b64url(&sig)).await;
                refused(name, r, 401, 200)
            }
            Action::Job { kind, copies } => {
                let job = self
                    .kiosk
                    .create_job(self.sid()?, kind, copies)
                    .await
                    .map_err(|e| unexpected(name, &e, 202))?;
                self.job = Some((job.job_id, kind, copies));
                Ok(())
            }
            Action::Fetch { wait_ms } => self.fetch(wait_ms).await,
            Action::Printed => {
                let (job, _, _) = self.job.as_ref().ok_or(format!("{name} without a job"))?;
                self.kiosk
                    .printed(self.sid()?, job)
                    .await
                    .map(|_| ())
                    .map_err(|e| unexpected(name, &e, 200))
            }
            Action::Close => self
                .kiosk
                .close(self.sid()?)
                .await
                .map_err(|e| unexpected(name, &e, 204)),
            Action::DuplicateCard { kiosk } => {
                let other = self.shared.kiosks[kiosk as usize].pinned(self.index);
                refused(name, other.create_session(self.card_id()).await, 409, 201)
            }
            Action::Abandon | Action::Retry => Ok(()),
        }
    }

    /// Polls until the document is released, then checks it like a kiosk: issuer
    /// signature, `doc_sha256`, binding (session, kiosk, card, kind, copies), the
    /// holder's name in the PDF and no resident's name from outside the household.
    async fn fetch(&mut self, wait_ms: u32) -> Result<(), String> {
        let sid = self.sid()?;
        let (job, kind, copies) = self.job.as_ref().ok_or("fetch without a job")?;
        let poll = LongPoll {
            wait_ms: wait_ms.min(MAX_WAIT_MS),
            budget: self.shared.config.fetch_budget,
        };
        let doc = match self.kiosk.await_document(sid, job, poll).await {
            Ok(Fetched::Ready(doc)) => doc,
            Ok(Fetched::Rendering) => return Err("fetch 202 ".to_owned()),
            Err(e) => return Err(unexpected("fetch", &e, 200)),
        };
        let fx = &self.shared.fx;
        let order = Expected {
            session_id: sid,
            kiosk_id: self.kiosk.kiosk_id(),
            card: &fx.cards[self.card].id,
            kind: *kind,
            copies: *copies,
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
}
