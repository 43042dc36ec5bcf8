//! Where the demo's kiosks send their requests when it drives running nodes: one node
//! per worker, or by shard owner (all local, or all forwarded) from the cluster view.

use anyhow::Context as _;
use kofu_kiosk::{ClientBuilder, Method};
use kofu_proto::CardId;

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

/// The nodes to drive: kiosk API base URLs, how to reach them (the CA, a client
/// certificate) and, for `Owner`/`Other`, who owns what.
pub struct Targets {
    pub addrs: Vec<String>,
    pub route: Route,
    /// shard → index into `addrs` of its owner (empty for `Spread`).
    pub owners: Vec<usize>,
    pub shard_count: u32,
    /// Without targets: TLS options only.
    pub client: ClientBuilder,
}

impl Targets {
    /// The node worker `w`'s `n`-th session talks to.
    pub(super) fn target_for(&self, w: usize, card: &CardId, n: u64) -> usize {
        let count = self.addrs.len();
        if count == 1 || self.route == Route::Spread {
            return w % count;
        }
        let shard = kofu_proto::shard_of(card, self.shard_count) as usize;
        let owner = self.owners.get(shard).copied().unwrap_or(0);
        match self.route {
            Route::Owner => owner,
            // Any node but the owner, alternating between sessions.
            _ => (owner + 1 + (n as usize % (count - 1))) % count,
        }
    }
}

/// Who owns each shard, as indices into `admins` (base URLs, aligned with the kiosk
/// addresses), read from every node's `/admin/v1/cluster`; and the shard count.
pub async fn owners(
    client: &ClientBuilder,
    admins: &[String],
    token: &str,
) -> anyhow::Result<(Vec<usize>, u32)> {
    let auth = format!("Bearer {token}");
    let client = client.clone().build()?;
    let mut ids = Vec::new();
    let mut first: Option<serde_json::Value> = None;
    for admin in admins {
        let url = format!("{admin}/admin/v1/cluster");
        let reply = client.request(Method::GET, &url, Some(&auth), None).await;
        anyhow::ensure!(
            reply.status == 200,
            "cluster view answered {}",
            reply.status
        );
        let view: serde_json::Value = reply.parse().context("cluster view body")?;
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
