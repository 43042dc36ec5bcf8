//! Kiosk and admin credentials: only SHA-256 hashes of tokens are kept, every comparison
//! is constant-time (also for kiosk ids that do not exist), and admin tokens carry
//! roles. Credentials come from the fixture population (demo and tests) or from the
//! files of API.md "Real deployments"; a file's set is replaced whole when it is read
//! again (SIGHUP), and a file that does not parse leaves the previous set in force.

mod files;

use foldhash::{HashMap, HashMapExt as _};
use std::path::{Path, PathBuf};

use arc_swap::ArcSwap;
use kofu_core::KioskCredential;
use kofu_proto::{ErrorCode, KioskId};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq as _};

pub use files::{AdminLine, FileError, KioskLine, Role};

/// Checks one admin tokens file line as a node would read it.
pub fn parse_admin_line(text: &str) -> Result<AdminLine, FileError> {
    let mut lines = files::parse_admin_tokens(text, Path::new("<line>"))?;
    lines.pop().ok_or_else(|| FileError {
        file: "<line>".into(),
        line: None,
        field: None,
        problem: "empty".to_owned(),
    })
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn bearer(header: Option<&str>) -> Option<&str> {
    header.and_then(|h| h.strip_prefix("Bearer "))
}

/// The enabled kiosks' token hashes (a kiosk may have several, e.g. during its own
/// token's rotation).
#[derive(Debug, Default)]
struct KioskSet {
    tokens: HashMap<KioskId, Vec<[u8; 32]>>,
}

impl KioskSet {
    /// A kiosk with any disabled line is disabled whole, whatever its other lines say.
    fn from_lines(lines: Vec<KioskLine>) -> KioskSet {
        let mut tokens: HashMap<KioskId, Vec<[u8; 32]>> = HashMap::new();
        let mut disabled = Vec::new();
        for line in lines {
            if line.disabled {
                disabled.push(line.kiosk_id);
            } else {
                let hashes = tokens.entry(line.kiosk_id).or_default();
                if !hashes.contains(&line.token_sha256) {
                    hashes.push(line.token_sha256);
                }
            }
        }
        for kiosk in disabled {
            tokens.remove(&kiosk);
        }
        KioskSet { tokens }
    }
}

#[derive(Debug)]
pub struct KioskAuth {
    set: ArcSwap<KioskSet>,
    /// `KOFU_KIOSKS_FILE`, re-read by `reload`; `None` serves the fixtures.
    file: Option<PathBuf>,
}

impl KioskAuth {
    /// The fixture population's kiosks (demo and tests).
    pub fn fixtures(creds: &[KioskCredential]) -> KioskAuth {
        let tokens = creds
            .iter()
            .map(|c| (c.kiosk_id.clone(), vec![sha256(&c.token())]))
            .collect();
        KioskAuth {
            set: ArcSwap::from_pointee(KioskSet { tokens }),
            file: None,
        }
    }

    /// The kiosks of `KOFU_KIOSKS_FILE`; nothing derived from a fixture seed.
    pub fn from_file(path: &Path) -> Result<KioskAuth, FileError> {
        let set = Self::read(path)?;
        Ok(KioskAuth {
            set: ArcSwap::from_pointee(set),
            file: Some(path.to_owned()),
        })
    }

    fn read(path: &Path) -> Result<KioskSet, FileError> {
        let lines = files::parse_kiosks(&files::read(path)?, path)?;
        Ok(KioskSet::from_lines(lines))
    }

    /// Reads the file again and replaces the set whole; on error the set in force
    /// stays. Answers how many kiosks are enabled now.
    pub fn reload(&self) -> Result<usize, FileError> {
        let Some(path) = &self.file else {
            return Ok(self.set.load().tokens.len());
        };
        let set = Self::read(path)?;
        let enabled = set.tokens.len();
        self.set.store(set.into());
        Ok(enabled)
    }

    /// Checks `Authorization: Bearer <kiosk_id>.<secret>`: valid iff the token's
    /// SHA-256 is listed for that kiosk id.
    pub fn check(&self, header: Option<&str>) -> Result<KioskId, ErrorCode> {
        let token = bearer(header).ok_or(ErrorCode::UnauthorizedKiosk)?;
        let (id, _) = token.split_once('.').ok_or(ErrorCode::UnauthorizedKiosk)?;
        let kiosk = KioskId::parse(id).map_err(|_| ErrorCode::UnauthorizedKiosk)?;
        let presented = sha256(token);
        let set = self.set.load();
        let mut equal = Choice::from(0);
        match set.tokens.get(&kiosk) {
            Some(hashes) => {
                for stored in hashes {
                    equal |= presented.ct_eq(stored);
                }
            }
            // Compare against a dummy for unknown kiosks so timing does not reveal ids.
            None => {
                let _ = presented.ct_eq(&[0u8; 32]);
            }
        }
        if bool::from(equal) {
            Ok(kiosk)
        } else {
            Err(ErrorCode::UnauthorizedKiosk)
        }
    }
}

#[derive(Debug)]
struct AdminToken {
    name: String,
    hash: [u8; 32],
    roles: Vec<Role>,
}

#[derive(Debug)]
pub struct AdminAuth {
    tokens: ArcSwap<Vec<AdminToken>>,
    /// `KOFU_ADMIN_TOKENS_FILE`, re-read by `reload`; `None` serves the fixture token.
    file: Option<PathBuf>,
}

impl AdminAuth {
    /// The fixture population's admin token, with every role (demo and tests).
    pub fn fixture(token: &str) -> AdminAuth {
        let token = AdminToken {
            name: "fixture".to_owned(),
            hash: sha256(token),
            roles: Role::ALL.to_vec(),
        };
        AdminAuth {
            tokens: ArcSwap::from_pointee(vec![token]),
            file: None,
        }
    }

    /// The tokens of `KOFU_ADMIN_TOKENS_FILE`; nothing derived from a fixture seed.
    pub fn from_file(path: &Path) -> Result<AdminAuth, FileError> {
        Ok(AdminAuth {
            tokens: ArcSwap::from_pointee(Self::read(path)?),
            file: Some(path.to_owned()),
        })
    }

    fn read(path: &Path) -> Result<Vec<AdminToken>, FileError> {
        let lines = files::parse_admin_tokens(&files::read(path)?, path)?;
        Ok(lines
            .into_iter()
            .map(|l| AdminToken {
                name: l.name,
                hash: l.token_sha256,
                roles: l.roles,
            })
            .collect())
    }

    /// Reads the file again and replaces the tokens whole; on error the tokens in force
    /// stay. Answers how many tokens there are now.
    pub fn reload(&self) -> Result<usize, FileError> {
        let Some(path) = &self.file else {
            return Ok(self.tokens.load().len());
        };
        let tokens = Self::read(path)?;
        let n = tokens.len();
        self.tokens.store(tokens.into());
        Ok(n)
    }

    /// Checks `Authorization: Bearer <token>` for an endpoint needing `role`: the
    /// token's name when it is valid and has the role; `401 unauthorized` when it is not
    /// valid, `403 forbidden` when it lacks the role. Every token is compared, always.
    pub fn check(&self, header: Option<&str>, role: Role) -> Result<String, ErrorCode> {
        let token = bearer(header).ok_or(ErrorCode::Unauthorized)?;
        let presented = sha256(token);
        let tokens = self.tokens.load();
        let mut found = None;
        for t in tokens.iter() {
            if bool::from(presented.ct_eq(&t.hash)) {
                found = Some(t);
            }
        }
        match found {
            None => Err(ErrorCode::Unauthorized),
            Some(t) if !t.roles.contains(&role) => Err(ErrorCode::Forbidden),
            Some(t) => Ok(t.name.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn creds() -> Vec<KioskCredential> {
        vec![KioskCredential {
            kiosk_id: KioskId::parse("SEJ-13104-0042-01").expect("valid"),
            secret: "s3cret".into(),
        }]
    }

    #[test]
    fn kiosk_tokens() {
        let auth = KioskAuth::fixtures(&creds());
        assert!(auth.check(Some("Bearer SEJ-13104-0042-01.s3cret")).is_ok());
        for bad in [
            None,
            Some("SEJ-13104-0042-01.s3cret"),
            Some("Bearer SEJ-13104-0042-01.wrong"),
            Some("Bearer SEJ-13104-0042-02.s3cret"),
            Some("Bearer SEJ-13104-0042-01"),
            Some("Bearer "),
            Some("Bearer bad id.s3cret"),
        ] {
            assert_eq!(
                auth.check(bad),
                Err(ErrorCode::UnauthorizedKiosk),
                "{bad:?}"
            );
        }
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    fn kiosk_line(kiosk: &str, token: &str, disabled: bool) -> String {
        let line = KioskLine {
            kiosk_id: KioskId::parse(kiosk).expect("valid"),
            token_sha256: sha256(token),
            disabled,
        };
        serde_json::to_string(&line).expect("serializes") + "\n"
    }

    #[test]
    fn a_kiosks_file_is_reloaded_whole_or_not_at_all() {
        let f = file(&(kiosk_line("K-1", "K-1.a", false) + &kiosk_line("K-2", "K-2.b", false)));
        let auth = KioskAuth::from_file(f.path()).expect("loads");
        assert!(auth.check(Some("Bearer K-1.a")).is_ok());
        assert!(auth.check(Some("Bearer K-2.b")).is_ok());
        // K-1 removed, K-2 disabled on one of its lines, K-3 with two tokens.
        std::fs::write(
            f.path(),
            kiosk_line("K-2", "K-2.b", false)
                + &kiosk_line("K-2", "K-2.b", true)
                + &kiosk_line("K-3", "K-3.c", false)
                + &kiosk_line("K-3", "K-3.d", false),
        )
        .expect("rewrite");
        assert_eq!(auth.reload(), Ok(1));
        for gone in ["K-1.a", "K-2.b"] {
            assert_eq!(
                auth.check(Some(&format!("Bearer {gone}"))),
                Err(ErrorCode::UnauthorizedKiosk)
            );
        }
        assert!(auth.check(Some("Bearer K-3.c")).is_ok());
        assert!(auth.check(Some("Bearer K-3.d")).is_ok());
        // A file that does not parse is refused, and what was in force stays.
        std::fs::write(f.path(), kiosk_line("K-4", "K-4.e", false) + "{oops\n").expect("rewrite");
        let e = auth.reload().expect_err("refused");
        assert_eq!(e.line, Some(2));
        assert!(auth.check(Some("Bearer K-3.c")).is_ok());
        assert!(auth.check(Some("Bearer K-4.e")).is_err());
    }

    #[test]
    fn admin_tokens_have_roles() {
        let auth = AdminAuth::fixture("adm-token");
        for role in Role::ALL {
            assert_eq!(
                auth.check(Some("Bearer adm-token"), role),
                Ok("fixture".to_owned())
            );
        }
        assert_eq!(
            auth.check(Some("Bearer adm-token2"), Role::Read),
            Err(ErrorCode::Unauthorized)
        );
        assert_eq!(auth.check(None, Role::Read), Err(ErrorCode::Unauthorized));

        let line = |name: &str, token: &str, roles: Vec<Role>| {
            let line = AdminLine {
                name: name.to_owned(),
                token_sha256: sha256(token),
                roles,
            };
            serde_json::to_string(&line).expect("serializes") + "\n"
        };
        let f = file(
            &(line("viewer", "v-token", vec![Role::Read])
                + &line("oncall", "o-token", vec![Role::Read, Role::Drain])),
        );
        let auth = AdminAuth::from_file(f.path()).expect("loads");
        assert_eq!(
            auth.check(Some("Bearer v-token"), Role::Read),
            Ok("viewer".to_owned())
        );
        assert_eq!(
            auth.check(Some("Bearer v-token"), Role::Drain),
            Err(ErrorCode::Forbidden)
        );
        assert_eq!(
            auth.check(Some("Bearer o-token"), Role::Registry),
            Err(ErrorCode::Forbidden)
        );
        assert!(auth.check(Some("Bearer o-token"), Role::Drain).is_ok());
        assert_eq!(
            auth.check(Some("Bearer adm-token"), Role::Read),
            Err(ErrorCode::Unauthorized)
        );
    }
}
