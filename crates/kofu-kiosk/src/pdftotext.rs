//! Document text as a person's tool sees it: the real `pdftotext`, so that a document
//! passes the strict check only if what would be printed names its holder and no one else.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};

use tokio::io::AsyncWriteExt as _;

/// A couple of `pdftotext` per core: thousands of documents must not fork thousands at once.
fn max_parallel() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
}

fn not_installed(e: std::io::Error) -> std::io::Error {
    std::io::Error::new(
        e.kind(),
        format!("cannot run `pdftotext` (install poppler-utils): {e}"),
    )
}

/// A counting gate for the blocking path (std has no semaphore).
struct Gate {
    free: Mutex<usize>,
    cv: Condvar,
}

impl Gate {
    fn enter(&self) -> GateGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.cv.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        GateGuard(self)
    }
}

struct GateGuard<'a>(&'a Gate);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.cv.notify_one();
    }
}

/// Text of a PDF as `pdftotext -layout - -` extracts it.
pub fn pdf_text(pdf: &[u8]) -> std::io::Result<String> {
    static GATE: OnceLock<Gate> = OnceLock::new();
    let _slot = GATE
        .get_or_init(|| Gate {
            free: Mutex::new(max_parallel()),
            cv: Condvar::new(),
        })
        .enter();
    let mut child = Command::new("pdftotext")
        .args(["-layout", "-", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(not_installed)?;
    let mut stdin = child.stdin.take();
    // A thread feeds stdin so a large document cannot deadlock against a full stdout pipe.
    let out = std::thread::scope(|s| {
        s.spawn(move || {
            if let Some(stdin) = stdin.as_mut() {
                let _ = stdin.write_all(pdf);
            }
            drop(stdin);
        });
        child.wait_with_output()
    })?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// [`pdf_text`] without blocking an async worker thread.
pub async fn pdf_text_async(pdf: &[u8]) -> std::io::Result<String> {
    static SEM: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    let _permit = SEM
        .get_or_init(|| tokio::sync::Semaphore::new(max_parallel()))
        .acquire()
        .await;
    let mut child = tokio::process::Command::new("pdftotext")
        .args(["-layout", "-", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(not_installed)?;
    let stdin = child.stdin.take();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(pdf).await;
            let _ = stdin.shutdown().await;
        }
    };
    let (_, out) = tokio::join!(feed, child.wait_with_output());
    Ok(String::from_utf8_lossy(&out?.stdout).into_owned())
}
