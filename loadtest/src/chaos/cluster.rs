//! Everything a chaos run starts, and only that: a scratch dir, the run's network (when
//! namespaces work here), the relays, the Sentinel-managed Redis with the registry
//! loaded, and three `kofu serve` nodes. Every process is started through one
//! [`Launcher`], which writes its pid and start time to the run's pid file (so a crashed
//! run's processes are found and killed by the next one, never a stranger's) and, where
//! `setpriv` exists, has the kernel kill it if kofu-load dies.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kofu_kiosk::{Client, Method};

use super::net::{self, Net};
use super::proxy::{Delays, Relay, Relays};
use super::redis::Redis;
use crate::procs::{Proc, spawn};

const SECRET: &str = "kofu-chaos-cluster-secret-0123456789";
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// A node's ports inside its own namespace (its address is its own, so they are fixed).
const NS_PORTS: (u16, u16, u16) = (8080, 9090, 7070);

/// The node settings a run uses.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub nodes: usize,
    pub shards: u32,
    pub lease_ttl: Duration,
    pub idle_timeout: Duration,
    pub render_deadline: Duration,
    pub seed: u64,
    pub residents: u32,
    pub kiosks: u32,
}

/// Starts the run's processes: in its dir, recorded in its pid file.
pub struct Launcher {
    pub run: u32,
    pub dir: PathBuf,
    setpriv: bool,
}

/// Start time of process `pid` (clock ticks since boot): with the pid, it names one
/// process for good.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields count from after its closing paren.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Launcher {
    pub fn new(run: u32, dir: PathBuf) -> Launcher {
        let setpriv = Command::new("setpriv")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        Launcher { run, dir, setpriv }
    }

    /// `program` in the root namespace, dying with kofu-load if possible.
    pub fn command(&self, program: &Path) -> Command {
        self.command_in(None, program)
    }

    /// `program` behind `prefix` (`ip netns exec <ns>`), dying with kofu-load if possible.
    fn command_in(&self, prefix: Option<&[String]>, program: &Path) -> Command {
        let mut argv: Vec<String> = Vec::new();
        if self.setpriv {
            argv.extend(["setpriv", "--pdeathsig", "KILL", "--"].map(String::from));
        }
        argv.extend(prefix.unwrap_or_default().iter().cloned());
        let mut cmd = match argv.first() {
            Some(first) => {
                let mut c = Command::new(first);
                c.args(&argv[1..]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.current_dir(&self.dir);
        cmd
    }

    /// Starts `cmd` (log in `<name>.log`) and records it in the pid file.
    pub fn spawn(&self, name: &str, cmd: Command) -> anyhow::Result<Proc> {
        use std::io::Write as _;
        let proc = spawn(name, cmd, &self.dir.join(format!("{name}.log")))?;
        let pid = proc.pid();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("pids"))?;
        writeln!(f, "{pid} {}", start_time(pid).unwrap_or(0))?;
        Ok(proc)
    }

    /// A port nothing listens on at `ip`.
    pub fn free_port(&self, ip: Ipv4Addr) -> anyhow::Result<u16> {
        Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
    }
}

/// Kills the processes run `dir`'s pid file lists that are still those processes.
pub fn kill_recorded(dir: &Path) {
    let Ok(pids) = std::fs::read_to_string(dir.join("pids")) else {
        return;
    };
    for line in pids.lines() {
        let mut parts = line.split_whitespace();
        let (Some(pid), Some(started)) = (
            parts.next().and_then(|p| p.parse::<u32>().ok()),
            parts.next().and_then(|s| s.parse::<u64>().ok()),
        ) else {
            continue;
        };
        if started != 0 && start_time(pid) == Some(started) {
            if let Some(p) = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
    }
}

/// Removes what crashed earlier runs left behind: processes, network, scratch dirs.
pub fn sweep_leftovers() {
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(run) = name
                .strip_prefix("kofu-chaos-")
                .and_then(|r| r.parse::<u32>().ok())
            else {
                continue;
            };
            if !net::run_alive(run) {
                kill_recorded(&e.path());
                net::sweep(run);
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    if net::unavailable().is_none() {
        for run in net::leftover_runs() {
            net::sweep(run);
        }
    }
}

/// One `kofu serve` node.
pub struct Node {
    pub ip: Ipv4Addr,
    pub api: u16,
    pub admin: u16,
    pub internal: u16,
    pub proc: Option<Proc>,
    /// The clock offset it runs under (libfaketime), in seconds.
    pub skew: Option<i64>,
}

impl Node {
    pub fn api_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.api)
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.admin)
    }
}

/// The whole deployment of a run.
pub struct Cluster {
    pub launcher: Launcher,
    kofu: PathBuf,
    pub settings: Settings,
    /// `None`: everything on loopback (no namespaces here).
    pub net: Option<Net>,
    pub delays: Arc<Delays>,
    _relays: Relays,
    pub redis: Redis,
    pub nodes: Vec<Node>,
    http: Client,
    /// The nodes link over mutual TLS, as deployed (one throwaway CA for the run).
    certs: crate::procs::Certs,
    /// The nodes' log filter: `KOFU_CHAOS_NODE_LOG` (an `EnvFilter` directive, e.g.
    /// `warn,kofu_actors=debug` to follow sessions through a fault), else `warn`.
    log_level: String,
}

impl Cluster {
    /// Starts everything and waits until every node is ready.
    pub async fn start(
        launcher: Launcher,
        kofu: PathBuf,
        settings: Settings,
        net: Option<Net>,
    ) -> anyhow::Result<Cluster> {
        let host = net.as_ref().map_or(Ipv4Addr::LOCALHOST, Net::redis_ip);
        let redis = Redis::start(&launcher, host).await?;
        let primary = format!("redis://{host}:{}/", redis.data[0].port);
        crate::procs::registry_load(
            &kofu,
            &primary,
            settings.seed,
            settings.residents,
            settings.shards,
        )?;
        let delays = Delays::new(settings.nodes);
        let mut relays = Relays::new();
        let mut nodes = Vec::new();
        for i in 0..settings.nodes {
            let (ip, (api, admin, internal)) = match &net {
                Some(n) => (n.node_ip(i), NS_PORTS),
                None => {
                    let l = &launcher;
                    let lo = Ipv4Addr::LOCALHOST;
                    (lo, (l.free_port(lo)?, l.free_port(lo)?, l.free_port(lo)?))
                }
            };
            nodes.push(Node {
                ip,
                api,
                admin,
                internal,
                proc: None,
                skew: None,
            });
        }
        if let Some(n) = &net {
            relay_everything(n, &redis, &nodes, &delays, &mut relays).await?;
        }
        let http = Client::builder().timeout(Duration::from_secs(5)).build()?;
        let certs = crate::procs::Certs::generate(&launcher.dir)?;
        let log_level = std::env::var("KOFU_CHAOS_NODE_LOG").unwrap_or_else(|_| "warn".to_owned());
        let mut c = Cluster {
            launcher,
            kofu,
            settings,
            net,
            delays,
            _relays: relays,
            redis,
            nodes,
            http,
            certs,
            log_level,
        };
        for i in 0..settings.nodes {
            c.spawn_node(i, None)?;
        }
        for i in 0..settings.nodes {
            c.node_ready(i).await?;
        }
        Ok(c)
    }

    /// Starts node `i` (again), under a clock offset of `skew` seconds if given.
    pub fn spawn_node(&mut self, i: usize, skew: Option<i64>) -> anyhow::Result<()> {
        let s = self.settings;
        let n = &self.nodes[i];
        let prefix = self.net.as_ref().map(|net| net.exec_prefix(i));
        let mut cmd = self.launcher.command_in(prefix.as_deref(), &self.kofu);
        let ms = |d: Duration| d.as_millis().to_string();
        cmd.arg("serve")
            .args(["--listen", &format!("{}:{}", n.ip, n.api)])
            .args(["--admin-listen", &format!("{}:{}", n.ip, n.admin)])
            .args(["--internal-listen", &format!("{}:{}", n.ip, n.internal)])
            .args(["--redis-url", &self.redis.sentinel_url()])
            .args(["--node-id", &format!("chaos-{}-n{i}", self.launcher.run)])
            .args(["--shard-count", &s.shards.to_string()])
            .args(["--lease-ttl-ms", &ms(s.lease_ttl)])
            .args(["--idle-timeout-ms", &ms(s.idle_timeout)])
            .args(["--render-deadline-ms", &ms(s.render_deadline)])
            .args(["--fixture-seed", &s.seed.to_string()])
            .args(["--fixture-residents", &s.residents.to_string()])
            .args(["--fixture-kiosks", &s.kiosks.to_string()])
            .args(["--drain-timeout-ms", "3000", "--log-level", &self.log_level])
            .arg("--cluster-ca-file")
            .arg(&self.certs.ca)
            .arg("--cluster-cert-file")
            .arg(&self.certs.cert)
            .arg("--cluster-key-file")
            .arg(&self.certs.key)
            .env("KOFU_CLUSTER_SECRET", SECRET);
        if let Some(secs) = skew {
            cmd.env("LD_PRELOAD", FAKETIME_LIB)
                .env("FAKETIME", format!("{secs:+}s"))
                // Leases and timers run on the monotonic clock: only the wall clock is
                // skewed, as on a host whose NTP is off.
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let proc = self.launcher.spawn(&format!("node-{i}"), cmd)?;
        let n = &mut self.nodes[i];
        n.proc = Some(proc);
        n.skew = skew;
        Ok(())
    }

    /// Waits until node `i` answers `/readyz` with `200` (60 s at most); fails at once
    /// if it exited.
    pub async fn node_ready(&mut self, i: usize) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.nodes[i].admin_url());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if self
                .http
                .request(Method::GET, &url, None, None)
                .await
                .status
                == 200
            {
                return Ok(());
            }
            let exited = self.nodes[i].proc.as_mut().is_none_or(|p| !p.running());
            if exited {
                // The scratch dir goes at the end: the log's last lines say why.
                let log = std::fs::read_to_string(self.launcher.dir.join(format!("node-{i}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                anyhow::bail!(
                    "node {i} exited (--keep-logs DIR keeps its log); its last lines:\n{}",
                    tail.join("\n")
                );
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "node {i} not ready within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops node `i` as an operator would (`SIGTERM`: it hands its shards over), with
    /// `SIGKILL` after 15 s.
    pub async fn stop_node(&mut self, i: usize) {
        let Some(mut proc) = self.nodes[i].proc.take() else {
            return;
        };
        proc.signal(rustix::process::Signal::TERM);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while proc.running() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        proc.kill();
    }

    /// Whether libfaketime is installed (Debian's `faketime` package).
    pub fn faketime_installed() -> bool {
        Path::new(FAKETIME_LIB).exists()
    }

    pub fn api_urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::api_url).collect()
    }
}

/// Redirects, inside every node's namespace, each connection to Redis, a Sentinel or a
/// peer through a relay of the run (so that a node's links can be slowed).
async fn relay_everything(
    net: &Net,
    redis: &Redis,
    nodes: &[Node],
    delays: &Arc<Delays>,
    relays: &mut Relays,
) -> anyhow::Result<()> {
    let subnet_of = {
        let probe: Vec<Ipv4Addr> = (0..nodes.len()).map(|i| net.node_ip(i)).collect();
        Arc::new(move |ip: Ipv4Addr| probe.iter().position(|p| *p == ip))
    };
    let mut rules = Vec::new();
    let ports = redis
        .data
        .iter()
        .chain(&redis.sentinels)
        .map(|s| s.port)
        .collect::<Vec<_>>();
    for port in ports {
        let upstream = SocketAddrV4::new(redis.host, port);
        let relay = Relay {
            listen: redis.host,
            upstream,
            source: None,
            server_node: None,
        };
        let via = relays
            .start(relay, delays.clone(), subnet_of.clone())
            .await?;
        rules.push(((redis.host, port), (redis.host, via)));
    }
    let mut peers = Vec::new();
    for (j, n) in nodes.iter().enumerate() {
        let relay = Relay {
            listen: net.peer_ip(),
            upstream: SocketAddrV4::new(n.ip, n.internal),
            source: Some(net.peer_ip()),
            server_node: Some(j),
        };
        let via = relays
            .start(relay, delays.clone(), subnet_of.clone())
            .await?;
        peers.push(((n.ip, n.internal), (net.peer_ip(), via)));
    }
    for i in 0..nodes.len() {
        let mut mine = rules.clone();
        mine.extend(
            peers
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, r)| *r),
        );
        net.redirect(i, &mine)
            .with_context(|| format!("relays for node {i}"))?;
    }
    Ok(())
}
