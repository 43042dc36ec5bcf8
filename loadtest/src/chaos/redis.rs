//! The Sentinel-managed Redis of a chaos run: two data servers (one primary, one
//! replica; the roles change with every failover), AOF on, `min-replicas-to-write 1`,
//! `min-replicas-max-lag 10` as the shipped configs set them, and three Sentinels
//! (`redis-server --sentinel`) with short timeouts so a failover completes in seconds.
//! Queries go through redis-rs with a timeout, so a paused server is an answer too.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use redis::Value;

use super::cluster::Launcher;
use crate::procs::Proc;

/// The name the Sentinels monitor the primary under.
pub const MASTER: &str = "kofu";
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// One `redis-server` (data server or Sentinel).
pub struct Server {
    pub port: u16,
    pub proc: Option<Proc>,
    pub dir: PathBuf,
}

/// Sends one command to `host:port`; a timeout or a refused connection is an error.
pub async fn query(host: Ipv4Addr, port: u16, args: &[&str]) -> anyhow::Result<Value> {
    let client = redis::Client::open(format!("redis://{host}:{port}/"))?;
    let call = async {
        let mut con = client.get_multiplexed_async_connection().await?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async::<Value>(&mut con).await
    };
    Ok(tokio::time::timeout(QUERY_TIMEOUT, call)
        .await
        .context("redis did not answer in time")??)
}

/// A reply as text (bulk or simple strings; arrays joined by newlines).
pub fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

/// The Redis side of a run.
pub struct Redis {
    pub host: Ipv4Addr,
    pub data: [Server; 2],
    pub sentinels: Vec<Server>,
}

impl Redis {
    /// Starts the primary, its replica and three Sentinels, and waits until every
    /// Sentinel knows the primary, the replica and the other Sentinels.
    pub async fn start(l: &Launcher, host: Ipv4Addr) -> anyhow::Result<Redis> {
        let server = |name: &str| -> anyhow::Result<Server> {
            let dir = l.dir.join(name);
            std::fs::create_dir_all(&dir)?;
            Ok(Server {
                port: l.free_port(host)?,
                proc: None,
                dir,
            })
        };
        let data = [server("redis-a")?, server("redis-b")?];
        let sentinels = (0..3)
            .map(|i| server(&format!("sentinel-{i}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut r = Redis {
            host,
            data,
            sentinels,
        };
        r.start_data(l, 0, None)?;
        let primary = r.data[0].port;
        r.start_data(l, 1, Some(primary))?;
        r.wait("the replica syncs with the primary", || async {
            r.in_sync(1).await
        })
        .await?;
        // The primary counts its replica for `min-replicas-to-write` only after the
        // replica's first acknowledgement, a moment after the sync: until then it refuses
        // writes (`NOREPLICAS`), the registry load's first of all.
        r.wait("the primary takes writes", || async {
            r.takes_writes(0).await
        })
        .await?;
        for i in 0..3 {
            let s = &r.sentinels[i];
            let conf = s.dir.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind {host}\ndir {dir}\nsentinel announce-ip {host}\n\
                     sentinel monitor {MASTER} {host} {primary} 2\n\
                     sentinel down-after-milliseconds {MASTER} 2000\n\
                     sentinel failover-timeout {MASTER} 5000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    port = s.port,
                    dir = s.dir.display(),
                ),
            )?;
            let mut cmd = l.command(Path::new("redis-server"));
            cmd.arg(&conf).arg("--sentinel");
            let proc = l.spawn(&format!("sentinel-{i}"), cmd)?;
            r.sentinels[i].proc = Some(proc);
        }
        r.wait(
            "the sentinels know the primary, the replica and each other",
            || async {
                let mut ok = true;
                for s in &r.sentinels {
                    let master = query(host, s.port, &["SENTINEL", "master", MASTER]).await;
                    let fields = master.map(|v| text(&v)).unwrap_or_default();
                    let field = |name: &str| {
                        let mut lines = fields.lines();
                        lines.by_ref().find(|l| *l == name);
                        lines.next().unwrap_or_default().to_owned()
                    };
                    ok &= field("num-slaves") == "1" && field("num-other-sentinels") == "2";
                }
                ok
            },
        )
        .await?;
        Ok(r)
    }

    /// (Re)starts data server `i` on its port and dir (its AOF is replayed), as a replica
    /// of the server on `replica_of` if given.
    pub fn start_data(
        &mut self,
        l: &Launcher,
        i: usize,
        replica_of: Option<u16>,
    ) -> anyhow::Result<()> {
        let host = self.host.to_string();
        let s = &self.data[i];
        let mut cmd = l.command(Path::new("redis-server"));
        cmd.args(["--port", &s.port.to_string(), "--bind", &host])
            .args(["--protected-mode", "no", "--save", ""])
            // `always`, as the shipped configs: a primary killed and restarted before Sentinel
            // notices must come back with every write it acknowledged.
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args([
                "--min-replicas-to-write",
                "1",
                "--min-replicas-max-lag",
                "10",
            ])
            // As the shipped configs: a replica that (re)joins is synced at once (writes
            // wait for it), not after Redis's default 5 s of waiting for more replicas.
            .args(["--repl-diskless-sync-delay", "0"])
            .args(["--replica-announce-ip", &host])
            .arg("--dir")
            .arg(&s.dir);
        if let Some(p) = replica_of {
            cmd.args(["--replicaof", &host, &p.to_string()]);
        }
        let proc = l.spawn(&format!("redis-{}", ["a", "b"][i]), cmd)?;
        self.data[i].proc = Some(proc);
        Ok(())
    }

    /// `redis+sentinel://…/kofu` for the nodes.
    pub fn sentinel_url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("{}:{}", self.host, s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// Which data server the first Sentinel that answers calls primary.
    pub async fn primary(&self) -> Option<usize> {
        for s in &self.sentinels {
            let Ok(v) = query(
                self.host,
                s.port,
                &["SENTINEL", "get-master-addr-by-name", MASTER],
            )
            .await
            else {
                continue;
            };
            let port: Option<u16> = text(&v).lines().nth(1).and_then(|p| p.parse().ok());
            return self.data.iter().position(|d| Some(d.port) == port);
        }
        None
    }

    /// Whether data server `i` answers `PING`.
    pub async fn answers(&self, i: usize) -> bool {
        query(self.host, self.data[i].port, &["PING"]).await.is_ok()
    }

    /// Whether data server `i` is a replica whose link to its primary is up.
    pub async fn in_sync(&self, i: usize) -> bool {
        query(self.host, self.data[i].port, &["INFO", "replication"])
            .await
            .is_ok_and(|v| text(&v).contains("master_link_status:up"))
    }

    /// Whether data server `i`, a primary, counts a replica as good for
    /// `min-replicas-to-write`, so that it takes writes.
    pub async fn takes_writes(&self, i: usize) -> bool {
        query(self.host, self.data[i].port, &["INFO", "replication"])
            .await
            .is_ok_and(|v| !text(&v).contains("min_slaves_good_slaves:0"))
    }

    /// Whether the Sentinels name a primary and the other data server replicates it.
    pub async fn healthy(&self) -> bool {
        match self.primary().await {
            Some(p) => self.answers(p).await && self.in_sync(1 - p).await,
            None => false,
        }
    }

    /// `SENTINEL FAILOVER` through the first Sentinel that accepts it.
    pub async fn failover(&self) -> anyhow::Result<()> {
        let mut last = anyhow::anyhow!("no sentinel");
        for s in &self.sentinels {
            match query(self.host, s.port, &["SENTINEL", "FAILOVER", MASTER]).await {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Polls `done` every 100 ms for up to 60 s.
    pub async fn wait<F, Fut>(&self, what: &str, mut done: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        wait_for(what, Duration::from_secs(60), &mut done).await
    }

    /// The primary's address, for reading the audit streams.
    pub async fn primary_port(&self) -> anyhow::Result<u16> {
        let i = self
            .primary()
            .await
            .context("no sentinel names a primary")?;
        Ok(self.data[i].port)
    }
}

/// Polls `done` every 100 ms until it holds or `limit` passed.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, done: &mut F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !done().await {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// `redis-server --version` works: the run can start its Redis.
pub fn installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}
