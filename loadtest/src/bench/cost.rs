//! Where a bench target's sessions spent their CPU: the server processes, Redis and the
//! generator (this process), from `/proc/<pid>/stat` and Redis's `INFO` deltas over
//! the measured run, divided by the sessions completed. Redis round trips are its read
//! events (`total_reads_processed`): pipelined commands arriving together count once.

use std::collections::BTreeMap;

/// `/proc/<pid>/stat` counts in USER_HZ ticks, which Linux fixes at 100 per second.
const TICK_US: f64 = 10_000.0;

/// CPU time of a process so far, microseconds: (user, system).
fn cpu_us(pid: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is the first,
    // utime the 12th and stime the 13th.
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let field = |i: usize| {
        rest.split_whitespace()
            .nth(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field(11) * TICK_US, field(12) * TICK_US)
}

/// Redis's own counters: CPU seconds as microseconds, read events, and calls per
/// command.
#[derive(Debug, Default, Clone)]
struct RedisStats {
    cpu_us: f64,
    reads: f64,
    calls: BTreeMap<String, f64>,
}

fn redis_stats(url: &str) -> anyhow::Result<RedisStats> {
    let mut con = redis::Client::open(url)?.get_connection()?;
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .arg("stats")
        .arg("commandstats")
        .query(&mut con)?;
    let mut s = RedisStats::default();
    for line in info.lines() {
        let Some((key, value)) = line.trim().split_once(':') else {
            continue;
        };
        match key {
            "used_cpu_sys" | "used_cpu_user" => s.cpu_us += value.parse::<f64>()? * 1e6,
            "total_reads_processed" => s.reads = value.parse()?,
            _ => {
                if let Some(cmd) = key.strip_prefix("cmdstat_") {
                    let calls = (value.split(',').next())
                        .and_then(|c| c.strip_prefix("calls="))
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0.0);
                    s.calls.insert(cmd.to_owned(), calls);
                }
            }
        }
    }
    Ok(s)
}

/// Counters at the start of a measurement.
pub struct Sampler {
    servers: Vec<(String, (f64, f64))>,
    generator: (f64, f64),
    redis: Option<(String, RedisStats)>,
}

/// Per completed session.
#[derive(Debug, Clone, Default)]
pub struct Cost {
    pub server_us: f64,
    /// Share of the servers' CPU spent in the kernel.
    pub server_sys: f64,
    pub generator_us: f64,
    pub redis: Option<RedisCost>,
}

#[derive(Debug, Clone, Default)]
pub struct RedisCost {
    pub cpu_us: f64,
    pub round_trips: f64,
    pub commands: f64,
    /// Calls per session by command, most first.
    pub by_command: Vec<(String, f64)>,
}

impl Sampler {
    /// Starts counting for the server processes `pids` and, if any, the Redis at `url`
    /// (whose client connection for `INFO` adds one read per sample, negligible).
    pub fn start(pids: &[u32], redis_url: Option<&str>) -> anyhow::Result<Sampler> {
        let servers = (pids.iter())
            .map(|p| (p.to_string(), cpu_us(&p.to_string())))
            .collect();
        let redis = match redis_url {
            Some(url) => Some((url.to_owned(), redis_stats(url)?)),
            None => None,
        };
        Ok(Sampler {
            servers,
            generator: cpu_us("self"),
            redis,
        })
    }

    pub fn finish(self, sessions: u64) -> anyhow::Result<Cost> {
        let n = sessions.max(1) as f64;
        let (mut user, mut sys) = (0.0, 0.0);
        for (pid, (u0, s0)) in &self.servers {
            let (u1, s1) = cpu_us(pid);
            user += u1 - u0;
            sys += s1 - s0;
        }
        let (gu, gs) = cpu_us("self");
        let redis = match self.redis {
            Some((url, before)) => {
                let after = redis_stats(&url)?;
                let mut by_command: Vec<(String, f64)> = (after.calls.iter())
                    .map(|(c, calls)| {
                        let was = before.calls.get(c).copied().unwrap_or(0.0);
                        (c.clone(), (calls - was) / n)
                    })
                    .filter(|(c, per)| *per > 0.0 && c != "info")
                    .collect();
                by_command.sort_by(|a, b| b.1.total_cmp(&a.1));
                Some(RedisCost {
                    cpu_us: (after.cpu_us - before.cpu_us) / n,
                    round_trips: (after.reads - before.reads) / n,
                    commands: by_command.iter().map(|(_, c)| c).sum(),
                    by_command,
                })
            }
            None => None,
        };
        Ok(Cost {
            server_us: (user + sys) / n,
            server_sys: sys / (user + sys).max(1e-9),
            generator_us: (gu - self.generator.0 + gs - self.generator.1) / n,
            redis,
        })
    }
}
