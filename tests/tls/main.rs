//! Transport security over real processes (issue 11, acceptance): HTTPS on the kiosk and
//! admin listeners with plain HTTP refused, kiosk client certificates whose CN must be
//! the token's kiosk, certificates swapped on `SIGHUP`; between nodes, mutual TLS that
//! keeps nodes of another CA out and shows an on-path observer no personal data; Redis
//! with ACL credentials behind Sentinel, and over TLS. Test CAs come from rcgen.

mod cluster;
mod listener;

use std::io::{Read, Write};
use std::time::Duration;

use kofu_testkit::{Deployment, DeploymentOptions};

/// Sends a plain-HTTP request to `base` (`https://127.0.0.1:P`) and returns what came
/// back before the server closed (at most a few KiB).
fn plain_http_to(base: &str) -> Vec<u8> {
    let addr = base
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = write!(
        stream,
        "GET /v1/issuer-key HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || got.len() > 16 * 1024 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

fn start(opts: DeploymentOptions) -> Deployment {
    tokio::task::block_in_place(|| Deployment::start(opts))
}
