//! A step's requests as a kiosk sends them: once (a replay measures what a node answers),
//! or, with [`Patience`](super::Patience), repeated after `503` or no answer with backoff
//! within a time budget, as real kiosks do, and repeated a few times after an answer
//! saying the session or job is gone, so that the history shows whether it really was.
//! With a history, every request goes into it, annotated with what the answer established.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kofu_kiosk::{CallError, Kiosk};
use kofu_proto::{CertKind, ErrorCode};
use tokio::time::Instant;

use super::Shared;
use crate::history::{Op, Tap};

/// First pause after a `503` or no answer; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);
/// Pause before asking again after a "gone" answer.
const DOUBT_PAUSE: Duration = Duration::from_secs(1);

/// What the history knows about a request besides its answer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Note {
    pub(crate) session_id: Option<Arc<str>>,
    pub(crate) job_id: Option<Arc<str>>,
    pub(crate) kind: Option<CertKind>,
    pub(crate) serial: Option<String>,
    pub(crate) doc_sha: Option<[u8; 32]>,
    pub(crate) charged: Option<u32>,
}

/// Sends one session's requests; `tap` is set when the run keeps a history.
pub(crate) struct Caller<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) index: u32,
    pub(crate) card: u32,
    pub(crate) tap: Option<Tap>,
}

/// Whether an answer says the session, or the job, no longer exists.
pub(crate) fn gone(e: &CallError) -> bool {
    e.is(ErrorCode::UnknownSession) || e.is(ErrorCode::JobVoided) || e.is(ErrorCode::NotIssuable)
}

impl Caller<'_> {
    /// `kiosk` as this session uses it: observed when there is a history.
    pub(crate) fn kiosk(&self, kiosk: &Kiosk) -> Kiosk {
        match &self.tap {
            Some(tap) => tap.kiosk(kiosk),
            None => kiosk.clone(),
        }
    }

    /// Sends `call` until its answer is final for this kiosk. `context` is what the
    /// history knows before the answer, `learn` what a success adds, `doubt` which error
    /// answers a sceptical kiosk asks again about.
    pub(crate) async fn send<T, F, Fut>(
        &self,
        op: Op,
        budget: Duration,
        context: &Note,
        mut call: F,
        learn: impl Fn(&T, &mut Note),
        doubt: impl Fn(&CallError) -> bool,
    ) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let started = Instant::now();
        let mut pause = FIRST_PAUSE;
        let mut doubts = 0;
        loop {
            let r = call().await;
            self.record(op, context, &r, &learn);
            let Some(patience) = self.shared.config.patience else {
                return r;
            };
            match &r {
                Err(e) if e.is_retryable() && started.elapsed() < budget => {
                    let asked = e.api().and_then(|a| a.retry_after).unwrap_or_default();
                    tokio::time::sleep(pause.max(asked).min(MAX_PAUSE)).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Err(e) if doubts < patience.sceptical && doubt(e) => {
                    doubts += 1;
                    tokio::time::sleep(DOUBT_PAUSE).await;
                }
                _ => return r,
            }
        }
    }

    fn record<T>(
        &self,
        op: Op,
        context: &Note,
        r: &Result<T, CallError>,
        learn: &impl Fn(&T, &mut Note),
    ) {
        let (Some(tap), Some(history)) = (&self.tap, &self.shared.history) else {
            return;
        };
        let records = tap.take();
        let last = records.len().saturating_sub(1);
        for (i, rec) in records.iter().enumerate() {
            let mut note = context.clone();
            if let (true, Ok(t)) = (i == last, r) {
                learn(t, &mut note);
            }
            let mut e = history.event(self.index, self.card, op, rec);
            e.session_id = note.session_id;
            e.job_id = note.job_id;
            e.kind = note.kind;
            e.serial = note.serial;
            e.doc_sha = note.doc_sha;
            e.charged = note.charged;
            history.push(e);
        }
    }
}
