//! One real `kofu serve` process per handle, on fresh loopback ports, with its output in
//! a file so tests can scan the logs (privacy) and failures can show what the node said.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{CertFiles, Issued, free_port, kofu_bin};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const TERM_TIMEOUT: Duration = Duration::from_secs(30);
/// Ports come from `free_port`, so another process may grab one before the node binds.
const START_ATTEMPTS: u32 = 3;

/// How to start a node; `args` and `env` come after the harness's own settings.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub seed: u64,
    pub residents: u32,
    pub kiosks: u32,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Another `kofu` binary to run (a test-only build); default `kofu_bin()`.
    pub binary: Option<PathBuf>,
    /// HTTPS on the kiosk and admin listeners with this CA's certificate.
    pub https: Option<Arc<CertFiles>>,
    /// Mutual TLS between cluster nodes with this cluster CA.
    pub cluster_certs: Option<Arc<CertFiles>>,
    /// The client certificate the harness presents to the kiosk listener (one that
    /// requires them): its own checks only, it names no kiosk.
    pub client_cert: Option<Arc<Issued>>,
    /// Records from this registry file (`--registry-file`, embedded); a deployment with
    /// Redis imports it (`kofu registry import`) instead of loading the fixture
    /// population. Either way the node gets no `--fixture-*` arguments; the harness
    /// still derives card keys from `seed` and `residents`, so the file should be
    /// `kofu fixtures --registry` of them.
    pub registry_file: Option<PathBuf>,
    /// Start without `--fixture-*` arguments (a cluster node on an imported registry).
    pub without_fixture_args: bool,
}

impl Default for NodeOptions {
    fn default() -> NodeOptions {
        NodeOptions {
            seed: 7,
            residents: 200,
            kiosks: 20,
            args: Vec::new(),
            env: Vec::new(),
            binary: None,
            https: None,
            cluster_certs: None,
            client_cert: None,
            registry_file: None,
            without_fixture_args: false,
        }
    }
}

/// A running `kofu serve`; killed when dropped.
#[derive(Debug)]
pub struct KofuNode {
    /// Kiosk API base URL, `http://127.0.0.1:P` (`https://` with HTTPS).
    pub api: String,
    /// Admin listener base URL.
    pub admin: String,
    /// The certificates it was started with (kept alive as long as the node).
    pub https: Option<Arc<CertFiles>>,
    pub cluster_certs: Option<Arc<CertFiles>>,
    client_cert: Option<Arc<Issued>>,
    child: Child,
    log_path: PathBuf,
    exit: Option<ExitStatus>,
    /// (seed, residents, kiosks) of the population served, for the privacy scan.
    population: (u64, u32, u32),
    _dir: tempfile::TempDir,
}

impl KofuNode {
    /// Starts a node and waits until `GET /readyz` answers 200.
    pub fn start(opts: NodeOptions) -> KofuNode {
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            match KofuNode::try_start(&opts) {
                Ok(node) => return node,
                Err(log) => last_log = log,
            }
        }
        panic!(
            "kofu serve exited before it was ready ({START_ATTEMPTS} attempts); log tail:\n{}",
            tail(&last_log, 60)
        );
    }

    /// `Err(log)` when the process exited early (e.g. a port was taken meanwhile).
    fn try_start(opts: &NodeOptions) -> Result<KofuNode, String> {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
        let log_path = dir.path().join("kofu.log");
        let log = File::create(&log_path).unwrap_or_else(|e| panic!("no log file: {e}"));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone log handle: {e}"));
        let (api_port, admin_port) = (free_port(), free_port());
        let api_addr = format!("127.0.0.1:{api_port}");
        let admin_addr = format!("127.0.0.1:{admin_port}");
        let mut cmd = Command::new(opts.binary.clone().unwrap_or_else(kofu_bin));
        cmd.arg("serve")
            .args(["--listen", &api_addr, "--admin-listen", &admin_addr]);
        if let Some(file) = &opts.registry_file {
            cmd.arg("--registry-file").arg(file);
        } else if !opts.without_fixture_args {
            cmd.args(["--fixture-seed", &opts.seed.to_string()])
                .args(["--fixture-residents", &opts.residents.to_string()])
                .args(["--fixture-kiosks", &opts.kiosks.to_string()]);
        }
        cmd.args(["--log-format", "json"])
            .args(opts.https.iter().flat_map(|c| c.https_args()))
            .args(opts.cluster_certs.iter().flat_map(|c| c.cluster_args()))
            .args(&opts.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // The harness decides the configuration; a developer's shell must not leak in.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("KOFU_") {
                cmd.env_remove(key);
            }
        }
        // Tests drive many sessions per kiosk as fast as they can: no per-kiosk limits
        // unless a test sets them (its `env` or `args` come after and win).
        cmd.env("KOFU_KIOSK_RATE", "0")
            .env("KOFU_KIOSK_MAX_SESSIONS", "0");
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", kofu_bin().display()));
        let scheme = if opts.https.is_some() {
            "https"
        } else {
            "http"
        };
        let mut node = KofuNode {
            api: format!("{scheme}://{api_addr}"),
            admin: format!("{scheme}://{admin_addr}"),
            https: opts.https.clone(),
            cluster_certs: opts.cluster_certs.clone(),
            client_cert: opts.client_cert.clone(),
            child,
            log_path,
            exit: None,
            population: (opts.seed, opts.residents, opts.kiosks),
            _dir: dir,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = node.child.try_wait() {
                node.exit = Some(status);
                return Err(format!("exit status {status}\n{}", node.logs()));
            }
            if node.admin_get("/readyz", None).map(|(status, _)| status) == Some(200) {
                return Ok(node);
            }
            if Instant::now() > deadline {
                panic!(
                    "kofu serve not ready within {READY_TIMEOUT:?}; log tail:\n{}",
                    tail(&node.logs(), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// A blocking GET on the admin listener (over HTTPS when it has it).
    pub fn admin_get(&self, path: &str, token: Option<&str>) -> Option<(u16, String)> {
        let https = self.https.as_deref();
        sync_get_url(&format!("{}{path}", self.admin), token, https, None)
    }

    /// A blocking GET on the kiosk listener (over HTTPS when it has it).
    pub fn api_get(&self, path: &str, token: Option<&str>) -> Option<(u16, String)> {
        let (https, client) = (self.https.as_deref(), self.client_cert.as_deref());
        sync_get_url(&format!("{}{path}", self.api), token, https, client)
    }

    /// Everything the node wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: rustix::process::Signal) {
        crate::signal(self.exit.is_none().then(|| self.child.id()), sig);
    }

    /// SIGSTOP: the process freezes (its leases lapse, its sockets stay open).
    pub fn pause(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    /// SIGHUP: the node reads its configuration files again.
    pub fn hangup(&self) {
        self.signal(rustix::process::Signal::HUP);
    }

    /// `kill -9`: no handoff, no cleanup. The log is still scanned on drop.
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.exit = Some(status);
            }
        }
    }

    /// Graceful stop: SIGTERM, then waits up to 30 s (panics if the node hangs).
    pub fn terminate(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        if let Some(pid) = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + TERM_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exit = Some(status);
                    return status;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "kofu did not exit within {TERM_TIMEOUT:?} of SIGTERM; log tail:\n{}",
                        tail(&self.logs(), 40)
                    );
                }
            }
        }
    }
}

impl Drop for KofuNode {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- kofu node {} log tail ---\n{}",
                self.api,
                tail(&self.logs(), 40)
            );
            return;
        }
        // Every node of every test doubles as a privacy check (I6): whatever the test
        // did, its log must hold no card id and no name of the population it served.
        let leaks = personal_data_in(&self.logs(), self.population);
        assert!(
            leaks == 0,
            "the node's log holds {leaks} card id(s) or name(s) of its population (I6)"
        );
    }
}

/// How many card ids and full names of the population appear in `log`.
fn personal_data_in(log: &str, (seed, residents, kiosks): (u64, u32, u32)) -> usize {
    let fx = crate::fixtures(seed, residents, kiosks);
    // One pass over the log for all ids and one for all names: a loop of `contains` per
    // card cost cards × log, a minute per node after a few thousand sessions.
    let mut leaked = vec![false; fx.cards.len()];
    let ids = aho_corasick::AhoCorasick::new(fx.cards.iter().map(|c| c.card_id()))
        .unwrap_or_else(|e| panic!("an automaton of the population's card ids: {e}"));
    for m in ids.find_overlapping_iter(log) {
        leaked[m.pattern().as_usize()] = true;
    }
    let names: Vec<&str> = fx.cards.iter().map(|c| c.full_name.as_str()).collect();
    let text = crate::normalize_spaces(log);
    for (leak, named) in leaked.iter_mut().zip(kofu_kiosk::names_in(&text, &names)) {
        *leak |= named;
    }
    leaked.iter().filter(|&&l| l).count()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A blocking HTTP/1.0 GET of a whole `http://` or `https://` URL on loopback (with a
/// bearer token when given) that works inside or outside any async runtime: status and
/// body. HTTPS trusts the CA of `certs` only, and presents `client` when given.
pub fn sync_get_url(
    url: &str,
    token: Option<&str>,
    certs: Option<&CertFiles>,
    client: Option<&Issued>,
) -> Option<(u16, String)> {
    let (tls, rest) = match url.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, url.strip_prefix("http://")?),
    };
    let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n");
    let mut all = Vec::new();
    if tls {
        let name = rustls::pki_types::ServerName::IpAddress(sock.ip().into());
        let conn = rustls::ClientConnection::new(certs?.client_config(client), name).ok()?;
        let mut tls = rustls::StreamOwned::new(conn, stream);
        tls.write_all(request.as_bytes()).ok()?;
        read_all(&mut tls, &mut all);
    } else {
        stream.write_all(request.as_bytes()).ok()?;
        read_all(&mut stream, &mut all);
    }
    let text = String::from_utf8(all).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// The certificate (DER) a TLS listener at `url` (`https://127.0.0.1:P`) presents in a
/// new handshake, verified against the CA of `certs`; `None` if the handshake fails.
pub fn presented_certificate(url: &str, certs: &CertFiles) -> Option<Vec<u8>> {
    let addr = url.strip_prefix("https://")?.trim_end_matches('/');
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let name = rustls::pki_types::ServerName::IpAddress(sock.ip().into());
    let mut conn = rustls::ClientConnection::new(certs.client_config(None), name).ok()?;
    while conn.is_handshaking() {
        conn.complete_io(&mut stream).ok()?;
    }
    Some(conn.peer_certificates()?.first()?.to_vec())
}

/// Reads until the end or an error (a TLS peer may close without `close_notify`).
fn read_all(from: &mut impl Read, into: &mut Vec<u8>) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        into.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::personal_data_in;

    #[test]
    fn the_privacy_check_finds_an_id_and_a_name_and_nothing_else() {
        let population = (7, 40, 2);
        let fx = crate::fixtures(population.0, population.1, population.2);
        let clean = "INFO session created card=3f2a9c1d route=/v1/sessions status=201\n";
        assert_eq!(personal_data_in(clean, population), 0);
        let (a, b) = (&fx.cards[3], &fx.cards[11]);
        let log = format!(
            "{clean}WARN bad card {}\nINFO holder {} printed\n",
            a.card_id(),
            b.full_name
        );
        let want = if a.full_name == b.full_name { 1 } else { 2 };
        assert_eq!(personal_data_in(&log, population), want);
    }
}
