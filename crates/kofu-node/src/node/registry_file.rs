//! `KOFU_REGISTRY_FILE`: an embedded node's records from a registry file
//! (`docs/registry-format.md`) instead of the fixture population. The file is read whole
//! at start, a block at a time on every core (`registry_blocks.rs`) (one bad line refuses the start, exit status 2, naming the file, the line and
//! the field) and again on SIGHUP, where every changed record becomes a new version and
//! a bad file leaves the registry as it was.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kofu_coord::embedded::EmbeddedRegistry;
use kofu_core::records::ResidentRecord;

use super::BadConfig;
use crate::reload::Reloader;

/// Every record of the file, or why the file is refused (never a value from it).
pub(super) fn read(path: &Path) -> Result<Vec<ResidentRecord>, BadConfig> {
    let unreadable = |e: std::io::Error| {
        BadConfig(format!(
            "cannot read registry file {}: {}",
            path.display(),
            e.kind()
        ))
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    crate::registry_blocks::read_all(file)
        .map_err(unreadable)?
        .map_err(|e| BadConfig(format!("registry file {} {e}", path.display())))
}

/// On SIGHUP: the file again, applied as an import.
pub(super) fn add_hook(reloader: &mut Reloader, path: PathBuf, registry: Arc<EmbeddedRegistry>) {
    reloader.add("registry file", move || {
        let records = read(&path).map_err(|e| anyhow::anyhow!(e.0))?;
        Ok(registry.import(records).to_string())
    });
}
