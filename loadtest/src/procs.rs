//! The processes `bench` and `chaos` start: `kofu serve` nodes and `redis-server`s, killed
//! when dropped, their output in files of a scratch dir; the population (`kofu
//! fixtures`) and its registry (`kofu registry load`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident and peak resident memory, bytes (`VmRSS`, `VmHWM`).
    pub fn rss(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .map(|k| k * 1024)
        };
        Ok((
            kib("VmRSS:").context("no VmRSS")?,
            kib("VmHWM:").context("no VmHWM")?,
        ))
    }

    /// Sends `signal` to the process (ignored if it has exited).
    pub fn signal(&self, signal: rustix::process::Signal) {
        if let Some(pid) = i32::try_from(self.pid())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// Whether the process is still running (not exited, whatever its state).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `SIGKILL`, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` with stdout and stderr appended to `log`.
pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Proc> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    Ok(Proc { child })
}

/// How a bench node is started.
pub struct NodeSpec<'a> {
    pub kofu: &'a Path,
    pub dir: &'a Path,
    pub name: &'a str,
    pub seed: u64,
    pub residents: u32,
    pub kiosks: u32,
    /// `(redis url, secret, shard count)` for a cluster node.
    pub cluster: Option<(&'a str, &'a str, u32)>,
    /// TLS material: the kiosk listener speaks HTTPS when `https`, and a cluster node
    /// links to its peers over mutual TLS.
    pub tls: Option<&'a Certs>,
    pub https: bool,
}

/// A throwaway CA and one certificate it issued for loopback and the cluster's name
/// (`kofu-internal`), for server and client authentication alike; PEM files.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    pub fn generate(dir: &Path) -> anyhow::Result<Certs> {
        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        };
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate()?;
        let names = ["127.0.0.1", "localhost", "kofu-internal"].map(str::to_owned);
        let mut leaf = CertificateParams::new(names.to_vec())?;
        leaf.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = leaf.signed_by(&key, &issuer)?;
        let certs = Certs {
            ca: dir.join("ca.crt"),
            cert: dir.join("node.crt"),
            key: dir.join("node.key"),
        };
        std::fs::write(&certs.ca, ca_cert.pem())?;
        std::fs::write(&certs.cert, cert.pem())?;
        std::fs::write(&certs.key, key.serialize_pem())?;
        Ok(certs)
    }
}

/// A running node: its process and its kiosk API base.
pub struct Node {
    pub proc: Proc,
    pub api: String,
    pub admin: String,
}

pub fn start_node(spec: &NodeSpec<'_>) -> anyhow::Result<Node> {
    let (api, admin, internal) = (free_port()?, free_port()?, free_port()?);
    let mut cmd = Command::new(spec.kofu);
    cmd.arg("serve")
        .args(["--listen", &format!("127.0.0.1:{api}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--fixture-seed", &spec.seed.to_string()])
        .args(["--fixture-residents", &spec.residents.to_string()])
        .args(["--fixture-kiosks", &spec.kiosks.to_string()])
        .args(["--drain-timeout-ms", "1000", "--log-level", "warn"])
        // The closed loop drives its kiosks as fast as they go: no per-kiosk limits.
        .args(["--kiosk-rate", "0", "--kiosk-max-sessions", "0"]);
    if let Some((url, secret, shards)) = spec.cluster {
        cmd.args(["--redis-url", url])
            .args(["--node-id", spec.name])
            .args(["--internal-listen", &format!("127.0.0.1:{internal}")])
            .args(["--shard-count", &shards.to_string()])
            .env("KOFU_CLUSTER_SECRET", secret);
        match spec.tls {
            Some(certs) => {
                cmd.arg("--cluster-ca-file")
                    .arg(&certs.ca)
                    .arg("--cluster-cert-file")
                    .arg(&certs.cert)
                    .arg("--cluster-key-file")
                    .arg(&certs.key);
            }
            None => {
                cmd.arg("--insecure-plaintext");
            }
        }
    }
    let scheme = match spec.tls {
        Some(certs) if spec.https => {
            cmd.arg("--tls-cert-file")
                .arg(&certs.cert)
                .arg("--tls-key-file")
                .arg(&certs.key);
            "https"
        }
        _ => "http",
    };
    let proc = spawn(spec.name, cmd, &spec.dir.join(format!("{}.log", spec.name)))?;
    let node = Node {
        proc,
        api: format!("{scheme}://127.0.0.1:{api}"),
        admin: format!("http://127.0.0.1:{admin}"),
    };
    wait_ready(&format!("{}/readyz", node.admin))?;
    Ok(node)
}

/// The conventional design (`kofu-load conventional`, bench-only) serving `spec`'s
/// population, its state in the Redis at `redis_url`; one HTTP worker per core.
pub fn start_conventional(spec: &NodeSpec<'_>, redis_url: &str) -> anyhow::Result<Node> {
    let port = free_port()?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("conventional")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--redis-url", redis_url])
        .args(["--fixture-seed", &spec.seed.to_string()])
        .args(["--fixture-residents", &spec.residents.to_string()])
        .args(["--fixture-kiosks", &spec.kiosks.to_string()]);
    let proc = spawn(spec.name, cmd, &spec.dir.join(format!("{}.log", spec.name)))?;
    let api = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{api}/readyz"))?;
    Ok(Node {
        proc,
        admin: api.clone(),
        api,
    })
}

fn wait_ready(url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers_200(url) {
        anyhow::ensure!(Instant::now() < deadline, "{url} not ready within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A blocking HTTP/1.0 GET of `http://host:port/path`: whether it answered 200.
fn answers_200(url: &str) -> bool {
    get(url).is_some()
}

/// A blocking HTTP/1.0 GET of `http://host:port/path`: the body of a 200 answer.
fn get(url: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.lines().next()?.split_whitespace().nth(1)?;
    (status == "200").then(|| body.to_owned())
}

/// Waits until the nodes at `admins` own `shards` shards between them and that has held
/// for a second: the joins' handoffs are over, so a measurement that starts now does
/// not include them.
pub fn wait_shards_settled(admins: &[String], shards: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut settled_since: Option<Instant> = None;
    loop {
        let owned: Option<u64> = admins
            .iter()
            .map(|a| get(&format!("{a}/metrics")).and_then(|m| owned_in(&m)))
            .sum();
        match (owned == Some(shards), settled_since) {
            (true, Some(since)) if since.elapsed() >= Duration::from_secs(1) => return Ok(()),
            (true, None) => settled_since = Some(Instant::now()),
            (true, Some(_)) => {}
            (false, _) => settled_since = None,
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the nodes did not settle on {shards} owned shards within 60 s (last: {owned:?})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `kofu_shards_owned` in a Prometheus text exposition.
fn owned_in(metrics: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("kofu_shards_owned "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

pub fn start_redis(dir: &Path) -> anyhow::Result<(Proc, String)> {
    let port = free_port()?;
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
    ])
    .args(["--appendonly", "no"])
    .arg("--dir")
    .arg(dir);
    let proc = spawn("redis", cmd, &dir.join("redis.log"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((proc, format!("redis://127.0.0.1:{port}/")))
}

pub fn registry_load(
    kofu: &Path,
    url: &str,
    seed: u64,
    residents: u32,
    shards: u32,
) -> anyhow::Result<()> {
    let out = Command::new(kofu)
        .args(["registry", "load", "--redis", url])
        .args(["--fixture-seed", &seed.to_string()])
        .args(["--fixture-residents", &residents.to_string()])
        .args(["--shard-count", &shards.to_string()])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = stderr.lines().rev().find(|l| !l.trim().is_empty());
    anyhow::ensure!(
        out.status.success(),
        "kofu registry load failed: {}",
        why.unwrap_or("no message")
    );
    Ok(())
}

/// The `kofu` binary: `--kofu`, or the one beside this executable.
pub fn kofu_path(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        // Absolute: the processes started with it may run in another directory.
        return std::fs::canonicalize(&p)
            .with_context(|| format!("no kofu binary at {}", p.display()));
    }
    let me = std::env::current_exe()?;
    let beside = me.with_file_name("kofu");
    anyhow::ensure!(
        beside.exists(),
        "no kofu beside {} (build it: cargo build --release -p kofu-node, or pass --kofu)",
        me.display()
    );
    Ok(beside)
}

/// The population `kofu fixtures --seed --residents --kiosks` prints, parsed.
pub fn fixtures(
    kofu: &Path,
    seed: u64,
    residents: u32,
    kiosks: u32,
) -> anyhow::Result<kofu_kiosk::Fixtures> {
    let out = Command::new(kofu)
        .arg("fixtures")
        .args(["--seed", &seed.to_string()])
        .args(["--residents", &residents.to_string()])
        .args(["--kiosks", &kiosks.to_string()])
        .output()
        .context("running kofu fixtures")?;
    anyhow::ensure!(out.status.success(), "kofu fixtures failed");
    Ok(kofu_kiosk::Fixtures::parse(&String::from_utf8(
        out.stdout,
    )?)?)
}
