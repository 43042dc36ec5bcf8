//! Kiosk steps shared by the scenarios, each returning a message instead of panicking
//! so that one bad answer cannot leave other tasks waiting at a barrier.

use std::time::Instant;

use kofu_kiosk::{CallError, Fetched, LongPoll};
use kofu_proto::api::{CreateSessionResponse, PrintedResponse};
use kofu_proto::{CertKind, ErrorCode};
use kofu_testkit::{Card, Kiosk, Resp};

use crate::FETCH_BUDGET;

/// A raw answer in a message: its status and the start of its body.
pub(crate) fn brief(what: &str, r: &Resp) -> String {
    let body: String = r.text().chars().take(200).collect();
    format!("{what}: status {}: {body}", r.status)
}

/// A step that did not give its answer, in a message.
pub(crate) fn failed(what: &str, e: &CallError) -> String {
    format!("{what}: {e}")
}

/// create + auth; returns the session id and the kinds offered.
pub(crate) async fn open(kiosk: &Kiosk, card: &Card) -> Result<(String, Vec<CertKind>), String> {
    let created = kiosk
        .create_session(card.card_id())
        .await
        .map_err(|e| failed("create session", &e))?;
    authenticate(kiosk, card, &created).await
}

pub(crate) async fn authenticate(
    kiosk: &Kiosk,
    card: &Card,
    created: &CreateSessionResponse,
) -> Result<(String, Vec<CertKind>), String> {
    let auth = kiosk
        .authenticate(card, created)
        .await
        .map_err(|e| failed("auth", &e))?;
    let kinds = auth.kinds.iter().map(|k| k.kind).collect();
    Ok((created.session_id.clone(), kinds))
}

/// A job the kiosk asked for.
#[derive(Debug, Clone)]
pub(crate) struct JobRef {
    pub(crate) id: String,
    pub(crate) kind: CertKind,
    pub(crate) copies: u8,
    pub(crate) created: Instant,
}

impl JobRef {
    pub(crate) fn fee(&self) -> u32 {
        self.kind.fee_yen() * u32::from(self.copies)
    }
}

/// Creates a job (202, fee as quoted by API.md's fee table).
pub(crate) async fn new_job(
    kiosk: &Kiosk,
    sid: &str,
    kind: CertKind,
    copies: u8,
) -> Result<JobRef, String> {
    let answer = kiosk.create_job(sid, kind, copies).await;
    let created = Instant::now();
    let job = answer.map_err(|e| failed(&format!("create {kind} job"), &e))?;
    let job = JobRef {
        id: job.job_id,
        kind,
        copies,
        created,
    }
    .quoted(job.fee_yen)?;
    Ok(job)
}

impl JobRef {
    fn quoted(self, fee_yen: u32) -> Result<JobRef, String> {
        if fee_yen == self.fee() {
            Ok(self)
        } else {
            Err(format!(
                "{} x{} quoted {fee_yen} yen, expected {}",
                self.kind,
                self.copies,
                self.fee()
            ))
        }
    }
}

/// Long-polls (`wait_ms=5000`) until the job leaves `rendering`, bounded in time.
pub(crate) async fn fetch(kiosk: &Kiosk, sid: &str, job_id: &str) -> Result<Fetched, CallError> {
    let poll = LongPoll {
        wait_ms: 5000,
        budget: FETCH_BUDGET,
    };
    kiosk.await_document(sid, job_id, poll).await
}

/// A fetch that gave no document, in a message.
pub(crate) fn not_released(what: &str, r: &Result<Fetched, CallError>) -> String {
    match r {
        Ok(Fetched::Ready(_)) => format!("{what}: released"),
        Ok(Fetched::Rendering) => format!("{what}: still rendering"),
        Err(e) => failed(what, e),
    }
}

/// `printed` must answer 200 with this serial and the job's fee.
pub(crate) async fn print(
    kiosk: &Kiosk,
    sid: &str,
    job: &JobRef,
    serial: &str,
) -> Result<PrintedResponse, String> {
    let p = kiosk
        .printed(sid, &job.id)
        .await
        .map_err(|e| failed("printed", &e))?;
    if p.serial != serial || p.charged_yen != job.fee() {
        return Err(format!(
            "printed answered {}/{} yen for document {serial}/{} yen",
            p.serial,
            p.charged_yen,
            job.fee()
        ));
    }
    Ok(p)
}

pub(crate) async fn close(kiosk: &Kiosk, sid: &str) -> Result<(), String> {
    kiosk.close(sid).await.map_err(|e| failed("close", &e))
}

/// Whether a step got the API error `code`.
pub(crate) fn is_error<T>(r: &Result<T, CallError>, code: ErrorCode) -> bool {
    r.as_ref().err().is_some_and(|e| e.is(code))
}

/// An API.md error answer with this status and code, for raw answers.
pub(crate) fn is_raw_error(r: &Resp, status: u16, code: &str) -> bool {
    r.status == status && r.error_code().as_deref() == Some(code)
}
