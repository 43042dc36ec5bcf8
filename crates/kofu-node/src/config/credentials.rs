//! Settings of real deployments' credentials (issue 11, API.md "Real deployments"): the
//! kiosks file, the admin tokens file, and the issuer keys published for a rotation.
//! Kept apart from the rest of `ServeConfig` so that other settings merge around it.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct CredentialsConfig {
    /// Kiosk credentials, JSON lines `{"kiosk_id", "token_sha256", "disabled"?}`;
    /// re-read on SIGHUP. When given, no kiosk token derived from the fixture seed is
    /// accepted.
    #[arg(long, env = "KOFU_KIOSKS_FILE")]
    pub kiosks_file: Option<PathBuf>,
    /// Admin tokens, JSON lines `{"name", "token_sha256", "roles": ["read" | "registry"
    /// | "drain", ...]}`; re-read on SIGHUP. When given, the fixture admin token is not
    /// accepted.
    #[arg(long, env = "KOFU_ADMIN_TOKENS_FILE")]
    pub admin_tokens_file: Option<PathBuf>,
    /// The issuer key that signs next, published before it signs (one Ed25519 public
    /// key, 64 hex digits or base64url; an empty file publishes none). Re-read on SIGHUP.
    #[arg(long, env = "KOFU_ISSUER_NEXT_KEY_FILE")]
    pub issuer_next_key_file: Option<PathBuf>,
    /// Issuer keys that signed before the last rotation and are still trusted (Ed25519
    /// public keys, one per line; `#` starts a comment). Re-read on SIGHUP.
    #[arg(long, env = "KOFU_ISSUER_RETIRED_KEYS_FILE")]
    pub issuer_retired_keys_file: Option<PathBuf>,
}

impl CredentialsConfig {
    /// Whether the node serves fixture credentials (demo and tests): no credentials file
    /// is given. Only then may the issuer key derive from the fixture seed.
    pub fn on_fixtures(&self) -> bool {
        self.kiosks_file.is_none() && self.admin_tokens_file.is_none()
    }
}
