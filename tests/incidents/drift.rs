//! Incident 6 (configuration drift): the other scenarios' bodies on two topologies,
//! compared, because no safety feature may depend on the topology.

use std::time::Instant;

use crate::{Scenario, run_on};

/// Every scenario on `--shard-count 1`, on the default, and on three nodes: their
/// deterministic outcomes must be the same.
pub(crate) async fn configuration_drift() {
    let started = Instant::now();
    for scenario in Scenario::ALL {
        let one = run_on(scenario, Some(1), 1).await;
        let default = run_on(scenario, None, 1).await;
        let cluster = run_on(scenario, None, 3).await;
        assert_eq!(
            one.exact,
            default.exact,
            "{}: the deterministic outcomes differ between --shard-count 1 and the default",
            scenario.name()
        );
        assert_eq!(
            default.exact,
            cluster.exact,
            "{}: the deterministic outcomes differ between one node and three",
            scenario.name()
        );
    }
    eprintln!("configuration drift: 18 runs in {:?}", started.elapsed());
}
