//! What `SIGHUP` re-reads: every part that holds something from a file registers here,
//! and the signal task walks the list. A part that cannot take the new file refuses it
//! with one log line and keeps what it had, so a bad edit never takes a node down.

use std::sync::Arc;

/// Something re-read from its file(s) on `SIGHUP`.
pub trait Reloadable: Send + Sync {
    /// What it is, for the log line (a setting name, never file contents).
    fn what(&self) -> &str;
    /// Reads the file(s) again and swaps the new contents in; on an error nothing
    /// changes. The error names the file and the problem, never secret material.
    fn reload(&self) -> Result<(), String>;
}

/// Everything a node re-reads on `SIGHUP`, in registration order.
#[derive(Clone, Default)]
pub struct Reloaders(Vec<Arc<dyn Reloadable>>);

impl std::fmt::Debug for Reloaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|r| r.what()))
            .finish()
    }
}

impl Reloaders {
    pub fn add(&mut self, part: Arc<dyn Reloadable>) {
        self.0.push(part);
    }

    /// Re-reads every part; how many refused their new file.
    pub fn reload_all(&self) -> usize {
        let mut refused = 0;
        for part in &self.0 {
            match part.reload() {
                Ok(()) => tracing::info!(what = part.what(), "reloaded"),
                Err(e) => {
                    refused += 1;
                    tracing::error!(
                        what = part.what(),
                        error = %e,
                        "reload refused; the previous one stays in use"
                    );
                }
            }
        }
        refused
    }
}
