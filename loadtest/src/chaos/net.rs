//! The network a chaos run builds for itself, so that links can be cut and slowed one
//! node at a time: each node in its own network namespace, joined by a veth pair to one
//! bridge in the root namespace (the bridge carries node-to-node traffic, so the host's
//! `ip_forward` stays as it is). Redis and the Sentinels listen on an address of the
//! bridge every namespace reaches; the kiosks reach the nodes at their namespace
//! addresses. Every name carries the run's prefix (`kc<pid>`, `kofu-chaos-<pid>-n<i>`,
//! nft table `kofu_chaos_<pid>`), so a crashed run's leftovers are found and removed by
//! the next one, and nothing else is touched.
//!
//! Faults are nft rules that drop *incoming* packets on both ends of a link (inside the
//! node's namespace, and in the root namespace's own table for what the node sends):
//! the sender sees silence, as in a real partition. A drop in an output hook would fail
//! the sender's `connect` at once with `EPERM`, which no real network does. The kernel
//! here has no `sch_netem`, so delay is added by the run's own TCP relays (`proxy.rs`):
//! every connection a node opens to Redis or to a peer is DNAT-ed to a relay.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::Context as _;

/// The nft table of a run, in the root namespace and in every node's.
fn table(run: u32) -> String {
    format!("kofu_chaos_{run}")
}

/// A redirection: connections to the first address go to the second instead.
pub type Redirect = ((Ipv4Addr, u16), (Ipv4Addr, u16));

/// A run's network: bridge, namespaces, veth pairs, nft tables.
pub struct Net {
    pub run: u32,
    /// The run's `/24`: `10.231.<subnet>.0`.
    subnet: u8,
    pub nodes: usize,
}

/// Runs a command, failing with its stderr.
pub fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", args[0]))?;
    anyhow::ensure!(
        out.status.success(),
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Feeds `script` to `nft -f -` inside namespace `ns` (root namespace for `None`).
fn nft(ns: Option<&str>, script: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "nft", "-f", "-"]);
            c
        }
        None => {
            let mut c = Command::new("nft");
            c.args(["-f", "-"]);
            c
        }
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nft")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "nft failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn output(args: &[&str]) -> String {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Why namespaces cannot be used here, if they cannot.
pub fn unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root: network namespaces need CAP_NET_ADMIN".to_owned());
    }
    for tool in ["ip", "nft"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!(
                "`{tool}` is not installed (Debian: iproute2, nftables)"
            ));
        }
    }
    None
}

/// Whether `pid` is a live kofu-load (a run whose objects must be left alone).
pub fn run_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|c| c.trim_end().starts_with("kofu-load"))
}

impl Net {
    pub fn ns(&self, i: usize) -> String {
        format!("kofu-chaos-{}-n{i}", self.run)
    }

    fn bridge(&self) -> String {
        format!("kc{}b", self.run)
    }

    fn veth(&self, i: usize) -> String {
        format!("kc{}v{i}", self.run)
    }

    fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.subnet, host)
    }

    /// The root namespace's address on the bridge (the kiosks' source address).
    pub fn kiosk_ip(&self) -> Ipv4Addr {
        self.ip(254)
    }

    /// Where Redis, the Sentinels and their relays listen.
    pub fn redis_ip(&self) -> Ipv4Addr {
        self.ip(253)
    }

    /// Where the relays between nodes listen.
    pub fn peer_ip(&self) -> Ipv4Addr {
        self.ip(252)
    }

    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        self.ip(10 + i as u8)
    }

    /// The node index an address belongs to.
    pub fn node_of(&self, ip: Ipv4Addr) -> Option<usize> {
        let [a, b, c, d] = ip.octets();
        let i = usize::from(d).checked_sub(10)?;
        ((a, b, c) == (10, 231, self.subnet) && i < self.nodes).then_some(i)
    }

    /// Creates the bridge, one namespace per node and the run's nft tables.
    pub fn create(run: u32, nodes: usize) -> anyhow::Result<Net> {
        let used = output(&["ip", "-4", "-o", "addr"]);
        let subnet = (0..240u32)
            .map(|k| ((run + k) % 240 + 10) as u8)
            .find(|s| !used.contains(&format!("10.231.{s}.")))
            .context("no free 10.231.x.0/24 for the run's network")?;
        let net = Net { run, subnet, nodes };
        let bridge = net.bridge();
        let cidr = |ip: Ipv4Addr| format!("{ip}/24");
        sh(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        // The kiosk address first: it is the primary one, the source of the kiosks'
        // connections, which no partition rule names.
        for ip in [net.kiosk_ip(), net.redis_ip(), net.peer_ip()] {
            sh(&["ip", "addr", "add", &cidr(ip), "dev", &bridge])?;
        }
        sh(&["ip", "link", "set", &bridge, "up"])?;
        for i in 0..nodes {
            let (ns, veth) = (net.ns(i), net.veth(i));
            let inner = format!("kc{run}p{i}");
            sh(&["ip", "netns", "add", &ns])?;
            sh(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", &inner,
            ])?;
            sh(&["ip", "link", "set", &inner, "netns", &ns])?;
            sh(&["ip", "link", "set", &veth, "master", &bridge, "up"])?;
            let exec = |args: &[&str]| {
                let mut all = vec!["ip", "netns", "exec", &ns];
                all.extend_from_slice(args);
                sh(&all)
            };
            exec(&["ip", "link", "set", "lo", "up"])?;
            exec(&["ip", "addr", "add", &cidr(net.node_ip(i)), "dev", &inner])?;
            exec(&["ip", "link", "set", &inner, "up"])?;
            nft(
                Some(&ns),
                &format!(
                    "table ip {t} {{\n chain nat_out {{ type nat hook output priority -100; policy accept; }}\n \
                     chain fault_in {{ type filter hook input priority 0; policy accept; }}\n}}\n",
                    t = table(run)
                ),
            )?;
        }
        nft(
            None,
            &format!(
                "table ip {t} {{\n chain fault_in {{ type filter hook input priority 0; policy accept; }}\n}}\n",
                t = table(run)
            ),
        )?;
        Ok(net)
    }

    /// Inside node `i`'s namespace, new connections to `to` go to `via` instead.
    pub fn redirect(&self, i: usize, rules: &[Redirect]) -> anyhow::Result<()> {
        let script: String = rules
            .iter()
            .map(|((ip, port), (via_ip, via_port))| {
                format!(
                    "add rule ip {t} nat_out ip daddr {ip} tcp dport {port} dnat to {via_ip}:{via_port}\n",
                    t = table(self.run)
                )
            })
            .collect();
        nft(Some(&self.ns(i)), &script)
    }

    /// Drops packets between node `i` and `others` (a share `loss_pct` of them, or all),
    /// in both directions, by dropping them where they arrive.
    pub fn cut(&self, i: usize, others: &[Ipv4Addr], loss_pct: Option<u8>) -> anyhow::Result<()> {
        if others.is_empty() {
            return Ok(());
        }
        let set = others
            .iter()
            .map(Ipv4Addr::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let verdict = match loss_pct {
            Some(p) => format!("numgen random mod 100 < {p} drop"),
            None => "drop".to_owned(),
        };
        let t = table(self.run);
        let me = self.node_ip(i);
        nft(
            Some(&self.ns(i)),
            &format!("add rule ip {t} fault_in ip saddr {{ {set} }} {verdict}\n"),
        )?;
        // What the node sends: to the root namespace's own addresses it arrives there;
        // to another node it arrives in that node's namespace.
        let mut root = Vec::new();
        for other in others {
            match self.node_of(*other) {
                Some(j) => nft(
                    Some(&self.ns(j)),
                    &format!("add rule ip {t} fault_in ip saddr {me} {verdict}\n"),
                )?,
                None => root.push(other.to_string()),
            }
        }
        if !root.is_empty() {
            nft(
                None,
                &format!(
                    "add rule ip {t} fault_in ip saddr {me} ip daddr {{ {} }} {verdict}\n",
                    root.join(", ")
                ),
            )?;
        }
        Ok(())
    }

    /// Removes every fault rule (all nodes).
    pub fn heal(&self) -> anyhow::Result<()> {
        let t = table(self.run);
        for i in 0..self.nodes {
            nft(Some(&self.ns(i)), &format!("flush chain ip {t} fault_in\n"))?;
        }
        nft(None, &format!("flush chain ip {t} fault_in\n"))
    }

    /// `ip netns exec <ns>`: the prefix that starts a command inside node `i`'s namespace.
    pub fn exec_prefix(&self, i: usize) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.ns(i)]
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        sweep(self.run);
    }
}

/// Removes every network object of run `run`: veths (which takes their peers along),
/// namespaces, bridge, the root nft table. Missing ones are fine.
pub fn sweep(run: u32) {
    let quiet = |args: &[&str]| {
        let _ = Command::new(args[0])
            .args(&args[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    let links = output(&["ip", "-o", "link"]);
    let prefix = format!("kc{run}");
    for name in links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .filter(|n| {
            n.strip_prefix(&prefix)
                .is_some_and(|rest| rest.starts_with(['v', 'b']))
        })
    {
        quiet(&["ip", "link", "del", name]);
    }
    let ns_prefix = format!("kofu-chaos-{run}-");
    for ns in output(&["ip", "netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&ns_prefix))
    {
        quiet(&["ip", "netns", "del", ns]);
    }
    quiet(&["nft", "delete", "table", "ip", &table(run)]);
}

/// The runs that left network objects behind and are no longer alive.
pub fn leftover_runs() -> Vec<u32> {
    let mut runs = Vec::new();
    for l in output(&["ip", "netns", "list"]).lines() {
        if let Some(run) = l
            .strip_prefix("kofu-chaos-")
            .and_then(|r| r.split('-').next())
            .and_then(|r| r.parse().ok())
        {
            runs.push(run);
        }
    }
    for name in output(&["ip", "-o", "link"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
    {
        let digits: String = name
            .strip_prefix("kc")
            .unwrap_or_default()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let rest = name.get(2 + digits.len()..).unwrap_or_default();
        if rest.starts_with(['b', 'v']) {
            if let Ok(run) = digits.parse() {
                runs.push(run);
            }
        }
    }
    for l in output(&["nft", "list", "tables"]).lines() {
        if let Some(run) = l
            .strip_prefix("table ip kofu_chaos_")
            .and_then(|r| r.trim().parse().ok())
        {
            runs.push(run);
        }
    }
    runs.sort_unstable();
    runs.dedup();
    runs.retain(|&r| !run_alive(r));
    runs
}
