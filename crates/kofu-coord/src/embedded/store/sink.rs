//! Where the embedded store's confirmed prints go: an append-only file, synced to disk
//! before the print is acknowledged, so an acknowledged record survives a crash of the
//! process or of the machine (I5). Memory keeps none of them beyond a small window.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;

use parking_lot::Mutex;

use crate::{AuditRecord, StoreError};

/// Where confirmed prints go. With `Memory` they are kept only in the store's bounded
/// window of recent records (for tests and inspection): nothing survives the process.
pub enum AuditSink {
    Memory,
    File(Mutex<BufWriter<File>>),
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditSink::Memory => f.write_str("AuditSink::Memory"),
            AuditSink::File(_) => f.write_str("AuditSink::File"),
        }
    }
}

impl AuditSink {
    pub fn append_to(path: &Path) -> std::io::Result<AuditSink> {
        let created = !path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        if created {
            // A new file's name is in its directory only once the directory is synced:
            // without this a crash could lose the file with every record synced into it.
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            File::open(dir)?.sync_all()?;
        }
        Ok(AuditSink::File(Mutex::new(BufWriter::new(file))))
    }

    /// Appends the record and waits until the disk has it (`fdatasync`): the print is
    /// acknowledged only after this returns.
    pub(super) fn write(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let AuditSink::File(w) = self else {
            return Ok(());
        };
        // The encoder's message could quote the record: a fixed one instead (I6).
        let mut line = serde_json::to_vec(record)
            .map_err(|_| StoreError::Unavailable("cannot encode an audit record".into()))?;
        line.push(b'\n');
        let mut w = w.lock();
        w.write_all(&line)
            .and_then(|()| w.flush())
            .and_then(|()| w.get_ref().sync_data())
            .map_err(|e| StoreError::Unavailable(format!("audit file: {}", e.kind())))
    }

    pub(super) fn is_memory(&self) -> bool {
        matches!(self, AuditSink::Memory)
    }
}
