//! `KOFU_REGISTRY_FILE`: an embedded node's records from a registry file
//! (`docs/registry-format.md`) instead of the fixture population. The file is read whole
//! at start (one bad line refuses the start, exit status 2, naming the file, the line and
//! the field) and again on SIGHUP, where every changed record becomes a new version and
//! a bad file leaves the registry as it was.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kofu_coord::embedded::EmbeddedRegistry;
use kofu_core::records::ResidentRecord;
use kofu_core::registry_file;

use super::BadConfig;
use crate::reload::Reloader;

/// Every record of the file, or why the file is refused (never a value from it).
pub(super) fn read(path: &Path) -> Result<Vec<ResidentRecord>, BadConfig> {
    let bytes = std::fs::read(path).map_err(|e| {
        BadConfig(format!(
            "cannot read registry file {}: {}",
            path.display(),
            e.kind()
        ))
    })?;
    registry_file::parse_file_bytes(&bytes)
        .map_err(|e| BadConfig(format!("registry file {} {e}", path.display())))
}

/// On SIGHUP: the file again, applied as an import.
pub(super) fn add_hook(reloader: &mut Reloader, path: PathBuf, registry: Arc<EmbeddedRegistry>) {
    reloader.add("registry file", move || {
        let records = read(&path).map_err(|e| anyhow::anyhow!(e.0))?;
        Ok(registry.import(records).to_string())
    });
}
