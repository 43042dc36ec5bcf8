//! Test harness for black-box tests: spawns real `kofu` processes (one embedded node or a
//! cluster on a private `redis-server`, behind one [`Deployment`]), knows their fixture
//! population, and drives them as kiosks do through `kofu-kiosk`, so every test checks the
//! product over HTTP; it also launches private `redis-server`s and Sentinel setups for the
//! coordinator tests, and reads what kofu left in Redis.

mod bin;
mod certs;
mod deployment;
mod kiosk;
mod node;
mod population;
mod promtool;
mod redis;
mod resp;
mod sentinel;
pub mod suite;

pub use bin::{file_args, free_port, kofu_bin, signal};
pub use certs::{CLUSTER_SERVER_NAME, CertFiles, Issued, TestCa};
pub use deployment::{Deployment, DeploymentOptions, LinkSecurity, NodeHook};
pub use kiosk::{RespExt, SessionReport, admin_post, full_session, get, request, strict};
pub use node::{KofuNode, NodeOptions, presented_certificate, sync_get_url};
pub use population::fixtures;
pub use promtool::promtool_check;
pub use redis::{RedisOptions, RedisServer};
pub use resp::{RedisConn, Reply};
pub use sentinel::SentinelSetup;

/// The kiosk side, as the tests use it.
pub use kofu_kiosk::{
    Card, Client, Fixtures, Kiosk, Method, Resp, contains_name, normalize_spaces,
};
