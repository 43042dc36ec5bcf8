//! Reads what Redis recorded as charged: every shard's audit stream
//! (`kofu:{s<n>}:audit`, one entry per confirmed print: session, job, serial, charge,
//! card digest), from the primary once the run is over. The checker compares it with the
//! kiosks' history.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::Context as _;
use redis::Value;

use super::redis::text;

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub shard: u32,
    pub session_id: String,
    pub job_id: String,
    pub serial: String,
    pub charged_yen: u32,
    pub card_digest: String,
}

/// Entries per `XRANGE` page.
const PAGE: usize = 1000;

/// Every audit record of `shards` shards on the Redis at `host:port`.
pub async fn read(host: Ipv4Addr, port: u16, shards: u32) -> anyhow::Result<Vec<AuditEntry>> {
    let client = redis::Client::open(format!("redis://{host}:{port}/"))?;
    let mut con = tokio::time::timeout(
        Duration::from_secs(10),
        client.get_multiplexed_async_connection(),
    )
    .await
    .context("redis did not answer in time")??;
    let mut out = Vec::new();
    for shard in 0..shards {
        let key = format!("kofu:{{s{shard}}}:audit");
        let mut from = "-".to_owned();
        loop {
            let page: Value = redis::cmd("XRANGE")
                .arg(&key)
                .arg(&from)
                .arg("+")
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut con)
                .await
                .with_context(|| format!("XRANGE of shard {shard}"))?;
            let Value::Array(entries) = page else { break };
            let n = entries.len();
            for entry in &entries {
                let Value::Array(parts) = entry else { continue };
                let [id, Value::Array(fields)] = parts.as_slice() else {
                    continue;
                };
                from = format!("({}", text(id));
                out.push(parse(shard, fields));
            }
            if n < PAGE {
                break;
            }
        }
    }
    Ok(out)
}

fn parse(shard: u32, fields: &[Value]) -> AuditEntry {
    let mut e = AuditEntry {
        shard,
        session_id: String::new(),
        job_id: String::new(),
        serial: String::new(),
        charged_yen: 0,
        card_digest: String::new(),
    };
    for pair in fields.chunks(2) {
        let [k, v] = pair else { continue };
        let v = text(v);
        match text(k).as_str() {
            "session_id" => e.session_id = v,
            "job_id" => e.job_id = v,
            "serial" => e.serial = v,
            "charged_yen" => e.charged_yen = v.parse().unwrap_or(0),
            "card_digest" => e.card_digest = v,
            _ => {}
        }
    }
    e
}
