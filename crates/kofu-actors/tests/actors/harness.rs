//! The in-process harness: one actix system on a current-thread tokio runtime with
//! paused time, running the real `Router`, `ShardHost`s and `Session`s over the embedded
//! store and registry (a small synthetic population), a coordinator whose answers a test
//! switches, and a kiosk that drives sessions through the router the way the HTTP layer
//! does. Timers are tokio's, so a test waits out a `move_wait` or a tombstone TTL in
//! virtual time: milliseconds of real time, the same interleaving on every run.
//!
//! kofu-actors' message types are named only in `kiosk.rs`; a rename is fixed there.

mod coordinator;
mod gate;
mod kiosk;

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use kofu_actors::{
    ActorMetrics, ClusterMetrics, Deps, KioskSessions, RenderFaults, Router, RouterConfig,
    SessionConfig, ShardStart,
};
use kofu_coord::Fence;
use kofu_coord::embedded::{AuditSink, EmbeddedRegistry, EmbeddedStore};
use kofu_core::{Population, PopulationSpec};
use kofu_proto::KioskId;
use kofu_render::Issuer;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use coordinator::TestCoordinator;
pub use gate::GatedStore;
pub use kiosk::{Answer, Card, Open};

pub const SHARDS: u32 = 4;
/// The store's epoch at start; a takeover raises it.
const EPOCH: u64 = 7;
const FIXTURE_SEED: u64 = 5;
/// Real time a test may take: each needs milliseconds, so this only catches a test that
/// stopped running on virtual time (a timer on the wall clock, a busy loop).
const REAL_TIME_BOUND: Duration = Duration::from_secs(5);
/// How long `wait_until` polls a condition, in virtual time.
const CONDITION_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Config {
    pub session: SessionConfig,
    pub router: RouterConfig,
    /// Every job's render starts this late (a slow render stays in flight).
    pub render_delay: Duration,
    /// Open sessions a kiosk may hold (admission control); unlimited by default.
    pub kiosk_sessions: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            session: SessionConfig {
                tombstone_ttl: Duration::from_secs(10),
                ..SessionConfig::default()
            },
            router: RouterConfig {
                move_wait: Duration::from_secs(2),
                max_waiting: 100,
            },
            render_delay: Duration::ZERO,
            kiosk_sessions: u32::MAX,
        }
    }
}

impl Config {
    /// The default, with every job's render starting `delay` late.
    pub fn render_late(delay: Duration) -> Config {
        Config {
            render_delay: delay,
            ..Config::default()
        }
    }
}

/// Runs `test` on a world started from `config`, in a fresh actix system on paused
/// time, and checks that it took little real time.
pub fn run<F, Fut>(config: Config, test: F)
where
    F: FnOnce(Rc<World>) -> Fut,
    Fut: Future<Output = ()>,
{
    let started = std::time::Instant::now();
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime")
    });
    system.block_on(async move { test(Rc::new(World::start(config))).await });
    let took = started.elapsed();
    assert!(
        took < REAL_TIME_BOUND,
        "the test took {took:?} of real time"
    );
}

/// Polls `done` every virtual millisecond until it holds; fails after a minute of
/// virtual time (which passes at once when nothing else is due).
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + CONDITION_WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Runs `call` on `s` beside the test, on the same thread (the actors' futures are not
/// `Send`), with its own handles on the world and the session.
pub fn beside<T, F, Fut>(w: &Rc<World>, s: &Open, call: F) -> JoinHandle<T>
where
    T: 'static,
    F: FnOnce(Rc<World>, Open) -> Fut,
    Fut: Future<Output = T> + 'static,
{
    actix::spawn(call(w.clone(), s.clone()))
}

/// `beside`, with the store's gate shut: returns once `call`'s store write waits at the
/// gate, so its session is in the middle of a transition until `w.gate.open()`.
pub async fn in_flight<T, F, Fut>(w: &Rc<World>, s: &Open, call: F) -> JoinHandle<T>
where
    T: 'static,
    F: FnOnce(Rc<World>, Open) -> Fut,
    Fut: Future<Output = T> + 'static,
{
    let held = w.gate.held();
    w.gate.shut();
    let task = beside(w, s, call);
    wait_until("a store write is in flight", || w.gate.held() > held).await;
    task
}

/// One node: its router with a host per shard, and what the test reaches into.
pub struct World {
    pub router: Router,
    /// The store itself, for takeovers (epochs) and what it holds.
    pub store: Arc<EmbeddedStore>,
    /// The store as the actors see it: a test can hold its writes in flight.
    pub gate: Arc<GatedStore>,
    pub registry: Arc<EmbeddedRegistry>,
    pub coordinator: Arc<TestCoordinator>,
    pub issuer: Arc<Issuer>,
    pub config: Config,
    pub cards: Vec<Card>,
    pub kiosks: Vec<KioskId>,
    /// Open sessions per kiosk, as the hosts count them.
    pub kiosk_sessions: Arc<KioskSessions>,
    prom: prometheus::Registry,
}

impl World {
    /// Starts a node owning every shard; inside the actix system `run` made.
    fn start(config: Config) -> World {
        let population = Population::generate(&PopulationSpec {
            seed: FIXTURE_SEED,
            residents: 60,
            kiosks: 3,
        });
        let cards = population
            .residents
            .iter()
            .zip(&population.card_secrets)
            .filter(|(r, _)| !r.card_revoked && !r.restricted)
            .map(|(r, secret)| Card::new(r.clone(), *secret))
            .collect();
        let kiosks = population
            .kiosks
            .iter()
            .map(|k| k.kiosk_id.clone())
            .collect();
        let store = Arc::new(EmbeddedStore::new(SHARDS, EPOCH, AuditSink::Memory));
        let gate = Arc::new(GatedStore::new(store.clone()));
        let registry = Arc::new(EmbeddedRegistry::new(population.residents.clone()));
        let coordinator = Arc::new(TestCoordinator::new(SHARDS));
        let issuer = Arc::new(Issuer::from_seed(kofu_core::issuer_seed(FIXTURE_SEED)));
        let prom = prometheus::Registry::new();
        let kiosk_sessions = KioskSessions::new(config.kiosk_sessions);
        let deps = Arc::new(Deps {
            store: gate.clone(),
            registry: registry.clone(),
            coordinator: coordinator.clone(),
            issuer: issuer.clone(),
            config: config.session.clone(),
            faults: RenderFaults::new(config.render_delay, 1),
            metrics: ActorMetrics::new(&prom).expect("actor metrics"),
            cluster: ClusterMetrics::new(&prom).expect("cluster metrics"),
            kiosk_sessions: kiosk_sessions.clone(),
        });
        let router = Router::new(SHARDS, 1, deps, config.router, None);
        router.register_worker(0);
        let world = World {
            router,
            store,
            gate,
            registry,
            coordinator,
            issuer,
            config,
            cards,
            kiosks,
            kiosk_sessions,
            prom,
        };
        for shard in 0..SHARDS {
            let fence = Fence {
                shard,
                epoch: EPOCH,
            };
            world.coordinator.grant(fence);
            world.router.add_shard(fence, ShardStart::Fresh);
        }
        world
    }

    /// This node takes `fence`'s lease and starts the shard's host, which resumes the
    /// shard's open sessions.
    pub fn acquire(&self, fence: Fence) {
        self.coordinator.grant(fence);
        self.router.add_shard(fence, ShardStart::TakenOver);
    }

    pub fn fence(&self, shard: u32) -> Fence {
        self.coordinator.lease(shard).expect("a lease on the shard")
    }

    /// The shard changes owner and comes back to this node, as after a handoff to a
    /// node that later left: its host hands off, the store's epoch rises, and a new host
    /// starts at the new epoch. Returns the new fence.
    pub async fn take_over(&self, shard: u32) -> Fence {
        self.router.hand_off(shard).await;
        let fence = self.steal(shard);
        self.acquire(fence);
        fence
    }

    /// Another node takes the shard in the store (its epoch rises) while this node still
    /// believes it holds it. Returns the thief's fence.
    pub fn steal(&self, shard: u32) -> Fence {
        let epoch = self.store.bump_epoch(shard).expect("a shard of the store");
        Fence { shard, epoch }
    }

    /// This node gets the shard back after another node took it (say, that node left):
    /// a lease at a still higher epoch, held, with a new host; the old host hands off.
    pub fn reacquire(&self, shard: u32) -> Fence {
        let fence = self.steal(shard);
        self.coordinator.set_holding(true);
        self.acquire(fence);
        fence
    }

    /// A counter as the node exports it, summed over its labels.
    pub fn counter(&self, name: &str) -> f64 {
        self.prom
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .map(|m| m.get_counter().get_value())
            .sum()
    }

    /// The `n`-th card whose sessions live on `shard`.
    pub fn card_in(&self, shard: u32, n: usize) -> Card {
        self.cards
            .iter()
            .filter(|c| kofu_proto::shard_of(&c.id, SHARDS) == shard)
            .nth(n)
            .cloned()
            .expect("enough cards on the shard")
    }

    pub fn kiosk(&self, n: usize) -> KioskId {
        self.kiosks[n].clone()
    }

    /// Sessions `kiosk` holds on this node.
    pub fn kiosk_sessions_open(&self, kiosk: &KioskId) -> u32 {
        self.kiosk_sessions.open(kiosk)
    }
}
