//! One kiosk session after its blasted create: auth, jobs, fetch, the kiosk's full
//! document check, print and close, every deviation reported rather than panicking.

use std::sync::Arc;
use std::time::Instant;

use kofu_kiosk::{CallError, Expected, Fetched, LongPoll};
use kofu_proto::ErrorCode;
use kofu_proto::api::CreateSessionResponse;
use kofu_testkit::{Kiosk, Resp};
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::watch;

use crate::blast::read_answer;
use crate::{Ctx, FETCH_BUDGET, REFETCH_AFTER, SessionOutcome};

/// Long-polls (`wait_ms=5000`) until the job leaves `rendering`, bounded in time.
const POLL: LongPoll = LongPoll {
    wait_ms: 5000,
    budget: FETCH_BUDGET,
};

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
    let created: CreateSessionResponse = match (r.status, r.parse()) {
        (201, Ok(created)) => created,
        _ => {
            out.errors.push(raw_step(i, "create session", &r));
            return out;
        }
    };
    let sid = created.session_id.clone();
    out.session_id = Some(sid.clone());
    let auth = match kiosk.authenticate(card, &created).await {
        Ok(auth) => auth,
        Err(e) => {
            out.errors.push(step(i, "auth", &e));
            return out;
        }
    };
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
        let job = kiosk.create_job(&sid, kind, copies).await;
        let created_at = Instant::now();
        let job = match job {
            Ok(job) => job,
            Err(e) => {
                out.errors.push(step(i, "create job", &e));
                continue;
            }
        };
        let fee = kind.fee_yen() * u32::from(copies);
        if job.fee_yen != fee {
            out.errors.push(format!(
                "session {i}: {kind} x{copies} quoted {} yen, expected {fee}",
                job.fee_yen
            ));
        }
        jobs.push((job.job_id, kind, copies, created_at));
    }

    // Every document: signature, binding against the order, and a search of its bytes
    // for every resident's name. One session in ten also through `pdftotext`, which
    // costs most of the test's CPU when done for all 3,000 documents and checks the
    // same rendering code each time.
    let verifier = kofu_kiosk::Verifier {
        text: if i % 10 == 0 {
            kofu_kiosk::TextCheck::Pdftotext
        } else {
            kofu_kiosk::TextCheck::Bytes
        },
        ..kofu_testkit::strict(ctx.fx, &ctx.issuer)
    };
    let mut voided = Vec::new();
    for (job_id, kind, copies, created_at) in &jobs {
        let doc = match kiosk.await_document(&sid, job_id, POLL).await {
            Ok(Fetched::Ready(doc)) => doc,
            Err(e) if ctx.voids_allowed && e.is(ErrorCode::JobVoided) => {
                voided.push((job_id.clone(), *created_at));
                continue;
            }
            Ok(Fetched::Rendering) => {
                out.errors
                    .push(format!("session {i}: document: still rendering"));
                continue;
            }
            Err(e) => {
                out.errors.push(step(i, "document", &e));
                continue;
            }
        };
        let order = Expected {
            session_id: &sid,
            kiosk_id: kiosk.kiosk_id(),
            card: &card.id,
            kind: *kind,
            copies: *copies,
        };
        let serial = match verifier.verify(&doc, &order).await {
            Ok(v) => v.binding.serial,
            Err(e) => {
                out.misdeliveries
                    .push(format!("session {i} job {job_id}: {e}"));
                continue;
            }
        };
        let fee = kind.fee_yen() * u32::from(*copies);
        match kiosk.printed(&sid, job_id).await {
            Ok(printed) if printed.serial != serial || printed.charged_yen != fee => {
                out.errors.push(format!(
                    "session {i}: printed answered {}/{} yen for serial {serial}/{fee} yen",
                    printed.serial, printed.charged_yen
                ));
            }
            Ok(_) => {}
            Err(e) => out.errors.push(step(i, "printed", &e)),
        }
        out.serials.push(serial);
    }

    // A voided job stays voided after its render would have finished: the late render
    // must not be released, nor printed, nor anything else in its place.
    for (job_id, created_at) in &voided {
        tokio::time::sleep_until((*created_at + REFETCH_AFTER).into()).await;
        match kiosk.document(&sid, job_id, 0).await {
            Ok(Fetched::Ready(_)) => out.misdeliveries.push(format!(
                "session {i} job {job_id}: a voided job released a document later"
            )),
            Err(e) if e.is(ErrorCode::JobVoided) => {}
            Ok(Fetched::Rendering) => out.errors.push(format!(
                "session {i}: refetch of a voided job: still rendering"
            )),
            Err(e) => out.errors.push(step(i, "refetch of a voided job", &e)),
        }
        match kiosk.printed(&sid, job_id).await {
            Err(e) if e.is(ErrorCode::JobVoided) => {}
            Ok(_) => out
                .errors
                .push(format!("session {i}: printed on a voided job answered 200")),
            Err(e) => out.errors.push(step(i, "printed on a voided job", &e)),
        }
    }
    out.voided = voided.len();

    if let Err(e) = kiosk.close(&sid).await {
        out.errors.push(step(i, "close", &e));
        return out;
    }
    out.completed = out.errors.is_empty() && out.misdeliveries.is_empty();
    out
}

fn step(i: usize, what: &str, e: &CallError) -> String {
    format!("session {i}: {what}: {e}")
}

fn raw_step(i: usize, what: &str, r: &Resp) -> String {
    let body: String = r.text().chars().take(200).collect();
    format!("session {i}: {what}: status {}: {body}", r.status)
}
