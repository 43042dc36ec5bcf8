//! Validated identifiers. Parsing is the only way in, so every id inside kofu is
//! known-good, and `Debug` of a card id never prints the id itself.

use std::fmt;

use sha2::{Digest, Sha256};

/// Why a piece of text is not a valid identifier. Carries no part of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("card id must be 16 upper-case hex digits")]
    Card,
    #[error("kiosk id must match ^[A-Z0-9][A-Z0-9-]{{2,31}}$")]
    Kiosk,
    #[error("malformed session id")]
    Session,
    #[error("malformed job id")]
    Job,
}

/// The serial of a card's user certificate: personal data, so it never prints.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CardId([u8; 16]);

impl CardId {
    pub fn parse(text: &str) -> Result<CardId, IdError> {
        let bytes = text.as_bytes();
        if bytes.len() != 16 || !bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')) {
            return Err(IdError::Card);
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(bytes);
        Ok(CardId(out))
    }

    /// The id itself: callers must only hand it to the registry or a card key lookup.
    pub fn expose(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// Hex SHA-256 of the id: the only form allowed in logs, keys and bindings.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.0))
    }

    /// The raw SHA-256 of the id, for compact in-memory keys.
    pub fn digest_bytes(&self) -> [u8; 32] {
        Sha256::digest(self.0).into()
    }

    /// A short digest prefix for logs and traces.
    pub fn short_digest(&self) -> String {
        let d = Sha256::digest(self.0);
        hex::encode(&d[..6])
    }
}

impl fmt::Debug for CardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardId(#{})", self.short_digest())
    }
}

/// `shard(card_id) = u64_be(sha256(card_id_ascii)[0..8]) mod shard_count` (API.md).
pub fn shard_of(card: &CardId, shard_count: u32) -> u32 {
    let d = Sha256::digest(card.0);
    let mut head = [0u8; 8];
    head.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(head) % u64::from(shard_count.max(1))) as u32
}

/// A kiosk's id, e.g. `SEJ-13104-0042-01`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KioskId(String);

impl KioskId {
    pub fn parse(text: &str) -> Result<KioskId, IdError> {
        let b = text.as_bytes();
        let ok = (3..=32).contains(&b.len())
            && matches!(b[0], b'A'..=b'Z' | b'0'..=b'9')
            && b[1..]
                .iter()
                .all(|c| matches!(c, b'A'..=b'Z' | b'0'..=b'9' | b'-'));
        if ok {
            Ok(KioskId(text.to_owned()))
        } else {
            Err(IdError::Kiosk)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KioskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KioskId({})", self.0)
    }
}

impl fmt::Display for KioskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const SHARD_HEX: usize = 4;
const SESSION_RANDOM: usize = 16;
const SESSION_LEN: usize = SHARD_HEX + 22;

/// `<4 hex digits of the shard><22 base64url chars of 128 random bits>`: the shard is
/// readable by any node without the card id, the rest makes it unguessable.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId {
    shard: u16,
    random: [u8; SESSION_RANDOM],
}

impl SessionId {
    /// Builds an id from a shard and 16 bytes that the caller drew from a CSPRNG.
    pub fn new(shard: u32, random: [u8; SESSION_RANDOM]) -> SessionId {
        SessionId {
            shard: shard as u16,
            random,
        }
    }

    pub fn parse(text: &str) -> Result<SessionId, IdError> {
        if text.len() != SESSION_LEN || !text.is_ascii() {
            return Err(IdError::Session);
        }
        let (shard_hex, rest) = text.split_at(SHARD_HEX);
        if !shard_hex
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(IdError::Session);
        }
        let shard = u16::from_str_radix(shard_hex, 16).map_err(|_| IdError::Session)?;
        let raw = crate::b64url_decode(rest).ok_or(IdError::Session)?;
        let random: [u8; SESSION_RANDOM] = raw.try_into().map_err(|_| IdError::Session)?;
        let id = SessionId { shard, random };
        // Reject non-canonical encodings so that one session has exactly one id text.
        if id.to_string() != text {
            return Err(IdError::Session);
        }
        Ok(id)
    }

    pub fn shard(&self) -> u32 {
        u32::from(self.shard)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}{}", self.shard, crate::b64url(&self.random))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// A job inside a session: `j<index>-<base64url of 8 random bytes>`. The index keeps
/// jobs ordered; the random part keeps a job of a closed session from being confused
/// with one of a later session.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobId {
    index: u8,
    random: [u8; 8],
}

impl JobId {
    pub const fn new(index: u8, random: [u8; 8]) -> JobId {
        JobId { index, random }
    }

    pub fn parse(text: &str) -> Result<JobId, IdError> {
        let rest = text.strip_prefix('j').ok_or(IdError::Job)?;
        let (idx, rnd) = rest.split_once('-').ok_or(IdError::Job)?;
        if idx.is_empty() || idx.len() > 2 || !idx.bytes().all(|c| c.is_ascii_digit()) {
            return Err(IdError::Job);
        }
        let index: u8 = idx.parse().map_err(|_| IdError::Job)?;
        let raw = crate::b64url_decode(rnd).ok_or(IdError::Job)?;
        let random: [u8; 8] = raw.try_into().map_err(|_| IdError::Job)?;
        let id = JobId { index, random };
        if id.to_string() != text {
            return Err(IdError::Job);
        }
        Ok(id)
    }

    pub fn index(&self) -> u8 {
        self.index
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "j{}-{}", self.index, crate::b64url(&self.random))
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

/// Ids travel as their canonical text in JSON and MessagePack alike.
macro_rules! text_serde {
    ($ty:ty, $show:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let show: fn(&$ty) -> String = $show;
                s.serialize_str(&show(self))
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                <$ty>::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_serde!(CardId, |c| c.expose().to_owned());
text_serde!(KioskId, |k| k.0.clone());
text_serde!(SessionId, |s| s.to_string());
text_serde!(JobId, |j| j.to_string());

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn card_ids() {
        assert!(CardId::parse("0123456789ABCDEF").is_ok());
        for bad in [
            "0123456789abcdef",
            "0123456789ABCDE",
            "0123456789ABCDEF0",
            "0123456789ABCDEG",
            "",
        ] {
            assert_eq!(CardId::parse(bad), Err(IdError::Card), "{bad}");
        }
    }

    #[test]
    fn card_debug_hides_the_id() {
        let c = CardId::parse("0123456789ABCDEF").expect("valid");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("0123456789ABCDEF"), "{dbg}");
        assert_eq!(c.digest().len(), 64);
    }

    #[test]
    fn shard_matches_the_api_formula() {
        let c = CardId::parse("0123456789ABCDEF").expect("valid");
        let d = Sha256::digest(b"0123456789ABCDEF");
        let v = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
        assert_eq!(u64::from(shard_of(&c, 1024)), v % 1024);
        assert_eq!(u64::from(shard_of(&c, 7)), v % 7);
    }

    #[test]
    fn kiosk_ids() {
        for ok in ["SEJ-13104-0042-01", "ABC", "0AB", &"A".repeat(32)] {
            assert!(KioskId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["AB", "-ABC", "abc", "SEJ_1", &"A".repeat(33), "SEJ 1"] {
            assert!(KioskId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn session_id_is_url_safe_short_and_carries_its_shard() {
        let id = SessionId::new(1023, [0xff; 16]);
        let text = id.to_string();
        assert!(text.len() <= 64);
        assert!(
            text.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        let back = SessionId::parse(&text).expect("round trip");
        assert_eq!(back, id);
        assert_eq!(back.shard(), 1023);
    }

    proptest! {
        #[test]
        fn session_ids_round_trip(shard in 0u32..65536, random in any::<[u8; 16]>()) {
            let id = SessionId::new(shard, random);
            prop_assert_eq!(SessionId::parse(&id.to_string()), Ok(id));
        }

        #[test]
        fn job_ids_round_trip(index in 0u8..100, random in any::<[u8; 8]>()) {
            let id = JobId::new(index, random);
            prop_assert_eq!(JobId::parse(&id.to_string()), Ok(id));
        }

        #[test]
        fn parsers_never_panic(text in ".{0,80}") {
            let _ = SessionId::parse(&text);
            let _ = JobId::parse(&text);
            let _ = CardId::parse(&text);
            let _ = KioskId::parse(&text);
        }
    }
}
