//! The router's remote path: forwarding a request over the wire link to the node that
//! owns its shard, and serving the requests other nodes forward here. Only answers that
//! guarantee nothing happened (`Moved`, `Retry`, a refused connection) are tried again;
//! a call whose outcome is unknown answers `503` and the kiosk decides (incident 7).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use kofu_coord::NodeInfo;
use kofu_core::records::NotIssuable;
use kofu_proto::ErrorCode;
use kofu_proto::wire::{Body, WireOp, WireReply};
use parking_lot::Mutex;

use super::{Attempt, Request, Router};
use crate::ForwardResult;
use crate::messages::{ApiError, ForwardedDocument, SessionOp, SessionReply};
use crate::wire_link::{self, LinkError, Secrets, WireClient};

/// A forwarded call's own time, on top of any long poll it carries.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A peer that does not complete a connection quickly is treated as absent for now.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

type Link = Arc<tokio::sync::Mutex<Option<Arc<WireClient>>>>;

/// This node's connections to its peers, one multiplexed link per peer address.
#[derive(Clone)]
pub struct Remote {
    node_id: Arc<str>,
    secret: Secrets,
    links: Arc<Mutex<HashMap<String, Link>>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Remote {
    pub fn new(node_id: &str, secret: Secrets) -> Remote {
        Remote {
            node_id: node_id.into(),
            secret,
            links: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The live link to `peer`, connecting (once, for all callers) when there is none.
    async fn client(&self, peer: &NodeInfo) -> Result<Arc<WireClient>, LinkError> {
        let link = self
            .links
            .lock()
            .entry(peer.internal_addr.clone())
            .or_default()
            .clone();
        let mut link = link.lock().await;
        if let Some(c) = link.as_ref()
            && !c.is_closed()
            && c.peer_node_id() == peer.node_id
        {
            return Ok(c.clone());
        }
        let connect = WireClient::connect(
            peer.internal_addr.as_str(),
            &*self.node_id,
            self.secret.clone(),
        );
        let client = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| LinkError::Timeout)??;
        if client.peer_node_id() != peer.node_id {
            // Another node now listens there (a restart under a new name): not the owner.
            return Err(LinkError::Handshake("peer is not the shard owner"));
        }
        let client = Arc::new(client);
        *link = Some(client.clone());
        Ok(client)
    }

    /// One attempt at the owner of `shard` as last observed.
    pub(crate) async fn attempt(
        &self,
        router: &Router,
        shard: u32,
        req: &Request,
        wait: Option<Duration>,
    ) -> Attempt {
        let deps = router.deps();
        let Some(owner) = deps.coordinator.owner_of(shard) else {
            return Attempt::Again;
        };
        let cluster = &deps.cluster;
        let client = match self.client(&owner).await {
            Ok(c) => c,
            Err(e) => {
                // Nothing was sent: safe to try again once the view has moved on.
                tracing::debug!(shard, error = %e, "owner not reachable");
                cluster.forwarded(ForwardResult::Error);
                return Attempt::Again;
            }
        };
        let timer = cluster.forward_duration.start_timer();
        let result = client
            .call(to_body(req, wait), CALL_TIMEOUT + wait.unwrap_or_default())
            .await;
        timer.observe_duration();
        match result {
            Ok(Body::Reply(reply)) => {
                cluster.forwarded(ForwardResult::Ok);
                Attempt::Done(Some(from_wire(reply)))
            }
            Ok(Body::Moved { .. }) => {
                cluster.forwarded(ForwardResult::Moved);
                Attempt::Again
            }
            Ok(Body::Retry { .. }) => {
                cluster.forwarded(ForwardResult::Retry);
                Attempt::Again
            }
            Ok(_) | Err(_) => {
                cluster.forwarded(ForwardResult::Error);
                tracing::warn!(shard, "forwarded call failed; outcome unknown");
                Attempt::Done(Some(ErrorCode::Unavailable.into()))
            }
        }
    }
}

/// Serves the calls other nodes forward here, on this node's own hosts only.
pub fn wire_handler(router: Router) -> wire_link::Handler {
    Arc::new(move |body| {
        let router = router.clone();
        async move { serve(&router, body).await }.boxed()
    })
}

async fn serve(router: &Router, body: Body) -> Body {
    router.deps().cluster.forwards_received.inc();
    let (shard, req, wait) = match body {
        Body::Call {
            session,
            kiosk,
            op,
            wait_ms,
        } => {
            let wait = (wait_ms > 0).then(|| Duration::from_millis(u64::from(wait_ms)));
            let op = from_wire_op(op);
            (session.shard(), Request::Call { session, kiosk, op }, wait)
        }
        Body::Create {
            card,
            card_key,
            kiosk,
        } => {
            let shard = kofu_proto::shard_of(&card, router.shard_count());
            (
                shard,
                Request::Create {
                    card,
                    card_key,
                    record: None,
                    kiosk,
                },
                None,
            )
        }
        _ => return error_body(ErrorCode::Internal),
    };
    match router.attempt_local(shard, &req, wait).await {
        None | Some(Attempt::Again) => Body::Moved { shard },
        Some(Attempt::Done(None)) => Body::Reply(WireReply::Rendering),
        Some(Attempt::Done(Some(reply))) => Body::Reply(to_wire(reply)),
    }
}

fn error_body(code: ErrorCode) -> Body {
    Body::Reply(WireReply::Error {
        code,
        attempts_left: None,
        reason: None,
    })
}

fn to_body(req: &Request, wait: Option<Duration>) -> Body {
    match req.clone() {
        Request::Create {
            card,
            card_key,
            kiosk,
            record: _,
        } => Body::Create {
            card,
            card_key,
            kiosk,
        },
        Request::Call { session, kiosk, op } => Body::Call {
            session,
            kiosk,
            op: to_wire_op(op),
            wait_ms: wait.map_or(0, |w| u32::try_from(w.as_millis()).unwrap_or(u32::MAX)),
        },
    }
}

fn to_wire_op(op: SessionOp) -> WireOp {
    match op {
        SessionOp::Auth { signature } => WireOp::Auth {
            signature: signature.to_vec(),
        },
        SessionOp::CreateJob { kind, copies } => WireOp::CreateJob { kind, copies },
        SessionOp::Fetch { job, wait } => WireOp::Fetch { job, wait },
        SessionOp::Printed { job } => WireOp::Printed { job },
        SessionOp::Close => WireOp::Close,
    }
}

fn from_wire_op(op: WireOp) -> SessionOp {
    match op {
        // A signature of the wrong length is a bad signature, as over HTTP.
        WireOp::Auth { signature } => SessionOp::Auth {
            signature: <[u8; 64]>::try_from(signature.as_slice()).unwrap_or([0; 64]),
        },
        WireOp::CreateJob { kind, copies } => SessionOp::CreateJob { kind, copies },
        WireOp::Fetch { job, wait } => SessionOp::Fetch { job, wait },
        WireOp::Printed { job } => SessionOp::Printed { job },
        WireOp::Close => SessionOp::Close,
    }
}

fn to_wire(reply: SessionReply) -> WireReply {
    match reply {
        SessionReply::Created(r) => WireReply::Created(r),
        SessionReply::Authenticated(r) => WireReply::Authenticated(r),
        SessionReply::JobCreated(r) => WireReply::JobCreated(r),
        SessionReply::Document(doc) => WireReply::Document {
            pdf: doc.pdf.to_vec(),
            binding_b64: doc.binding_b64.clone(),
            signature_b64: doc.signature_b64.clone(),
        },
        SessionReply::Forwarded(doc) => WireReply::Document {
            pdf: doc.pdf,
            binding_b64: doc.binding_b64,
            signature_b64: doc.signature_b64,
        },
        SessionReply::Rendering => WireReply::Rendering,
        SessionReply::Printed(r) => WireReply::Printed(r),
        SessionReply::Closed => WireReply::Closed,
        SessionReply::Error(e) => WireReply::Error {
            code: e.code,
            attempts_left: e.attempts_left,
            reason: e.reason.map(str::to_owned),
        },
        // `attempt_local` turns these into `Again`; answered as unavailable regardless.
        SessionReply::Moving => WireReply::Error {
            code: ErrorCode::Unavailable,
            attempts_left: None,
            reason: None,
        },
    }
}

/// The reasons an error may carry, as the static strings the HTTP layer expects; an
/// unknown reason from a newer peer is dropped rather than passed on unchecked.
fn reason(text: &str) -> Option<&'static str> {
    NotIssuable::ALL
        .into_iter()
        .map(NotIssuable::as_str)
        .find(|r| *r == text)
}

fn from_wire(reply: WireReply) -> SessionReply {
    match reply {
        WireReply::Created(r) => SessionReply::Created(r),
        WireReply::Authenticated(r) => SessionReply::Authenticated(r),
        WireReply::JobCreated(r) => SessionReply::JobCreated(r),
        WireReply::Document {
            pdf,
            binding_b64,
            signature_b64,
        } => SessionReply::Forwarded(ForwardedDocument {
            pdf,
            binding_b64,
            signature_b64,
        }),
        WireReply::Rendering => SessionReply::Rendering,
        WireReply::Printed(r) => SessionReply::Printed(r),
        WireReply::Closed => SessionReply::Closed,
        WireReply::Error {
            code,
            attempts_left,
            reason: text,
        } => SessionReply::Error(ApiError {
            code,
            attempts_left,
            reason: text.as_deref().and_then(reason),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_reason_survives_the_wire() {
        for r in NotIssuable::ALL {
            assert_eq!(reason(r.as_str()), Some(r.as_str()));
        }
        assert_eq!(reason("made_up"), None);
    }
}
