//! How long a node takes to build its fixture registry: the target is 100,000
//! residents well under 2 s in release builds. Run with
//! `cargo bench -p kofu-core --bench population`.

use criterion::{Criterion, criterion_group, criterion_main};
use kofu_core::{Population, PopulationSpec};

fn generate(c: &mut Criterion) {
    let mut group = c.benchmark_group("population");
    group.sample_size(10);
    for residents in [10_000u32, 100_000] {
        let spec = PopulationSpec {
            seed: 1,
            residents,
            kiosks: 100,
        };
        group.bench_function(format!("generate_{residents}"), |b| {
            b.iter(|| Population::generate(&spec))
        });
    }
    group.finish();
}

criterion_group!(benches, generate);
criterion_main!(benches);
