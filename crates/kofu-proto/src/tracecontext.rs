//! W3C Trace Context (`traceparent`): what joins one kiosk request's log lines on the
//! node it reached and on the node a forwarded call served it. Parsing is strict, so a
//! malformed header is ignored rather than propagated; the wire form is 25 bytes.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `traceparent`: trace id, the sender's span id (the receiver's parent) and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

/// Length of a version-00 `traceparent` value.
const LEN: usize = 55;

impl TraceParent {
    /// Parses a `traceparent` header value (W3C Trace Context, level 1): version `00`
    /// exactly; a later version by its first 55 characters when the rest starts with
    /// `-` (forward compatibility); version `ff`, uppercase hex and all-zero ids are
    /// invalid. `None` means "ignore the header".
    pub fn parse(value: &str) -> Option<TraceParent> {
        let value = value.trim_matches([' ', '\t']);
        let bytes = value.as_bytes();
        if bytes.len() < LEN {
            return None;
        }
        let version = lower_hex::<1>(&bytes[0..2])?[0];
        match version {
            0xff => return None,
            0 if bytes.len() != LEN => return None,
            _ if bytes.len() > LEN && bytes[LEN] != b'-' => return None,
            _ => {}
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let trace_id = lower_hex::<16>(&bytes[3..35])?;
        let parent_id = lower_hex::<8>(&bytes[36..52])?;
        let flags = lower_hex::<1>(&bytes[53..55])?[0];
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The same trace, continued by the span `span_id` (what this node sends onward).
    pub fn child(&self, span_id: [u8; 8]) -> TraceParent {
        TraceParent {
            parent_id: span_id,
            ..*self
        }
    }

    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    pub fn parent_id_hex(&self) -> String {
        hex::encode(self.parent_id)
    }
}

impl std::fmt::Display for TraceParent {
    /// The version-00 header value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.parent_id),
            self.flags
        )
    }
}

fn lower_hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// On the wire: 25 bytes, trace id, parent id, flags.
impl Serialize for TraceParent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 25];
        buf[..16].copy_from_slice(&self.trace_id);
        buf[16..24].copy_from_slice(&self.parent_id);
        buf[24] = self.flags;
        serde_bytes::Bytes::new(&buf).serialize(s)
    }
}

impl<'de> Deserialize<'de> for TraceParent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TraceParent, D::Error> {
        let buf = serde_bytes::ByteBuf::deserialize(d)?;
        let bad = || serde::de::Error::invalid_length(buf.len(), &"25 bytes");
        let trace_id: [u8; 16] = buf
            .get(..16)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(bad)?;
        let parent_id: [u8; 8] = buf
            .get(16..24)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(bad)?;
        match buf.get(24) {
            Some(&flags) if buf.len() == 25 => Ok(TraceParent {
                trace_id,
                parent_id,
                flags,
            }),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_the_spec_example() {
        let tp = TraceParent::parse(SAMPLE).expect("valid");
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent_id_hex(), "00f067aa0ba902b7");
        assert_eq!(tp.flags, 1);
        assert_eq!(tp.to_string(), SAMPLE);
        let child = tp.child([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            child.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            "",
            "00",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        // A later version with more fields is read by its version-00 prefix.
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-abc")
                .is_some()
        );
    }

    #[test]
    fn wire_form_round_trips_in_25_bytes() {
        let tp = TraceParent::parse(SAMPLE).expect("valid");
        let bytes = rmp_serde::to_vec(&tp).expect("encodes");
        assert!(bytes.len() <= 27, "{} bytes", bytes.len());
        let back: TraceParent = rmp_serde::from_slice(&bytes).expect("decodes");
        assert_eq!(back, tp);
        let short = rmp_serde::to_vec(serde_bytes::Bytes::new(&[1u8; 24])).expect("encodes");
        assert!(rmp_serde::from_slice::<TraceParent>(&short).is_err());
    }
}
