//! The environment every scenario body runs in: the deployment under test, the shared
//! HTTP pool, admin and metrics access, the kiosk's document check, and card picking.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use kofu_proto::api::IssuerKeyResponse;
use kofu_proto::{Binding, CertKind};
use kofu_testkit::{
    Card, ClusterOptions, Fixtures, Kiosk, KofuCluster, KofuNode, NodeOptions, Resp,
    verify_document_async,
};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::steps::normalize_spaces;
use crate::{KIOSKS, NOISE_CARDS_PER_KIOSK, NOISE_KIOSKS, RESIDENTS};

/// Everything a scenario may use besides the API bases.
pub(crate) struct Env {
    pub(crate) fx: Fixtures,
    issuer: VerifyingKey,
    /// Admin listeners of every node (one today).
    admins: Vec<String>,
    /// One keep-alive pool for all kiosks of the scenario.
    client: reqwest::Client,
    /// Cards reserved for the background traffic.
    pub(crate) noise_cards: Vec<usize>,
}

/// A running topology: one node, or a cluster with its Redis.
pub(crate) struct Deployment {
    _nodes: Vec<KofuNode>,
    _cluster: Option<KofuCluster>,
    pub(crate) apis: Vec<String>,
    pub(crate) env: Arc<Env>,
}

pub(crate) async fn deploy(flags: &[&str], shard_count: Option<u32>, nodes: usize) -> Deployment {
    let mut args: Vec<String> = flags.iter().map(|s| (*s).to_owned()).collect();
    if nodes == 1
        && let Some(n) = shard_count
    {
        args.extend(["--shard-count".to_owned(), n.to_string()]);
    }
    let opts = NodeOptions {
        residents: RESIDENTS,
        kiosks: KIOSKS,
        args,
        ..NodeOptions::default()
    };
    let seed = opts.seed;
    // Process start and `kofu fixtures` block; the runtime has spare workers.
    let (single, cluster) = if nodes == 1 {
        (
            Some(tokio::task::block_in_place(|| KofuNode::start(opts))),
            None,
        )
    } else {
        let copts = ClusterOptions {
            nodes,
            node: opts,
            shard_count: shard_count.unwrap_or(kofu_proto::DEFAULT_SHARD_COUNT),
            ..ClusterOptions::default()
        };
        (
            None,
            Some(tokio::task::block_in_place(|| KofuCluster::start(copts))),
        )
    };
    let all: Vec<&KofuNode> = match (&single, &cluster) {
        (Some(n), _) => vec![n],
        (None, Some(c)) => c.nodes.iter().flatten().collect(),
        (None, None) => unreachable!("one of the two was started"),
    };
    let apis: Vec<String> = all.iter().map(|n| n.api.clone()).collect();
    let admins: Vec<String> = all.iter().map(|n| n.admin.clone()).collect();
    let node = all[0];
    let fx = tokio::task::block_in_place(|| Fixtures::load(seed, RESIDENTS, KIOSKS));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .pool_idle_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .build()
        .expect("http client");
    let r = Resp::read(
        client
            .get(format!("{}/v1/issuer-key", node.api))
            .send()
            .await,
    )
    .await;
    assert_eq!(r.status, 200, "issuer key: {}", r.text());
    let key: IssuerKeyResponse = r.json();
    let issuer = kofu_proto::verify::issuer_key(&key.public_key).expect("issuer key parses");
    let mut noise_cards: Vec<usize> = ordinary_ixs(&fx)
        .rev()
        .take(NOISE_KIOSKS * NOISE_CARDS_PER_KIOSK)
        .collect();
    noise_cards.reverse();
    let env = Env {
        fx,
        issuer,
        admins,
        client,
        noise_cards,
    };
    // The topology under test must be the one asked for, or incident 6 compares nothing.
    let view = env
        .admin(0, reqwest::Method::GET, "/admin/v1/cluster", None)
        .await;
    assert_eq!(view.status, 200, "cluster view: {}", view.text());
    let expected_shards = shard_count.unwrap_or(kofu_proto::DEFAULT_SHARD_COUNT);
    assert_eq!(
        view.value()["nodes"].as_array().map(Vec::len),
        Some(nodes),
        "the deployment runs the requested number of nodes"
    );
    assert_eq!(
        view.value()["shard_count"],
        json!(expected_shards),
        "the node runs the requested shard count"
    );
    Deployment {
        apis,
        _nodes: single.into_iter().collect(),
        _cluster: cluster,
        env: Arc::new(env),
    }
}

fn ordinary_ixs(fx: &Fixtures) -> impl DoubleEndedIterator<Item = usize> + '_ {
    fx.cards
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.card_revoked && !c.restricted)
        .map(|(i, _)| i)
}

/// A released document that passed the kiosk's check, with its text.
pub(crate) struct Checked {
    pub(crate) binding: Binding,
    pub(crate) text: String,
}

impl Env {
    /// Kiosk number `i`, talking to node `i mod n`: consecutive kiosks hit different nodes.
    pub(crate) fn kiosk(&self, apis: &[String], i: usize) -> Kiosk {
        Kiosk::with_client(
            &apis[i % apis.len()],
            &self.fx.kiosks[i],
            self.client.clone(),
        )
    }

    pub(crate) fn card(&self, ix: usize) -> &Card {
        &self.fx.cards[ix]
    }

    pub(crate) fn picker(&self) -> Picker<'_> {
        Picker {
            env: self,
            used: self.noise_cards.iter().copied().collect(),
        }
    }

    pub(crate) async fn admin(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self
            .client
            .request(
                method,
                format!("{}{path}", self.admins[i % self.admins.len()]),
            )
            .bearer_auth(&self.fx.admin_token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        Resp::read(req.send().await).await
    }

    /// Sum of a metric's samples over every node (all label sets).
    pub(crate) async fn metric_sum(&self, name: &str) -> Result<f64, String> {
        let mut sum = 0.0;
        for admin in &self.admins {
            let r = Resp::read(self.client.get(format!("{admin}/metrics")).send().await).await;
            if r.status != 200 {
                return Err(format!("metrics: status {}", r.status));
            }
            for line in r.text().lines() {
                if line.starts_with('#') {
                    continue;
                }
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

    /// The full kiosk check (issuer signature, doc_sha256, binding session/kiosk/card/
    /// kind/copies, holder's name present and no name from outside the household),
    /// plus the text for scenario-specific checks.
    pub(crate) async fn verify(
        &self,
        card_ix: usize,
        resp: &Resp,
        sid: &str,
        kiosk_id: &str,
        kind: CertKind,
        copies: u8,
    ) -> Result<Checked, String> {
        let (binding, text) = verify_document_async(
            &self.fx,
            self.card(card_ix),
            resp,
            sid,
            kiosk_id,
            kind.as_str(),
            copies,
            &self.issuer,
        )
        .await
        .map_err(|e| format!("MISDELIVERY/REFUSED session {sid} {kind} x{copies}: {e}"))?;
        // The page footers name the record version; it must be the binding's.
        for v in numbers_after(&normalize_spaces(&text), "record version ") {
            if v != binding.record_version {
                return Err(format!(
                    "document {}: text names record version {v}, binding {}",
                    binding.serial, binding.record_version
                ));
            }
        }
        Ok(Checked { binding, text })
    }

    /// Opens `n` pooled connections to every node at once, so that barriers release
    /// requests rather than TCP handshakes.
    pub(crate) async fn warm(&self, apis: &[String], n: usize) {
        let mut set = JoinSet::new();
        for api in apis {
            for _ in 0..n {
                let req = self.client.get(format!("{api}/v1/issuer-key"));
                set.spawn(async move { Resp::read(req.send().await).await.status });
            }
        }
        while let Some(r) = set.join_next().await {
            assert_eq!(r.ok(), Some(200), "warming the connection pool");
        }
    }
}

/// Hands out distinct cards within one scenario (never the noise cards).
pub(crate) struct Picker<'a> {
    env: &'a Env,
    used: HashSet<usize>,
}

impl Picker<'_> {
    /// Up to `n` unused ordinary cards satisfying `pred`, in fixture order.
    pub(crate) fn take(&mut self, n: usize, mut pred: impl FnMut(&Card) -> bool) -> Vec<usize> {
        let out: Vec<usize> = ordinary_ixs(&self.env.fx)
            .filter(|i| !self.used.contains(i) && pred(&self.env.fx.cards[*i]))
            .take(n)
            .collect();
        self.used.extend(&out);
        out
    }
}

/// Every integer that directly follows `prefix` in `text`.
fn numbers_after(text: &str, prefix: &str) -> Vec<u64> {
    text.match_indices(prefix)
        .filter_map(|(at, _)| {
            let digits: String = text[at + prefix.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}
