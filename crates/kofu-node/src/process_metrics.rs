//! What the process itself costs and what build it is: the standard `process_*` series
//! (CPU seconds, resident memory, open and maximum file descriptors, start time,
//! threads) and `kofu_build_info{version, git_commit}` = 1, registered into the node's
//! registry like every other metric.

use prometheus::{IntGaugeVec, Opts, Registry};

/// The commit `build.rs` found (empty when the build had no git checkout).
pub const GIT_COMMIT: &str = env!("KOFU_GIT_COMMIT");

pub fn register(reg: &Registry) -> prometheus::Result<()> {
    reg.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    let info = IntGaugeVec::new(
        Opts::new(
            "kofu_build_info",
            "Always 1; the labels say which build of kofu this process runs.",
        ),
        &["version", "git_commit"],
    )?;
    info.with_label_values(&[env!("CARGO_PKG_VERSION"), GIT_COMMIT])
        .set(1);
    reg.register(Box::new(info))
}
