//! Simulator throughput: rows/s rendering JSONL for 3 orgs × 4 machines.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prognos_connectors::simulator::{OrgSchema, SimConfig, Speed, run_to_writer};

fn simulate_jsonl(c: &mut Criterion) {
    // Two simulated hours at 30 s: 3 × 4 × 240 = 2 880 rows per iteration.
    let cfg = SimConfig {
        machines_per_org: 4,
        duration_ms: 2 * 3_600_000,
        ..SimConfig::default()
    };
    let schemas = OrgSchema::builtin(3);
    let rows = 3 * 4 * cfg.steps();
    let mut g = c.benchmark_group("simulator");
    g.throughput(Throughput::Elements(rows));
    g.bench_function("jsonl_3orgs_4machines_to_sink", |b| {
        b.iter(|| {
            run_to_writer(&cfg, &schemas, &mut std::io::sink(), Speed::Max, &|_| {})
                .expect("simulate")
        })
    });
    g.finish();
}

criterion_group!(benches, simulate_jsonl);
criterion_main!(benches);
