//! The simultaneous creates: prepared raw connections completed by two blaster tasks
//! while the node is paused, so that 2,000 creates arrive within a few milliseconds,
//! which the kiosk client alone cannot do.

use std::sync::Arc;
use std::time::Instant;

use kofu_testkit::suite::head_status;
use kofu_testkit::{Kiosk, Resp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::FETCH_BUDGET;
use crate::report::Report;

/// Holds the node stopped (SIGSTOP) while the creates' last bytes are written, so that
/// when it resumes it finds all 2,000 requests complete at the same instant, however
/// slowly two busy cores let the kiosks write. Resumes it when dropped, whatever happens.
pub(crate) struct Paused(String);

impl Paused {
    pub(crate) fn new(pid: u32) -> Paused {
        let paused = Paused(pid.to_string());
        assert!(paused.signal("-STOP"), "cannot pause the node (kill -STOP)");
        paused
    }

    fn signal(&self, sig: &str) -> bool {
        std::process::Command::new("kill")
            .args([sig, &self.0])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        // No assert here: a panic while unwinding would abort the test process. A node
        // left stopped fails every later request, which the test reports anyway.
        if !self.signal("-CONT") {
            eprintln!("could not resume the node (kill -CONT {})", self.0);
        }
    }
}

/// Connects and sends all of `request` but its last byte, which must be the closing
/// `}` of its JSON body (the blasters send exactly that byte).
pub(crate) async fn prepare(
    host: &str,
    request: &[u8],
) -> Result<(OwnedReadHalf, OwnedWriteHalf), String> {
    if request.last() != Some(&b'}') {
        return Err("a create request must end with its body's closing brace".to_owned());
    }
    let stream = TcpStream::connect(host)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let (reader, mut writer) = stream.into_split();
    writer
        .write_all(&request[..request.len() - 1])
        .await
        .map_err(|e| format!("sending the create's head: {e}"))?;
    Ok((reader, writer))
}

/// Completes every prepared create at once: two tasks, each writing the last byte of
/// half of the requests behind a common barrier. Returns each write's instant.
pub(crate) async fn blast(
    writers: Vec<OwnedWriteHalf>,
    report: &mut Report,
) -> (Vec<Instant>, Vec<OwnedWriteHalf>) {
    const BLASTERS: usize = 2;
    let barrier = Arc::new(Barrier::new(BLASTERS));
    let mut groups: Vec<Vec<OwnedWriteHalf>> = (0..BLASTERS).map(|_| Vec::new()).collect();
    for (i, w) in writers.into_iter().enumerate() {
        groups[i % BLASTERS].push(w);
    }
    let mut set = JoinSet::new();
    for mut group in groups {
        let barrier = barrier.clone();
        set.spawn(async move {
            let mut sent = Vec::with_capacity(group.len());
            let mut errors = Vec::new();
            barrier.wait().await;
            for w in &mut group {
                let at = Instant::now();
                // The JSON body ends with `}`; that byte completes the request.
                match w.write_all(b"}").await {
                    Ok(()) => sent.push(at),
                    Err(e) => errors.push(format!("sending the create's last byte: {e}")),
                }
            }
            (sent, errors, group)
        });
    }
    let mut sent = Vec::new();
    let mut writers = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((s, errors, group)) => {
                sent.extend(s);
                report.errors.extend(errors);
                writers.extend(group);
            }
            Err(e) => report.errors.push(format!("blaster died: {e}")),
        }
    }
    (sent, writers)
}

/// `POST /v1/sessions` to `host` as bytes, on a connection the server closes after answering.
pub(crate) fn create_request(host: &str, kiosk: &Kiosk, card_id: &str) -> Vec<u8> {
    let body = serde_json::json!({ "card_id": card_id }).to_string();
    format!(
        "POST /v1/sessions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        kiosk.token(),
        body.len()
    )
    .into_bytes()
}

/// An answer that never came, as the testkit reports one (`status == 0`).
fn no_answer(why: String) -> Resp {
    Resp {
        status: 0,
        headers: reqwest::header::HeaderMap::new(),
        body: bytes::Bytes::from(why),
    }
}

/// Reads a whole HTTP/1.1 answer up to the server's close.
pub(crate) async fn read_answer(stream: &mut OwnedReadHalf) -> Resp {
    let mut raw = Vec::with_capacity(512);
    match tokio::time::timeout(FETCH_BUDGET, stream.read_to_end(&mut raw)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return no_answer(format!("reading the create answer: {e}")),
        Err(_) => return no_answer("no create answer in time".to_owned()),
    }
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return no_answer("the create answer has no header end".to_owned());
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head_status(&head);
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers: reqwest::header::HeaderMap::new(),
        body: bytes::Bytes::from(body),
    }
}

/// Decodes a chunked body (the server may chunk any answer).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        raw = &raw[eol + 2..];
        if size == 0 || raw.len() < size {
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or_default();
    }
    out
}
