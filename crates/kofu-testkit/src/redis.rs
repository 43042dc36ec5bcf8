//! A private `redis-server` per test, on a fresh loopback port with persistence off, so
//! no test ever talks to a server someone left running or sees another test's keys.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::resp::RedisConn;
use crate::{CertFiles, free_port};

/// A server starts in milliseconds; a busy machine may take seconds to schedule it.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Ports come from `free_port`, so another process may grab one before redis binds.
const START_ATTEMPTS: u32 = 3;

/// A running `redis-server`; killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Append-only file with fsync on every write: a killed server restarts with every
    /// acknowledged write, as a production Redis with `appendfsync always` would.
    durable: bool,
    /// Further `redis-server` arguments (a replica's `--replicaof`, say).
    extra: Vec<String>,
    /// An ACL user (and password) that must authenticate; the default user is off.
    acl: Option<(String, String)>,
    /// TLS on a port of its own (the plain port stays, for the harness' own checks).
    tls: Option<(u16, Arc<CertFiles>)>,
}

/// The `acl` user that stands for a `requirepass` server (Redis's own name for the user
/// a password-only `AUTH` logs in as, so the harness' `AUTH default <password>` works).
pub const REQUIREPASS_USER: &str = "default";

/// The user part of a URL for `user`: none for a `requirepass` server.
pub(crate) fn url_user(user: &str) -> &str {
    if user == REQUIREPASS_USER { "" } else { user }
}

/// How to start a [`RedisServer`] beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    pub durable: bool,
    /// `(user, password)`: the only user that may connect (also used to replicate).
    /// With the user [`REQUIREPASS_USER`], the server has no ACL user but a
    /// `requirepass` (the URL carries the password alone, `:password@`).
    pub acl: Option<(String, String)>,
    /// Serve TLS with this certificate (`rediss://` in [`RedisServer::url`]).
    pub tls: Option<Arc<CertFiles>>,
    /// The port of the primary to replicate.
    pub replica_of: Option<u16>,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    ///
    /// # Panics
    /// If `redis-server` is not installed or never becomes ready.
    pub fn start() -> RedisServer {
        RedisServer::start_plain(false)
    }

    /// A server that keeps its data across `stop` + `start_again` (AOF, fsync always).
    pub fn start_durable() -> RedisServer {
        RedisServer::start_plain(true)
    }

    fn start_plain(durable: bool) -> RedisServer {
        RedisServer::start_with(RedisOptions {
            durable,
            ..RedisOptions::default()
        })
    }

    /// A replica of the server on `primary_port`.
    pub fn start_replica_of(primary_port: u16) -> RedisServer {
        RedisServer::start_with(RedisOptions {
            replica_of: Some(primary_port),
            ..RedisOptions::default()
        })
    }

    /// A server as `opts` says.
    pub fn start_with(opts: RedisOptions) -> RedisServer {
        let mut extra = Vec::new();
        if let Some(primary) = opts.replica_of {
            extra.extend([
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary.to_string(),
            ]);
        }
        if let Some((user, password)) = &opts.acl
            && user == REQUIREPASS_USER
        {
            extra.extend(["--requirepass".into(), password.clone()]);
            extra.extend(["--masterauth".into(), password.clone()]);
        } else if let Some((user, password)) = &opts.acl {
            extra.extend(["--user".into(), "default".into(), "off".into()]);
            extra.extend([
                "--user".into(),
                user.clone(),
                "on".into(),
                format!(">{password}"),
            ]);
            extra.extend(["~*".into(), "&*".into(), "+@all".into()]);
            extra.extend(["--masteruser".into(), user.clone()]);
            extra.extend(["--masterauth".into(), password.clone()]);
        }
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut server = RedisServer {
                port: free_port(),
                child: None,
                dir: tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}")),
                durable: opts.durable,
                extra: extra.clone(),
                acl: opts.acl.clone(),
                tls: opts.tls.clone().map(|certs| (free_port(), certs)),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(log) => last = log,
            }
        }
        panic!("redis-server did not start ({START_ATTEMPTS} attempts); log tail:\n{last}");
    }

    /// `redis://127.0.0.1:<port>/`; `rediss://` and the TLS port with TLS, and the
    /// ACL user's credentials when it has one.
    pub fn url(&self) -> String {
        let (scheme, port) = match &self.tls {
            Some((port, _)) => ("rediss", *port),
            None => ("redis", self.port),
        };
        match &self.acl {
            Some((user, password)) => {
                format!("{scheme}://{}:{password}@127.0.0.1:{port}/", url_user(user))
            }
            None => format!("{scheme}://127.0.0.1:{port}/"),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection for reading what kofu wrote (audit streams, the privacy scan).
    ///
    /// # Panics
    /// If the server does not accept it.
    pub fn conn(&self) -> RedisConn {
        RedisConn::connect(self.port)
            .unwrap_or_else(|e| panic!("cannot connect to redis on port {}: {e}", self.port))
    }

    fn signal(&self, sig: rustix::process::Signal) {
        crate::signal(self.child.as_ref().map(std::process::Child::id), sig);
    }

    /// SIGSTOP: the server freezes with its sockets open, as in a long stall (its keys'
    /// expiry and every client's call wait until [`RedisServer::resume`]).
    pub fn pause(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    /// Kills the server (all data is lost: persistence is off), as a crash would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, for reconnection tests: empty, or with
    /// its data when durable.
    ///
    /// # Panics
    /// If it does not come up (for instance, the port was taken meanwhile).
    pub fn start_again(&mut self) {
        self.stop();
        if let Err(log) = self.spawn() {
            panic!("redis-server did not restart on port {}:\n{log}", self.port);
        }
    }

    /// Starts the server again on the same port as a replica of the server on
    /// `primary_port`, as an operator restarts a failed primary after a failover: it
    /// syncs from the new primary at once instead of waiting for the Sentinels to
    /// notice it and reconfigure it (their periodic `INFO`, every 10 s).
    ///
    /// # Panics
    /// If it does not come up.
    pub fn start_again_replica_of(&mut self, primary_port: u16) {
        self.extra = vec![
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary_port.to_string(),
        ];
        self.start_again();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(self.log_path()) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// `Err(log)` when the server exited or never answered.
    fn spawn(&mut self) -> Result<(), String> {
        let log = File::create(self.log_path()).map_err(|e| format!("no log file: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot clone log handle: {e}"))?;
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", if self.durable { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .args(self.tls.iter().flat_map(|(port, certs)| {
                [
                    "--tls-port".to_owned(),
                    port.to_string(),
                    "--tls-cert-file".to_owned(),
                    certs.cert_file.display().to_string(),
                    "--tls-key-file".to_owned(),
                    certs.key_file.display().to_string(),
                    "--tls-ca-cert-file".to_owned(),
                    certs.ca_file.display().to_string(),
                    "--tls-auth-clients".to_owned(),
                    "no".to_owned(),
                ]
            }))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn redis-server (is it installed?): {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("exit status {status}\n{}", self.logs()));
            }
            if ping(self.port, self.acl.as_ref()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!("no PONG within {READY_TIMEOUT:?}\n{}", self.logs()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A blocking inline `PING` (after `AUTH` with ACL credentials), usable inside or
/// outside any async runtime.
pub(crate) fn ping(port: u16, acl: Option<&(String, String)>) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let (hello, expect): (String, &[u8]) = match acl {
        Some((user, password)) => (
            format!("AUTH {user} {password}\r\nPING\r\n"),
            b"+OK\r\n+PONG\r\n",
        ),
        None => ("PING\r\n".to_owned(), b"+PONG\r\n"),
    };
    if stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .is_err()
        || stream.write_all(hello.as_bytes()).is_err()
    {
        return false;
    }
    let mut reply = vec![0u8; expect.len()];
    stream.read_exact(&mut reply).is_ok() && reply == expect
}
