//! `kofu credentials`: mints a kiosk token, an admin token or an issuer key from the
//! operating system's CSPRNG. The secret is shown once, on stderr under a clear label;
//! stdout gets only what a node's file takes (the JSON line, or the public key), so
//! `kofu credentials kiosk --kiosk-id X >> kiosks.jsonl` works.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use kofu_proto::KioskId;
use rand::TryRngCore as _;
use sha2::{Digest, Sha256};

use crate::auth::{AdminLine, KioskLine, Role};

#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// A kiosk token: the token on stderr, its `KOFU_KIOSKS_FILE` line on stdout.
    Kiosk {
        #[arg(long)]
        kiosk_id: String,
    },
    /// An admin token: the token on stderr, its `KOFU_ADMIN_TOKENS_FILE` line on stdout.
    Admin {
        /// The token's name in log lines (A-Z a-z 0-9 . _ @ -).
        #[arg(long)]
        name: String,
        /// What the token may do; repeat for several.
        #[arg(long = "role", value_enum, required = true)]
        roles: Vec<Role>,
    },
    /// A new issuer key: its seed written to FILE (readable by this user only; an
    /// existing file is never overwritten), its public key on stdout (the line the next
    /// and retired key files take), its key id on stderr.
    IssuerKey {
        #[arg(long)]
        out: PathBuf,
    },
    /// The public key of an issuer key file (for the next and retired key files).
    IssuerPublic {
        #[arg(long)]
        key_file: PathBuf,
    },
}

/// 256 bits from the operating system, as base64url.
fn secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .context("the operating system's random source failed")?;
    Ok(kofu_proto::b64url(&bytes))
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn line(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

pub fn run(cmd: CredentialsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CredentialsCommand::Kiosk { kiosk_id } => {
            let Ok(kiosk) = KioskId::parse(&kiosk_id) else {
                eprintln!("kofu: --kiosk-id must match ^[A-Z0-9][A-Z0-9-]{{2,31}}$");
                return Ok(ExitCode::from(2));
            };
            let token = format!("{kiosk}.{}", secret()?);
            eprintln!("kiosk token (shown once; configure it in the kiosk): {token}");
            line(&KioskLine {
                kiosk_id: kiosk,
                token_sha256: sha256(&token),
                disabled: false,
            })?;
        }
        CredentialsCommand::Admin { name, roles } => {
            let token = secret()?;
            let admin = AdminLine {
                name,
                token_sha256: sha256(&token),
                roles,
            };
            // The same rules as the file: a line this prints is a line a node reads.
            let text = serde_json::to_string(&admin)?;
            if let Err(e) = crate::auth::parse_admin_line(&text) {
                eprintln!("kofu: {}", e.problem);
                return Ok(ExitCode::from(2));
            }
            eprintln!(
                "admin token (shown once; give it to {}): {token}",
                admin.name
            );
            line(&admin)?;
        }
        CredentialsCommand::IssuerKey { out } => {
            let mut seed = [0u8; 32];
            rand::rngs::OsRng
                .try_fill_bytes(&mut seed)
                .context("the operating system's random source failed")?;
            write_new_secret(&out, &hex::encode(seed))?;
            let public = crate::issuer_keys::public_key_of(&seed);
            eprintln!(
                "issuer key written to {} (key id {})",
                out.display(),
                kofu_proto::verify::key_id(&public)
            );
            println!("{}", kofu_proto::b64url(public.as_bytes()));
        }
        CredentialsCommand::IssuerPublic { key_file } => {
            let seed = crate::issuer_keys::read_seed(&key_file)?;
            let public = crate::issuer_keys::public_key_of(&seed);
            eprintln!("key id {}", kofu_proto::verify::key_id(&public));
            println!("{}", kofu_proto::b64url(public.as_bytes()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates `path` (never replacing a file) readable and writable by its owner only.
fn write_new_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}
