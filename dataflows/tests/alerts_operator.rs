//! The alerts operator in timely against a single-threaded reference: scored rows
//! of several orgs and machines (rule signals, probabilities around the
//! threshold, fallback rows), sent in random batches with shuffled arrival, on 1
//! and 2 workers. Each key's records must come out exactly as the reference
//! computes them ([`MachineAlerts`] fed the machine's rows in order).

use prognos_dataflows::alerts::{AlertSettings, MachineAlerts, Mode};
use prognos_dataflows::config::Config;
use prognos_dataflows::operators::alerts::alerts;
use prognos_dataflows::operators::inference::ScoredRow;
use prognos_dataflows::records::{
    Alert, AlertStatus, AlertType, FeatureRow, ModelHealth, SourcePosition,
};
use prognos_dataflows::stats::Stats;
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::InputHandle;
use timely::dataflow::operators::{Input, Inspect, Probe};

const CONFIG: &str = r#"
[alerts]
dedup_window_s = 300
max_per_window = 2
resolve_after_s = 420

[orgs.alpha]
name = "Alpha"
machine_column = "m"
time_column = "t"
[[orgs.alpha.signals]]
name = "temp"
column = "T"
kind = "continuous"
unit = "u"
[[orgs.alpha.signals]]
name = "setpoint"
column = "S"
kind = "continuous"
unit = "u"
[[orgs.alpha.signals]]
name = "fault"
column = "F"
kind = "boolean"
[orgs.alpha.features]
lags_s = []
windows_s = []
[[orgs.alpha.rules]]
name = "fault"
severity = "CRITICAL"
component = "Heater"
condition = { kind = "fault_flag", signal = "fault" }
[[orgs.alpha.rules]]
name = "off-setpoint"
severity = "WARNING"
component = "Heater"
for_s = 60
condition = { kind = "deviation", signal = "temp", setpoint = "setpoint", band = 20.0 }
[orgs.alpha.prediction]
failure_threshold = 0.8
component_mapping = { "0" = "General", "1" = "Heater" }

[orgs.beta]
name = "Beta"
machine_column = "m"
time_column = "t"
[[orgs.beta.signals]]
name = "oil"
column = "O"
kind = "continuous"
unit = "u"
[orgs.beta.features]
lags_s = []
windows_s = []
[[orgs.beta.rules]]
name = "oil-swing"
severity = "WARNING"
component = "Quench"
condition = { kind = "rate_of_change", signal = "oil", max_per_min = 5.0, window_s = 90 }
[orgs.beta.prediction]
failure_threshold = 0.9
component_mapping = { "0" = "General", "1" = "Quench" }
"#;

fn settings() -> AlertSettings {
    let config = Config::from_toml_str(CONFIG).unwrap();
    AlertSettings::from_config(&config, Mode::Replay).unwrap()
}

fn generate(seed: u64) -> Vec<ScoredRow> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let t0 = 1_700_000_000_000i64;
    let importance = Arc::new(vec![(0usize, 0.7), (1, 0.3)]);
    let mut rows = Vec::new();
    let mut offset = 0u64;
    for (org, machines) in [("alpha", 3), ("beta", 2)] {
        for m in 0..machines {
            let mut ts = t0 + rng.random_range(0..30_000);
            let mut level = 0.0f64;
            for _ in 0..rng.random_range(50..250) {
                ts += [30_000, 30_000, 30_000, 1, 95_000][rng.random_range(0..5)];
                // Episodes: a slowly moving "risk level" drives everything.
                level = (level + rng.random_range(-0.15..0.2)).clamp(0.0, 1.0);
                let features = match org {
                    "alpha" => vec![
                        850.0 + level * 40.0 + rng.random_range(-5.0..5.0),
                        850.0,
                        if level > 0.9 && rng.random_bool(0.7) {
                            1.0
                        } else {
                            0.0
                        },
                    ],
                    _ => vec![60.0 + level * 30.0 + rng.random_range(-3.0..3.0)],
                };
                let fallback = rng.random_bool(0.1);
                offset += 1;
                rows.push(ScoredRow {
                    row: FeatureRow {
                        organization_id: org.into(),
                        machine_id: format!("{org}-m{m}"),
                        ts,
                        pos: SourcePosition {
                            partition: m as u32 % 2,
                            offset,
                        },
                        // No lags or windows: the features are the values.
                        values: features.clone(),
                        features,
                    },
                    probability: if fallback {
                        f64::NAN
                    } else {
                        (level + rng.random_range(-0.1..0.1)).clamp(0.0, 1.0)
                    },
                    confidence: 0.75,
                    component: Arc::from(if rng.random_bool(0.5) {
                        "General"
                    } else {
                        "Heater"
                    }),
                    time_to_failure: 6.0,
                    model_version: (!fallback).then(|| Arc::from("v1")),
                    health: ModelHealth::Healthy,
                    fallback,
                    fallback_reason: fallback.then_some(
                        prognos_dataflows::operators::inference::FallbackReason::NoModel,
                    ),
                    processing_ms: 0.0,
                    load_ms: 0.0,
                    importance: (!fallback).then(|| importance.clone()),
                });
            }
        }
    }
    rows
}

type Key = (String, String, String, AlertType);

fn by_key(alerts: &[Alert]) -> BTreeMap<Key, Vec<String>> {
    let mut m: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    for a in alerts {
        m.entry((
            a.organization_id.clone(),
            a.machine_id.clone(),
            a.component.clone(),
            a.alert_type,
        ))
        .or_default()
        .push(serde_json::to_string(a).unwrap());
    }
    m
}

fn reference(rows: &[ScoredRow]) -> Vec<Alert> {
    let s = settings();
    let mut machines: BTreeMap<(String, String), Vec<&ScoredRow>> = BTreeMap::new();
    for r in rows {
        machines
            .entry((r.row.organization_id.clone(), r.row.machine_id.clone()))
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    for ((org, machine), mut rs) in machines {
        rs.sort_by_key(|r| (r.row.ts, r.row.pos));
        let mut m = MachineAlerts::new(&org, &machine, s.orgs[&org].clone());
        for r in rs {
            m.row(&s, r, 0, &mut out);
        }
        m.finish(&s, 0, &mut out);
    }
    out
}

fn run(rows: Vec<ScoredRow>, workers: usize, seed: u64) -> Vec<Alert> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let rows = Arc::new(Mutex::new(Some(rows)));
    timely::execute(timely::Config::process(workers), move |worker| {
        let sink = sink.clone();
        let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<ScoredRow>>>::new();
        let probe = worker.dataflow::<u64, _, _>(|scope| {
            let s = scope.input_from(&mut input);
            let dedup = settings().dedup;
            alerts(s, "Alerts", settings(), Arc::new(Stats::default()))
                .inspect_core(move |event| {
                    if let Ok((stamp, batch)) = event {
                        // Every record travels at its due time, whatever the batching.
                        let t = stamp.least().copied();
                        for a in batch.iter() {
                            assert_eq!(t, Some(dedup.due(a) as u64), "timely time of {a:?}");
                            sink.lock().unwrap().push(a.clone());
                        }
                    }
                })
                .probe()
                .0
        });
        if worker.index() != 0 {
            return;
        }
        let mut rows = rows.lock().unwrap().take().unwrap();
        rows.sort_by_key(|r| r.row.ts);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut i = 0;
        while i < rows.len() {
            let n = rng.random_range(1..40).min(rows.len() - i);
            let mut batch: Vec<ScoredRow> = rows[i..i + n].to_vec();
            i += n;
            let t = batch[0].row.ts as u64;
            if t > *input.time() {
                input.advance_to(t);
            }
            batch.shuffle(&mut rng);
            for r in batch {
                input.send(r);
            }
            for _ in 0..rng.random_range(0..3) {
                worker.step();
            }
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
    })
    .unwrap();
    got.lock().unwrap().clone()
}

fn check(seed: u64) {
    let rows = generate(seed);
    let want = by_key(&reference(&rows));
    assert!(
        want.keys().any(|k| k.3 == AlertType::Predictive)
            && want.keys().any(|k| k.3 == AlertType::Critical),
        "the input exercises predictive and rule alerts"
    );
    for workers in [1, 2] {
        let got = run(rows.clone(), workers, seed ^ workers as u64);
        assert_eq!(by_key(&got), want, "seed {seed}, {workers} workers");
    }
}

#[test]
fn operator_matches_reference_fixed_seeds() {
    for seed in [1, 2, 3] {
        check(seed);
    }
    // The data exercises suppression and resolution.
    let all = reference(&generate(1));
    assert!(all.iter().any(|a| a.suppressed_count > 0));
    assert!(all.iter().any(|a| a.status == AlertStatus::Resolved));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn operator_matches_reference(seed in any::<u64>()) {
        check(seed);
    }
}
