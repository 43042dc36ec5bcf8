//! What a chaos run reports: the JSON (documents verified, sessions, faults by kind with
//! the skipped kinds and why, anomalies by kind with examples, failover and recovery
//! times, the fault timeline, and the load report of the replay code underneath) and the
//! HTML page (the load report's charts with the faults shaded on them).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::style::RGBColor;
use serde::Serialize;

use super::check::{Anomalies, KINDS};
use super::nemesis::Fault;
use super::schedule::Kind;
use crate::history::{Event, Op};
use crate::report::Report;
use crate::report::html::{Band, esc, page};

/// Times after the faults of one kind, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recovery {
    /// Faults measured.
    pub samples: usize,
    /// From the heal until every affected node opened a session again.
    pub recovery_p50_ms: u64,
    pub recovery_max_ms: u64,
    /// From the injection until every affected node opened a session again (for a
    /// Redis fault: the failover as kiosks see it).
    pub outage_p50_ms: u64,
    pub outage_max_ms: u64,
}

/// The settings a run used.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// The run's id (kofu-load's pid): its namespaces, links and nft table carry it.
    pub run: u32,
    pub nodes: usize,
    pub shards: u32,
    pub lease_ttl_ms: u64,
    pub idle_timeout_ms: u64,
    pub render_deadline_ms: u64,
    pub rate_per_s: f64,
    pub residents: u32,
    pub kiosks: u32,
    /// `namespaces` or `loopback` (and why).
    pub network: String,
    /// How much the faults' holds and gaps were shortened to fit the run (1: not at all).
    pub fault_pace: f64,
}

/// The JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    pub seed: u64,
    pub minutes: f64,
    pub setup: Setup,
    pub documents_verified: u64,
    pub sessions_started: u64,
    pub sessions_completed: u64,
    pub requests: u64,
    /// Answers by status (`none`: no answer).
    pub answers: BTreeMap<String, u64>,
    /// Faults injected, by kind (every kind listed; 0 for a skipped one).
    pub faults: BTreeMap<&'static str, u64>,
    /// Kinds not injected on this machine, and why.
    pub faults_skipped: BTreeMap<&'static str, String>,
    /// Faults whose injection or heal went wrong (see the timeline).
    pub fault_errors: u64,
    pub anomalies: BTreeMap<&'static str, u64>,
    pub anomaly_examples: BTreeMap<&'static str, Vec<String>>,
    pub recovery: BTreeMap<&'static str, Recovery>,
    pub audit_records: usize,
    pub timeline: Vec<Fault>,
    pub load: Report,
}

fn percentile(mut v: Vec<u64>, q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Recovery and outage per fault kind: the first session opened (`201`) through each
/// affected node after the heal, and after the injection.
pub fn recovery(
    faults: &[Fault],
    events: &[Event],
    nodes: usize,
) -> BTreeMap<&'static str, Recovery> {
    let mut creates: Vec<(u64, u64, usize)> = events
        .iter()
        .filter(|e| e.op == Op::Create && e.status == Some(201))
        .filter_map(|e| Some((e.start_us, e.end_us, usize::from(e.node?))))
        .collect();
    creates.sort_unstable();
    let first_after = |node: usize, t: u64| {
        let i = creates.partition_point(|c| c.0 < t);
        creates[i..].iter().find(|c| c.2 == node).map(|c| c.1 - t)
    };
    let mut by_kind: BTreeMap<&'static str, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
    for f in faults.iter().filter(|f| f.error.is_none()) {
        let affected: Vec<usize> = match f.node {
            Some(n) => vec![n],
            None => (0..nodes).collect(),
        };
        let worst = |t: u64| {
            affected
                .iter()
                .map(|n| first_after(*n, t))
                .collect::<Option<Vec<u64>>>()
                .and_then(|v| v.into_iter().max())
        };
        if let (Some(rec), Some(out)) = (worst(f.heal_ms * 1000), worst(f.start_ms * 1000)) {
            let e = by_kind.entry(f.kind.as_str()).or_default();
            e.0.push(rec / 1000);
            e.1.push(out / 1000);
        }
    }
    by_kind
        .into_iter()
        .map(|(k, (rec, out))| {
            let r = Recovery {
                samples: rec.len(),
                recovery_p50_ms: percentile(rec.clone(), 0.5),
                recovery_max_ms: percentile(rec, 1.0),
                outage_p50_ms: percentile(out.clone(), 0.5),
                outage_max_ms: percentile(out, 1.0),
            };
            (k, r)
        })
        .collect()
}

/// Answers by status.
pub fn answers(events: &[Event]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for e in events {
        let key = e
            .status
            .map_or_else(|| "none".to_owned(), |s| s.to_string());
        *m.entry(key).or_default() += 1;
    }
    m
}

/// Faults by kind (all kinds listed).
pub fn fault_counts(faults: &[Fault]) -> BTreeMap<&'static str, u64> {
    let mut m: BTreeMap<&'static str, u64> = Kind::ALL.iter().map(|k| (k.as_str(), 0)).collect();
    for f in faults.iter().filter(|f| f.error.is_none()) {
        *m.entry(f.kind.as_str()).or_default() += 1;
    }
    m
}

pub fn anomaly_maps(
    a: &Anomalies,
) -> (
    BTreeMap<&'static str, u64>,
    BTreeMap<&'static str, Vec<String>>,
) {
    (a.counts.clone(), a.examples.clone())
}

fn color(kind: Kind) -> RGBColor {
    match kind {
        Kind::NodeKill | Kind::NodePause => RGBColor(230, 120, 0),
        Kind::RedisPause | Kind::RedisKill | Kind::RedisFailover | Kind::ReplicaLoss => {
            RGBColor(200, 0, 0)
        }
        Kind::ClockSkew => RGBColor(130, 0, 160),
        _ => RGBColor(0, 90, 200),
    }
}

impl ChaosReport {
    pub fn print(&self) {
        println!(
            "kofu-load chaos: seed {}, {:.1} min, {} nodes, network: {}",
            self.seed, self.minutes, self.setup.nodes, self.setup.network
        );
        println!(
            "  sessions        {} started, {} completed; {} documents verified; {} requests",
            self.sessions_started, self.sessions_completed, self.documents_verified, self.requests
        );
        let injected: Vec<String> = self
            .faults
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!("  faults          {}", injected.join(", "));
        for (k, why) in &self.faults_skipped {
            println!("    skipped {k}: {why}");
        }
        for (k, r) in &self.recovery {
            println!(
                "  recovery        {k}: after heal p50 {} ms max {} ms; outage p50 {} ms max {} ms ({} faults)",
                r.recovery_p50_ms, r.recovery_max_ms, r.outage_p50_ms, r.outage_max_ms, r.samples
            );
        }
        let total: u64 = self.anomalies.values().sum();
        println!("  anomalies       {total}");
        for (k, n) in self.anomalies.iter().filter(|(_, n)| **n > 0) {
            println!("    {k}: {n}");
            for ex in self.anomaly_examples.get(k).into_iter().flatten().take(3) {
                println!("      {ex}");
            }
        }
    }

    /// The HTML page.
    pub fn html(&self) -> String {
        let bands: Vec<Band> = self
            .timeline
            .iter()
            .map(|f| Band {
                from_s: f.start_ms as f64 / 1e3,
                to_s: f.healed_ms as f64 / 1e3,
                label: f.kind.as_str().to_owned(),
                color: color(f.kind),
            })
            .collect();
        let mut x = String::new();
        let total: u64 = self.anomalies.values().sum();
        let verdict = if total == 0 { "ok" } else { "bad" };
        let _ = write!(
            x,
            "<p class={verdict}>{total} anomalies</p><p>seed {} &middot; {:.1} min &middot; {} nodes, {} shards, lease TTL {} ms, idle timeout {} ms &middot; network: {}</p>",
            self.seed,
            self.minutes,
            self.setup.nodes,
            self.setup.shards,
            self.setup.lease_ttl_ms,
            self.setup.idle_timeout_ms,
            esc(&self.setup.network)
        );
        x.push_str("<h2>Anomalies</h2><table><tr><th>kind</th><th>count</th><th>meaning and examples</th></tr>");
        for (kind, meaning) in KINDS {
            let n = self.anomalies.get(kind).copied().unwrap_or(0);
            let examples: String = self
                .anomaly_examples
                .get(kind)
                .into_iter()
                .flatten()
                .map(|e| format!("<br><code>{}</code>", esc(e)))
                .collect();
            let _ = write!(
                x,
                "<tr><td>{kind}</td><td>{n}</td><td style=text-align:left>{}{examples}</td></tr>",
                esc(meaning)
            );
        }
        x.push_str("</table><h2>Faults</h2><table><tr><th>kind</th><th>injected</th><th>recovery p50/max ms</th><th>outage p50/max ms</th></tr>");
        for (kind, n) in &self.faults {
            let (rec, out) = self
                .recovery
                .get(kind)
                .map_or(("-".into(), "-".into()), |r| {
                    (
                        format!("{}/{}", r.recovery_p50_ms, r.recovery_max_ms),
                        format!("{}/{}", r.outage_p50_ms, r.outage_max_ms),
                    )
                });
            let n = match self.faults_skipped.get(kind) {
                Some(why) => format!("skipped: {}", esc(why)),
                None => n.to_string(),
            };
            let _ = write!(
                x,
                "<tr><td>{kind}</td><td>{n}</td><td>{rec}</td><td>{out}</td></tr>"
            );
        }
        x.push_str("</table><h2>Fault timeline</h2><table><tr><th>injected s</th><th>healed s</th><th>kind</th><th>what</th></tr>");
        for f in &self.timeline {
            let _ = write!(
                x,
                "<tr><td>{:.1}</td><td>{:.1}</td><td>{}</td><td style=text-align:left>{}{}</td></tr>",
                f.start_ms as f64 / 1e3,
                f.healed_ms as f64 / 1e3,
                f.kind.as_str(),
                esc(&f.detail),
                f.error
                    .as_ref()
                    .map_or_else(String::new, |e| format!(" <b>failed: {}</b>", esc(e)))
            );
        }
        x.push_str("</table>");
        page(&self.load, "kofu-load chaos report", &x, &bands)
    }
}
