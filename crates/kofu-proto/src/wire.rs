//! The inter-node forwarding protocol: the frames that carry a kiosk request to the
//! node owning its shard and the answer back. Types only: `kofu-wire` encodes them
//! (length-prefixed, named-field MessagePack) and runs the connections.

use serde::{Deserialize, Serialize};

use crate::session::{SessionOp, SessionReply};
use crate::{CardId, KioskId, SessionId, TraceParent};

/// Correlation id of the handshake frames; calls use ids from 1 up.
pub const HANDSHAKE_ID: u64 = 0;

/// One message between two nodes. `id` pairs a reply with its request, so many calls
/// can share one connection and be answered in any order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub id: u64,
    pub body: Body,
    /// When the sender wrote a call: milliseconds since its side of the connection
    /// completed the handshake (its monotonic clock, so wall-clock skew does not
    /// matter). The receiver compares it with its own time since the handshake to tell
    /// how long the call was on its way: a call held up in the network (retransmitted
    /// after a partition) or unread behind others may arrive after its caller gave
    /// up, and must then not be acted on. 0: not stamped (handshake, replies, a peer
    /// of an earlier version).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sent_ms: u64,
    /// The W3C trace context of the kiosk request a call forwards, so that the lines
    /// both nodes log for it share a trace id. Absent on other frames (and from a peer
    /// of an earlier version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceParent>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Client's opening: who it is and its fresh nonce.
    Hello {
        node_id: String,
        #[serde(with = "serde_bytes")]
        nonce: [u8; 16],
    },
    /// Server's answer with its own fresh nonce; both nonces bind the proofs to this
    /// connection so a recorded proof cannot be replayed.
    Welcome {
        node_id: String,
        #[serde(with = "serde_bytes")]
        nonce: [u8; 16],
    },
    /// HMAC-SHA256 over the handshake transcript with the cluster secret (`kofu-wire`
    /// computes and checks it).
    Proof {
        #[serde(with = "serde_bytes")]
        mac: [u8; 32],
    },
    /// A request for an existing session, as the router received it.
    Call {
        session: SessionId,
        kiosk: KioskId,
        op: SessionOp,
        /// How long the owner may park the request (document long poll).
        wait_ms: u32,
    },
    /// A card was inserted at a kiosk whose shard lives on the receiver. `CardId` (not
    /// a `String`) so that `Debug` of a frame never prints the card id.
    Create {
        card: CardId,
        /// The card's Ed25519 public key, as the node the kiosk reached read it from
        /// the registry.
        #[serde(with = "serde_bytes")]
        card_key: [u8; 32],
        kiosk: KioskId,
    },
    Reply(SessionReply),
    /// The receiver does not act for the shard (not yet, or no longer) and did nothing:
    /// the caller asks its coordinator again. A node's internal "not here" answer only
    /// ever leaves it as this frame, never as a reply a kiosk could see.
    Moved {
        shard: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_create_frame_hides_the_card() {
        let body = Body::Create {
            card: CardId::parse("0123456789ABCDEF").expect("valid"),
            card_key: [7; 32],
            kiosk: KioskId::parse("SEJ-13104-0042-01").expect("valid kiosk"),
        };
        assert!(!format!("{body:?}").contains("0123456789ABCDEF"));
    }
}
