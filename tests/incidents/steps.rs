//! Kiosk steps shared by the scenarios, each returning a message instead of panicking
//! so that one bad answer cannot leave other tasks waiting at a barrier, and the
//! space normalisation every check of pdftotext output needs.

use std::time::Instant;

use kofu_proto::CertKind;
use kofu_proto::api::{AuthResponse, CreateSessionResponse, JobResponse, PrintedResponse};
use kofu_testkit::{Card, Kiosk, Resp};

use crate::FETCH_BUDGET;

pub(crate) fn brief(what: &str, r: &Resp) -> String {
    let body: String = r.text().chars().take(200).collect();
    format!("{what}: status {}: {body}", r.status)
}

/// create + auth; returns the session id and the kinds offered.
pub(crate) async fn open(kiosk: &Kiosk, card: &Card) -> Result<(String, Vec<CertKind>), String> {
    let r = kiosk.create_session(&card.card_id).await;
    if r.status != 201 {
        return Err(brief("create session", &r));
    }
    let created: CreateSessionResponse = r.json();
    authenticate(kiosk, card, &created).await
}

pub(crate) async fn authenticate(
    kiosk: &Kiosk,
    card: &Card,
    created: &CreateSessionResponse,
) -> Result<(String, Vec<CertKind>), String> {
    let sid = created.session_id.clone();
    let sig = Kiosk::sign_challenge(card, &sid, &kiosk.kiosk_id, &created.challenge);
    let r = kiosk.auth(&sid, &sig).await;
    if r.status != 200 {
        return Err(brief("auth", &r));
    }
    let auth: AuthResponse = r.json();
    Ok((sid, auth.kinds.iter().map(|k| k.kind).collect()))
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
    let r = kiosk.create_job(sid, kind.as_str(), copies).await;
    let created = Instant::now();
    if r.status != 202 {
        return Err(brief(&format!("create {kind} job"), &r));
    }
    let job: JobResponse = r.json();
    let job = JobRef {
        id: job.job_id,
        kind,
        copies,
        created,
    };
    let quoted = r.value()["fee_yen"].as_u64().unwrap_or_default();
    if quoted != u64::from(job.fee()) {
        return Err(format!(
            "{kind} x{copies} quoted {quoted} yen, expected {}",
            job.fee()
        ));
    }
    Ok(job)
}

/// Long-polls (`wait_ms=5000`) until the job leaves `rendering`, bounded in time.
pub(crate) async fn fetch(kiosk: &Kiosk, sid: &str, job_id: &str) -> Resp {
    let deadline = Instant::now() + FETCH_BUDGET;
    loop {
        let r = kiosk.document(sid, job_id, 5000).await;
        if r.status != 202 || Instant::now() >= deadline {
            return r;
        }
    }
}

/// `printed` must answer 200 with this serial and the job's fee.
pub(crate) async fn print(
    kiosk: &Kiosk,
    sid: &str,
    job: &JobRef,
    serial: &str,
) -> Result<PrintedResponse, String> {
    let r = kiosk.printed(sid, &job.id).await;
    if r.status != 200 {
        return Err(brief("printed", &r));
    }
    let p: PrintedResponse = r.json();
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
    let r = kiosk.close(sid).await;
    if r.status != 204 {
        return Err(brief("close", &r));
    }
    Ok(())
}

/// An API.md error answer with this status and code.
pub(crate) fn is_error(r: &Resp, status: u16, code: &str) -> bool {
    r.status == status && r.error_code().as_deref() == Some(code)
}

/// pdftotext pads columns with runs of spaces; collapse them (line breaks stay).
pub(crate) fn normalize_spaces(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last_space = false;
    for c in text.chars() {
        let space = c == ' ' || c == '\t';
        if !(space && last_space) {
            out.push(if space { ' ' } else { c });
        }
        last_space = space;
    }
    out
}
