//! PDF text as a person's tool sees it: the real `pdftotext`, so a document passes only
//! if what would be printed names its holder and no one else.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};

use tokio::io::AsyncWriteExt;

/// One pdftotext per core-ish: thousands of documents must not fork thousands at once.
fn max_parallel() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
}

fn missing(e: &std::io::Error) -> ! {
    panic!("cannot run `pdftotext` (install poppler-utils: apt-get install poppler-utils): {e}")
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
pub fn pdf_text(pdf: &[u8]) -> String {
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
        .unwrap_or_else(|e| missing(&e));
    let mut stdin = child.stdin.take();
    // A thread feeds stdin so a large document cannot deadlock against a full stdout pipe.
    let text = std::thread::scope(|s| {
        s.spawn(move || {
            if let Some(stdin) = stdin.as_mut() {
                let _ = stdin.write_all(pdf);
            }
            drop(stdin);
        });
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("pdftotext failed: {e}"))
    });
    String::from_utf8_lossy(&text.stdout).into_owned()
}

/// The same as [`pdf_text`] without blocking an async worker thread.
pub(crate) async fn pdf_text_async(pdf: &[u8]) -> String {
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
        .unwrap_or_else(|e| missing(&e));
    let stdin = child.stdin.take();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(pdf).await;
            let _ = stdin.shutdown().await;
        }
    };
    let (_, out) = tokio::join!(feed, child.wait_with_output());
    let out = out.unwrap_or_else(|e| panic!("pdftotext failed: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `text` names `name` as a whole word, case-sensitively: no letter, digit or
/// ideograph right before or after it (so "Ai Ito" is not found inside "Mai Ito", nor
/// 佐藤 翔 inside 佐藤 翔太). `pdftotext -layout` may set spaces between CJK glyphs or drop
/// the one between a Japanese family and given name, so between two non-ASCII
/// characters any run of spaces (or none) matches; Latin names need their spaces.
pub fn contains_name(text: &str, name: &str) -> bool {
    // Called for every resident on every verified page: no allocation, and candidate
    // positions come from the fast `match_indices` search for the first character.
    let Some(first) = name.chars().find(|c| *c != ' ') else {
        return false;
    };
    let is_word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    text.match_indices(first).any(|(start, _)| {
        !is_word(text[..start].chars().next_back())
            && match_at(&text[start..], name)
                .is_some_and(|len| !is_word(text[start + len..].chars().next()))
    })
}

/// Matches `name` (from its first non-space) at the start of `text`; the bytes matched.
fn match_at(text: &str, name: &str) -> Option<usize> {
    let mut rest = text.char_indices().peekable();
    let mut prev: Option<char> = None;
    let mut pending_space = false;
    let mut end = 0;
    for w in name.chars().skip_while(|c| *c == ' ') {
        if w == ' ' {
            pending_space = true;
            continue;
        }
        let mut spaces = 0;
        while rest.next_if(|&(_, c)| c == ' ').is_some() {
            spaces += 1;
        }
        if let Some(p) = prev {
            let cjk = !p.is_ascii() && !w.is_ascii();
            let ok = cjk
                || if pending_space {
                    spaces > 0
                } else {
                    spaces == 0
                };
            if !ok {
                return None;
            }
        }
        let (at, c) = rest.next()?;
        if c != w {
            return None;
        }
        end = at + c.len_utf8();
        prev = Some(w);
        pending_space = false;
    }
    Some(end)
}

/// `pdftotext -layout` pads columns with runs of spaces; names are compared with single
/// spaces, so runs collapse (line breaks stay).
pub(crate) fn normalize_spaces(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last_space = false;
    for c in text.chars() {
        if c == ' ' || c == '\t' {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_names_whole_and_spaced_as_pdftotext_sets_them() {
        assert!(contains_name(
            "請求者 佐藤 太郎 地方公共団体コード",
            "佐藤 太郎"
        ));
        assert!(contains_name("氏名    佐 藤  太 郎\n", "佐藤 太郎"));
        assert!(contains_name("佐藤太郎", "佐藤 太郎"));
        assert!(!contains_name("佐藤 太郎丸", "佐藤 太郎"));
        assert!(!contains_name("伊佐藤 太郎", "佐藤 太郎"));
        assert!(!contains_name("佐藤 翔太 昭和", "佐藤 翔"));
        assert!(contains_name("佐藤 翔 昭和", "佐藤 翔"));
        assert!(!contains_name("佐藤\n太郎", "佐藤 太郎"));
        assert!(!contains_name("佐藤 次郎", "佐藤 太郎"));
        assert!(!contains_name("佐藤 太郎", " "));
    }

    #[test]
    fn whole_words_only() {
        assert!(contains_name("Name: Ai Ito\n", "Ai Ito"));
        assert!(!contains_name("Name: Mai Ito\n", "Ai Ito"));
        assert!(!contains_name("Ai Itoh", "Ai Ito"));
        assert!(contains_name("Mai Ito, Ai Ito", "Ai Ito"));
        assert!(!contains_name("ai ito", "Ai Ito"));
        assert!(contains_name("Ai Ito", "Ai Ito"));
        assert!(!contains_name("", "Ai Ito"));
        assert!(!contains_name("AiIto", "Ai Ito"));
        assert!(!contains_name("A i Ito", "Ai Ito"));
    }

    #[test]
    fn collapses_column_padding() {
        assert_eq!(normalize_spaces("Ai   Ito\n  x"), "Ai Ito\n x");
    }
}
