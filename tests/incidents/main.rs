//! DESIGN.md's seven incidents as named end-to-end scenarios under concurrent load.
//!
//! Each scenario body is a function of the API base URLs (`&[String]`) and an [`Env`]
//! (fixtures, issuer key, admin listeners), so the same body runs against one node and
//! against a three-node cluster: that is what incident 6 (configuration drift) is about. Every body also runs a little background
//! traffic ([`Noise`](noise::Noise)) so that nothing it checks holds only on an idle node.

mod drift;
mod env;
mod multi_page;
mod noise;
mod record_update;
mod retry;
mod simultaneous;
mod stale_data;
mod steps;
mod timeout;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kofu_testkit::suite::RENDER_TIMEOUT_FLAGS;
use tokio::task::JoinSet;

use crate::env::{Env, deploy};

/// One population for every scenario: enough kiosks for incident 2 (>= 100 stores).
const RESIDENTS: u32 = 500;
const KIOSKS: u32 = 130;
/// The last kiosks of the population carry the background traffic.
const NOISE_KIOSKS: usize = 4;
const NOISE_CARDS_PER_KIOSK: usize = 2;
/// Bounds every noise loop even if nobody stops it.
const NOISE_MAX_SESSIONS: usize = 300;
/// A whole scenario, node start included; a hang fails the test instead of CI.
const SCENARIO_BUDGET: Duration = Duration::from_secs(80);
/// How long one job may take from the first fetch to a final answer.
const FETCH_BUDGET: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------
// The named tests: one node each, default shard count.
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_1_timeout_under_load() {
    run_on(Scenario::TimeoutUnderLoad, None, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_2_near_simultaneous_requests() {
    run_on(Scenario::NearSimultaneous, None, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_3_record_update_during_issuance() {
    run_on(Scenario::RecordUpdate, None, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_4_multi_page_documents() {
    run_on(Scenario::MultiPage, None, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_5_stale_data_revocation() {
    run_on(Scenario::StaleData, None, 1).await;
}

/// Configuration drift: the same scenario bodies against a node with one shard, a node
/// with the default 1,024 and a three-node cluster must give the same results, because
/// no safety feature may depend on the topology; nothing in the bodies knows how many
/// nodes there are.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_6_configuration_drift() {
    drift::configuration_drift().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_7_error_and_retry() {
    run_on(Scenario::ErrorAndRetry, None, 1).await;
}

// The same scenarios on a three-node cluster (a private redis-server), requests spread
// over the nodes.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_1_timeout_under_load_on_three_nodes() {
    run_on(Scenario::TimeoutUnderLoad, None, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_2_near_simultaneous_requests_on_three_nodes() {
    run_on(Scenario::NearSimultaneous, None, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_3_record_update_during_issuance_on_three_nodes() {
    run_on(Scenario::RecordUpdate, None, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_4_multi_page_documents_on_three_nodes() {
    run_on(Scenario::MultiPage, None, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_5_stale_data_revocation_on_three_nodes() {
    run_on(Scenario::StaleData, None, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_7_error_and_retry_on_three_nodes() {
    run_on(Scenario::ErrorAndRetry, None, 3).await;
}

// ---------------------------------------------------------------------------------
// Scenarios and summaries.
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    TimeoutUnderLoad,
    NearSimultaneous,
    RecordUpdate,
    MultiPage,
    StaleData,
    ErrorAndRetry,
}

impl Scenario {
    const ALL: [Scenario; 6] = [
        Scenario::TimeoutUnderLoad,
        Scenario::NearSimultaneous,
        Scenario::RecordUpdate,
        Scenario::MultiPage,
        Scenario::StaleData,
        Scenario::ErrorAndRetry,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::TimeoutUnderLoad => "incident 1 (timeout under load)",
            Scenario::NearSimultaneous => "incident 2 (near-simultaneous requests)",
            Scenario::RecordUpdate => "incident 3 (record update during issuance)",
            Scenario::MultiPage => "incident 4 (multi-page documents)",
            Scenario::StaleData => "incident 5 (stale data)",
            Scenario::ErrorAndRetry => "incident 7 (error and retry)",
        }
    }

    /// The fault flags a scenario needs; the same on every topology.
    fn flags(self) -> &'static [&'static str] {
        match self {
            Scenario::TimeoutUnderLoad => &RENDER_TIMEOUT_FLAGS,
            // Renders take a while, so registry updates land while documents render.
            Scenario::RecordUpdate => &["--render-delay-ms", "200"],
            // Seal jobs are still rendering when their registration is revoked.
            Scenario::StaleData => &["--render-delay-ms", "1000"],
            // Long polls are in flight when the kiosk drops its connection.
            Scenario::ErrorAndRetry => &["--render-delay-ms", "300"],
            Scenario::NearSimultaneous | Scenario::MultiPage => &[],
        }
    }

    async fn run(self, apis: &[String], env: &Arc<Env>) -> Summary {
        match self {
            Scenario::TimeoutUnderLoad => timeout::timeout_under_load(apis, env).await,
            Scenario::NearSimultaneous => simultaneous::near_simultaneous_requests(apis, env).await,
            Scenario::RecordUpdate => record_update::record_update_during_issuance(apis, env).await,
            Scenario::MultiPage => multi_page::multi_page_documents(apis, env).await,
            Scenario::StaleData => stale_data::stale_data_revocation(apis, env).await,
            Scenario::ErrorAndRetry => retry::error_and_retry(apis, env).await,
        }
    }
}

/// What a scenario run showed. `exact` counts are deterministic, so they must be the
/// same on every topology; `seen` counts depend on timing (which job hit the injected
/// delay, how much background traffic ran) and are only reported: every outcome a
/// scenario needs (say, both voided and released jobs) is asserted by its body.
#[derive(Debug, Default)]
struct Summary {
    exact: BTreeMap<&'static str, u64>,
    seen: BTreeMap<&'static str, u64>,
}

/// What tasks of a scenario report: counters, released serials and failures. Tasks
/// never panic, so one bad answer cannot leave others waiting at a barrier.
#[derive(Debug, Default)]
struct Tally {
    n: BTreeMap<&'static str, u64>,
    serials: Vec<String>,
    fails: Vec<String>,
}

impl Tally {
    fn add(&mut self, key: &'static str, v: u64) {
        *self.n.entry(key).or_default() += v;
    }

    fn fail(&mut self, msg: impl Into<String>) {
        self.fails.push(msg.into());
    }

    fn merge(&mut self, other: Tally) {
        for (k, v) in other.n {
            self.add(k, v);
        }
        self.serials.extend(other.serials);
        self.fails.extend(other.fails);
    }

    /// Collects every task of a join set.
    async fn join(&mut self, mut tasks: JoinSet<Tally>) {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(t) => self.merge(t),
                Err(e) => self.fail(format!("a scenario task died: {e}")),
            }
        }
    }

    fn get(&self, key: &str) -> u64 {
        self.n.get(key).copied().unwrap_or_default()
    }

    /// Asserts no failure and unique serials, then splits the counters into a summary.
    fn finish(self, name: &str, exact_keys: &[&'static str]) -> Summary {
        let mut dup = 0;
        let mut serials = HashSet::new();
        for s in &self.serials {
            if !serials.insert(s.as_str()) {
                dup += 1;
            }
        }
        assert!(
            self.fails.is_empty(),
            "{name}: {} failure(s):\n{}",
            self.fails.len(),
            self.fails
                .iter()
                .take(25)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert_eq!(dup, 0, "{name}: {dup} serial(s) released twice");
        let mut summary = Summary::default();
        for (k, v) in self.n {
            if exact_keys.contains(&k) {
                summary.exact.insert(k, v);
            } else {
                summary.seen.insert(k, v);
            }
        }
        for k in exact_keys {
            summary.exact.entry(k).or_default();
        }
        summary
    }
}

/// Starts `nodes` nodes (a Redis-coordinated cluster when more than one) for
/// `scenario`, runs it, checks the deployment-wide invariants afterwards.
async fn run_on(scenario: Scenario, shard_count: Option<u32>, nodes: usize) -> Summary {
    let started = Instant::now();
    let run = async {
        let env = deploy(scenario.flags(), shard_count, nodes).await;
        let summary = scenario.run(&env.apis(), &env).await;
        // The node's own check of every binding against its session must never trip.
        let self_check = env
            .metric_sum("kofu_binding_self_check_failures_total")
            .await;
        assert_eq!(self_check, Ok(0.0), "binding self-check failures");
        summary
    };
    let summary = tokio::time::timeout(SCENARIO_BUDGET, run)
        .await
        .unwrap_or_else(|_| panic!("{} exceeded {SCENARIO_BUDGET:?}", scenario.name()));
    eprintln!(
        "{} on {nodes} node(s), shard count {}: {:?} in {:?}",
        scenario.name(),
        shard_count.map_or("default".to_owned(), |n| n.to_string()),
        summary,
        started.elapsed()
    );
    summary
}
