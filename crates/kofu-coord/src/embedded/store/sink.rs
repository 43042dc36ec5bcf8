//! Where the embedded store's confirmed prints go: an append-only file, synced to disk
//! before the print is acknowledged, so an acknowledged record survives a crash of the
//! process or of the machine (I5). Memory keeps none of them beyond a small window.
//! Nothing is buffered in the process: a record whose write failed is never written
//! later (its print was answered as not done), and after a failure the file takes no
//! more records (what reached the disk is unknown; fail closed until a restart). A line
//! torn by a crash was never acknowledged and is cut off when the file is opened again.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;

use parking_lot::Mutex;

use crate::{AuditRecord, StoreError};

/// Where confirmed prints go. With `Memory` they are kept only in the store's bounded
/// window of recent records (for tests and inspection): nothing survives the process.
pub enum AuditSink {
    Memory,
    /// The file, or `None` once a write failed.
    File(Mutex<Option<File>>),
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
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
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
        } else {
            cut_torn_tail(&mut file)?;
        }
        Ok(AuditSink::File(Mutex::new(Some(file))))
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
        let Some(file) = w.as_mut() else {
            return Err(StoreError::Unavailable(
                "audit file failed earlier; no print is recorded until a restart".into(),
            ));
        };
        // One `write` of the whole line on an append-only file, then the sync.
        let written = file.write_all(&line).and_then(|()| file.sync_data());
        written.map_err(|e| {
            *w = None;
            StoreError::Unavailable(format!("audit file: {}", e.kind()))
        })
    }

    pub(super) fn is_memory(&self) -> bool {
        matches!(self, AuditSink::Memory)
    }
}

/// Cuts a last line without its newline: a write a crash interrupted, never synced
/// whole, so never acknowledged; left there it would join the next record's line.
fn cut_torn_tail(file: &mut File) -> std::io::Result<()> {
    let len = file.seek(SeekFrom::End(0))?;
    let mut keep = len;
    let mut buf = [0u8; 4096];
    while keep > 0 {
        let from = keep.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..usize::try_from(keep - from).unwrap_or(0)];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(chunk)?;
        match chunk.iter().rposition(|b| *b == b'\n') {
            Some(i) => {
                keep = from + i as u64 + 1;
                break;
            }
            None => keep = from,
        }
    }
    if keep < len {
        file.set_len(keep)?;
        file.sync_all()?;
    }
    Ok(())
}
