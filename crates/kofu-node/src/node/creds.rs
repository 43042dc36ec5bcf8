//! The credentials a node serves with, from the fixture population or from the files of
//! API.md "Real deployments" (never a mix for one kind: with a kiosks file no fixture
//! kiosk token is accepted, with an admin tokens file no fixture admin token), and the
//! SIGHUP hooks that read those files again.

use kofu_core::KioskCredential;

use crate::auth::{AdminAuth, KioskAuth};
use crate::config::ServeConfig;
use crate::http::AppState;
use crate::issuer_keys::IssuerKeyring;
use crate::reload::Reloader;

/// A configuration file that does not read: the start fails with exit status 2, naming
/// the file, the line and the field.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct BadConfig(pub String);

pub(super) struct Credentials {
    pub(super) kiosks: KioskAuth,
    pub(super) admin: AdminAuth,
    pub(super) issuer: IssuerKeyring,
}

impl Credentials {
    pub(super) fn load(
        cfg: &ServeConfig,
        fixture_kiosks: &[KioskCredential],
        fixture_admin: &str,
    ) -> Result<Credentials, BadConfig> {
        let bad = |e: &dyn std::fmt::Display| BadConfig(e.to_string());
        let kiosks = match &cfg.credentials.kiosks_file {
            Some(path) => KioskAuth::from_file(path).map_err(|e| bad(&e))?,
            None => KioskAuth::fixtures(fixture_kiosks),
        };
        let admin = match &cfg.credentials.admin_tokens_file {
            Some(path) => AdminAuth::from_file(path).map_err(|e| bad(&e))?,
            None => AdminAuth::fixture(fixture_admin),
        };
        let issuer = IssuerKeyring::load(cfg).map_err(|e| bad(&e))?;
        if cfg.credentials.on_fixtures() {
            tracing::warn!(
                "serving fixture credentials (kiosk tokens and admin token derive from the fixture seed): for demos and tests only"
            );
        }
        Ok(Credentials {
            kiosks,
            admin,
            issuer,
        })
    }
}

/// Hooks for the credential files `cfg` names.
pub(super) fn add_hooks(
    reloader: &mut Reloader,
    cfg: &ServeConfig,
    state: &actix_web::web::Data<AppState>,
) {
    let files = &cfg.credentials;
    if files.kiosks_file.is_some() {
        let state = state.clone();
        reloader.add("kiosks file", move || {
            Ok(format!("{} kiosks enabled", state.kiosks.reload()?))
        });
    }
    if files.admin_tokens_file.is_some() {
        let state = state.clone();
        reloader.add("admin tokens file", move || {
            Ok(format!("{} admin tokens", state.admin.reload()?))
        });
    }
    if cfg.issuer_key_file.is_some()
        || files.issuer_next_key_file.is_some()
        || files.issuer_retired_keys_file.is_some()
    {
        let state = state.clone();
        reloader.add("issuer keys", move || Ok(state.issuer_keys.reload()?));
    }
}
