//! A deployment under test, whatever its topology: one embedded node, or N `kofu serve`
//! processes coordinated by a private `redis-server` (the registry loaded by `kofu
//! registry load`). Either way tests see the same kiosk-facing API: the nodes' URLs, the
//! population, the issuer key, kiosks spreading requests over the nodes, admin calls.
//! Cluster nodes can be added, stopped, killed and paused.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kofu_kiosk::{Client, Fixtures, Kiosk, Method, Resp};
use kofu_proto::verify::IssuerKeys;
use serde_json::Value;

use crate::kiosk::REQUEST_TIMEOUT;
use crate::{CertFiles, KofuNode, NodeOptions, RedisServer, fixtures, free_port, kofu_bin};

/// Cluster secret of every test cluster (only ever on loopback).
const TEST_SECRET: &str = "kofu-test-cluster-secret-0123456789";
const CONVERGE: Duration = Duration::from_secs(60);

/// How the nodes of a cluster link to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkSecurity {
    /// Mutual TLS with one cluster CA (what a real deployment does).
    MutualTls,
    /// Mutual TLS, but every node's certificate from a CA of its own: no two nodes can
    /// link (they still share Redis, so they agree on who owns what).
    CaPerNode,
    /// `--insecure-plaintext`.
    Plaintext,
}

/// What a [`NodeHook`] runs: node number, options.
pub type NodeHookFn = dyn Fn(usize, &mut NodeOptions) + Send + Sync;

/// Changes one node's options just before it starts.
#[derive(Clone)]
pub struct NodeHook(pub Arc<NodeHookFn>);

impl std::fmt::Debug for NodeHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeHook(..)")
    }
}

/// How to start a deployment; `node` applies to every node.
#[derive(Debug, Clone)]
pub struct DeploymentOptions {
    /// One node with neither `durable_redis` nor `redis_url` runs embedded (no Redis).
    pub nodes: usize,
    pub node: NodeOptions,
    pub lease_ttl_ms: u64,
    /// `None`: the node's default (1,024).
    pub shard_count: Option<u32>,
    /// The private Redis keeps every acknowledged write across a restart.
    pub durable_redis: bool,
    /// Use this Redis (say, a Sentinel URL) instead of starting one.
    pub redis_url: Option<String>,
    /// The CA of the Redis servers' certificates (`rediss://` in `redis_url`), given to
    /// `kofu registry load` and to every node.
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// How cluster nodes link to each other (default: mutual TLS, one cluster CA).
    pub link: LinkSecurity,
    /// HTTPS on every node's kiosk and admin listeners (the deployment's client trusts
    /// the CA).
    pub https: bool,
    /// With `https`: kiosks must present a client certificate of this CA
    /// (`--tls-client-ca-file`). The deployment's own client presents one naming no
    /// kiosk (enough for `/v1/issuer-key`); kiosk calls need a client per kiosk.
    pub kiosk_ca: Option<Arc<CertFiles>>,
    /// Last word on each node's options.
    pub hook: Option<NodeHook>,
}

impl Default for DeploymentOptions {
    fn default() -> DeploymentOptions {
        DeploymentOptions {
            nodes: 1,
            node: NodeOptions::default(),
            lease_ttl_ms: 1_500,
            shard_count: None,
            durable_redis: false,
            redis_url: None,
            redis_ca_file: None,
            link: LinkSecurity::MutualTls,
            https: false,
            kiosk_ca: None,
            hook: None,
        }
    }
}

impl DeploymentOptions {
    /// `nodes` nodes on a private Redis (embedded when `nodes` is 1).
    pub fn nodes(nodes: usize) -> DeploymentOptions {
        DeploymentOptions {
            nodes,
            ..DeploymentOptions::default()
        }
    }

    /// `nodes` cluster nodes (even one) on a private Redis that keeps every acknowledged
    /// write across a restart: for tests that stop and start Redis.
    pub fn durable(nodes: usize) -> DeploymentOptions {
        DeploymentOptions {
            durable_redis: true,
            ..DeploymentOptions::nodes(nodes)
        }
    }

    fn embedded(&self) -> bool {
        self.nodes == 1 && !self.durable_redis && self.redis_url.is_none()
    }

    fn shard_count(&self) -> u32 {
        self.shard_count.unwrap_or(kofu_proto::DEFAULT_SHARD_COUNT)
    }
}

/// Running nodes (and their Redis); every process is stopped when this is dropped.
#[derive(Debug)]
pub struct Deployment {
    /// The deployment's own Redis, unless it was given one or runs embedded.
    pub redis: Option<RedisServer>,
    redis_url: Option<String>,
    /// Index = node number; `None` once stopped or killed.
    pub nodes: Vec<Option<KofuNode>>,
    opts: DeploymentOptions,
    fx: &'static Fixtures,
    issuer: IssuerKeys,
    client: Client,
    certs: Certs,
}

/// The certificates every node of a deployment shares.
#[derive(Debug, Clone, Default)]
struct Certs {
    https: Option<Arc<CertFiles>>,
    cluster: Option<Arc<CertFiles>>,
    /// The harness' client certificate, when kiosks must present one.
    client: Option<Arc<crate::Issued>>,
}

impl Deployment {
    /// Starts everything and waits until every shard has an owner all nodes agree on.
    /// Blocks (process starts): call it from `spawn_blocking` or `block_in_place`.
    pub fn start(opts: DeploymentOptions) -> Deployment {
        let (redis, redis_url) = if opts.embedded() {
            (None, None)
        } else {
            let redis = match (&opts.redis_url, opts.durable_redis) {
                (Some(_), _) => None,
                (None, true) => Some(RedisServer::start_durable()),
                (None, false) => Some(RedisServer::start()),
            };
            let url = opts
                .redis_url
                .clone()
                .or_else(|| redis.as_ref().map(RedisServer::url));
            (redis, url)
        };
        match (&redis_url, &opts.node.registry_file) {
            (Some(url), Some(file)) => registry_import(url, &opts, file),
            (Some(url), None) => registry_load(url, &opts),
            (None, _) => {}
        }
        let fx = fixtures(opts.node.seed, opts.node.residents, opts.node.kiosks);
        let certs = Certs {
            https: opts
                .https
                .then(|| Arc::new(CertFiles::new("test listener ca"))),
            cluster: (redis_url.is_some() && opts.link == LinkSecurity::MutualTls)
                .then(|| Arc::new(CertFiles::new("test cluster ca"))),
            client: opts
                .kiosk_ca
                .as_ref()
                .map(|ca| Arc::new(ca.ca.issue("kofu-testkit", &[]))),
        };
        let nodes: Vec<Option<KofuNode>> = (0..opts.nodes)
            .map(|n| {
                Some(KofuNode::start(node_options(
                    n,
                    &opts,
                    redis_url.as_deref(),
                    &certs,
                )))
            })
            .collect();
        let apis: Vec<String> = nodes.iter().flatten().map(|n| n.api.clone()).collect();
        let mut client = Client::builder();
        if let Some(https) = &certs.https {
            client = client.ca_pem(https.ca.cert_pem());
        }
        if let Some(cert) = &certs.client {
            client = client.client_cert_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes());
        }
        let client = client
            .targets(&apis)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let d = Deployment {
            redis,
            issuer: issuer_key(
                nodes
                    .first()
                    .and_then(Option::as_ref)
                    .unwrap_or_else(|| panic!("a deployment needs a node")),
            ),
            redis_url,
            nodes,
            opts,
            fx,
            client,
            certs,
        };
        if d.redis_url.is_some() {
            d.wait_converged();
        }
        d
    }

    /// Starts one more node (in a cluster it joins and shards move to it); its number.
    ///
    /// # Panics
    /// On an embedded deployment, which has exactly one node.
    pub fn add_node(&mut self) -> usize {
        let n = self.nodes.len();
        assert!(
            n == 0 || self.redis_url.is_some(),
            "an embedded deployment has one node"
        );
        let opts = node_options(n, &self.opts, self.redis_url.as_deref(), &self.certs);
        self.nodes.push(Some(KofuNode::start(opts)));
        n
    }

    /// Whether the nodes coordinate through Redis (else one embedded node).
    pub fn is_cluster(&self) -> bool {
        self.redis_url.is_some()
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

    /// Numbers of the running nodes.
    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect()
    }

    /// Kiosk API URLs of the running nodes.
    pub fn apis(&self) -> Vec<String> {
        self.nodes.iter().flatten().map(|n| n.api.clone()).collect()
    }

    /// Admin listener URLs of the running nodes.
    fn admins(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flatten()
            .map(|n| n.admin.clone())
            .collect()
    }

    /// The population every node serves.
    pub fn fixtures(&self) -> &'static Fixtures {
        self.fx
    }

    /// The issuer keys the first node published at start (every key a kiosk trusts).
    pub fn issuer(&self) -> &IssuerKeys {
        &self.issuer
    }

    pub fn admin_token(&self) -> &str {
        &self.fx.admin_token
    }

    /// One keep-alive pool over the nodes started with, a random node per request.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Kiosk number `i` of the population on [`Deployment::client`].
    pub fn kiosk(&self, i: usize) -> Kiosk {
        self.client.kiosk(&self.fx.kiosks[i])
    }

    /// A request to running node `n mod live`'s admin listener with the admin token.
    pub async fn admin(&self, n: usize, method: Method, path: &str, body: Option<Value>) -> Resp {
        let admins = self.admins();
        let url = format!("{}{path}", admins[n % admins.len()]);
        let auth = format!("Bearer {}", self.fx.admin_token);
        let body = body.map(|b| b.to_string().into_bytes());
        self.client.request(method, &url, Some(&auth), body).await
    }

    /// Sum of a metric's samples over every running node (all label sets).
    pub async fn metric_sum(&self, name: &str) -> Result<f64, String> {
        let mut sum = 0.0;
        for admin in self.admins() {
            let url = format!("{admin}/metrics");
            let r = self.client.request(Method::GET, &url, None, None).await;
            if r.status != 200 {
                return Err(format!("metrics: status {}", r.status));
            }
            for line in r.text().lines().filter(|l| !l.starts_with('#')) {
                let mut parts = line.split_whitespace();
                let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
                    continue;
                };
                if key.split('{').next() == Some(name) {
                    sum += value
                        .parse::<f64>()
                        .map_err(|e| format!("metric {name} value {value:?}: {e}"))?;
                }
            }
        }
        Ok(sum)
    }

    /// The CA of the listeners' certificates, with `https`.
    pub fn https_certs(&self) -> Option<&Arc<CertFiles>> {
        self.certs.https.as_ref()
    }

    /// The cluster CA, with `LinkSecurity::MutualTls`.
    pub fn cluster_certs(&self) -> Option<&Arc<CertFiles>> {
        self.certs.cluster.as_ref()
    }

    /// `GET /admin/v1/cluster` of node `n` (blocking).
    pub fn view(&self, n: usize) -> Option<Value> {
        let (status, body) = self
            .node(n)
            .admin_get("/admin/v1/cluster", Some(self.admin_token()))?;
        (status == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// Shard → owner id, as node `n` sees it (blocking).
    fn owners(&self, n: usize) -> Option<Vec<Option<String>>> {
        let view = self.view(n)?;
        let mut owners = vec![None; self.opts.shard_count() as usize];
        for s in view["shards"].as_array()? {
            let shard = usize::try_from(s["shard"].as_u64()?).ok()?;
            *owners.get_mut(shard)? = Some(s["owner"].as_str()?.to_owned());
        }
        Some(owners)
    }

    /// Waits until every running node sees every shard owned by the running node the
    /// rendezvous assignment gives it to, all views agree, and each view lists exactly
    /// the running nodes (blocking). Agreement alone is not enough: the views agree at
    /// every step of a join too (they all read the same leases).
    pub fn wait_converged(&self) -> Vec<Option<String>> {
        let live = self.live();
        let ids: Vec<String> = live.iter().map(|i| format!("node-{i}")).collect();
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let assigned = kofu_core::assignment::assign(self.opts.shard_count(), &id_refs);
        let deadline = Instant::now() + CONVERGE;
        loop {
            let views: Vec<Option<Vec<Option<String>>>> =
                live.iter().map(|&n| self.owners(n)).collect();
            let members_ok = live.iter().all(|&n| {
                self.view(n)
                    .and_then(|v| Some(v["nodes"].as_array()?.len() == ids.len()))
                    .unwrap_or(false)
            });
            if members_ok
                && let Some(Some(first)) = views.first()
                && views.iter().all(|v| v.as_ref() == Some(first))
                && first
                    .iter()
                    .map(Option::as_deref)
                    .eq(assigned.iter().copied())
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

    /// Graceful stop of node `n` (SIGTERM; a cluster node hands its shards off first).
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

/// The options of node `n`: an embedded node, or a member of the cluster on `redis_url`.
fn node_options(
    n: usize,
    opts: &DeploymentOptions,
    redis_url: Option<&str>,
    certs: &Certs,
) -> NodeOptions {
    let mut node = cluster_node_options(n, opts, redis_url, certs);
    node.https = certs.https.clone();
    node.client_cert = certs.client.clone();
    if let Some(ca) = &opts.kiosk_ca {
        node.args.extend([
            "--tls-client-ca-file".to_owned(),
            ca.ca_file.display().to_string(),
        ]);
    }
    if let Some(NodeHook(hook)) = &opts.hook {
        hook(n, &mut node);
    }
    node
}

fn cluster_node_options(
    n: usize,
    opts: &DeploymentOptions,
    redis_url: Option<&str>,
    certs: &Certs,
) -> NodeOptions {
    let mut node = opts.node.clone();
    let Some(url) = redis_url else {
        if let Some(shards) = opts.shard_count {
            node.args
                .extend(["--shard-count".to_owned(), shards.to_string()]);
        }
        return node;
    };
    if node.registry_file.take().is_some() {
        // Imported into Redis by the deployment: the node serves what Redis holds.
        node.without_fixture_args = true;
    }
    match opts.link {
        LinkSecurity::MutualTls => node.cluster_certs = certs.cluster.clone(),
        LinkSecurity::CaPerNode => {
            node.cluster_certs = Some(Arc::new(CertFiles::new(&format!("node-{n} own ca"))));
        }
        LinkSecurity::Plaintext => node.args.push("--insecure-plaintext".to_owned()),
    }
    if let Some(ca) = &opts.redis_ca_file {
        node.args
            .extend(["--redis-ca-file".to_owned(), ca.display().to_string()]);
    }
    let internal = format!("127.0.0.1:{}", free_port());
    node.args.splice(
        0..0,
        [
            "--redis-url".to_owned(),
            url.to_owned(),
            "--node-id".to_owned(),
            format!("node-{n}"),
            "--internal-listen".to_owned(),
            internal,
            "--lease-ttl-ms".to_owned(),
            opts.lease_ttl_ms.to_string(),
            "--shard-count".to_owned(),
            opts.shard_count().to_string(),
        ],
    );
    node.env
        .push(("KOFU_CLUSTER_SECRET".to_owned(), TEST_SECRET.to_owned()));
    node
}

/// `kofu registry import` of the nodes' registry file into the deployment's Redis.
fn registry_import(url: &str, opts: &DeploymentOptions, file: &std::path::Path) {
    let mut args = vec!["import".to_owned(), "--redis".to_owned(), url.to_owned()];
    args.push(file.display().to_string());
    registry(args, opts);
}

/// `kofu registry load` of the deployment's population into its Redis.
fn registry_load(url: &str, opts: &DeploymentOptions) {
    let args = [
        ["load", "--redis", url].map(str::to_owned).to_vec(),
        ["--fixture-seed".to_owned(), opts.node.seed.to_string()].to_vec(),
        [
            "--fixture-residents".to_owned(),
            opts.node.residents.to_string(),
        ]
        .to_vec(),
    ]
    .concat();
    registry(args, opts);
}

/// `kofu registry ARGS` against the deployment's Redis (its shard count and CA).
fn registry(mut args: Vec<String>, opts: &DeploymentOptions) {
    args.extend(["--shard-count".to_owned(), opts.shard_count().to_string()]);
    if let Some(ca) = &opts.redis_ca_file {
        args.extend(["--redis-ca-file".to_owned(), ca.display().to_string()]);
    }
    let out = Command::new(kofu_bin())
        .arg("registry")
        .args(&args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kofu registry {}: {e}", args[0]));
    assert!(
        out.status.success(),
        "kofu registry {} failed: {}",
        args[0],
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The keys the node says to trust, as `GET /v1/issuer-key` serves them.
fn issuer_key(node: &KofuNode) -> IssuerKeys {
    let (status, body) = node
        .api_get("/v1/issuer-key", None)
        .unwrap_or_else(|| panic!("no issuer key answer"));
    assert_eq!(status, 200, "issuer-key: {body}");
    let key: kofu_proto::api::IssuerKeyResponse =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("issuer-key body: {e}"));
    IssuerKeys::from_response(&key).unwrap_or_else(|e| panic!("issuer key: {e}"))
}
