//! Where the demo's kiosks send their requests when it drives running nodes: one node
//! per worker, or by shard owner (all local, or all forwarded) from the cluster view.

use std::net::SocketAddr;

use anyhow::Context as _;
use http::{Method, StatusCode};
use kofu_proto::CardId;

use super::client::{Worker, connect, exchange};

/// Which node a session's requests go to, when there are several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Route {
    /// Worker `w` uses node `w mod N` for everything (a connection-level balancer).
    Spread,
    /// Every request goes to the node owning the session's shard (never forwarded).
    Owner,
    /// Every request goes to a node that does not own the shard (always forwarded).
    Other,
}

/// The nodes to drive: kiosk API addresses and, for `Owner`/`Other`, who owns what.
pub struct Targets {
    pub addrs: Vec<SocketAddr>,
    pub route: Route,
    /// shard → index into `addrs` of its owner (empty for `Spread`).
    pub owners: Vec<usize>,
    pub shard_count: u32,
}

impl Worker {
    /// The node this session's requests go to.
    pub(super) fn target_for(&self, card: &CardId, n: u64) -> usize {
        let t = &self.targets;
        let count = t.addrs.len();
        if count == 1 || t.route == Route::Spread {
            return self.w % count;
        }
        let shard = kofu_proto::shard_of(card, t.shard_count) as usize;
        let owner = t.owners.get(shard).copied().unwrap_or(0);
        match t.route {
            Route::Owner => owner,
            // Any node but the owner, alternating between sessions.
            _ => (owner + 1 + (n as usize % (count - 1))) % count,
        }
    }
}

/// Who owns each shard, as indices into `admins` (aligned with the kiosk addresses),
/// read from every node's `/admin/v1/cluster`; and the shard count.
pub async fn owners(admins: &[SocketAddr], token: &str) -> anyhow::Result<(Vec<usize>, u32)> {
    let auth = format!("Bearer {token}");
    let mut ids = Vec::new();
    let mut first: Option<serde_json::Value> = None;
    for &admin in admins {
        let mut conn = connect(admin)
            .await
            .context("connecting to an admin listener")?;
        let host = admin.to_string();
        let reply = exchange(
            &mut conn,
            &host,
            Method::GET,
            "/admin/v1/cluster",
            &auth,
            None,
        )
        .await?;
        anyhow::ensure!(
            reply.status == StatusCode::OK,
            "cluster view answered {}",
            reply.status
        );
        let view: serde_json::Value =
            serde_json::from_slice(&reply.body).context("cluster view body")?;
        ids.push(view["node_id"].as_str().unwrap_or_default().to_owned());
        first.get_or_insert(view);
    }
    let view = first.context("no admin listener given")?;
    let shard_count = u32::try_from(view["shard_count"].as_u64().unwrap_or(0))?;
    let mut owners = vec![0usize; shard_count as usize];
    for s in view["shards"]
        .as_array()
        .context("cluster view without shards")?
    {
        let shard = s["shard"].as_u64().unwrap_or(u64::MAX) as usize;
        let owner = s["owner"].as_str().unwrap_or_default();
        let ix = ids
            .iter()
            .position(|id| id == owner)
            .with_context(|| format!("shard {shard} is owned by a node not given"))?;
        if let Some(slot) = owners.get_mut(shard) {
            *slot = ix;
        }
    }
    Ok((owners, shard_count))
}
