//! One kiosk session after its blasted create: auth, jobs, fetch, the kiosk's full
//! document check, print and close, every deviation reported rather than panicking.

use std::sync::Arc;
use std::time::Instant;

use kofu_proto::CertKind;
use kofu_proto::api::{AuthResponse, CreateSessionResponse, JobResponse, PrintedResponse};
use kofu_testkit::{Kiosk, Resp, verify_document_async};
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::watch;

use crate::blast::read_answer;
use crate::{Ctx, FETCH_BUDGET, REFETCH_AFTER, SessionOutcome};

/// One kiosk session: its create was sent by a blaster; here it reads the answer
/// (once the blast is over), then auth, 1–2 jobs, fetch and verify each, print, close.
/// Never panics: every deviation is reported.
pub(crate) async fn session(
    ctx: Arc<Ctx>,
    i: usize,
    kiosk: Kiosk,
    card_ix: usize,
    reader: Option<OwnedReadHalf>,
    mut blast_done: watch::Receiver<bool>,
) -> SessionOutcome {
    let mut out = SessionOutcome::default();
    let card = &ctx.fx.cards[card_ix];
    // Reading (and the work that follows) waits for the blast, so that the kiosks'
    // own processing does not spread the creates.
    let _ = blast_done.wait_for(|done| *done).await;
    let Some(mut reader) = reader else {
        out.errors
            .push(format!("session {i}: its connection could not be prepared"));
        return out;
    };
    let r = read_answer(&mut reader).await;
    drop(reader);
    if r.status != 201 {
        out.errors.push(step(i, "create session", &r));
        return out;
    }
    let created: CreateSessionResponse = r.json();
    let sid = created.session_id;
    out.session_id = Some(sid.clone());
    let sig = Kiosk::sign_challenge(card, &sid, &kiosk.kiosk_id, &created.challenge);
    let r = kiosk.auth(&sid, &sig).await;
    if r.status != 200 {
        out.errors.push(step(i, "auth", &r));
        return out;
    }
    let auth: AuthResponse = r.json();
    if auth.kinds.is_empty() {
        out.errors
            .push(format!("session {i}: an ordinary card was offered no kind"));
        return out;
    }

    // Jobs are created back to back so that they render side by side; kinds rotate
    // over what this holder may get, copies over 1..=3.
    let mut jobs = Vec::new();
    for n in 0..(1 + i % 2) {
        let kind = auth.kinds[(i + n) % auth.kinds.len()].kind;
        let copies = 1 + ((i / 2 + n) % 3) as u8;
        let r = kiosk.create_job(&sid, kind.as_str(), copies).await;
        let created_at = Instant::now();
        if r.status != 202 {
            out.errors.push(step(i, "create job", &r));
            continue;
        }
        let job: JobResponse = r.json();
        let fee = kind.fee_yen() * u32::from(copies);
        if job.fee_yen != fee {
            out.errors.push(format!(
                "session {i}: {kind} x{copies} quoted {} yen, expected {fee}",
                job.fee_yen
            ));
        }
        jobs.push((job.job_id, kind, copies, created_at));
    }

    let mut voided = Vec::new();
    for (job_id, kind, copies, created_at) in &jobs {
        let r = fetch(&kiosk, &sid, job_id).await;
        match r.status {
            200 => {
                let checked =
                    verify(&ctx, card_ix, &r, &sid, &kiosk.kiosk_id, *kind, *copies).await;
                match checked {
                    Ok(serial) => {
                        let fee = kind.fee_yen() * u32::from(*copies);
                        let p = kiosk.printed(&sid, job_id).await;
                        if p.status != 200 {
                            out.errors.push(step(i, "printed", &p));
                        } else {
                            let printed: PrintedResponse = p.json();
                            if printed.serial != serial || printed.charged_yen != fee {
                                out.errors.push(format!(
                                    "session {i}: printed answered {}/{} yen for serial {serial}/{fee} yen",
                                    printed.serial, printed.charged_yen
                                ));
                            }
                        }
                        out.serials.push(serial);
                    }
                    Err(e) => out
                        .misdeliveries
                        .push(format!("session {i} job {job_id}: {e}")),
                }
            }
            410 if ctx.voids_allowed && r.error_code().as_deref() == Some("job_voided") => {
                voided.push((job_id.clone(), *created_at));
            }
            _ => out.errors.push(step(i, "document", &r)),
        }
    }

    // A voided job stays voided after its render would have finished: the late render
    // must not be released, nor printed, nor anything else in its place.
    for (job_id, created_at) in &voided {
        tokio::time::sleep_until((*created_at + REFETCH_AFTER).into()).await;
        let r = kiosk.document(&sid, job_id, 0).await;
        if r.status == 200 {
            out.misdeliveries.push(format!(
                "session {i} job {job_id}: a voided job released a document later"
            ));
        } else if r.status != 410 || r.error_code().as_deref() != Some("job_voided") {
            out.errors.push(step(i, "refetch of a voided job", &r));
        }
        let p = kiosk.printed(&sid, job_id).await;
        if p.status != 410 || p.error_code().as_deref() != Some("job_voided") {
            out.errors.push(step(i, "printed on a voided job", &p));
        }
    }
    out.voided = voided.len();

    let r = kiosk.close(&sid).await;
    if r.status != 204 {
        out.errors.push(step(i, "close", &r));
        return out;
    }
    out.completed = out.errors.is_empty() && out.misdeliveries.is_empty();
    out
}

/// Long-polls (`wait_ms=5000`) until the job leaves `rendering`, bounded in time.
async fn fetch(kiosk: &Kiosk, sid: &str, job_id: &str) -> Resp {
    let deadline = Instant::now() + FETCH_BUDGET;
    loop {
        let r = kiosk.document(sid, job_id, 5000).await;
        if r.status != 202 || Instant::now() >= deadline {
            return r;
        }
    }
}

/// The full kiosk check (issuer signature, doc_sha256, binding session/kiosk/card/kind/
/// copies, holder's name in the PDF text and no name from outside the household).
/// Returns the serial.
async fn verify(
    ctx: &Ctx,
    card_ix: usize,
    resp: &Resp,
    sid: &str,
    kiosk_id: &str,
    kind: CertKind,
    copies: u8,
) -> Result<String, String> {
    verify_document_async(
        &ctx.fx,
        &ctx.fx.cards[card_ix],
        resp,
        sid,
        kiosk_id,
        kind.as_str(),
        copies,
        &ctx.issuer,
    )
    .await
    .map(|(binding, _)| binding.serial)
}

fn step(i: usize, what: &str, r: &Resp) -> String {
    let body: String = r.text().chars().take(200).collect();
    format!("session {i}: {what}: status {}: {body}", r.status)
}
