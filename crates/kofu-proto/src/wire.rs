//! The inter-node forwarding protocol: MessagePack frames that carry a kiosk request to
//! the node owning its shard and the answer back. Pure types and byte helpers only, so
//! the transport (kofu-actors) and tests share one definition of every byte on the wire.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::api::{AuthResponse, CreateSessionResponse, JobResponse, PrintedResponse};
use crate::{CardId, CertKind, ErrorCode, JobId, KioskId, SessionId};

/// Bytes of the big-endian length prefix in front of every frame.
pub const LEN_PREFIX: usize = 4;
/// Largest frame body accepted or produced. A rendered PDF is far below this; the cap
/// keeps one misbehaving peer from making a node buffer unbounded memory.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;
/// Correlation id of the handshake frames; calls use ids from 1 up.
pub const HANDSHAKE_ID: u64 = 0;

/// One message between two nodes. `id` pairs a reply with its request, so many calls
/// can share one connection and be answered in any order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub id: u64,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Client's opening: who it is and its fresh nonce.
    Hello {
        node_id: String,
        nonce: [u8; 16],
    },
    /// Server's answer with its own fresh nonce; both nonces bind the proofs to this
    /// connection so a recorded proof cannot be replayed.
    Welcome {
        node_id: String,
        nonce: [u8; 16],
    },
    /// HMAC-SHA256 over the handshake transcript with the cluster secret (see [`mac`]).
    Proof {
        mac: [u8; 32],
    },
    /// A request for an existing session, as the router received it.
    Call {
        session: SessionId,
        kiosk: KioskId,
        op: WireOp,
        /// How long the owner may park the request (document long poll).
        wait_ms: u32,
    },
    /// A card was inserted at a kiosk whose shard lives on the receiver. `CardId` (not
    /// a `String`) so that `Debug` of a frame never prints the card id.
    Create {
        card: CardId,
        /// The card's Ed25519 public key, as the receiving node read it from the registry.
        card_key: [u8; 32],
        kiosk: KioskId,
    },
    Reply(WireReply),
    /// The receiver does not own the shard (any more): ask the coordinator again.
    Moved {
        shard: u32,
    },
    /// The shard is moving: try again after the given delay.
    Retry {
        after_ms: u32,
    },
}

/// `SessionOp` in wire form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireOp {
    /// The signature stays unchecked bytes here; the session actor validates its length.
    Auth {
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
    },
    CreateJob {
        kind: CertKind,
        copies: u8,
    },
    Fetch {
        job: JobId,
        wait: bool,
    },
    Printed {
        job: JobId,
    },
    Close,
}

/// `SessionReply` in wire form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireReply {
    Created(CreateSessionResponse),
    Authenticated(AuthResponse),
    JobCreated(JobResponse),
    /// The rendered document with its response headers, ready to hand to the kiosk.
    Document {
        #[serde(with = "serde_bytes")]
        pdf: Vec<u8>,
        binding_b64: String,
        signature_b64: String,
    },
    Rendering,
    Printed(PrintedResponse),
    Closed,
    Error {
        code: ErrorCode,
        attempts_left: Option<u8>,
        reason: Option<String>,
    },
}

/// Why bytes are not a frame. Carries no part of the input, which may hold personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME} byte limit")]
    Oversize(usize),
    #[error("malformed frame")]
    Malformed,
    #[error("frame cannot be encoded")]
    Encode,
}

/// Serializes a frame with its length prefix. Refuses frames over [`MAX_FRAME`] so the
/// sender fails that one call instead of making the peer drop the whole connection.
pub fn encode_frame(frame: &Frame) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; LEN_PREFIX];
    // Named fields (maps) rather than arrays: a later version can add a defaulted field
    // without breaking nodes of the previous version during a rolling upgrade.
    rmp_serde::encode::write_named(&mut out, frame).map_err(|_| WireError::Encode)?;
    let len = out.len() - LEN_PREFIX;
    if len > MAX_FRAME {
        return Err(WireError::Oversize(len));
    }
    let prefix = u32::try_from(len).map_err(|_| WireError::Oversize(len))?;
    out[..LEN_PREFIX].copy_from_slice(&prefix.to_be_bytes());
    Ok(out)
}

/// Decodes the first frame of `buf`. `Ok(None)`: more bytes are needed. On success also
/// returns how many bytes the frame used. An oversize length is rejected as soon as the
/// prefix arrives, before any of the body is buffered.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, WireError> {
    let Some(prefix) = buf.get(..LEN_PREFIX) else {
        return Ok(None);
    };
    let mut len_bytes = [0u8; LEN_PREFIX];
    len_bytes.copy_from_slice(prefix);
    let len = u32::from_be_bytes(len_bytes) as usize;
    if len > MAX_FRAME {
        return Err(WireError::Oversize(len));
    }
    let total = LEN_PREFIX + len;
    let Some(body) = buf.get(LEN_PREFIX..total) else {
        return Ok(None);
    };
    let frame = rmp_serde::from_slice(body).map_err(|_| WireError::Malformed)?;
    Ok(Some((frame, total)))
}

/// Which side of the handshake a proof comes from. Part of the MAC input, so a server
/// cannot pass by reflecting the client's own proof back to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// Everything both sides said before the proofs; each proof covers all of it.
#[derive(Debug, Clone, Copy)]
pub struct Transcript<'a> {
    pub client_id: &'a str,
    pub client_nonce: &'a [u8; 16],
    pub server_id: &'a str,
    pub server_nonce: &'a [u8; 16],
}

fn keyed(secret: &[u8], role: Role, t: &Transcript<'_>) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail; an empty key is refused by
    // the transport before it gets here.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("hmac accepts any key length");
    m.update(b"kofu-wire-v1\n");
    m.update(match role {
        Role::Client => b"client\n",
        Role::Server => b"server\n",
    });
    // Length prefixes keep ("ab","c") and ("a","bc") from producing the same input.
    for id in [t.client_id, t.server_id] {
        m.update(&(id.len() as u64).to_be_bytes());
        m.update(id.as_bytes());
    }
    m.update(t.client_nonce);
    m.update(t.server_nonce);
    m
}

/// The proof `role` sends: HMAC-SHA256(secret, role ‖ both node ids ‖ both nonces).
pub fn mac(secret: &[u8], role: Role, transcript: &Transcript<'_>) -> [u8; 32] {
    keyed(secret, role, transcript)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks a peer's proof in constant time, so timing reveals nothing about the secret.
pub fn verify_mac(secret: &[u8], role: Role, transcript: &Transcript<'_>, mac: &[u8; 32]) -> bool {
    keyed(secret, role, transcript).verify_slice(mac).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Holder, KindOffer, MunicipalityInfo};

    fn session() -> SessionId {
        SessionId::new(17, [7; 16])
    }

    fn kiosk() -> KioskId {
        KioskId::parse("SEJ-13104-0042-01").expect("valid kiosk")
    }

    fn job() -> JobId {
        JobId::new(2, [9; 8])
    }

    fn call(op: WireOp) -> Body {
        Body::Call {
            session: session(),
            kiosk: kiosk(),
            op,
            wait_ms: 1500,
        }
    }

    fn every_body() -> Vec<Body> {
        let replies = vec![
            WireReply::Created(CreateSessionResponse {
                session_id: session().to_string(),
                challenge: "Y2hhbGxlbmdl".into(),
                expires_in_s: 300,
            }),
            WireReply::Authenticated(AuthResponse {
                holder: Holder {
                    display_name: "山田 太郎".into(),
                },
                municipality: MunicipalityInfo {
                    code: "13104".into(),
                    name: "新宿区".into(),
                },
                kinds: vec![KindOffer {
                    kind: CertKind::Tax,
                    fee_yen: 300,
                }],
            }),
            WireReply::JobCreated(JobResponse {
                job_id: job().to_string(),
                fee_yen: 600,
            }),
            WireReply::Document {
                pdf: b"%PDF-1.7\n\x00\xff".to_vec(),
                binding_b64: "YmluZGluZw".into(),
                signature_b64: "c2ln".into(),
            },
            WireReply::Rendering,
            WireReply::Printed(PrintedResponse {
                serial: "13104-000001".into(),
                charged_yen: 300,
            }),
            WireReply::Closed,
            WireReply::Error {
                code: ErrorCode::BadSignature,
                attempts_left: Some(2),
                reason: None,
            },
            WireReply::Error {
                code: ErrorCode::JobVoided,
                attempts_left: None,
                reason: Some("render_timeout".into()),
            },
        ];
        let mut bodies = vec![
            Body::Hello {
                node_id: "node-a".into(),
                nonce: [1; 16],
            },
            Body::Welcome {
                node_id: "node-b".into(),
                nonce: [2; 16],
            },
            Body::Proof { mac: [3; 32] },
            call(WireOp::Auth {
                signature: vec![0xab; 64],
            }),
            call(WireOp::CreateJob {
                kind: CertKind::FamilyRegister,
                copies: 2,
            }),
            call(WireOp::Fetch {
                job: job(),
                wait: true,
            }),
            call(WireOp::Printed { job: job() }),
            call(WireOp::Close),
            Body::Create {
                card: CardId::parse("0123456789ABCDEF").expect("valid card"),
                card_key: [7; 32],
                kiosk: kiosk(),
            },
            Body::Moved { shard: 1023 },
            Body::Retry { after_ms: 50 },
        ];
        bodies.extend(replies.into_iter().map(Body::Reply));
        bodies
    }

    #[test]
    fn every_variant_round_trips() {
        for (i, body) in every_body().into_iter().enumerate() {
            let frame = Frame {
                id: u64::MAX - i as u64,
                body,
            };
            let bytes = encode_frame(&frame).expect("encode");
            let (back, used) = decode_frame(&bytes).expect("decode").expect("complete");
            assert_eq!(used, bytes.len());
            assert_eq!(back, frame);
        }
    }

    #[test]
    fn bytes_travel_as_msgpack_bin_not_integer_arrays() {
        let pdf = vec![0xffu8; 1000];
        let frame = Frame {
            id: 1,
            body: Body::Reply(WireReply::Document {
                pdf,
                binding_b64: String::new(),
                signature_b64: String::new(),
            }),
        };
        // An array of 0xff would take two bytes per element.
        assert!(encode_frame(&frame).expect("encode").len() < 1100);
    }

    #[test]
    fn partial_input_asks_for_more_and_concatenated_frames_split() {
        let a = encode_frame(&Frame {
            id: 1,
            body: Body::Retry { after_ms: 5 },
        })
        .expect("encode");
        let b = encode_frame(&Frame {
            id: 2,
            body: Body::Moved { shard: 3 },
        })
        .expect("encode");
        for cut in 0..a.len() {
            assert_eq!(decode_frame(&a[..cut]), Ok(None), "cut at {cut}");
        }
        let mut both = a.clone();
        both.extend_from_slice(&b);
        let (first, used) = decode_frame(&both).expect("ok").expect("complete");
        assert_eq!((first.id, used), (1, a.len()));
        let (second, used2) = decode_frame(&both[used..]).expect("ok").expect("complete");
        assert_eq!((second.id, used2), (2, b.len()));
    }

    #[test]
    fn oversize_is_rejected_from_the_prefix_alone() {
        let len = (MAX_FRAME as u32 + 1).to_be_bytes();
        assert_eq!(decode_frame(&len), Err(WireError::Oversize(MAX_FRAME + 1)));
        let big = Frame {
            id: 1,
            body: Body::Reply(WireReply::Document {
                pdf: vec![0; MAX_FRAME],
                binding_b64: String::new(),
                signature_b64: String::new(),
            }),
        };
        assert!(matches!(encode_frame(&big), Err(WireError::Oversize(_))));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for body in [&b""[..], b"\xc1", b"\x92\x01", b"\xff\xff\xff\xff\xff"] {
            let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
            bytes.extend_from_slice(body);
            assert_eq!(decode_frame(&bytes), Err(WireError::Malformed), "{body:?}");
        }
        // A well-formed frame whose id fields do not validate is malformed too.
        let text = encode_frame(&Frame {
            id: 1,
            body: Body::Create {
                card: CardId::parse("0123456789ABCDEF").expect("valid"),
                card_key: [7; 32],
                kiosk: kiosk(),
            },
        })
        .expect("encode");
        let mut lowered = text.clone();
        for b in &mut lowered[LEN_PREFIX..] {
            if *b == b'A' {
                *b = b'a';
            }
        }
        assert_eq!(decode_frame(&lowered), Err(WireError::Malformed));
    }

    #[test]
    fn debug_of_a_create_frame_hides_the_card() {
        let body = Body::Create {
            card: CardId::parse("0123456789ABCDEF").expect("valid"),
            card_key: [7; 32],
            kiosk: kiosk(),
        };
        assert!(!format!("{body:?}").contains("0123456789ABCDEF"));
    }

    #[test]
    fn mac_verifies_and_rejects() {
        let (cn, sn) = ([1u8; 16], [2u8; 16]);
        let t = Transcript {
            client_id: "node-a",
            client_nonce: &cn,
            server_id: "node-b",
            server_nonce: &sn,
        };
        let secret = b"cluster secret";
        let proof = mac(secret, Role::Client, &t);
        assert!(verify_mac(secret, Role::Client, &t, &proof));
        // Wrong secret, wrong role (reflection), other nonce, shifted id boundary.
        assert!(!verify_mac(b"other secret", Role::Client, &t, &proof));
        assert!(!verify_mac(secret, Role::Server, &t, &proof));
        let other = [3u8; 16];
        let replay = Transcript {
            server_nonce: &other,
            ..t
        };
        assert!(!verify_mac(secret, Role::Client, &replay, &proof));
        let shifted = Transcript {
            client_id: "node-an",
            server_id: "ode-b",
            ..t
        };
        assert!(!verify_mac(secret, Role::Client, &shifted, &proof));
        let mut flipped = proof;
        flipped[31] ^= 1;
        assert!(!verify_mac(secret, Role::Client, &t, &flipped));
    }
}
