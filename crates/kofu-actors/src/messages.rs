//! The messages between the router, shard hosts and sessions. Replies travel on a
//! oneshot inside the message, so a session answers the waiting request directly.

use std::sync::Arc;

use actix::Message;
use kofu_core::records::ResidentRecord;
use kofu_proto::{CardId, ErrorCode, KioskId, SessionId, SessionOp, SessionReply};
use tokio::sync::oneshot;

/// "Not here": this node does not (or no longer) act for the shard, and nothing was
/// done. The router tries the owner instead; another node hears it as a `Moved` frame.
/// It is not a [`SessionReply`], so no kiosk can ever be sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Moved;

/// What a host or session answers a request with.
pub(crate) type Answer = Result<SessionReply, Moved>;

/// Where a request's answer goes. A requester that gave up has dropped the other end;
/// answering it then is not an error.
pub(crate) struct ReplyTo {
    tx: oneshot::Sender<Answer>,
    /// The requester is another node, relaying the answer over its link: that it still
    /// waits says nothing about whether the kiosk will get the answer (the link may
    /// fail, or the forwarding node give up, after the answer left here).
    remote: bool,
}

/// Where an answer for a kiosk went (`ReplyTo::deliver_to_kiosk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    ToKiosk,
    ToPeer,
    Lost,
}

impl ReplyTo {
    pub(crate) fn channel(remote: bool) -> (ReplyTo, oneshot::Receiver<Answer>) {
        let (tx, rx) = oneshot::channel();
        (ReplyTo { tx, remote }, rx)
    }

    /// `send`, answering where the answer went: to the kiosk's own request on this node,
    /// which still waited for it (the kiosk surely has it), to another node relaying it
    /// (which confirms separately, `SessionOp::AuthDelivered`), or nowhere.
    pub(crate) fn deliver_to_kiosk(self, reply: impl Into<SessionReply>) -> Delivery {
        let remote = self.remote;
        match self.deliver(reply) {
            true if remote => Delivery::ToPeer,
            true => Delivery::ToKiosk,
            false => Delivery::Lost,
        }
    }

    pub(crate) fn send(self, reply: impl Into<SessionReply>) {
        self.answer(Ok(reply.into()));
    }

    /// `send`, answering whether the requester still waited for the answer (`false`:
    /// it gave up, and its kiosk may have been told `503` or nothing instead).
    pub(crate) fn deliver(self, reply: impl Into<SessionReply>) -> bool {
        self.tx.send(Ok(reply.into())).is_ok()
    }

    pub(crate) fn moved(self) {
        self.answer(Err(Moved));
    }

    pub(crate) fn answer(self, answer: Answer) {
        let _ = self.tx.send(answer);
    }

    /// The requester stopped waiting (a long poll that timed out).
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Why a change to the store was not applied, for the request that asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotApplied {
    /// The fence refused it: the shard has a new owner, who can take the request.
    Moved,
    /// The store could not be reached or answered nonsense: `503` (I7).
    Unavailable,
}

impl NotApplied {
    pub(crate) fn answer(self) -> Answer {
        match self {
            NotApplied::Moved => Err(Moved),
            NotApplied::Unavailable => Ok(ErrorCode::Unavailable.into()),
        }
    }
}

/// A request for an existing session, routed by its shard.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SessionCall {
    pub session: SessionId,
    pub kiosk: KioskId,
    pub op: SessionOp,
    pub reply: ReplyTo,
}

/// A card was inserted; the registry already knows it and it is not revoked.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CreateSession {
    pub card: CardId,
    /// The card's Ed25519 public key from its record.
    pub card_key: [u8; 32],
    /// The record as the receiving node just read it, when the session starts on that
    /// node: authentication then needs no second read.
    pub record: Option<Arc<ResidentRecord>>,
    pub kiosk: KioskId,
    pub reply: ReplyTo,
}

/// A session stopped: it ended (its close is persisted, a tombstone answers for it
/// from the store) or it detached (its shard moved or its lease is gone; the snapshot
/// and card lock stay for the next owner). Either way the host forgets it: nothing
/// about a stopped session is remembered in memory, so a detached session is never
/// reported gone (the next call reads its snapshot), and an ended one is answered from
/// its tombstone (API.md: a repeated DELETE stays `204`, on any owner).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SessionStopped {
    pub session: SessionId,
    pub card_digest: [u8; 32],
}

/// A new session took the card's lock over from this older session of the same kiosk
/// (the kiosk inserted the card again): end it in the store too, reading it first if
/// this host has not met it (it may live only in the store, a start answered `503`
/// before a takeover), so that no later takeover resumes it as the card's holder.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct EndReplaced {
    pub session: SessionId,
    pub kiosk: KioskId,
}

/// Stop acting for the session without ending it (its shard moves or was lost): the
/// snapshot and card lock stay for the next owner. Handled after any transition in
/// flight, since a session waits for its store writes before reading its mailbox.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Detach;
