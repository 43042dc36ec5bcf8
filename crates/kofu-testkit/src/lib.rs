//! Test harness for black-box tests: spawns real `kofu` processes, knows their fixture
//! population and drives them as kiosks do, so every test checks the product over HTTP;
//! it also launches private `redis-server`s for the cluster and coordinator tests.

mod bin;
mod client;
mod cluster;
mod fixtures;
mod node;
mod pdf;
mod promtool;
mod redis;
mod sentinel;
mod verify;

pub use bin::{free_port, kofu_bin, kofu_bin_with_features};
pub use client::{Kiosk, Resp, admin_post, get, new_client};
pub use cluster::{ClusterOptions, KofuCluster, TEST_SECRET};
pub use fixtures::{Card, Fixtures, KioskCred};
pub use node::{KofuNode, NodeOptions};
pub use pdf::{contains_name, pdf_text};
pub use promtool::promtool_check;
pub use redis::RedisServer;
pub use sentinel::{MASTER_NAME, SentinelSetup};
pub use verify::{SessionReport, verify_document, verify_document_async};
