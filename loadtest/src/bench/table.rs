//! The bench's output: one table of every target measured in the run, with each one's
//! ratio to the conventional design (d) and to the HTTP ceiling (a), then where each
//! target's sessions spent their CPU and Redis work.

use super::cost::Cost;
use super::drive::Measured;

/// One measured target.
pub struct Row {
    pub name: &'static str,
    pub m: Measured,
    pub cost: Option<Cost>,
}

pub const CEILING: &str = "(a) HTTP ceiling";
pub const CONVENTIONAL: &str = "(d) conventional: 1 process + Redis";

fn ratio(m: &Measured, base: Option<&Row>) -> String {
    match base {
        Some(b) if b.m.sessions_per_s > 0.0 => {
            format!("{:.2}x", m.sessions_per_s / b.m.sessions_per_s)
        }
        _ => "-".to_owned(),
    }
}

pub fn print(rows: &[Row], concurrency: usize) {
    let find = |name| rows.iter().find(|r| r.name == name);
    let (ceiling, conventional) = (find(CEILING), find(CONVENTIONAL));
    println!(
        "kofu-load bench: closed loop, {concurrency} kiosks in flight, residence sessions (6 requests each), every document verified"
    );
    println!(
        "{:<40} {:>11} {:>11} {:>8} {:>9} {:>7} {:>8} {:>8}",
        "target", "sessions/s", "requests/s", "p99 ms", "sessions", "errors", "vs (d)", "vs (a)"
    );
    for r in rows {
        let m = &r.m;
        println!(
            "{:<40} {:>11.0} {:>11.0} {:>8.2} {:>9} {:>7} {:>8} {:>8}",
            r.name,
            m.sessions_per_s,
            m.requests_per_s,
            m.p99_ms,
            m.sessions,
            m.errors + m.misdeliveries,
            ratio(m, conventional),
            ratio(m, ceiling),
        );
    }
    println!();
    println!(
        "per session: CPU µs of the server processes (kernel share), of Redis, of the generator; Redis read events (pipelined or multiplexed requests arriving together count once) and commands (script-internal calls included)"
    );
    println!(
        "{:<40} {:>10} {:>7} {:>9} {:>10} {:>7} {:>7}  commands",
        "target", "server µs", "kernel", "Redis µs", "generator", "reads", "cmds"
    );
    for r in rows {
        let Some(c) = &r.cost else { continue };
        let redis = c.redis.as_ref();
        let or_dash = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
        };
        let commands = redis.map_or_else(String::new, |x| {
            (x.by_command.iter().take(6))
                .map(|(c, n)| format!("{c} {n:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        });
        println!(
            "{:<40} {:>10.0} {:>6.0}% {:>9} {:>10.0} {:>7} {:>7}  {}",
            r.name,
            c.server_us,
            c.server_sys * 100.0,
            or_dash(redis.map(|x| x.cpu_us), 0),
            c.generator_us,
            or_dash(redis.map(|x| x.round_trips), 1),
            or_dash(redis.map(|x| x.commands), 1),
            commands,
        );
    }
}
