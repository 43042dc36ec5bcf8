//! The conformance suite of `kofu_coord::conformance`, run against both implementations
//! of the coordination plane: the embedded store and registry, and the Redis ones on a
//! private `redis-server` per test. A rule that holds for one and not the other would
//! make single-node and cluster runs differ (DESIGN.md, scenario 6).

mod embedded;
mod redis;
