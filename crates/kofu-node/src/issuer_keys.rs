//! The issuer keys of a node: the key it signs with (`KOFU_ISSUER_KEY_FILE`, or derived
//! from the fixture seed on fixtures) and the key set it publishes at
//! `GET /v1/issuer-key` for a rotation without a verification gap: the next key
//! (`KOFU_ISSUER_NEXT_KEY_FILE`) before it signs, and retired keys
//! (`KOFU_ISSUER_RETIRED_KEYS_FILE`) while documents they signed may be in flight.
//! Every file is read again on SIGHUP; a set that does not read is refused whole and
//! the one in force stays. README "Issuer key rotation" gives the procedure.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use ed25519_dalek::{SigningKey, VerifyingKey};
use kofu_proto::api::{IssuerKeyResponse, KeyStatus, PublishedKey};
use kofu_proto::verify::key_id;
use kofu_render::Issuer;

use crate::config::ServeConfig;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {problem}", file.display(), line.map(|n| format!(" line {n}")).unwrap_or_default())]
pub struct KeyFileError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub problem: String,
}

impl KeyFileError {
    fn new(file: &Path, line: Option<usize>, problem: impl Into<String>) -> KeyFileError {
        KeyFileError {
            file: file.to_owned(),
            line,
            problem: problem.into(),
        }
    }
}

/// Where the keys come from.
#[derive(Debug, Clone, Default)]
struct KeyFiles {
    /// The signing seed; `None` on fixtures (derived from the seed, never re-read).
    current: Option<PathBuf>,
    next: Option<PathBuf>,
    retired: Option<PathBuf>,
}

/// What the files say, read together.
struct KeySet {
    /// The signing seed, when it comes from a file.
    seed: Option<[u8; 32]>,
    next: Option<VerifyingKey>,
    retired: Vec<VerifyingKey>,
}

pub struct IssuerKeyring {
    issuer: Arc<Issuer>,
    published: ArcSwap<IssuerKeyResponse>,
    files: KeyFiles,
}

impl std::fmt::Debug for IssuerKeyring {
    // The published set only: the seed never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeyring")
            .field("published", &self.published.load())
            .finish_non_exhaustive()
    }
}

impl IssuerKeyring {
    /// Reads every key file (a bad one fails the start, naming it).
    pub fn load(cfg: &ServeConfig) -> Result<IssuerKeyring, KeyFileError> {
        let files = KeyFiles {
            current: cfg.issuer_key_file.clone(),
            next: cfg.credentials.issuer_next_key_file.clone(),
            retired: cfg.credentials.issuer_retired_keys_file.clone(),
        };
        let set = files.read()?;
        let seed = set
            .seed
            .unwrap_or_else(|| kofu_core::issuer_seed(cfg.fixture_seed()));
        let issuer = Arc::new(Issuer::from_seed(seed));
        let published = publish(&issuer, &set);
        Ok(IssuerKeyring {
            issuer,
            published: ArcSwap::from_pointee(published),
            files,
        })
    }

    /// The signer shared with the sessions.
    pub fn issuer(&self) -> Arc<Issuer> {
        self.issuer.clone()
    }

    /// `GET /v1/issuer-key`'s answer.
    pub fn published(&self) -> Arc<IssuerKeyResponse> {
        self.published.load_full()
    }

    /// Reads the files again; signs with the current key and publishes the set from
    /// now on. A file that does not read changes nothing. Answers what is published.
    pub fn reload(&self) -> Result<String, KeyFileError> {
        let set = self.files.read()?;
        if let Some(seed) = set.seed {
            self.issuer.rotate_to(seed);
        }
        let published = publish(&self.issuer, &set);
        let summary = summary(&published);
        self.published.store(published.into());
        Ok(summary)
    }
}

/// `current <kid>, next <kid>, retired <kid> <kid>` — key ids only.
fn summary(p: &IssuerKeyResponse) -> String {
    let of = |status: KeyStatus| {
        p.keys
            .iter()
            .filter(|k| k.status == status)
            .map(|k| k.kid.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "current {}, next [{}], retired [{}]",
        p.kid,
        of(KeyStatus::Next),
        of(KeyStatus::Retired)
    )
}

/// The published set: the signing key, then the next, then the retired ones; a key is
/// listed once, under the first status it has in that order (so a rotation's files may
/// be edited in any order).
fn publish(issuer: &Issuer, set: &KeySet) -> IssuerKeyResponse {
    let current = issuer.verifying_key();
    let mut keys = vec![published(&current, KeyStatus::Current)];
    let others = set
        .next
        .iter()
        .map(|k| (k, KeyStatus::Next))
        .chain(set.retired.iter().map(|k| (k, KeyStatus::Retired)));
    for (key, status) in others {
        let kid = key_id(key);
        if !keys.iter().any(|k| k.kid == kid) {
            keys.push(published(key, status));
        }
    }
    IssuerKeyResponse {
        alg: "ed25519".to_owned(),
        public_key: kofu_proto::b64url(current.as_bytes()),
        kid: key_id(&current),
        keys,
    }
}

fn published(key: &VerifyingKey, status: KeyStatus) -> PublishedKey {
    PublishedKey {
        kid: key_id(key),
        public_key: kofu_proto::b64url(key.as_bytes()),
        status,
    }
}

impl KeyFiles {
    fn read(&self) -> Result<KeySet, KeyFileError> {
        let seed = self.current.as_deref().map(read_seed).transpose()?;
        let next = match &self.next {
            None => None,
            Some(path) => {
                let mut keys = read_public_keys(path)?;
                if keys.len() > 1 {
                    return Err(KeyFileError::new(
                        path,
                        None,
                        "holds more than one key; the next key is one key",
                    ));
                }
                keys.pop()
            }
        };
        let retired = match &self.retired {
            None => Vec::new(),
            Some(path) => read_public_keys(path)?,
        };
        Ok(KeySet {
            seed,
            next,
            retired,
        })
    }
}

/// The issuer's signing seed: 32 raw bytes, 64 hex digits, or base64url of 32 bytes.
pub fn read_seed(path: &Path) -> Result<[u8; 32], KeyFileError> {
    let raw = std::fs::read(path)
        .map_err(|e| KeyFileError::new(path, None, format!("cannot read: {e}")))?;
    let seed = if raw.len() == 32 {
        raw.as_slice().try_into().ok()
    } else {
        std::str::from_utf8(&raw)
            .ok()
            .and_then(|text| decode_32(text.trim()))
    };
    seed.ok_or_else(|| {
        KeyFileError::new(
            path,
            None,
            "must hold 32 raw bytes, 64 hex digits or base64url of 32 bytes",
        )
    })
}

/// 64 hex digits or base64url of 32 bytes.
fn decode_32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() == 64 && hex::decode_to_slice(text, &mut out).is_ok() {
        return Some(out);
    }
    kofu_proto::b64url_decode(text).and_then(|b| b.try_into().ok())
}

/// Ed25519 public keys, one per line (64 hex digits or base64url); blank lines and `#`
/// comments are skipped.
fn read_public_keys(path: &Path) -> Result<Vec<VerifyingKey>, KeyFileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| KeyFileError::new(path, None, format!("cannot read: {e}")))?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let key = decode_32(line)
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or_else(|| {
                KeyFileError::new(
                    path,
                    Some(i + 1),
                    "not an Ed25519 public key (64 hex digits or base64url of 32 bytes)",
                )
            })?;
        keys.push(key);
    }
    Ok(keys)
}

/// The public key of a seed, as the next and retired key files take it.
pub fn public_key_of(seed: &[u8; 32]) -> VerifyingKey {
    SigningKey::from_bytes(seed).verifying_key()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> VerifyingKey {
        public_key_of(&[n; 32])
    }

    fn set(next: Option<u8>, retired: &[u8]) -> KeySet {
        KeySet {
            seed: None,
            next: next.map(key),
            retired: retired.iter().copied().map(key).collect(),
        }
    }

    fn statuses(p: &IssuerKeyResponse) -> Vec<(String, KeyStatus)> {
        p.keys.iter().map(|k| (k.kid.clone(), k.status)).collect()
    }

    #[test]
    fn the_published_set_lists_each_key_once_current_first() {
        let issuer = Issuer::from_seed([1; 32]);
        let p = publish(&issuer, &set(Some(2), &[3, 4]));
        assert_eq!(p.kid, key_id(&key(1)));
        assert_eq!(p.public_key, kofu_proto::b64url(key(1).as_bytes()));
        assert_eq!(
            statuses(&p),
            vec![
                (key_id(&key(1)), KeyStatus::Current),
                (key_id(&key(2)), KeyStatus::Next),
                (key_id(&key(3)), KeyStatus::Retired),
                (key_id(&key(4)), KeyStatus::Retired),
            ]
        );
        // Mid-rotation: the new seed signs while the next file still names its key, and
        // the old key is retired: each listed once.
        issuer.rotate_to([2; 32]);
        let p = publish(&issuer, &set(Some(2), &[1, 2]));
        assert_eq!(
            statuses(&p),
            vec![
                (key_id(&key(2)), KeyStatus::Current),
                (key_id(&key(1)), KeyStatus::Retired),
            ]
        );
        let keys = kofu_proto::verify::IssuerKeys::from_response(&p).expect("a valid set");
        assert_eq!(keys.kids().count(), 2);
    }

    #[test]
    fn key_files_are_read_strictly() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let hex_key = hex::encode(key(5).as_bytes());
        let b64_key = kofu_proto::b64url(key(6).as_bytes());
        let retired = write(
            "retired",
            &format!("# old keys\n{hex_key}\n\n{b64_key} # 2025\n"),
        );
        assert_eq!(
            read_public_keys(&retired).expect("reads"),
            vec![key(5), key(6)]
        );
        let bad = write("bad", &format!("{hex_key}\nnot-a-key\n"));
        assert_eq!(read_public_keys(&bad).expect_err("refused").line, Some(2));
        let seed = write("seed", &"ab".repeat(32));
        assert_eq!(read_seed(&seed), Ok([0xab; 32]));
        let raw = write("raw", "0123456789abcdef0123456789abcdef");
        assert_eq!(read_seed(&raw).map(|s| s[0]), Ok(b'0'));
        assert!(read_seed(&write("short", "abcd")).is_err());
        let files = KeyFiles {
            current: Some(seed),
            next: Some(write("two", &format!("{hex_key}\n{b64_key}\n"))),
            retired: None,
        };
        assert!(files.read().is_err(), "two next keys");
        let files = KeyFiles {
            next: Some(write("empty", "\n")),
            ..files
        };
        assert!(files.read().expect("reads").next.is_none());
    }
}
