//! The kofu wire contract: every type that crosses a process boundary lives here, so
//! that kiosks, nodes, tests and the load generator agree on one definition.

pub mod api;
pub mod binding;
pub mod doctext;
pub mod fixtures;
pub mod ids;
pub mod kind;
pub mod session;
pub mod trace;
pub mod tracecontext;
pub mod verify;
pub mod wire;

pub use api::{ApiError, ErrorCode, NotIssuable};
pub use binding::Binding;
pub use fixtures::FixtureLine;
pub use ids::{CardId, IdError, JobId, KioskId, SessionId, shard_of};
pub use kind::CertKind;
pub use session::{Document, SessionOp, SessionReply};
pub use tracecontext::TraceParent;

/// Default number of shards of a cluster (API.md).
pub const DEFAULT_SHARD_COUNT: u32 = 1024;
/// Largest accepted request body (API.md: bodies over 16 KiB get `413`).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Most jobs one session may create (API.md: the sixth gets `429`).
pub const MAX_JOBS_PER_SESSION: usize = 5;
/// Bad signatures a session tolerates; the last one locks it.
pub const MAX_AUTH_ATTEMPTS: u8 = 3;

/// base64url without padding, the only base64 flavour of the protocol.
pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url; accepts padded input too since kiosk vendors differ.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let trimmed = text.trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .ok()
}

/// The bytes a card signs to authenticate a session (API.md endpoint 2).
pub fn auth_message(session_id: &str, kiosk_id: &str, challenge: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(16 + session_id.len() + kiosk_id.len() + challenge.len());
    msg.extend_from_slice(b"kofu-auth-v1\n");
    msg.extend_from_slice(session_id.as_bytes());
    msg.push(b'\n');
    msg.extend_from_slice(kiosk_id.as_bytes());
    msg.push(b'\n');
    msg.extend_from_slice(challenge);
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_message_layout() {
        let m = auth_message("S", "K", &[1, 2]);
        assert_eq!(m, b"kofu-auth-v1\nS\nK\n\x01\x02");
    }

    #[test]
    fn b64url_round_trip_and_padding() {
        let bytes = [0xfbu8, 0xff, 0x00, 0x10];
        let text = b64url(&bytes);
        assert!(!text.contains('=') && !text.contains('+') && !text.contains('/'));
        assert_eq!(b64url_decode(&text).as_deref(), Some(&bytes[..]));
        assert_eq!(
            b64url_decode(&format!("{text}==")).as_deref(),
            Some(&bytes[..])
        );
        assert_eq!(b64url_decode("!!"), None);
    }
}
