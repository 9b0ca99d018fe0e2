//! Feature throughput: `MachineFeatures::push` rows/s on the cobalt-thermal spec
//! (the benchmark's default furnace: 14 signals, 116 features), 30 s sampling,
//! machines interleaved as a partition delivers them.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prognos_dataflows::config::{Config, SignalKind};
use prognos_dataflows::features::{FeatureSpec, MachineFeatures};

const MACHINES: usize = 16;
const ROWS: usize = 100_000;
const INTERVAL_MS: i64 = 30_000;

mod common;
use common::SplitMix;

/// Rows `(machine, ts, values)` round-robin over the machines: temperatures ~900
/// with noise, outputs and carbon in their ranges, booleans 0/1, ~0.5% NaN.
fn rows(kinds: &[SignalKind]) -> Vec<(usize, i64, Vec<f64>)> {
    let mut r = SplitMix(7);
    let t0 = 1_700_000_000_000i64;
    (0..ROWS)
        .map(|i| {
            let machine = i % MACHINES;
            let ts = t0 + (i / MACHINES) as i64 * INTERVAL_MS;
            let values = kinds
                .iter()
                .enumerate()
                .map(|(k, kind)| {
                    if r.unit() < 0.005 {
                        return f64::NAN;
                    }
                    match kind {
                        SignalKind::Boolean => f64::from(r.unit() < 0.1),
                        SignalKind::Continuous => match k {
                            5 | 6 => 0.8 + 0.02 * r.unit(),
                            3 | 4 => 40.0 + 20.0 * r.unit(),
                            _ => 900.0 + 5.0 * (r.unit() - 0.5),
                        },
                    }
                })
                .collect();
            (machine, ts, values)
        })
        .collect()
}

fn run(spec: &Arc<FeatureSpec>, rows: &[(usize, i64, Vec<f64>)], out: &mut Vec<f64>) -> f64 {
    let mut states: Vec<MachineFeatures> = (0..MACHINES)
        .map(|_| MachineFeatures::new(spec.clone()))
        .collect();
    let mut acc = 0.0;
    for (m, ts, values) in rows {
        out.clear();
        states[*m].push(*ts, values, out);
        acc += out[out.len() - 1];
    }
    acc
}

fn features(c: &mut Criterion) {
    let cfg = Config::from_toml_str(include_str!("../config/prognos.example.toml"))
        .expect("example config");
    let org = &cfg.orgs["cobalt-thermal"];
    let spec = Arc::new(FeatureSpec::from_org(org, cfg.runtime.lag_tolerance_ms));
    let kinds: Vec<SignalKind> = org.signals.iter().map(|s| s.kind).collect();
    let rows = rows(&kinds);
    let mut out = Vec::with_capacity(spec.len());

    // One plain timed pass, printed for the record next to criterion's figure.
    let start = Instant::now();
    black_box(run(&spec, &rows, &mut out));
    let secs = start.elapsed().as_secs_f64();
    let mut m = MachineFeatures::new(spec.clone());
    for (_, ts, values) in rows.iter().filter(|r| r.0 == 0) {
        out.clear();
        m.push(*ts, values, &mut out);
    }
    println!(
        "features/cobalt-thermal: {} features, {:.0} rows/s (one pass), {} heap bytes per machine \
         at steady state ({:.1} MiB per 1k machines), {} rows retained",
        spec.len(),
        ROWS as f64 / secs,
        m.heap_bytes(),
        (m.heap_bytes() + std::mem::size_of::<MachineFeatures>()) as f64 * 1000.0 / 1048576.0,
        m.retained_rows(),
    );

    let mut g = c.benchmark_group("features");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("push_cobalt_thermal_16_machines_30s", |b| {
        b.iter(|| black_box(run(&spec, &rows, &mut out)))
    });
    g.finish();
}

criterion_group!(benches, features);
criterion_main!(benches);
