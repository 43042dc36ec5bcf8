//! Document text as a person's tool sees it: the real `pdftotext`, so that a document
//! passes the strict check only if what would be printed names its holder and no one else.

use std::process::Stdio;
use std::sync::OnceLock;

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

/// Text of a PDF as `pdftotext -layout - -` extracts it, without blocking an async
/// worker thread.
pub async fn pdf_text(pdf: &[u8]) -> std::io::Result<String> {
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
