//! A response body that runs a receipt once the whole answer has left this node: the
//! owner of a forwarded authentication hears that the kiosk has its answer only then,
//! so a node that dies (or a connection that drops) before the answer left never leaves
//! the owner answering the kiosk's repeat `409` for an answer it lacks.

use std::error::Error;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::HttpResponse;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::web::Bytes;
use kofu_actors::Receipt;
use tracing::Instrument as _;

/// `resp` with `receipt` run once its body has been handed to the connection whole;
/// never if the body is dropped before (the connection failed first).
pub fn with_receipt(resp: HttpResponse, receipt: Option<Receipt>) -> HttpResponse {
    match receipt {
        None => resp,
        Some(receipt) => resp
            .map_body(|_, body| Receipted {
                body,
                receipt: Some(receipt),
            })
            .map_into_boxed_body(),
    }
}

struct Receipted {
    body: BoxBody,
    receipt: Option<Receipt>,
}

impl MessageBody for Receipted {
    type Error = Box<dyn Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let next = Pin::new(&mut this.body).poll_next(cx);
        if let Poll::Ready(None) = next
            && let Some(receipt) = this.receipt.take()
        {
            actix_rt::spawn(receipt.instrument(tracing::debug_span!("auth_receipt")));
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn receipt(ran: &Arc<AtomicBool>) -> Receipt {
        let ran = ran.clone();
        Box::pin(async move { ran.store(true, Ordering::SeqCst) })
    }

    #[actix_rt::test]
    async fn the_receipt_runs_once_the_body_was_read_to_its_end_and_not_before() {
        let ran = Arc::new(AtomicBool::new(false));
        let resp = with_receipt(HttpResponse::Ok().body("{\"a\":1}"), Some(receipt(&ran)));
        let mut body = resp.into_body();
        assert_eq!(body.size(), BodySize::Sized(7), "the length stays known");
        let first = std::future::poll_fn(|cx| Pin::new(&mut body).poll_next(cx)).await;
        assert_eq!(
            first.map(|r| r.ok()),
            Some(Some(Bytes::from_static(b"{\"a\":1}")))
        );
        actix_rt::task::yield_now().await;
        assert!(!ran.load(Ordering::SeqCst), "ran before the body ended");
        let end = std::future::poll_fn(|cx| Pin::new(&mut body).poll_next(cx)).await;
        assert!(end.is_none());
        // Spawned: it runs once this task lets it.
        for _ in 0..1000 {
            if ran.load(Ordering::SeqCst) {
                return;
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        panic!("did not run at the body's end");
    }

    #[actix_rt::test]
    async fn a_body_dropped_before_its_end_never_runs_its_receipt() {
        let ran = Arc::new(AtomicBool::new(false));
        let resp = with_receipt(HttpResponse::Ok().body("{}"), Some(receipt(&ran)));
        drop(resp);
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!ran.load(Ordering::SeqCst));
    }
}
