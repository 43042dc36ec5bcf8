//! A Redis Sentinel setup on loopback for failover tests: one primary, one replica and
//! three Sentinels (all `redis-server` from Debian; Sentinels run in `--sentinel` mode),
//! with short timeouts so a failover completes within seconds; optionally with one ACL
//! user (and no default user), or a `requirepass`, on every server, Sentinels included.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis::{REQUIREPASS_USER, RedisOptions, url_user};
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
    acl: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl SentinelSetup {
    /// Starts everything and waits until every Sentinel knows the primary and the
    /// replica is in sync.
    pub fn start() -> SentinelSetup {
        SentinelSetup::start_with_acl(None)
    }

    /// [`SentinelSetup::start`] where the primary, the replica and the Sentinels ask
    /// for `password` (`requirepass`, no ACL user): the URL is `redis+sentinel://:password@...`.
    pub fn start_with_requirepass(password: &str) -> SentinelSetup {
        SentinelSetup::start_with_acl(Some((REQUIREPASS_USER.to_owned(), password.to_owned())))
    }

    /// [`SentinelSetup::start`] where the primary, the replica and the Sentinels only
    /// let `(user, password)` in (replication and the Sentinels' own links included).
    pub fn start_with_acl(acl: Option<(String, String)>) -> SentinelSetup {
        let primary = RedisServer::start_with(RedisOptions {
            acl: acl.clone(),
            ..RedisOptions::default()
        });
        let replica = RedisServer::start_with(RedisOptions {
            acl: acl.clone(),
            replica_of: Some(primary.port()),
            ..RedisOptions::default()
        });
        let auth_lines = acl.as_ref().map_or_else(String::new, |(user, password)| {
            if user == REQUIREPASS_USER {
                // Sentinels also use their own requirepass with each other.
                return format!(
                    "requirepass {password}\nsentinel auth-pass {MASTER_NAME} {password}\n"
                );
            }
            format!(
                "user default off\nuser {user} on >{password} allcommands\n\
                 sentinel auth-user {MASTER_NAME} {user}\n\
                 sentinel auth-pass {MASTER_NAME} {password}\n\
                 sentinel sentinel-user {user}\nsentinel sentinel-pass {password}\n"
            )
        });
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
                 sentinel parallel-syncs {MASTER_NAME} 1\n{auth_lines}",
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
            acl,
            _dir: dir,
        };
        let want = format!("127.0.0.1:{}", setup.primary.port());
        setup.wait("sentinels see the primary and its replica", || {
            setup.sentinel_ports().iter().all(|&p| {
                master_of(p, setup.acl()).as_deref() == Some(want.as_str())
                    && replicas_known(p, setup.acl()) >= 1
            }) && info(setup.replica.port(), "master_link_status:up", setup.acl())
        });
        setup
    }

    fn acl(&self) -> Option<&(String, String)> {
        self.acl.as_ref()
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
        let auth = self
            .acl
            .as_ref()
            .map_or_else(String::new, |(user, password)| {
                format!("{}:{password}@", url_user(user))
            });
        format!("redis+sentinel://{auth}{}/{MASTER_NAME}", hosts.join(","))
    }

    /// The primary's `host:port` according to the first Sentinel that answers.
    fn current_primary(&self) -> Option<String> {
        self.sentinel_ports()
            .into_iter()
            .find_map(|p| master_of(p, self.acl()))
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
            info(new_primary, "connected_slaves:1", self.acl())
                && info(self.primary.port(), "master_link_status:up", self.acl())
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

/// One inline command (after `AUTH` with ACL credentials), the raw reply text.
fn command(port: u16, cmd: &str, acl: Option<&(String, String)>) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .ok()?;
    if let Some((user, password)) = acl {
        stream
            .write_all(format!("AUTH {user} {password}\r\n").as_bytes())
            .ok()?;
        let mut ok = [0u8; 5];
        stream.read_exact(&mut ok).ok()?;
        if &ok != b"+OK\r\n" {
            return None;
        }
    }
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

fn master_of(sentinel: u16, acl: Option<&(String, String)>) -> Option<String> {
    let reply = command(
        sentinel,
        &format!("SENTINEL get-master-addr-by-name {MASTER_NAME}"),
        acl,
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

fn replicas_known(sentinel: u16, acl: Option<&(String, String)>) -> usize {
    command(sentinel, &format!("SENTINEL replicas {MASTER_NAME}"), acl)
        .map(|r| r.matches("flags").count())
        .unwrap_or(0)
}

fn info(port: u16, needle: &str, acl: Option<&(String, String)>) -> bool {
    command(port, "INFO replication", acl).is_some_and(|r| r.contains(needle))
}
