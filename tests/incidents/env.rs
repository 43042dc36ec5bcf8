//! The environment every scenario body runs in: the deployment under test, the shared
//! HTTP pool, admin and metrics access, the kiosk's document check, and card picking.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kofu_kiosk::{CallError, Expected, Fetched, Released};
use kofu_proto::{Binding, CertKind};
use kofu_testkit::{
    Card, Client, Deployment, DeploymentOptions, Fixtures, Kiosk, Method, Resp, normalize_spaces,
};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::{KIOSKS, NOISE_CARDS_PER_KIOSK, NOISE_KIOSKS, RESIDENTS};

/// Everything a scenario may use besides the API bases.
pub(crate) struct Env {
    pub(crate) fx: &'static Fixtures,
    deployment: Deployment,
    /// One keep-alive pool for all kiosks of the scenario.
    client: Client,
    /// Cards reserved for the background traffic.
    pub(crate) noise_cards: Vec<usize>,
}

/// Starts `nodes` nodes (a Redis-coordinated cluster when more than one) with `flags`,
/// and checks that the topology is the one asked for.
pub(crate) async fn deploy(flags: &[&str], shard_count: Option<u32>, nodes: usize) -> Arc<Env> {
    let mut opts = DeploymentOptions::nodes(nodes);
    opts.shard_count = shard_count;
    opts.node.residents = RESIDENTS;
    opts.node.kiosks = KIOSKS;
    opts.node.args = flags.iter().map(|s| (*s).to_owned()).collect();
    // Process start and `kofu fixtures` block; the runtime has spare workers.
    let deployment = tokio::task::block_in_place(|| Deployment::start(opts));
    let fx = deployment.fixtures();
    let client = Client::builder()
        .targets(deployment.apis())
        .pool_max_idle_per_host(512)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client");
    let mut noise_cards: Vec<usize> = fx
        .ordinary_indices()
        .rev()
        .take(NOISE_KIOSKS * NOISE_CARDS_PER_KIOSK)
        .collect();
    noise_cards.reverse();
    let env = Env {
        fx,
        deployment,
        client,
        noise_cards,
    };
    // The topology under test must be the one asked for, or incident 6 compares nothing.
    let view = env.admin(0, Method::GET, "/admin/v1/cluster", None).await;
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
    Arc::new(env)
}

/// A released document that passed the kiosk's check, with its text.
pub(crate) struct Checked {
    pub(crate) binding: Binding,
    pub(crate) text: String,
}

impl Env {
    /// Kiosk API bases of the nodes.
    pub(crate) fn apis(&self) -> Vec<String> {
        self.deployment.apis()
    }

    /// Kiosk number `i`, talking to node `i mod n`: consecutive kiosks hit different nodes.
    pub(crate) fn kiosk(&self, apis: &[String], i: usize) -> Kiosk {
        self.client
            .with_targets(apis)
            .pinned(i)
            .kiosk(&self.fx.kiosks[i])
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

    /// An admin request to node `i mod n`.
    pub(crate) async fn admin(
        &self,
        i: usize,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        self.deployment.admin(i, method, path, body).await
    }

    /// Sum of a metric's samples over every node (all label sets).
    pub(crate) async fn metric_sum(&self, name: &str) -> Result<f64, String> {
        self.deployment.metric_sum(name).await
    }

    /// The full kiosk check (issuer signature, doc_sha256, binding session/kiosk/card/
    /// kind/copies, holder's name present and no name from outside the household),
    /// plus the text for scenario-specific checks.
    pub(crate) async fn verify(
        &self,
        card_ix: usize,
        doc: &Released,
        sid: &str,
        kiosk_id: &str,
        kind: CertKind,
        copies: u8,
    ) -> Result<Checked, String> {
        let order = Expected {
            session_id: sid,
            kiosk_id,
            card: &self.card(card_ix).id,
            kind,
            copies,
        };
        let verified = kofu_testkit::strict(self.fx, self.deployment.issuer())
            .verify(doc, &order)
            .await
            .map_err(|e| format!("MISDELIVERY/REFUSED session {sid} {kind} x{copies}: {e}"))?;
        let (binding, text) = (verified.binding, verified.text.unwrap_or_default());
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

    /// [`Env::verify`] of what a fetch gave; anything but a document fails.
    pub(crate) async fn check(
        &self,
        card_ix: usize,
        fetched: &Result<Fetched, CallError>,
        sid: &str,
        kiosk_id: &str,
        kind: CertKind,
        copies: u8,
    ) -> Result<Checked, String> {
        match fetched {
            Ok(Fetched::Ready(doc)) => self.verify(card_ix, doc, sid, kiosk_id, kind, copies).await,
            other => Err(crate::steps::not_released("document", other)),
        }
    }

    /// Opens `n` pooled connections to every node at once, so that barriers release
    /// requests rather than TCP handshakes.
    pub(crate) async fn warm(&self, apis: &[String], n: usize) {
        let mut set = JoinSet::new();
        for api in apis {
            for _ in 0..n {
                let (client, url) = (self.client.clone(), format!("{api}/v1/issuer-key"));
                set.spawn(async move { client.request(Method::GET, &url, None, None).await });
            }
        }
        while let Some(r) = set.join_next().await {
            assert_eq!(
                r.ok().map(|r| r.status),
                Some(200),
                "warming the connection pool"
            );
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
        let out: Vec<usize> = self
            .env
            .fx
            .ordinary_indices()
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
