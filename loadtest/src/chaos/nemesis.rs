//! The nemesis: injects the planned faults one after the other into the run's cluster,
//! holds each for its planned time and heals it (a restarted process counts as healed
//! once it is ready again), and records when each happened — and when a node could not
//! answer at all (killed, paused, restarting), which excuses a kiosk's request that got
//! no answer then. A node that exits without being killed is recorded and restarted.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::Signal;
use serde::Serialize;
use tokio::time::Instant;

use super::cluster::Cluster;
use super::redis::wait_for;
use super::schedule::{Kind, Planned};

/// Slack for restarts when deciding whether a fault still fits before the run ends.
const RESTART_SLACK: Duration = Duration::from_secs(5);

/// One injected fault.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub kind: Kind,
    /// The node it targeted (node kinds).
    pub node: Option<usize>,
    /// What was done, e.g. `SIGSTOP redis-a (primary) for 3.2 s`.
    pub detail: String,
    /// Milliseconds since the run began: injected, heal begun, heal complete.
    pub start_ms: u64,
    pub heal_ms: u64,
    pub healed_ms: u64,
    /// What went wrong injecting or healing it, if anything.
    pub error: Option<String>,
}

/// A node process that exited without the nemesis stopping it.
#[derive(Debug, Clone, Serialize)]
pub struct Death {
    pub node: usize,
    pub at_ms: u64,
}

/// The nemesis's state and what it did.
pub struct Nemesis {
    pub cluster: Cluster,
    origin: Instant,
    pub faults: Vec<Fault>,
    pub deaths: Vec<Death>,
    /// `(node, from_us, to_us)`: a node killed, paused, stopped or starting, which
    /// cannot answer.
    pub windows: Vec<(usize, u64, u64)>,
    down_since: Vec<Option<u64>>,
    /// When every node was last seen running.
    last_watch: u64,
    /// What is being done right now, for the progress line.
    pub now: Arc<Mutex<String>>,
}

impl Nemesis {
    pub fn new(cluster: Cluster, origin: Instant) -> Nemesis {
        let nodes = cluster.nodes.len();
        Nemesis {
            cluster,
            origin,
            faults: Vec::new(),
            deaths: Vec::new(),
            windows: Vec::new(),
            down_since: vec![None; nodes],
            last_watch: 0,
            now: Arc::new(Mutex::new(String::new())),
        }
    }

    /// Node `i` cannot answer from now on.
    fn down(&mut self, i: usize) {
        let now = self.us();
        self.down_since[i].get_or_insert(now);
    }

    /// Node `i` answers again.
    fn up(&mut self, i: usize) {
        if let Some(from) = self.down_since[i].take() {
            self.windows.push((i, from, self.us()));
        }
    }

    /// The windows in which a node could not answer, those still open closed now.
    pub fn down_windows(&self) -> Vec<(usize, u64, u64)> {
        let now = self.us();
        let open = self
            .down_since
            .iter()
            .enumerate()
            .filter_map(|(i, from)| from.map(|f| (i, f, now)));
        self.windows.iter().copied().chain(open).collect()
    }

    /// Starts node `i` (under `skew`) and waits until it is ready; a node that exits
    /// while starting (say Redis refuses writes) is started again, for up to a minute.
    async fn start(&mut self, i: usize, skew: Option<i64>) -> anyhow::Result<()> {
        self.down(i);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.cluster.spawn_node(i, skew)?;
            match self.cluster.node_ready(i).await {
                Ok(()) => {
                    self.up(i);
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => {
                    self.cluster.stop_node(i).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn us(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.origin)
            .as_micros() as u64
    }

    fn say(&self, what: String) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = what;
    }

    /// Runs `plan` from now until `stop_at` (no fault starts that could not heal by then).
    pub async fn run(&mut self, plan: impl Iterator<Item = Planned>, stop_at: Instant) {
        for p in plan {
            self.say("waiting".to_owned());
            self.watch().await;
            tokio::time::sleep(p.gap).await;
            if Instant::now() + p.hold + RESTART_SLACK > stop_at {
                break;
            }
            self.say(format!(
                "{} held {:.1} s",
                p.kind.as_str(),
                p.hold.as_secs_f64()
            ));
            let f = self.inject(p).await;
            self.faults.push(f);
        }
        self.say("healed".to_owned());
        self.watch().await;
    }

    /// Restarts a node that exited by itself (and records it).
    pub async fn watch(&mut self) {
        for i in 0..self.cluster.nodes.len() {
            let died = self.cluster.nodes[i]
                .proc
                .as_mut()
                .is_some_and(|p| !p.running());
            if died {
                self.deaths.push(Death {
                    node: i,
                    at_ms: self.us() / 1000,
                });
                // It died at some point since it was last seen running.
                self.down_since[i] = Some(self.last_watch);
                let _ = self.start(i, None).await;
            }
        }
        self.last_watch = self.us();
    }

    async fn inject(&mut self, p: Planned) -> Fault {
        let mut f = Fault {
            kind: p.kind,
            node: p.kind.targets_node().then_some(p.node),
            detail: String::new(),
            start_ms: 0,
            heal_ms: 0,
            healed_ms: 0,
            error: None,
        };
        let start = self.us();
        if let Err(e) = self.act(p, &mut f).await {
            f.error = Some(format!("{e:#}"));
            self.restore().await;
        }
        f.start_ms = start / 1000;
        f.healed_ms = self.us() / 1000;
        if f.heal_ms == 0 {
            f.heal_ms = f.healed_ms;
        }
        f
    }

    /// After a failed injection or heal: every node running, no rule, no delay, no pause.
    async fn restore(&mut self) {
        let c = &mut self.cluster;
        if let Some(net) = &c.net {
            let _ = net.heal();
        }
        for i in 0..c.nodes.len() {
            c.delays.set(i, Duration::ZERO);
            if let Some(p) = &c.nodes[i].proc {
                p.signal(Signal::CONT);
            }
        }
        for s in &c.redis.data {
            if let Some(p) = &s.proc {
                p.signal(Signal::CONT);
            }
        }
        for d in 0..2 {
            if c.redis.data[d].proc.is_none() {
                let primary = c.redis.primary().await.filter(|p| *p != d);
                let of = primary.map(|p| c.redis.data[p].port);
                let _ = c.redis.start_data(&c.launcher, d, of);
            }
        }
        for i in 0..self.cluster.nodes.len() {
            let node = &mut self.cluster.nodes[i];
            let gone = node.proc.as_mut().is_none_or(|p| !p.running());
            if gone || node.skew.is_some() {
                self.down(i);
                self.cluster.stop_node(i).await;
                let _ = self.start(i, None).await;
            } else {
                self.up(i);
            }
        }
    }

    /// Waits until Redis is whole again: a primary the Sentinels agree on, replicated.
    async fn redis_healed(&self) -> anyhow::Result<()> {
        let r = &self.cluster.redis;
        wait_for(
            "redis replicates again",
            Duration::from_secs(90),
            &mut || r.healthy(),
        )
        .await
    }

    async fn act(&mut self, p: Planned, f: &mut Fault) -> anyhow::Result<()> {
        let i = p.node;
        if !p.kind.targets_node() {
            // A Redis fault starts from a whole Redis (a failover needs a synced replica).
            self.redis_healed().await?;
        }
        let hold = p.hold;
        let secs = hold.as_secs_f64();
        match p.kind {
            Kind::NodeKill => {
                self.down(i);
                if let Some(mut proc) = self.cluster.nodes[i].proc.take() {
                    proc.kill();
                }
                f.detail = format!("SIGKILL node {i}, restart after {secs:.1} s");
                tokio::time::sleep(hold).await;
                f.heal_ms = self.us() / 1000;
                self.start(i, None).await?;
            }
            Kind::NodePause => {
                self.down(i);
                if let Some(p) = &self.cluster.nodes[i].proc {
                    p.signal(Signal::STOP);
                }
                f.detail = format!("SIGSTOP node {i} for {secs:.1} s");
                tokio::time::sleep(hold).await;
                f.heal_ms = self.us() / 1000;
                if let Some(p) = &self.cluster.nodes[i].proc {
                    p.signal(Signal::CONT);
                }
                self.up(i);
            }
            Kind::RedisPause => {
                let r = &self.cluster.redis;
                let p = r.primary().await.ok_or_else(no_primary)?;
                if let Some(x) = &r.data[p].proc {
                    x.signal(Signal::STOP);
                }
                f.detail = format!("SIGSTOP the redis primary ({}) for {secs:.1} s", name(p));
                tokio::time::sleep(hold).await;
                f.heal_ms = self.us() / 1000;
                let r = &self.cluster.redis;
                if let Some(x) = &r.data[p].proc {
                    x.signal(Signal::CONT);
                }
                self.redis_healed().await?;
            }
            Kind::RedisKill => {
                let p = self.cluster.redis.primary().await.ok_or_else(no_primary)?;
                if let Some(mut x) = self.cluster.redis.data[p].proc.take() {
                    x.kill();
                }
                tokio::time::sleep(hold).await;
                f.heal_ms = self.us() / 1000;
                let now = self.cluster.redis.primary().await;
                let other = 1 - p;
                let replica_of = (now == Some(other)).then(|| self.cluster.redis.data[other].port);
                f.detail = format!(
                    "SIGKILL the redis primary ({}), restart after {secs:.1} s as {}",
                    name(p),
                    if replica_of.is_some() {
                        "a replica (sentinel had failed over)"
                    } else {
                        "the primary (no failover yet)"
                    }
                );
                let c = &mut self.cluster;
                c.redis.start_data(&c.launcher, p, replica_of)?;
                let r = &self.cluster.redis;
                wait_for(
                    "the restarted redis answers",
                    Duration::from_secs(30),
                    &mut || r.answers(p),
                )
                .await?;
                self.redis_healed().await?;
            }
            Kind::RedisFailover => {
                let r = &self.cluster.redis;
                let before = r.primary().await.ok_or_else(no_primary)?;
                r.failover().await?;
                f.detail = format!("SENTINEL FAILOVER (primary was {})", name(before));
                f.heal_ms = self.us() / 1000;
                wait_for(
                    "the sentinels name a new primary",
                    Duration::from_secs(30),
                    &mut || async { r.primary().await.is_some_and(|p| p != before) },
                )
                .await?;
                self.redis_healed().await?;
            }
            Kind::ReplicaLoss => {
                let p = self.cluster.redis.primary().await.ok_or_else(no_primary)?;
                let replica = 1 - p;
                if let Some(mut x) = self.cluster.redis.data[replica].proc.take() {
                    x.kill();
                }
                f.detail = format!("SIGKILL the replica ({}) for {secs:.1} s", name(replica));
                tokio::time::sleep(hold).await;
                f.heal_ms = self.us() / 1000;
                let now = self.cluster.redis.primary().await.unwrap_or(p);
                let c = &mut self.cluster;
                let port = c.redis.data[now].port;
                c.redis.start_data(&c.launcher, replica, Some(port))?;
                let r = &self.cluster.redis;
                wait_for(
                    "the replica syncs again",
                    Duration::from_secs(60),
                    &mut || r.in_sync(replica),
                )
                .await?;
                self.redis_healed().await?;
            }
            Kind::PartitionRedis | Kind::PartitionPeers | Kind::PartitionBoth => {
                let net = self.cluster.net.as_ref().ok_or_else(no_net)?;
                let mut cut: Vec<Ipv4Addr> = Vec::new();
                if p.kind != Kind::PartitionPeers {
                    cut.push(net.redis_ip());
                }
                if p.kind != Kind::PartitionRedis {
                    cut.push(net.peer_ip());
                    cut.extend((0..net.nodes).filter(|j| *j != i).map(|j| net.node_ip(j)));
                }
                net.cut(i, &cut, None)?;
                f.detail = format!("node {i} cut off for {secs:.1} s");
                tokio::time::sleep(hold).await;
                f.heal_ms = self.us() / 1000;
                net.heal()?;
            }
            Kind::SlowDelay => {
                let ms = u64::try_from(p.amount).unwrap_or(200);
                self.cluster.delays.set(i, Duration::from_millis(ms));
                f.detail =
                    format!("node {i} sends {ms} ms late to redis and peers for {secs:.1} s");
                tokio::time::sleep(hold).await;
                f.heal_ms = self.us() / 1000;
                self.cluster.delays.set(i, Duration::ZERO);
            }
            Kind::SlowLoss => {
                let net = self.cluster.net.as_ref().ok_or_else(no_net)?;
                let mut cut = vec![net.redis_ip(), net.peer_ip()];
                cut.extend((0..net.nodes).filter(|j| *j != i).map(|j| net.node_ip(j)));
                let pct = u8::try_from(p.amount).unwrap_or(20);
                net.cut(i, &cut, Some(pct))?;
                f.detail = format!(
                    "node {i} loses {pct} % of its packets to redis and peers for {secs:.1} s"
                );
                tokio::time::sleep(hold).await;
                f.heal_ms = self.us() / 1000;
                net.heal()?;
            }
            Kind::ClockSkew => {
                f.detail = format!(
                    "node {i} restarted with its clock {:+} s off for {secs:.1} s",
                    p.amount
                );
                self.down(i);
                self.cluster.stop_node(i).await;
                self.start(i, Some(p.amount)).await?;
                tokio::time::sleep(hold).await;
                f.heal_ms = self.us() / 1000;
                self.down(i);
                self.cluster.stop_node(i).await;
                self.start(i, None).await?;
            }
        }
        Ok(())
    }
}

fn name(data_server: usize) -> &'static str {
    ["redis-a", "redis-b"][data_server.min(1)]
}

fn no_primary() -> anyhow::Error {
    anyhow::anyhow!("no sentinel names a primary")
}

fn no_net() -> anyhow::Error {
    anyhow::anyhow!("the run has no network of its own")
}
