//! SIGHUP: every file-backed setting is read again. Each part registers one hook (a
//! name and a function) when the node is built; a hook that fails is refused whole and
//! logged once here, with the part named, and what was in force stays: parts are
//! independent, so a bad kiosks file does not hold back a rotated issuer key. Adding a
//! file-backed setting (say, a TLS certificate) is one more `add`.

use std::sync::Arc;

/// A part that holds something read from files (a certificate, a trust anchor) and can
/// read them again: registered with [`Reloader::add_part`].
pub trait Reloadable: Send + Sync {
    /// What it is, for the log line (a setting name, never file contents).
    fn what(&self) -> &'static str;
    /// Reads the file(s) again and swaps the new contents in; on an error nothing
    /// changes. The error names the file and the problem, never secret material.
    fn reload(&self) -> Result<(), String>;
}

type Hook = Box<dyn Fn() -> anyhow::Result<String> + Send + Sync>;

#[derive(Default)]
pub struct Reloader {
    hooks: Vec<(&'static str, Hook)>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.hooks.iter().map(|(name, _)| *name).collect();
        f.debug_struct("Reloader").field("parts", &names).finish()
    }
}

impl Reloader {
    /// `hook` reads `part`'s files again and puts them in force, answering a summary
    /// for the log (counts and key ids, never a secret), or fails and changes nothing.
    pub fn add(
        &mut self,
        part: &'static str,
        hook: impl Fn() -> anyhow::Result<String> + Send + Sync + 'static,
    ) {
        self.hooks.push((part, Box::new(hook)));
    }

    /// Registers a [`Reloadable`] part under its own name.
    pub fn add_part(&mut self, part: Arc<dyn Reloadable>) {
        self.add(part.what(), move || {
            part.reload().map_err(anyhow::Error::msg)?;
            Ok("in force".to_owned())
        });
    }

    /// Runs every hook; answers how many were refused.
    pub fn reload(&self) -> usize {
        let mut refused = 0;
        for (part, hook) in &self.hooks {
            match hook() {
                Ok(summary) => tracing::info!(part, %summary, "reloaded"),
                Err(e) => {
                    refused += 1;
                    tracing::error!(part, error = %format!("{e:#}"), "reload refused; the previous settings stay in force");
                }
            }
        }
        refused
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn a_failing_part_does_not_hold_back_the_others() {
        let ran = Arc::new(AtomicUsize::new(0));
        let mut r = Reloader::default();
        r.add("bad", || anyhow::bail!("line 2: not JSON"));
        let counted = ran.clone();
        r.add("good", move || {
            counted.fetch_add(1, Ordering::Relaxed);
            Ok("3 kiosks".to_owned())
        });
        assert_eq!(r.reload(), 1);
        assert_eq!(ran.load(Ordering::Relaxed), 1);
    }
}
