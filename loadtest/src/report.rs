//! What a replay measured: latency per step (HdrHistogram, from the *intended* send time
//! so a stalled target shows in the tail), errors by step and code, misdeliveries, late
//! starts, and per-second series for plots; the JSON report and `--fail-if` thresholds.

pub mod html;

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// A duration as the histograms keep it: whole µs, at least 1 (their lowest value).
fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

fn histogram(sigfig: u8) -> Histogram<u64> {
    // 1 µs .. 1 h; constant bounds, so this cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000, sigfig).expect("constant histogram bounds")
}

/// Everything recorded during a replay; merged into a `Report` at the end.
pub struct Collector {
    steps: BTreeMap<&'static str, Histogram<u64>>,
    all: Histogram<u64>,
    /// How late the generator woke for a step or session it had to wait for.
    woke: Histogram<u64>,
    seconds: Vec<Second>,
    pub counts: Counts,
}

/// What a replay counts, as the collector keeps it and the report shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub sessions_started: u64,
    pub sessions_completed: u64,
    pub late_starts: u64,
    pub requests: u64,
    pub error_requests: u64,
    pub errors: BTreeMap<String, u64>,
    pub misdeliveries: u64,
    pub misdelivery_samples: Vec<String>,
    pub documents_verified: u64,
}

struct Second {
    requests: u64,
    errors: u64,
    completed: u64,
    latency: Histogram<u64>,
}

impl Default for Collector {
    fn default() -> Collector {
        Collector {
            steps: BTreeMap::new(),
            all: histogram(3),
            woke: histogram(3),
            seconds: Vec::new(),
            counts: Counts::default(),
        }
    }
}

impl Collector {
    fn second(&mut self, at: Duration) -> &mut Second {
        let i = at.as_secs() as usize;
        while self.seconds.len() <= i {
            self.seconds.push(Second {
                requests: 0,
                errors: 0,
                completed: 0,
                latency: histogram(2),
            });
        }
        &mut self.seconds[i]
    }

    /// One request of `step`, `latency` from its intended send time, finished `at` after
    /// the replay began; `error` names an unexpected outcome.
    pub fn request(
        &mut self,
        step: &'static str,
        latency: Duration,
        at: Duration,
        error: Option<String>,
    ) {
        let us = micros(latency);
        self.counts.requests += 1;
        let _ = self.all.record(us);
        let _ = self
            .steps
            .entry(step)
            .or_insert_with(|| histogram(3))
            .record(us);
        let failed = error.is_some();
        if let Some(e) = error {
            self.counts.error_requests += 1;
            *self.counts.errors.entry(e).or_default() += 1;
        }
        let s = self.second(at);
        s.requests += 1;
        s.errors += u64::from(failed);
        let _ = s.latency.record(us);
    }

    pub fn woke_late(&mut self, late: Duration) {
        let _ = self.woke.record(micros(late));
    }

    pub fn completed(&mut self, at: Duration) {
        self.counts.sessions_completed += 1;
        self.second(at).completed += 1;
    }

    pub fn misdelivery(&mut self, why: String) {
        self.counts.misdeliveries += 1;
        if self.counts.misdelivery_samples.len() < 20 {
            self.counts.misdelivery_samples.push(why);
        }
    }

    pub fn report(&self, planned: u64, elapsed: Duration, meta: ReportMeta) -> Report {
        let secs = elapsed.as_secs_f64().max(1e-9);
        Report {
            meta,
            sessions_planned: planned,
            counts: self.counts.clone(),
            elapsed_s: secs,
            sessions_per_s: self.counts.sessions_completed as f64 / secs,
            requests_per_s: self.counts.requests as f64 / secs,
            latency: Percentiles::of(&self.all),
            generator_late: Percentiles::of(&self.woke),
            steps: self
                .steps
                .iter()
                .map(|(k, h)| ((*k).to_owned(), Percentiles::of(h)))
                .collect(),
            series: self
                .seconds
                .iter()
                .enumerate()
                .map(|(t, s)| SecondReport {
                    t: t as u64,
                    requests: s.requests,
                    errors: s.errors,
                    sessions_completed: s.completed,
                    p50_ms: ms(s.latency.value_at_quantile(0.5)),
                    p99_ms: ms(s.latency.value_at_quantile(0.99)),
                })
                .collect(),
        }
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportMeta {
    pub trace: String,
    pub targets: Vec<String>,
    pub speed: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecondReport {
    pub t: u64,
    pub requests: u64,
    pub errors: u64,
    pub sessions_completed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub meta: ReportMeta,
    pub sessions_planned: u64,
    #[serde(flatten)]
    pub counts: Counts,
    pub elapsed_s: f64,
    pub sessions_per_s: f64,
    pub requests_per_s: f64,
    pub latency: Percentiles,
    /// The generator's own lateness: how long after a step's or session's intended time
    /// it woke to send it (part of `latency`, which runs from the intended time).
    pub generator_late: Percentiles,
    pub steps: BTreeMap<String, Percentiles>,
    pub series: Vec<SecondReport>,
}

impl Report {
    pub fn print(&self) {
        println!(
            "kofu-load: {} sessions planned, {} started ({} late), {} completed in {:.1} s",
            self.sessions_planned,
            self.counts.sessions_started,
            self.counts.late_starts,
            self.counts.sessions_completed,
            self.elapsed_s
        );
        println!(
            "  throughput      {:.0} sessions/s, {:.0} requests/s",
            self.sessions_per_s, self.requests_per_s
        );
        println!(
            "  documents       {} verified, {} misdelivered",
            self.counts.documents_verified, self.counts.misdeliveries
        );
        println!(
            "  errors          {} of {} requests",
            self.counts.error_requests, self.counts.requests
        );
        for (what, n) in &self.counts.errors {
            println!("    {what}: {n}");
        }
        println!("  latency from the intended send time (ms):");
        println!(
            "    {:<15} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "step", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        let mut rows: Vec<(&str, &Percentiles)> =
            self.steps.iter().map(|(k, v)| (k.as_str(), v)).collect();
        rows.push(("all", &self.latency));
        for (step, p) in rows {
            println!(
                "    {step:<15} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms
            );
        }
        let g = &self.generator_late;
        println!(
            "  the generator woke after the intended time (ms, part of the latency above): \
             p50 {:.2}, p99 {:.2}, max {:.2}",
            g.p50_ms, g.p99_ms, g.max_ms
        );
    }
}

/// One `--fail-if` condition: `METRIC OP VALUE`, where METRIC is `p50|p90|p99|p999|max`
/// (optionally `STEP.` first), `errors`, `misdeliveries` or `late`, and VALUE takes `ms`,
/// `s`, `us` or `%` (of requests, or of sessions for `late`).
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    text: String,
    metric: String,
    op: Op,
    value: f64,
    percent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

pub fn parse_thresholds(spec: &str) -> Result<Vec<Threshold>, String> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_threshold)
        .collect()
}

fn parse_threshold(text: &str) -> Result<Threshold, String> {
    let ops = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("<", Op::Lt),
        (">", Op::Gt),
        ("=", Op::Eq),
    ];
    let (at, sym, op) = ops
        .iter()
        .filter_map(|(sym, op)| text.find(sym).map(|at| (at, *sym, *op)))
        .min_by_key(|(at, sym, _)| (*at, std::cmp::Reverse(sym.len())))
        .ok_or_else(|| format!("{text:?}: no comparison (<, <=, >, >=, =)"))?;
    let metric = text[..at].trim().to_owned();
    let raw = text[at + sym.len()..].trim();
    let (number, scale, percent) = if let Some(n) = raw.strip_suffix('%') {
        (n, 1.0, true)
    } else if let Some(n) = raw.strip_suffix("ms") {
        (n, 1.0, false)
    } else if let Some(n) = raw.strip_suffix("us") {
        (n, 0.001, false)
    } else if let Some(n) = raw.strip_suffix('s') {
        (n, 1000.0, false)
    } else {
        (raw, 1.0, false)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: {raw:?} is not a number"))?;
    let known = ["errors", "misdeliveries", "late"];
    let quantile = metric.rsplit('.').next().unwrap_or_default();
    if !known.contains(&metric.as_str())
        && !["p50", "p90", "p99", "p999", "max"].contains(&quantile)
    {
        return Err(format!("{text:?}: unknown metric {metric:?}"));
    }
    Ok(Threshold {
        text: text.to_owned(),
        metric,
        op,
        value: value * scale,
        percent,
    })
}

impl Threshold {
    /// The measured value, or `None` for a step the replay never ran.
    fn measure(&self, r: &Report) -> Option<f64> {
        let share = |n: u64, of: u64| {
            if self.percent {
                100.0 * n as f64 / of.max(1) as f64
            } else {
                n as f64
            }
        };
        match self.metric.as_str() {
            "errors" => Some(share(r.counts.error_requests, r.counts.requests)),
            "misdeliveries" => Some(share(
                r.counts.misdeliveries,
                r.counts.documents_verified + r.counts.misdeliveries,
            )),
            "late" => Some(share(r.counts.late_starts, r.counts.sessions_started)),
            m => {
                let (step, q) = m.rsplit_once('.').unwrap_or(("", m));
                let p = if step.is_empty() {
                    Some(&r.latency)
                } else {
                    r.steps.get(step)
                }?;
                Some(match q {
                    "p50" => p.p50_ms,
                    "p90" => p.p90_ms,
                    "p99" => p.p99_ms,
                    "p999" => p.p999_ms,
                    _ => p.max_ms,
                })
            }
        }
    }

    /// `Err(why)` when the report breaks this threshold.
    pub fn check(&self, r: &Report) -> Result<(), String> {
        let Some(v) = self.measure(r) else {
            return Err(format!("{}: no such step in this replay", self.text));
        };
        let ok = match self.op {
            Op::Lt => v < self.value,
            Op::Le => v <= self.value,
            Op::Gt => v > self.value,
            Op::Ge => v >= self.value,
            Op::Eq => (v - self.value).abs() < 1e-9,
        };
        if ok {
            Ok(())
        } else {
            Err(format!("{} (measured {v:.3})", self.text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(p99_us: u64, errors: u64, requests: u64) -> Report {
        let mut c = Collector::default();
        for i in 0..requests {
            let err = (i < errors).then(|| "job 503 unavailable".to_owned());
            c.request("job", Duration::from_micros(p99_us), Duration::ZERO, err);
        }
        one_second_of(&c)
    }

    fn one_second_of(c: &Collector) -> Report {
        c.report(
            1,
            Duration::from_secs(1),
            ReportMeta {
                trace: String::new(),
                targets: Vec::new(),
                speed: 1.0,
            },
        )
    }

    #[test]
    fn the_generators_lateness_is_reported_apart() {
        let mut c = Collector::default();
        for ms in [1u64, 1, 1, 2, 9] {
            c.woke_late(Duration::from_millis(ms));
        }
        let r = one_second_of(&c);
        assert_eq!(r.generator_late.count, 5);
        assert!(
            (r.generator_late.p50_ms - 1.0).abs() < 0.01,
            "{:?}",
            r.generator_late
        );
        assert!(
            (r.generator_late.max_ms - 9.0).abs() < 0.01,
            "{:?}",
            r.generator_late
        );
        // Not requests: the request latencies stay empty.
        assert_eq!(r.latency.count, 0);
    }

    #[test]
    fn thresholds_parse_and_judge() {
        let t =
            parse_thresholds("p99<50ms, errors<0.1%,misdeliveries=0,job.p999<=2s").expect("parses");
        assert_eq!(t.len(), 4);
        let fast = report(10_000, 0, 2000);
        assert!(t.iter().all(|t| t.check(&fast).is_ok()));
        let slow = report(60_000, 0, 2000);
        assert!(t[0].check(&slow).is_err());
        let failing = report(10_000, 3, 2000);
        assert!(t[1].check(&failing).is_err(), "0.15% errors");
        assert!(parse_thresholds("p99 50ms").is_err());
        assert!(parse_thresholds("latency<5ms").is_err());
        assert!(parse_thresholds("errors<lots").is_err());
        let missing = parse_thresholds("close.p99<1s").expect("parses");
        assert!(missing[0].check(&fast).is_err(), "a step never run fails");
    }
}
