//! Frames on a byte stream: a 4-byte big-endian length, then the frame as named-field
//! MessagePack. Reading buffers whole frames (bounded by [`MAX_FRAME`], and by
//! [`PRE_AUTH_FRAME`] until the peer is authenticated); writing queues encoded frames and
//! flushes in batches.

use kofu_proto::wire::Frame;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::LinkError;

/// Bytes of the big-endian length prefix in front of every frame.
pub const LEN_PREFIX: usize = 4;
/// Largest frame body accepted or produced. A rendered PDF is far below this; the cap
/// keeps one misbehaving peer from making a node buffer unbounded memory.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;
/// Largest frame read before the peer proved it knows the cluster secret: handshake
/// frames are a node id, a nonce or a MAC, so an unauthenticated peer makes a node
/// buffer at most this much.
pub const PRE_AUTH_FRAME: usize = 1024;
const READ_CHUNK: usize = 64 * 1024;

/// Why bytes are not a frame. Carries no part of the input, which may hold personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {0} bytes exceeds the limit")]
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
    decode_within(buf, MAX_FRAME)
}

/// `decode_frame` with frames over `limit` bytes refused.
fn decode_within(buf: &[u8], limit: usize) -> Result<Option<(Frame, usize)>, WireError> {
    let Some(prefix) = buf.get(..LEN_PREFIX) else {
        return Ok(None);
    };
    let mut len_bytes = [0u8; LEN_PREFIX];
    len_bytes.copy_from_slice(prefix);
    let len = u32::from_be_bytes(len_bytes) as usize;
    if len > limit {
        return Err(WireError::Oversize(len));
    }
    let total = LEN_PREFIX + len;
    let Some(body) = buf.get(LEN_PREFIX..total) else {
        return Ok(None);
    };
    let frame = rmp_serde::from_slice(body).map_err(|_| WireError::Malformed)?;
    Ok(Some((frame, total)))
}

/// Reads whole frames off a byte stream, keeping any surplus bytes for the next one.
/// It starts small, reading handshake frames only ([`PRE_AUTH_FRAME`]), until
/// `authenticated` lifts the limit: an unauthenticated connection costs a node about a
/// kilobyte.
pub(crate) struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    chunk: Box<[u8]>,
    limit: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: Vec::new(),
            chunk: vec![0u8; LEN_PREFIX + PRE_AUTH_FRAME].into_boxed_slice(),
            limit: PRE_AUTH_FRAME,
        }
    }

    /// The peer proved itself: frames up to [`MAX_FRAME`] from now on.
    pub(crate) fn authenticated(&mut self) {
        self.limit = MAX_FRAME;
        self.chunk = vec![0u8; READ_CHUNK].into_boxed_slice();
    }

    /// `Ok(None)` on a clean end of stream between frames.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, LinkError> {
        loop {
            if let Some((frame, used)) = decode_within(&self.buf, self.limit)? {
                self.buf.drain(..used);
                return Ok(Some(frame));
            }
            let n = self.inner.read(&mut self.chunk).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(LinkError::Closed)
                };
            }
            self.buf.extend_from_slice(&self.chunk[..n]);
        }
    }

    /// The next frame, where the end of the stream is an error (during the handshake).
    pub(crate) async fn expect(&mut self) -> Result<Frame, LinkError> {
        self.next().await?.ok_or(LinkError::Closed)
    }
}

/// Writes one frame and flushes it (the handshake, before the writer task runs).
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    frame: &Frame,
) -> Result<(), LinkError> {
    w.write_all(&encode_frame(frame)?).await?;
    w.flush().await?;
    Ok(())
}

/// Drains the queue onto the stream, flushing only when the queue is momentarily empty
/// so bursts of small replies share syscalls.
pub(crate) async fn run_writer<W: AsyncWrite + Unpin>(
    w: W,
    mut queue: mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let mut w = BufWriter::new(w);
    while let Some(bytes) = queue.recv().await {
        w.write_all(&bytes).await?;
        while let Ok(more) = queue.try_recv() {
            w.write_all(&more).await?;
        }
        w.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kofu_proto::api::{
        AuthResponse, CreateSessionResponse, Holder, JobResponse, KindOffer, MunicipalityInfo,
        PrintedResponse,
    };
    use kofu_proto::wire::Body;
    use kofu_proto::{
        ApiError, CardId, CertKind, Document, ErrorCode, JobId, KioskId, NotIssuable, SessionId,
        SessionOp, SessionReply,
    };

    fn session() -> SessionId {
        SessionId::new(17, [7; 16])
    }

    fn kiosk() -> KioskId {
        KioskId::parse("SEJ-13104-0042-01").expect("valid kiosk")
    }

    fn job() -> JobId {
        JobId::new(2, [9; 8])
    }

    fn call(op: SessionOp) -> Body {
        Body::Call {
            session: session(),
            kiosk: kiosk(),
            op,
            wait_ms: 1500,
        }
    }

    fn document(pdf: Vec<u8>) -> SessionReply {
        SessionReply::Document(Document {
            pdf: pdf.into(),
            binding_b64: "YmluZGluZw".into(),
            signature_b64: "c2ln".into(),
        })
    }

    fn every_body() -> Vec<Body> {
        let replies = vec![
            SessionReply::Created(CreateSessionResponse {
                session_id: session().to_string(),
                challenge: "Y2hhbGxlbmdl".into(),
                expires_in_s: 300,
            }),
            SessionReply::Authenticated(AuthResponse {
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
            SessionReply::JobCreated(JobResponse {
                job_id: job().to_string(),
                fee_yen: 600,
            }),
            document(b"%PDF-1.7\n\x00\xff".to_vec()),
            SessionReply::Rendering,
            SessionReply::Printed(PrintedResponse {
                serial: "13104-000001".into(),
                charged_yen: 300,
            }),
            SessionReply::Closed,
            SessionReply::Error(ApiError::bad_signature(2)),
            SessionReply::Error(ErrorCode::JobVoided.into()),
        ];
        // Every refusal reason survives the wire.
        let refusals = NotIssuable::ALL.map(|r| SessionReply::Error(ApiError::not_issuable(r)));
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
            call(SessionOp::Auth {
                signature: [0xab; 64],
            }),
            call(SessionOp::CreateJob {
                kind: CertKind::FamilyRegister,
                copies: 2,
            }),
            call(SessionOp::Fetch {
                job: job(),
                wait: true,
            }),
            call(SessionOp::Printed { job: job() }),
            call(SessionOp::Close),
            Body::Create {
                card: CardId::parse("0123456789ABCDEF").expect("valid card"),
                card_key: [7; 32],
                kiosk: kiosk(),
            },
            Body::Moved { shard: 1023 },
        ];
        bodies.extend(replies.into_iter().chain(refusals).map(Body::Reply));
        bodies
    }

    #[test]
    fn every_variant_round_trips() {
        for (i, body) in every_body().into_iter().enumerate() {
            let frame = Frame {
                sent_ms: 0,
                trace: None,
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
    fn a_trace_context_costs_a_few_dozen_bytes_and_is_optional() {
        let plain = Frame {
            sent_ms: 7,
            trace: None,
            id: 3,
            body: call(SessionOp::Close),
        };
        let traced = Frame {
            trace: kofu_proto::TraceParent::parse(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ..plain.clone()
        };
        assert!(traced.trace.is_some());
        let (a, b) = (
            encode_frame(&plain).expect("encode"),
            encode_frame(&traced).expect("encode"),
        );
        assert!(b.len() - a.len() <= 40, "{} more bytes", b.len() - a.len());
        let (back, _) = decode_frame(&b).expect("decode").expect("complete");
        assert_eq!(back, traced);
        // A frame without one is what a peer of an earlier version sends.
        assert!(!a.windows(5).any(|w| w == b"trace"));
        let (back, _) = decode_frame(&a).expect("decode").expect("complete");
        assert_eq!(back, plain);
    }

    #[test]
    fn bytes_travel_as_msgpack_bin_not_integer_arrays() {
        let frame = Frame {
            sent_ms: 0,
            trace: None,
            id: 1,
            body: Body::Reply(document(vec![0xffu8; 1000])),
        };
        // An array of 0xff would take two bytes per element.
        assert!(encode_frame(&frame).expect("encode").len() < 1100);
        // So do signatures and keys: 64 and 32 bytes, not up to twice that.
        let auth = Frame {
            sent_ms: 0,
            trace: None,
            id: 1,
            body: call(SessionOp::Auth {
                signature: [0xff; 64],
            }),
        };
        let zeros = Frame {
            sent_ms: 0,
            trace: None,
            id: 1,
            body: call(SessionOp::Auth { signature: [0; 64] }),
        };
        let (big, small) = (
            encode_frame(&auth).expect("encode").len(),
            encode_frame(&zeros).expect("encode").len(),
        );
        assert_eq!(big, small, "each byte takes one byte whatever its value");
    }

    #[test]
    fn partial_input_asks_for_more_and_concatenated_frames_split() {
        let a = encode_frame(&Frame {
            sent_ms: 0,
            trace: None,
            id: 1,
            body: Body::Moved { shard: 5 },
        })
        .expect("encode");
        let b = encode_frame(&Frame {
            sent_ms: 0,
            trace: None,
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
            sent_ms: 0,
            trace: None,
            id: 1,
            body: Body::Reply(document(vec![0; MAX_FRAME])),
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
            sent_ms: 0,
            trace: None,
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
}
