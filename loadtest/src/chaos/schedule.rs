//! The nemesis's plan: an endless sequence of faults, each with its target, how long it
//! is held and the pause after its heal, drawn from the seed alone (ChaCha8), so that a
//! run can be repeated. Kinds come in rounds, each round a seeded shuffle of every kind
//! the run injects, so that even a short run sees as many different kinds as it has
//! faults. A short run is paced: holds and gaps shrink (to a floor that still makes
//! each fault what it is) so that one round of every kind fits into it.

use std::time::Duration;

use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// A kind of fault (DESIGN.md, "Fault model and what holds under it").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Kind {
    /// `SIGKILL` a node, restart it after a moment.
    NodeKill,
    /// `SIGSTOP` a node past its lease, then `SIGCONT`.
    NodePause,
    /// `SIGSTOP` the Redis primary (Sentinel may fail over meanwhile), then `SIGCONT`.
    RedisPause,
    /// `SIGKILL` the Redis primary; restart it (as a replica if Sentinel failed over).
    RedisKill,
    /// `SENTINEL FAILOVER`.
    RedisFailover,
    /// `SIGKILL` the replica, bring it back (past `min-replicas-max-lag` writes stop).
    ReplicaLoss,
    /// A node cut off from Redis and the Sentinels.
    PartitionRedis,
    /// A node cut off from the other nodes.
    PartitionPeers,
    /// A node cut off from both.
    PartitionBoth,
    /// 200 ms more on everything a node sends to Redis and its peers.
    SlowDelay,
    /// A share of the packets between a node and Redis or its peers lost.
    SlowLoss,
    /// A node restarted with its wall clock seconds off (libfaketime), then back.
    ClockSkew,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::NodeKill,
        Kind::NodePause,
        Kind::RedisPause,
        Kind::RedisKill,
        Kind::RedisFailover,
        Kind::ReplicaLoss,
        Kind::PartitionRedis,
        Kind::PartitionPeers,
        Kind::PartitionBoth,
        Kind::SlowDelay,
        Kind::SlowLoss,
        Kind::ClockSkew,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NodeKill => "node_kill",
            Kind::NodePause => "node_pause",
            Kind::RedisPause => "redis_pause",
            Kind::RedisKill => "redis_kill",
            Kind::RedisFailover => "redis_failover",
            Kind::ReplicaLoss => "replica_loss",
            Kind::PartitionRedis => "partition_redis",
            Kind::PartitionPeers => "partition_peers",
            Kind::PartitionBoth => "partition_both",
            Kind::SlowDelay => "slow_delay",
            Kind::SlowLoss => "slow_loss",
            Kind::ClockSkew => "clock_skew",
        }
    }

    /// Whether it needs the run's own network (namespaces, nft, relays).
    pub fn needs_network(self) -> bool {
        matches!(
            self,
            Kind::PartitionRedis
                | Kind::PartitionPeers
                | Kind::PartitionBoth
                | Kind::SlowDelay
                | Kind::SlowLoss
        )
    }

    /// Whether it targets one node (the others target Redis).
    pub fn targets_node(self) -> bool {
        !matches!(
            self,
            Kind::RedisPause | Kind::RedisKill | Kind::RedisFailover | Kind::ReplicaLoss
        )
    }
}

/// One planned fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Planned {
    pub kind: Kind,
    /// The node it targets (for node kinds).
    pub node: usize,
    /// How long it is held before the heal.
    pub hold: Duration,
    /// The pause before it is injected.
    pub gap: Duration,
    /// Loss in percent, or clock offset in seconds (signed); 0 otherwise.
    pub amount: i64,
}

/// How long one round of every kind takes at full pace, heals included (measured: the
/// Redis kinds wait for Sentinel and a resync after their heal).
const ROUND_AT_FULL_PACE: Duration = Duration::from_secs(320);

/// The pace for faults injected during `window`: 1 for runs long enough for a round of
/// every kind at full length, down to 0.3 for short ones.
pub fn pace_for(window: Duration) -> f64 {
    (window.as_secs_f64() / ROUND_AT_FULL_PACE.as_secs_f64()).clamp(0.3, 1.0)
}

/// The fault plan of `seed` over `kinds` (the kinds this run injects), for `nodes` nodes
/// with a lease TTL of `ttl`, holds and gaps scaled by `pace` (see [`pace_for`]).
pub fn plan(seed: u64, kinds: &[Kind], nodes: usize, ttl: Duration, pace: f64) -> Plan {
    Plan {
        rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7300),
        kinds: kinds.to_vec(),
        round: Vec::new(),
        nodes: nodes.max(1),
        ttl,
        pace: pace.clamp(0.1, 1.0),
    }
}

/// An endless, deterministic sequence of faults.
pub struct Plan {
    rng: ChaCha8Rng,
    kinds: Vec<Kind>,
    round: Vec<Kind>,
    nodes: usize,
    ttl: Duration,
    pace: f64,
}

impl Iterator for Plan {
    type Item = Planned;

    fn next(&mut self) -> Option<Planned> {
        if self.kinds.is_empty() {
            return None;
        }
        if self.round.is_empty() {
            self.round = self.kinds.clone();
            self.round.shuffle(&mut self.rng);
        }
        let kind = self.round.pop()?;
        let rng = &mut self.rng;
        let pace = self.pace;
        // Paced, but never below a second: a fault must outlast a request or two.
        let secs = |rng: &mut ChaCha8Rng, lo: f64, hi: f64| {
            Duration::from_secs_f64((rng.random_range(lo..hi) * pace).max(1.0))
        };
        let node = rng.random_range(0..self.nodes);
        let gap = secs(rng, 2.0, 5.0);
        let (hold, amount) = match kind {
            Kind::NodeKill => (secs(rng, 1.0, 5.0), 0),
            Kind::NodePause => (self.ttl.mul_f64(rng.random_range(1.5..3.0)), 0),
            Kind::RedisPause => (secs(rng, 1.0, 8.0), 0),
            Kind::RedisKill => (secs(rng, 2.0, 8.0), 0),
            Kind::RedisFailover => (Duration::ZERO, 0),
            Kind::ReplicaLoss => (secs(rng, 3.0, 15.0), 0),
            Kind::PartitionRedis | Kind::PartitionPeers | Kind::PartitionBoth => {
                (secs(rng, 2.0, 10.0), 0)
            }
            Kind::SlowDelay => (secs(rng, 5.0, 15.0), 200),
            Kind::SlowLoss => (secs(rng, 5.0, 15.0), rng.random_range(10..=30)),
            Kind::ClockSkew => {
                let offset = rng.random_range(2..=10) * if rng.random_bool(0.5) { 1 } else { -1 };
                // Long enough for the skewed node to take leases and serve sessions.
                (secs(rng, 10.0, 20.0).max(Duration::from_secs(5)), offset)
            }
        };
        Some(Planned {
            kind,
            node,
            hold,
            gap,
            amount,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_a_function_of_the_seed() {
        let ttl = Duration::from_secs(2);
        let a: Vec<Planned> = plan(7, &Kind::ALL, 3, ttl, 1.0).take(40).collect();
        let b: Vec<Planned> = plan(7, &Kind::ALL, 3, ttl, 1.0).take(40).collect();
        let c: Vec<Planned> = plan(8, &Kind::ALL, 3, ttl, 1.0).take(40).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn every_round_holds_every_kind_once() {
        let kinds = [Kind::NodeKill, Kind::RedisPause, Kind::ClockSkew];
        let p: Vec<Planned> = plan(1, &kinds, 3, Duration::from_secs(2), 1.0)
            .take(9)
            .collect();
        for round in p.chunks(3) {
            let mut got: Vec<Kind> = round.iter().map(|f| f.kind).collect();
            got.sort();
            assert_eq!(got, kinds.to_vec());
        }
        assert!(
            p.iter()
                .all(|f| f.node < 3 && f.gap >= Duration::from_secs(2))
        );
        assert!(
            plan(1, &[], 3, Duration::from_secs(2), 1.0)
                .next()
                .is_none()
        );
    }

    #[test]
    fn a_short_run_is_paced_but_a_pause_still_outlasts_the_lease() {
        let ttl = Duration::from_secs(2);
        let full: Vec<Planned> = plan(3, &Kind::ALL, 3, ttl, 1.0).take(12).collect();
        let fast: Vec<Planned> = plan(3, &Kind::ALL, 3, ttl, 0.5).take(12).collect();
        let total = |p: &[Planned]| p.iter().map(|f| f.hold + f.gap).sum::<Duration>();
        assert!(total(&fast) < total(&full).mul_f64(0.75));
        for (a, b) in full.iter().zip(&fast) {
            assert_eq!((a.kind, a.node, a.amount), (b.kind, b.node, b.amount));
            if a.kind == Kind::NodePause {
                assert!(b.hold > ttl.mul_f64(1.5) - Duration::from_millis(1));
            }
            assert!(b.hold >= Duration::from_secs(1) || b.kind == Kind::RedisFailover);
        }
        assert_eq!(pace_for(Duration::from_secs(20)), 0.3);
        assert_eq!(pace_for(Duration::from_secs(600)), 1.0);
    }
}
