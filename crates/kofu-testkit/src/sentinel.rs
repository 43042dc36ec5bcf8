//! A Redis Sentinel setup on loopback for failover tests: one primary, one replica and
//! three Sentinels (all `redis-server` from Debian; Sentinels run in `--sentinel` mode),
//! with short timeouts so a failover completes within seconds.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{RedisServer, free_port};

/// The name the Sentinels monitor the primary under.
const MASTER_NAME: &str = "kofu";
/// How long any step of a setup may take: a full sync, a Sentinel's vote and a
/// promotion take a second or two on an idle machine, several times that on a busy
/// 2-core CI runner; waiting is on conditions, so a long budget costs nothing.
const STEP_BUDGET: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub struct SentinelSetup {
    pub primary: RedisServer,
    pub replica: RedisServer,
    sentinels: Vec<(u16, Child)>,
    _dir: tempfile::TempDir,
}

impl SentinelSetup {
    /// Starts everything and waits until every Sentinel knows the primary and the
    /// replica is in sync.
    pub fn start() -> SentinelSetup {
        let primary = RedisServer::start();
        let replica = RedisServer::start_replica_of(primary.port());
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            let mut f = File::create(&conf).unwrap_or_else(|e| panic!("sentinel conf: {e}"));
            write!(
                f,
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 4000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir = dir.path().display(),
                primary = primary.port(),
            )
            .unwrap_or_else(|e| panic!("sentinel conf: {e}"));
            let log = File::create(dir.path().join(format!("sentinel-{i}.log")))
                .unwrap_or_else(|e| panic!("sentinel log: {e}"));
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot spawn redis-server --sentinel: {e}"));
            sentinels.push((port, child));
        }
        let setup = SentinelSetup {
            primary,
            replica,
            sentinels,
            _dir: dir,
        };
        let want = format!("127.0.0.1:{}", setup.primary.port());
        setup.wait("sentinels see the primary and its replica", || {
            setup
                .sentinel_ports()
                .iter()
                .all(|&p| master_of(p).as_deref() == Some(want.as_str()) && replicas_known(p) >= 1)
                && info(setup.replica.port(), "master_link_status:up")
        });
        setup
    }

    fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|(p, _)| *p).collect()
    }

    /// `redis+sentinel://...` for kofu.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinel_ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// The primary's `host:port` according to the first Sentinel that answers.
    fn current_primary(&self) -> Option<String> {
        self.sentinel_ports().into_iter().find_map(master_of)
    }

    /// Kills the primary (`SIGKILL`) and waits until the Sentinels promote the replica.
    pub fn fail_over(&mut self) -> Duration {
        let started = Instant::now();
        self.primary.stop();
        let want = format!("127.0.0.1:{}", self.replica.port());
        self.wait("the sentinels promote the replica", || {
            self.current_primary().as_deref() == Some(want.as_str())
        });
        started.elapsed()
    }

    /// Restarts the failed primary (empty, as after a crash without persistence) as a
    /// replica of the new primary, as the Sentinels would reconfigure it (they notice a
    /// returning primary only at their next periodic `INFO`, up to 10 s later). Waits
    /// until it is in sync.
    pub fn rejoin_old_primary(&mut self) {
        let new_primary = self.replica.port();
        self.primary.start_again_replica_of(new_primary);
        self.wait("the old primary replicates the new one", || {
            info(new_primary, "connected_slaves:1")
                && info(self.primary.port(), "master_link_status:up")
        });
    }

    fn wait(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + STEP_BUDGET;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SentinelSetup {
    fn drop(&mut self) {
        for (_, child) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One inline command, the raw reply text.
fn command(port: u16, cmd: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .ok()?;
    stream.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    // Replies here are small; read until the server pauses.
    while let Ok(n) = stream.read(&mut buf[got..]) {
        if n == 0 {
            break;
        }
        got += n;
        if got == buf.len() {
            break;
        }
    }
    String::from_utf8(buf[..got].to_vec()).ok()
}

fn master_of(sentinel: u16) -> Option<String> {
    let reply = command(
        sentinel,
        &format!("SENTINEL get-master-addr-by-name {MASTER_NAME}"),
    )?;
    // *2 $9 127.0.0.1 $5 6379
    let parts: Vec<&str> = reply
        .split("\r\n")
        .filter(|l| !l.starts_with(['*', '$']))
        .collect();
    match parts.as_slice() {
        [host, port, ..] if !host.is_empty() => Some(format!("{host}:{port}")),
        _ => None,
    }
}

fn replicas_known(sentinel: u16) -> usize {
    command(sentinel, &format!("SENTINEL replicas {MASTER_NAME}"))
        .map(|r| r.matches("flags").count())
        .unwrap_or(0)
}

fn info(port: u16, needle: &str) -> bool {
    command(port, "INFO replication").is_some_and(|r| r.contains(needle))
}
