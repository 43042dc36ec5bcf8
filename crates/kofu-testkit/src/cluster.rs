//! A real cluster for black-box tests: one private `redis-server`, the registry loaded
//! by `kofu registry load`, and N `kofu serve` processes on loopback that find each
//! other through Redis. Nodes can be added, stopped, killed and paused.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::node::sync_get;
use crate::{KofuNode, NodeOptions, RedisServer, free_port, kofu_bin};

/// Cluster secret of every test cluster (only ever on loopback).
pub const TEST_SECRET: &str = "kofu-test-cluster-secret-0123456789";
const CONVERGE: Duration = Duration::from_secs(60);

/// How to start a cluster: the node options apply to every node.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: usize,
    pub node: NodeOptions,
    pub lease_ttl_ms: u64,
    pub shard_count: u32,
    pub durable_redis: bool,
    /// Use this Redis (say, a Sentinel URL) instead of starting one.
    pub redis_url: Option<String>,
}

impl Default for ClusterOptions {
    fn default() -> ClusterOptions {
        ClusterOptions {
            nodes: 3,
            node: NodeOptions::default(),
            lease_ttl_ms: 1_500,
            shard_count: 1024,
            durable_redis: false,
            redis_url: None,
        }
    }
}

#[derive(Debug)]
pub struct KofuCluster {
    /// The cluster's own Redis, unless it was given one.
    pub redis: Option<RedisServer>,
    url: String,
    /// Index = node number; `None` once stopped or killed.
    pub nodes: Vec<Option<KofuNode>>,
    opts: ClusterOptions,
    admin_token: String,
}

impl KofuCluster {
    /// Starts Redis, loads the registry, starts the nodes and waits until every shard
    /// has an owner that every node agrees on.
    pub fn start(opts: ClusterOptions) -> KofuCluster {
        let redis = match (&opts.redis_url, opts.durable_redis) {
            (Some(_), _) => None,
            (None, true) => Some(RedisServer::start_durable()),
            (None, false) => Some(RedisServer::start()),
        };
        let url = match (&opts.redis_url, &redis) {
            (Some(url), _) => url.clone(),
            (None, Some(r)) => r.url(),
            (None, None) => unreachable!("a server was started"),
        };
        let out = Command::new(kofu_bin())
            .args(["registry", "load", "--redis", &url])
            .args(["--fixture-seed", &opts.node.seed.to_string()])
            .args(["--fixture-residents", &opts.node.residents.to_string()])
            .args(["--shard-count", &opts.shard_count.to_string()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run kofu registry load: {e}"));
        assert!(
            out.status.success(),
            "kofu registry load failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let fx = crate::Fixtures::load(opts.node.seed, opts.node.residents, opts.node.kiosks);
        let mut cluster = KofuCluster {
            redis,
            url,
            nodes: Vec::new(),
            opts,
            admin_token: fx.admin_token,
        };
        for _ in 0..cluster.opts.nodes {
            cluster.add_node();
        }
        cluster.wait_converged();
        cluster
    }

    /// Starts one more node (it joins; shards move to it) and returns its number.
    pub fn add_node(&mut self) -> usize {
        let n = self.nodes.len();
        let mut opts = self.opts.node.clone();
        let internal = format!("127.0.0.1:{}", free_port());
        opts.args.splice(
            0..0,
            [
                "--redis-url".to_owned(),
                self.url.clone(),
                "--node-id".to_owned(),
                format!("node-{n}"),
                "--internal-listen".to_owned(),
                internal,
                "--lease-ttl-ms".to_owned(),
                self.opts.lease_ttl_ms.to_string(),
                "--shard-count".to_owned(),
                self.opts.shard_count.to_string(),
            ],
        );
        opts.env
            .push(("KOFU_CLUSTER_SECRET".to_owned(), TEST_SECRET.to_owned()));
        self.nodes.push(Some(KofuNode::start(opts)));
        n
    }

    pub fn node(&self, n: usize) -> &KofuNode {
        self.nodes[n]
            .as_ref()
            .unwrap_or_else(|| panic!("node {n} is not running"))
    }

    pub fn node_mut(&mut self, n: usize) -> &mut KofuNode {
        self.nodes[n]
            .as_mut()
            .unwrap_or_else(|| panic!("node {n} is not running"))
    }

    /// Kiosk API URLs of the running nodes.
    pub fn apis(&self) -> Vec<String> {
        self.nodes.iter().flatten().map(|n| n.api.clone()).collect()
    }

    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect()
    }

    /// `GET /admin/v1/cluster` of node `n`.
    pub fn view(&self, n: usize) -> Option<Value> {
        let node = self.node(n);
        let addr = node.admin.trim_start_matches("http://");
        let (status, body) = sync_get(addr, "/admin/v1/cluster", Some(&self.admin_token))?;
        (status == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// Shard → owner id, as node `n` sees it.
    pub fn owners(&self, n: usize) -> Option<Vec<Option<String>>> {
        let view = self.view(n)?;
        let mut owners = vec![None; self.opts.shard_count as usize];
        for s in view["shards"].as_array()? {
            let shard = usize::try_from(s["shard"].as_u64()?).ok()?;
            *owners.get_mut(shard)? = Some(s["owner"].as_str()?.to_owned());
        }
        Some(owners)
    }

    /// Waits until every running node sees every shard owned by a running node, all
    /// views agree, and each view lists exactly the running nodes.
    pub fn wait_converged(&self) -> Vec<Option<String>> {
        let live = self.live();
        let ids: Vec<String> = live.iter().map(|i| format!("node-{i}")).collect();
        let deadline = Instant::now() + CONVERGE;
        loop {
            let views: Vec<Option<Vec<Option<String>>>> =
                live.iter().map(|&n| self.owners(n)).collect();
            let members_ok = live.iter().all(|&n| {
                self.view(n)
                    .and_then(|v| {
                        let nodes = v["nodes"].as_array()?;
                        Some(nodes.len() == ids.len())
                    })
                    .unwrap_or(false)
            });
            if members_ok
                && let Some(Some(first)) = views.first()
                && views.iter().all(|v| v.as_ref() == Some(first))
                && first
                    .iter()
                    .all(|o| o.as_ref().is_some_and(|o| ids.contains(o)))
            {
                return first.clone();
            }
            assert!(
                Instant::now() < deadline,
                "cluster of {ids:?} did not converge within {CONVERGE:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Graceful stop of node `n` (SIGTERM: it hands its shards off first).
    pub fn stop(&mut self, n: usize) -> std::process::ExitStatus {
        let status = self.node_mut(n).terminate();
        self.nodes[n] = None;
        status
    }

    /// `kill -9` of node `n`.
    pub fn kill(&mut self, n: usize) {
        if let Some(mut node) = self.nodes[n].take() {
            node.kill();
        }
    }
}
