//! Kiosk and admin credentials: only SHA-256 hashes of secrets are kept, and every
//! comparison is constant-time, also for kiosk ids that do not exist.

use std::collections::HashMap;

use kofu_core::KioskCredential;
use kofu_proto::{ErrorCode, KioskId};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

#[derive(Debug)]
pub struct KioskAuth {
    secrets: HashMap<KioskId, [u8; 32]>,
}

impl KioskAuth {
    pub fn new(creds: &[KioskCredential]) -> KioskAuth {
        KioskAuth {
            secrets: creds
                .iter()
                .map(|c| (c.kiosk_id.clone(), c.secret_hash()))
                .collect(),
        }
    }

    /// Checks `Authorization: Bearer <kiosk_id>.<secret>`.
    pub fn check(&self, header: Option<&str>) -> Result<KioskId, ErrorCode> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or(ErrorCode::UnauthorizedKiosk)?;
        let (id, secret) = token.split_once('.').ok_or(ErrorCode::UnauthorizedKiosk)?;
        let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let kiosk = KioskId::parse(id).map_err(|_| ErrorCode::UnauthorizedKiosk)?;
        let stored = self.secrets.get(&kiosk);
        // Compare against a dummy for unknown kiosks so timing does not reveal ids.
        let equal = presented.ct_eq(stored.unwrap_or(&[0u8; 32]));
        if bool::from(equal) && stored.is_some() {
            Ok(kiosk)
        } else {
            Err(ErrorCode::UnauthorizedKiosk)
        }
    }
}

#[derive(Debug)]
pub struct AdminAuth {
    hash: [u8; 32],
}

impl AdminAuth {
    pub fn new(token: &str) -> AdminAuth {
        AdminAuth {
            hash: Sha256::digest(token.as_bytes()).into(),
        }
    }

    pub fn check(&self, header: Option<&str>) -> Result<(), ErrorCode> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or(ErrorCode::Unauthorized)?;
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if bool::from(presented.ct_eq(&self.hash)) {
            Ok(())
        } else {
            Err(ErrorCode::Unauthorized)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Vec<KioskCredential> {
        vec![KioskCredential {
            kiosk_id: KioskId::parse("SEJ-13104-0042-01").expect("valid"),
            secret: "s3cret".into(),
        }]
    }

    #[test]
    fn kiosk_tokens() {
        let auth = KioskAuth::new(&creds());
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

    #[test]
    fn admin_tokens() {
        let auth = AdminAuth::new("adm-token");
        assert!(auth.check(Some("Bearer adm-token")).is_ok());
        assert_eq!(
            auth.check(Some("Bearer adm-token2")),
            Err(ErrorCode::Unauthorized)
        );
        assert_eq!(auth.check(None), Err(ErrorCode::Unauthorized));
    }
}
