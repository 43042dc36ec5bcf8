//! The router's remote path: forwarding a request over the wire link to the node that
//! owns its shard, and serving the requests other nodes forward here. Only answers that
//! guarantee nothing happened (`Moved`, `Retry`, a refused connection) are tried again;
//! a call whose outcome is unknown answers `503` and the kiosk decides (incident 7).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kofu_coord::NodeInfo;
use kofu_proto::wire::Body;
use kofu_proto::{ErrorCode, KioskId, SessionId, SessionOp, SessionReply};
use kofu_wire::{CallHandler, ConnSpawner, LinkAuth, LinkError, WireClient};
use parking_lot::Mutex;

use super::{Attempt, Request, Router};
use crate::cluster_metrics::ForwardResult;

/// A forwarded call's own time, on top of any long poll it carries.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the owner serves a forwarded call before it answers `503` itself: less than
/// its caller waits, so that an answer a session gives later finds its requester gone
/// (and the session learns that its kiosk may not have it, `ReplyTo::deliver`) instead
/// of travelling to a caller that already gave up.
const SERVE_TIMEOUT: Duration = Duration::from_secs(4);
/// A forwarded call with less time left than this is not started.
const MIN_SERVE: Duration = Duration::from_millis(100);
/// A peer that does not complete a connection quickly is treated as absent for now.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

type Link = Arc<tokio::sync::Mutex<Option<Arc<WireClient>>>>;

/// This node's connections to its peers: one multiplexed link per peer address and
/// calling thread. A link's tasks run on the thread that opened it (an HTTP worker,
/// where the request and its session are), so a forwarded call and its reply do not
/// cross to another thread on this side.
#[derive(Clone)]
pub struct Remote {
    node_id: Arc<str>,
    auth: LinkAuth,
    links: Arc<Mutex<HashMap<(String, std::thread::ThreadId), Link>>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Remote {
    pub fn new(node_id: &str, auth: LinkAuth) -> Remote {
        Remote {
            node_id: node_id.into(),
            auth,
            links: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// This thread's live link to `peer`, connecting (once, for all its callers) when
    /// there is none.
    async fn client(&self, peer: &NodeInfo) -> Result<Arc<WireClient>, LinkError> {
        let key = (peer.internal_addr.clone(), std::thread::current().id());
        let link = self.links.lock().entry(key).or_default().clone();
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
            self.auth.clone(),
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
                if let (Request::Call { session, kiosk, .. }, SessionReply::Authenticated(_)) =
                    (req, &reply)
                {
                    let (session, kiosk) = (*session, kiosk.clone());
                    let receipt = async move { delivered(&client, &session, &kiosk).await };
                    return Attempt::Receipted(reply, Box::pin(receipt));
                }
                Attempt::Done(reply)
            }
            Ok(Body::Moved { .. }) => {
                cluster.forwarded(ForwardResult::Moved);
                Attempt::Again
            }
            Ok(_) | Err(_) => {
                cluster.forwarded(ForwardResult::Error);
                tracing::warn!(shard, "forwarded call failed; outcome unknown");
                Attempt::Done(ErrorCode::Unavailable.into())
            }
        }
    }
}

/// Tells the owner that an authentication's answer reached the kiosk (the `Receipt`, run
/// once the answer has left this node): so a repeat the kiosk sends next (to any node)
/// is the usual `409`, and an answer lost on its way, or with this node, leaves the
/// owner answering a repeat as done. Without the notice (a failed link) the owner keeps
/// doing so until the session's first job; nothing else depends on it.
async fn delivered(client: &WireClient, session: &SessionId, kiosk: &KioskId) {
    let notice = Body::Call {
        session: *session,
        kiosk: kiosk.clone(),
        op: SessionOp::AuthDelivered,
        wait_ms: 0,
    };
    if let Err(e) = client.call(notice, CALL_TIMEOUT).await {
        tracing::debug!(error = %e, "authentication delivery notice not sent");
    }
}

impl Router {
    /// Places the connections other nodes open to this one on the HTTP workers in turn
    /// (where shard hosts run), so that a forwarded call reaches its session without a
    /// hop through the thread that accepted the connection; before the workers have
    /// registered, on the accepting runtime.
    pub fn conn_spawner(&self) -> ConnSpawner {
        let router = self.clone();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        Arc::new(move |conn| {
            let turn = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match router.worker_arbiter(turn) {
                Some(arbiter) => {
                    // Refused only by an arbiter that stopped (shutdown): the connection
                    // is dropped and its peer reconnects.
                    let _ = arbiter.spawn(conn);
                }
                None => {
                    tokio::spawn(conn);
                }
            }
        })
    }

    /// Serves the calls other nodes forward here, on this node's own hosts only.
    pub fn wire_handler(&self) -> CallHandler {
        let router = self.clone();
        Arc::new(move |body, age| {
            let router = router.clone();
            Box::pin(async move { serve(&router, body, age).await })
        })
    }
}

/// Serves one forwarded call that was `age` on its way: within what is left of
/// `SERVE_TIMEOUT` from when it was sent, so that its answer reaches a caller still
/// waiting; a call that spent all of that on its way (held up by a partition, or unread
/// behind others) is not acted on at all: its caller answered `503` already, and the
/// kiosk may have repeated it since (a late create would close the kiosk's newer
/// session).
async fn serve(router: &Router, body: Body, age: Duration) -> Body {
    router.deps().cluster.forwards_received.inc();
    let (shard, req, wait) = match body {
        Body::Call {
            session,
            kiosk,
            op,
            wait_ms,
        } => {
            let wait = (wait_ms > 0).then(|| Duration::from_millis(u64::from(wait_ms)));
            (session.shard(), Request::Call { session, kiosk, op }, wait)
        }
        Body::Create {
            card,
            card_key,
            kiosk,
        } => {
            let shard = kofu_proto::shard_of(&card, router.shard_count());
            let req = Request::Create {
                card,
                card_key,
                record: None,
                kiosk,
            };
            (shard, req, None)
        }
        _ => return Body::Reply(ErrorCode::Internal.into()),
    };
    let Some(limit) = (SERVE_TIMEOUT + wait.unwrap_or_default())
        .checked_sub(age)
        .filter(|left| *left >= MIN_SERVE)
    else {
        router.deps().metrics.abandoned.inc();
        return Body::Reply(ErrorCode::Unavailable.into());
    };
    let call = match req {
        Request::Create { .. } => "create",
        Request::Call { .. } => "session",
    };
    let (answer, outcome) =
        match tokio::time::timeout(limit, router.attempt_local(shard, &req, wait, true)).await {
            Ok(None | Some(Attempt::Again)) => (Body::Moved { shard }, "moved"),
            Ok(Some(Attempt::Done(reply) | Attempt::Receipted(reply, _))) => {
                (Body::Reply(reply), "answered")
            }
            // Outcome unknown (the session may still act on it): the caller answers `503`.
            Err(_) => (Body::Reply(ErrorCode::Unavailable.into()), "timed_out"),
        };
    // The internal listener's access log line; the wire span carries the caller's trace.
    tracing::info!(shard, call, outcome, "forwarded call");
    answer
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
            op,
            wait_ms: wait.map_or(0, |w| u32::try_from(w.as_millis()).unwrap_or(u32::MAX)),
        },
    }
}
