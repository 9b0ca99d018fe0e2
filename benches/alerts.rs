//! Alerting throughput: `MachineAlerts::row` (rules, predictive detection with its
//! explanation baseline, dedup) rows/s on the acme-heat configuration (6 rules),
//! 16 machines interleaved, 30 s sampling. `normal`: ~2 % of rows above the
//! failure threshold and fault flags on in ~1 % of rows; `incident`: the quench
//! oil is hot on every machine, so a rule detects on every row and dedup counts.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prognos_dataflows::alerts::{AlertSettings, MachineAlerts, Mode};
use prognos_dataflows::config::Config;
use prognos_dataflows::operators::inference::ScoredRow;
use prognos_dataflows::records::{FeatureRow, ModelHealth, SourcePosition};

const MACHINES: usize = 16;
const ROWS: usize = 100_000;
const ORG: &str = "acme-heat";

mod common;
use common::SplitMix;

fn rows(features: usize, names: &[String], oil: f64) -> Vec<ScoredRow> {
    let mut r = SplitMix(11);
    let t0 = 1_700_000_000_000i64;
    let importance = Arc::new(
        (0..12)
            .map(|i| (i * 7 % features, 1.0 / (i + 1) as f64))
            .collect::<Vec<_>>(),
    );
    let version: Arc<str> = Arc::from("v1");
    let component: Arc<str> = Arc::from("Heating System");
    let flags: Vec<usize> = [
        "heater_fault",
        "thermocouple_fault",
        "oil_cooler_fault",
        "carbon_fault",
    ]
    .iter()
    .filter_map(|f| names.iter().position(|n| n == f))
    .collect();
    let oil_at = names.iter().position(|n| n == "quench_oil_temp");
    (0..ROWS)
        .map(|i| {
            // Rules read the row's values (declared then derived signals); the
            // explanation baseline reads features.
            let mut values: Vec<f64> = (0..names.len()).map(|_| 900.0 + 10.0 * r.unit()).collect();
            for &f in &flags {
                values[f] = f64::from(r.unit() < 0.0025);
            }
            if let Some(o) = oil_at {
                values[o] = oil + 2.0 * r.unit();
            }
            let features: Vec<f64> = (0..features).map(|_| r.unit()).collect();
            ScoredRow {
                row: FeatureRow {
                    organization_id: ORG.into(),
                    machine_id: format!("m{}", i % MACHINES),
                    ts: t0 + (i / MACHINES) as i64 * 30_000,
                    pos: SourcePosition {
                        partition: 0,
                        offset: i as u64,
                    },
                    features,
                    values,
                },
                probability: if r.unit() < 0.02 { 0.9 } else { 0.1 * r.unit() },
                confidence: 0.8,
                component: component.clone(),
                time_to_failure: 7.0,
                model_version: Some(version.clone()),
                health: ModelHealth::Healthy,
                fallback: false,
                fallback_reason: None,
                processing_ms: 0.0,
                load_ms: 0.0,
                importance: Some(importance.clone()),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let config = Config::from_toml_str(prognos_dataflows_example()).unwrap();
    let settings = AlertSettings::from_config(&config, Mode::Replay).unwrap();
    let org = settings.orgs[ORG].clone();
    let mut g = c.benchmark_group("alerts");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(20);
    for (name, oil) in [("normal", 65.0), ("incident", 120.0)] {
        let data = rows(org.feature_names.len(), &org.signal_names, oil);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut machines: Vec<MachineAlerts> = (0..MACHINES)
                    .map(|m| MachineAlerts::new(ORG, &format!("m{m}"), org.clone()))
                    .collect();
                let mut out = Vec::new();
                for (i, r) in data.iter().enumerate() {
                    machines[i % MACHINES].row(&settings, r, 0, &mut out);
                }
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn prognos_dataflows_example() -> &'static str {
    include_str!("../config/prognos.example.toml")
}

criterion_group!(benches, bench);
criterion_main!(benches);
