//! Incident 6 (configuration drift): the other scenarios' bodies on two topologies,
//! compared, because no safety feature may depend on the topology.

use std::time::Instant;

use crate::{Scenario, run_on_node};

/// Every scenario on `--shard-count 1` and on the default: their deterministic
/// outcomes must be the same.
pub(crate) async fn configuration_drift() {
    let started = Instant::now();
    for scenario in Scenario::ALL {
        let one = run_on_node(scenario, Some(1)).await;
        let default = run_on_node(scenario, None).await;
        assert_eq!(
            one.exact,
            default.exact,
            "{}: the deterministic outcomes differ between --shard-count 1 and the default",
            scenario.name()
        );
    }
    eprintln!("configuration drift: 12 runs in {:?}", started.elapsed());
}
