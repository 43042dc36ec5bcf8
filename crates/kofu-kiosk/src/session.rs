//! A whole kiosk session, as a resident lives it: insert the card, let it sign, choose a
//! certificate, wait for it, check it like a kiosk before printing, confirm the print,
//! take the card out. Steps that got `503` or no answer are repeated as a kiosk would,
//! when the plan says so.

use std::future::Future;
use std::time::Duration;

use kofu_proto::api::{CreateSessionResponse, PrintedResponse};
use kofu_proto::{Binding, CertKind};

use crate::fixtures::Card;
use crate::kiosk::{Fetched, Kiosk, LongPoll, Released};
use crate::outcome::{CallError, Step};
use crate::verify::{Expected, Refusal, Verifier};

/// How often a step is repeated after `503` or no answer, and the pause between tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub attempts: usize,
    pub pause: Duration,
}

impl Retry {
    /// Every step is sent once.
    pub const NEVER: Retry = Retry {
        attempts: 1,
        pause: Duration::ZERO,
    };

    /// Sends `call` until it gives something other than a retryable error, at most
    /// `attempts` times; the last error otherwise.
    pub async fn run<T, F, Fut>(self, mut call: F) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let mut left = self.attempts.max(1);
        loop {
            left -= 1;
            match call().await {
                Err(e) if e.is_retryable() && left > 0 => tokio::time::sleep(self.pause).await,
                other => return other,
            }
        }
    }
}

/// Which certificate the resident chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindChoice {
    Fixed(CertKind),
    /// The `n`-th (mod their number) of the kinds the holder is offered; residence when
    /// none is.
    Offered(usize),
}

/// One session's choices and the kiosk's patience.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub kind: KindChoice,
    pub copies: u8,
    pub poll: LongPoll,
    pub retry: Retry,
}

impl Plan {
    /// One copy of `kind`, one 10 s long poll, no repetition.
    pub fn once(kind: CertKind) -> Plan {
        Plan {
            kind: KindChoice::Fixed(kind),
            copies: 1,
            poll: LongPoll::ONCE,
            retry: Retry::NEVER,
        }
    }
}

/// A session that ran to the end.
#[derive(Clone)]
pub struct Completed {
    pub session_id: String,
    pub kind: CertKind,
    pub copies: u8,
    pub document: Released,
    pub binding: Binding,
    /// The document's text, when the check extracted it.
    pub text: Option<String>,
    pub printed: PrintedResponse,
}

impl std::fmt::Debug for Completed {
    // The document and its text name people: what identifies them only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Completed({}, {} x{}, serial {}, {:?})",
            self.session_id, self.kind, self.copies, self.binding.serial, self.document
        )
    }
}

impl Completed {
    /// Pages of the document, when its text was extracted.
    pub fn pages(&self) -> Option<u32> {
        self.text.as_deref().map(crate::verify::pages)
    }
}

/// Why a session stopped, and at which step.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{step}: {fault}")]
pub struct SessionFailure {
    pub step: Step,
    pub fault: Fault,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Fault {
    #[error("{0}")]
    Call(CallError),
    /// Still rendering when the plan's long poll ended.
    #[error("still rendering")]
    Rendering,
    /// The document failed the kiosk's check: it must not be printed.
    #[error("{0}")]
    Refused(Refusal),
    /// An answer that contradicts an earlier one (a fee, a serial).
    #[error("{0}")]
    Inconsistent(String),
}

fn at(step: Step) -> impl Fn(CallError) -> SessionFailure {
    move |e| SessionFailure {
        step,
        fault: Fault::Call(e),
    }
}

fn inconsistent(step: Step, what: String) -> SessionFailure {
    SessionFailure {
        step,
        fault: Fault::Inconsistent(what),
    }
}

impl Kiosk {
    /// Runs a whole session for `card` following `plan`, checking the document with
    /// `verifier` before confirming the print.
    pub async fn complete_session(
        &self,
        card: &Card,
        plan: &Plan,
        verifier: &Verifier<'_>,
    ) -> Result<Completed, SessionFailure> {
        let retry = plan.retry;
        let created: CreateSessionResponse = retry
            .run(|| self.create_session(card.card_id()))
            .await
            .map_err(at(Step::Create))?;
        let sid = created.session_id.as_str();
        let offered = retry
            .run(|| self.authenticate(card, &created))
            .await
            .map_err(at(Step::Auth))?;
        let kind = match plan.kind {
            KindChoice::Fixed(kind) => kind,
            KindChoice::Offered(n) => offered
                .kinds
                .get(n % offered.kinds.len().max(1))
                .map_or(CertKind::Residence, |k| k.kind),
        };
        let copies = plan.copies;
        let job = retry
            .run(|| self.create_job(sid, kind, copies))
            .await
            .map_err(at(Step::Job))?;
        let fee = kind.fee_yen() * u32::from(copies);
        if job.fee_yen != fee {
            let what = format!("fee_yen {} != {fee}", job.fee_yen);
            return Err(inconsistent(Step::Job, what));
        }
        let document = match retry
            .run(|| self.await_document(sid, &job.job_id, plan.poll))
            .await
            .map_err(at(Step::Document))?
        {
            Fetched::Ready(doc) => doc,
            Fetched::Rendering => {
                return Err(SessionFailure {
                    step: Step::Document,
                    fault: Fault::Rendering,
                });
            }
        };
        let order = Expected {
            session_id: sid,
            kiosk_id: self.kiosk_id(),
            card: &card.id,
            kind,
            copies,
        };
        let verified = verifier
            .verify(&document, &order)
            .await
            .map_err(|r| SessionFailure {
                step: Step::Document,
                fault: Fault::Refused(r),
            })?;
        let printed = retry
            .run(|| self.printed(sid, &job.job_id))
            .await
            .map_err(at(Step::Printed))?;
        if printed.serial != verified.binding.serial || printed.charged_yen != fee {
            let what = format!(
                "answered serial/charge {}/{} for a document {}/{fee}",
                printed.serial, printed.charged_yen, verified.binding.serial
            );
            return Err(inconsistent(Step::Printed, what));
        }
        retry
            .run(|| self.close(sid))
            .await
            .map_err(at(Step::Close))?;
        Ok(Completed {
            session_id: created.session_id,
            kind,
            copies,
            document,
            binding: verified.binding,
            text: verified.text,
            printed,
        })
    }
}
