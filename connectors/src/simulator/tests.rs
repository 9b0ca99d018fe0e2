//! Simulator tests: determinism, schemas, physics sanity, ground truth.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::plan::Episode;
use super::*;

const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;

fn cfg(machines: u32, duration_ms: i64) -> SimConfig {
    SimConfig {
        machines_per_org: machines,
        duration_ms,
        ..SimConfig::default()
    }
}

fn read_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn run_dir(
    cfg: &SimConfig,
    orgs: usize,
    fmt: OutputFormat,
    threads: usize,
) -> BTreeMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let schemas = OrgSchema::builtin(orgs);
    let summary =
        run_to_dir_with_threads(cfg, &schemas, dir.path(), fmt, Speed::Max, threads, &|_| {})
            .unwrap();
    let files = read_dir(dir.path());
    assert_eq!(files.len(), orgs + 1);
    let bytes: u64 = files.values().map(|b| b.len() as u64).sum();
    assert_eq!(summary.bytes_total(), bytes);
    assert_eq!(
        summary.rows_total(),
        orgs as u64 * cfg.machines_per_org as u64 * cfg.steps()
    );
    files
}

#[test]
fn same_config_same_bytes_for_any_thread_count() {
    let c = cfg(3, 6 * 3600 * 1000);
    let a = run_dir(&c, 4, OutputFormat::Jsonl, 1);
    let b = run_dir(&c, 4, OutputFormat::Jsonl, 1);
    let d = run_dir(&c, 4, OutputFormat::Jsonl, 3);
    assert_eq!(a, b);
    assert_eq!(a, d);
    let e = run_dir(
        &SimConfig {
            seed: 7,
            ..c.clone()
        },
        4,
        OutputFormat::Jsonl,
        2,
    );
    assert_ne!(a["acme-heat.jsonl"], e["acme-heat.jsonl"]);
    let csv1 = run_dir(&c, 3, OutputFormat::Csv, 1);
    let csv2 = run_dir(&c, 3, OutputFormat::Csv, 3);
    assert_eq!(csv1, csv2);
    let json3 = run_dir(&c, 3, OutputFormat::Jsonl, 2);
    assert_eq!(csv1["events.jsonl"], json3["events.jsonl"]);
}

#[test]
fn schedule_does_not_depend_on_interval() {
    let schemas = OrgSchema::builtin(1);
    let c30 = SimConfig {
        failure_rate_per_machine_day: 4.0,
        ..cfg(2, DAY)
    };
    let c1 = SimConfig {
        interval_ms: 1_000,
        ..c30.clone()
    };
    let s30 = OrgStream::new(&c30, 0, &schemas[0]).unwrap();
    let s1 = OrgStream::new(&c1, 0, &schemas[0]).unwrap();
    for m in 0..2 {
        assert!(!s30.episodes(m).is_empty());
        assert_eq!(s30.episodes(m), s1.episodes(m));
    }
}

fn expected_columns(s: &OrgSchema) -> Vec<String> {
    let mut v = vec![s.machine_column.clone(), s.time_column.clone()];
    v.extend(s.columns.iter().map(|(_, c)| c.clone()));
    v
}

#[test]
fn builtin_schemas_are_the_documented_ones() {
    let s = OrgSchema::builtin(5);
    let ids: Vec<_> = s.iter().map(|o| o.org_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "acme-heat",
            "borealis-forge",
            "cobalt-thermal",
            "org-004",
            "org-005"
        ]
    );
    assert_eq!(s[0].columns.len(), 16);
    assert_eq!(s[2].columns.len(), 14);
    assert_eq!(s[2].zone_count(), 2);
    assert_eq!(s[0].machine_id(0), "IQ-01");
    assert_eq!(s[2].machine_id(11), "CT-F12");
    assert_eq!(s[3].machine_id(0), "M-01");
    assert_eq!(s[4].columns, s[1].columns);
    for sig in Signal::ALL {
        assert_eq!(Signal::from_name(sig.name()), Some(sig));
    }
    assert!(Signal::DoorOpen.is_boolean() && !Signal::QuenchOilTemp.is_boolean());
}

#[test]
fn jsonl_rows_follow_each_org_schema() {
    let c = cfg(2, 3 * 3600 * 1000);
    let files = run_dir(&c, 4, OutputFormat::Jsonl, 2);
    for s in OrgSchema::builtin(4) {
        let text = std::str::from_utf8(&files[&format!("{}.jsonl", s.org_id)])
            .unwrap()
            .to_owned();
        let mut n = 0;
        let mut last = (i64::MIN, String::new());
        for line in text.lines() {
            let v: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
            let keys: Vec<String> = v.keys().cloned().collect();
            let mut want = expected_columns(&s);
            let mut got = keys.clone();
            want.sort();
            got.sort();
            assert_eq!(got, want, "{line}");
            // Key order as written (serde_json's map is sorted, so check the text).
            let mut pos = 0;
            for k in expected_columns(&s) {
                let at = line[pos..].find(&format!("\"{k}\":")).unwrap();
                pos += at;
            }
            let ts = match s.time_format {
                TimeFormat::Rfc3339 => {
                    let t = v[&s.time_column].as_str().unwrap();
                    assert_eq!(t.len(), 24);
                    assert!(t.ends_with('Z'));
                    chrono::DateTime::parse_from_rfc3339(t)
                        .unwrap()
                        .timestamp_millis()
                }
                TimeFormat::EpochMs => v[&s.time_column].as_i64().unwrap(),
            };
            let machine = v[&s.machine_column].as_str().unwrap().to_owned();
            assert!(machine.starts_with(&s.machine_prefix));
            assert!(
                (ts, machine.clone()) > last,
                "rows out of (ts, machine) order"
            );
            last = (ts, machine);
            for (sig, col) in &s.columns {
                match (sig.is_boolean(), s.bool_format) {
                    (true, BoolFormat::TrueFalse) => assert!(v[col].is_boolean(), "{col}"),
                    (true, BoolFormat::ZeroOne) => {
                        let x = v[col].as_u64().unwrap();
                        assert!(x <= 1, "{col}");
                    }
                    (false, _) => assert!(v[col].as_f64().unwrap().is_finite(), "{col}"),
                }
            }
            n += 1;
        }
        assert_eq!(n, 2 * c.steps());
    }
}

#[test]
fn csv_header_and_rows_agree() {
    let c = cfg(2, 3600 * 1000);
    let files = run_dir(&c, 3, OutputFormat::Csv, 1);
    let json = run_dir(&c, 3, OutputFormat::Jsonl, 1);
    for s in OrgSchema::builtin(3) {
        let text = std::str::from_utf8(&files[&format!("{}.csv", s.org_id)])
            .unwrap()
            .to_owned();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(header, expected_columns(&s));
        let jtext = std::str::from_utf8(&json[&format!("{}.jsonl", s.org_id)])
            .unwrap()
            .to_owned();
        let mut count = 0;
        for (row, jrow) in lines.zip(jtext.lines()) {
            let fields: Vec<&str> = row.split(',').collect();
            assert_eq!(fields.len(), header.len());
            let j: serde_json::Map<String, Value> = serde_json::from_str(jrow).unwrap();
            for (name, f) in header.iter().zip(&fields) {
                match &j[*name] {
                    Value::String(s) => assert_eq!(s, f, "{name}"),
                    Value::Number(x) => {
                        assert_eq!(x.as_f64().unwrap(), f.parse::<f64>().unwrap(), "{name}")
                    }
                    other => assert_eq!(&other.to_string(), f, "{name}"),
                }
            }
            count += 1;
        }
        assert_eq!(count, 2 * c.steps());
    }
}

/// The bus producer's records are the merged writer's rows, in its order,
/// without the org field (the org travels as the record's key).
#[test]
fn records_are_the_merged_rows_without_the_org_field() {
    let c = cfg(2, 1800 * 1000);
    let schemas = OrgSchema::builtin(3);
    let mut out = Vec::new();
    run_to_writer(&c, &schemas, &mut out, Speed::Max, &|_| {}).unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut records = Vec::new();
    let n = run_to_records(&c, &schemas, Speed::Max, &mut |org, machine, row| {
        records.push((org, machine, String::from_utf8(row.to_vec()).unwrap()));
    })
    .unwrap();
    assert_eq!(n, records.len() as u64);
    assert_eq!(records.len(), text.lines().count());
    for (line, (org, machine, row)) in text.lines().zip(&records) {
        let prefix = format!("{{\"org\":\"{}\",", schemas[*org].org_id);
        let rest = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{line}"));
        assert_eq!(row.strip_prefix('{'), Some(rest), "org {org}");
        let v: Value = serde_json::from_str(row).unwrap();
        assert_eq!(
            v[&schemas[*org].machine_column].as_str(),
            Some(schemas[*org].machine_id(*machine).as_str())
        );
    }
}

#[test]
fn merged_writer_orders_by_ts_then_org() {
    let c = cfg(2, 1800 * 1000);
    let schemas = OrgSchema::builtin(3);
    let mut out = Vec::new();
    let summary = run_to_writer(&c, &schemas, &mut out, Speed::Max, &|_| {}).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(summary.rows_total(), text.lines().count() as u64);
    assert_eq!(summary.bytes_total(), text.len() as u64);
    let mut expect = Vec::new();
    for k in 0..c.steps() {
        for s in &schemas {
            for m in 0..2 {
                expect.push((s.org_id.clone(), s.machine_id(m), k));
            }
        }
    }
    for (line, (org, machine, _)) in text.lines().zip(&expect) {
        assert!(line.starts_with(&format!("{{\"org\":\"{org}\",")), "{line}");
        assert!(line.contains(&format!("\"{machine}\"")));
    }
    // The per-org rows are the same rows as the file output, tag aside.
    let files = run_dir(&c, 3, OutputFormat::Jsonl, 2);
    let acme: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("{\"org\":\"acme-heat\","))
        .map(|l| format!("{{{}", &l["{\"org\":\"acme-heat\",".len()..]))
        .collect();
    let file: Vec<&str> = std::str::from_utf8(&files["acme-heat.jsonl"])
        .unwrap()
        .lines()
        .collect();
    assert_eq!(acme, file);
}

/// Every row of one org, as canonical values, per machine.
/// One machine's rows: (ts, canonical values).
type Rows = Vec<(i64, [f64; 16])>;

fn collect(c: &SimConfig, org: usize) -> (OrgStream, Vec<Rows>) {
    let schemas = OrgSchema::builtin(org + 1);
    let mut st = OrgStream::new(c, org, &schemas[org]).unwrap();
    let mut rows = vec![Vec::new(); c.machines_per_org as usize];
    while let Some(r) = st.next_row() {
        rows[r.machine].push((r.ts_ms, *st.last_values()));
    }
    (st, rows)
}

fn near(e: &Episode, t: i64, before_ms: i64, after_ms: i64) -> bool {
    t >= e.onset_ms - before_ms && t < e.end_ms() + after_ms
}

#[test]
fn physics_stays_plausible_and_tracks_setpoint() {
    let c = SimConfig {
        failure_rate_per_machine_day: 2.0,
        ..cfg(4, 2 * DAY)
    };
    for org in [0, 2] {
        let (st, rows) = collect(&c, org);
        let zones = st.schema().zone_count();
        let (mut dev, mut n) = (0.0, 0u64);
        for (m, rows) in rows.iter().enumerate() {
            let eps = st.episodes(m);
            let mut last_door = i64::MIN;
            for (ts, v) in rows {
                if v[Signal::DoorOpen.index()] == 1.0 {
                    last_door = *ts;
                }
                for (i, x) in v.iter().enumerate() {
                    let absent = i < 7 && Signal::ALL[i].zone().is_some_and(|z| z > zones);
                    assert_eq!(x.is_nan(), absent, "signal {i} = {x}");
                }
                for z in 0..zones {
                    let out = v[Signal::Zone1Output.index() + z];
                    assert!((0.0..=100.0).contains(&out));
                    assert!((0.0..=1400.0).contains(&v[z]));
                }
                let oil = v[Signal::QuenchOilTemp.index()];
                assert!((40.0..=220.0).contains(&oil), "oil {oil}");
                let cp = v[Signal::CarbonPotential.index()];
                assert!((0.05..=2.0).contains(&cp));
                let sp = v[Signal::TempSetpoint.index()];
                assert!((840.0..=930.0).contains(&sp));
                let quiet = !eps.iter().any(|e| near(e, *ts, 0, 60 * MIN));
                if quiet && v[Signal::CycleActive.index()] == 1.0 && ts - last_door > 40 * MIN {
                    for (z, t) in v[..zones].iter().enumerate() {
                        dev += (t - sp).abs();
                        n += 1;
                        assert!((t - sp).abs() < 80.0, "zone {z} {t} vs {sp}");
                    }
                }
            }
        }
        let mad = dev / n as f64;
        assert!(
            n > 1000 && mad < 2.5,
            "mean abs deviation during soak {mad} over {n}"
        );
    }
}

#[test]
fn load_changes_drop_and_recover() {
    let (_, rows) = collect(&cfg(4, DAY), 0);
    let mut drops = Vec::new();
    for rows in &rows {
        for (i, (_, v)) in rows.iter().enumerate() {
            let prev_door = i > 0 && rows[i - 1].1[Signal::DoorOpen.index()] == 1.0;
            if v[Signal::DoorOpen.index()] == 1.0 && !prev_door && i + 60 < rows.len() {
                let sp = rows[i + 20].1[Signal::TempSetpoint.index()];
                let min = rows[i..i + 40]
                    .iter()
                    .map(|(_, v)| v[0])
                    .fold(f64::MAX, f64::min);
                let out_max = rows[i..i + 10]
                    .iter()
                    .map(|(_, v)| v[4])
                    .fold(0.0, f64::max);
                let after = rows[i + 60].1[0];
                drops.push(sp - min);
                assert!(out_max > 99.0, "outputs saturate after a load");
                assert!(
                    (after - sp).abs() < 15.0,
                    "recovered within 30 min: {after} vs {sp}"
                );
            }
        }
    }
    assert!(drops.len() >= 10);
    let mean = drops.iter().sum::<f64>() / drops.len() as f64;
    assert!((40.0..=200.0).contains(&mean), "mean load drop {mean}");
}

#[test]
fn fault_flags_match_events_exactly() {
    let c = SimConfig {
        failure_rate_per_machine_day: 3.0,
        near_miss_ratio: 0.5,
        ..cfg(5, 2 * DAY)
    };
    for org in 0..3 {
        let (st, rows) = collect(&c, org);
        let mut from_rows = Vec::new();
        for (m, rows) in rows.iter().enumerate() {
            for comp in Component::ALL {
                let idx = comp.fault_signal().index();
                let mut open: Option<i64> = None;
                for (ts, v) in rows {
                    match (open, v[idx] == 1.0) {
                        (None, true) => open = Some(*ts),
                        (Some(s), false) => {
                            from_rows.push((s, m, comp, *ts));
                            open = None;
                        }
                        _ => {}
                    }
                }
                if let Some(s) = open {
                    from_rows.push((s, m, comp, c.end_ms()));
                }
            }
            // Near misses never raise a flag.
            for e in st.episodes(m).iter().filter(|e| !e.fails) {
                for (ts, v) in rows.iter().filter(|(ts, _)| near(e, *ts, 0, 0)) {
                    assert!(
                        v[12..16].iter().all(|f| *f == 0.0),
                        "flag during near miss at {ts}"
                    );
                }
            }
        }
        from_rows.sort();
        let mut events: Vec<_> = st
            .failure_events()
            .iter()
            .map(|e| {
                let m = st
                    .machine_ids()
                    .iter()
                    .position(|id| *id == e.machine_id)
                    .unwrap();
                (e.start_ms, m, e.component, e.end_ms)
            })
            .collect();
        events.sort();
        assert!(events.len() >= 10, "{}", events.len());
        assert_eq!(from_rows, events);
    }
}

#[test]
fn failure_count_matches_configured_rate() {
    // 40 machine-days at 1/day: Poisson mean 40, sd ≈ 6.3.
    let c = cfg(10, 4 * DAY);
    let events = failure_events(&c, &OrgSchema::builtin(1)).unwrap();
    assert!(
        (22..=58).contains(&events.len()),
        "{} failures",
        events.len()
    );
    let schemas = OrgSchema::builtin(1);
    let st = OrgStream::new(&c, 0, &schemas[0]).unwrap();
    let (mut fail, mut miss) = (0, 0);
    for m in 0..10 {
        for e in st.episodes(m) {
            if e.fails {
                fail += 1
            } else {
                miss += 1
            }
            assert!((LEAD_MS.0..=LEAD_MS.1).contains(&e.lead_ms));
        }
    }
    let ratio = miss as f64 / (fail + miss) as f64;
    assert!((0.2..=0.6).contains(&ratio), "near-miss ratio {ratio}");
    let none = SimConfig {
        failure_rate_per_machine_day: 0.0,
        ..c
    };
    assert!(failure_events(&none, &schemas).unwrap().is_empty());
}

/// Mean of `f(row)` over the rows of machine `m` in `[from, to)`.
fn mean_in(
    rows: &[(i64, [f64; 16])],
    from: i64,
    to: i64,
    f: impl Fn(&[f64; 16]) -> f64,
) -> Option<f64> {
    let xs: Vec<f64> = rows
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|(_, v)| f(v))
        .collect();
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

fn std_in(rows: &[(i64, [f64; 16])], from: i64, to: i64, i: usize) -> f64 {
    let xs: Vec<f64> = rows
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|(_, v)| v[i])
        .collect();
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

#[test]
fn precursors_are_visible_in_the_five_minutes_before_a_failure() {
    let c = SimConfig {
        failure_rate_per_machine_day: 4.0,
        near_miss_ratio: 0.0,
        ..cfg(8, 3 * DAY)
    };
    let (st, rows) = collect(&c, 0);
    // Per component: (precursor metric, baseline metric) summed over episodes.
    let mut pre = [0.0; 4];
    let mut base = [0.0; 4];
    let mut n = [0usize; 4];
    for (m, rows) in rows.iter().enumerate() {
        for e in st.episodes(m) {
            let start = e.trip_ms();
            if start + 60 * MIN >= c.end_ms() || e.onset_ms - 4 * 60 * MIN < c.start_ms {
                continue;
            }
            let (a, b) = (start - 5 * MIN, start);
            // Baseline: the same machine's same-length window two hours earlier (any state).
            let (ba, bb) = (start - 2 * 60 * MIN - 5 * MIN, start - 2 * 60 * MIN);
            let z = e.zone;
            let (p, q) = match e.component {
                Component::HeatingSystem => {
                    let f = |v: &[f64; 16]| v[Signal::Zone1Output.index() + z];
                    (
                        mean_in(rows, a, b, f).unwrap(),
                        mean_in(rows, ba, bb, f).unwrap(),
                    )
                }
                Component::TemperatureSensing => (std_in(rows, a, b, z), std_in(rows, ba, bb, z)),
                Component::QuenchSystem => {
                    let f = |v: &[f64; 16]| v[Signal::QuenchOilTemp.index()];
                    (
                        mean_in(rows, b - MIN, b, f).unwrap(),
                        mean_in(rows, ba, bb, f).unwrap(),
                    )
                }
                Component::AtmosphereControl => {
                    let f = |v: &[f64; 16]| (v[7] - v[8]).abs();
                    (
                        mean_in(rows, a, b, f).unwrap(),
                        mean_in(rows, ba, bb, f).unwrap(),
                    )
                }
            };
            let k = e.component.index();
            pre[k] += p;
            base[k] += q;
            n[k] += 1;
        }
    }
    for k in 0..4 {
        assert!(n[k] >= 3, "{:?}: only {} episodes", Component::ALL[k], n[k]);
        let (p, q) = (pre[k] / n[k] as f64, base[k] / n[k] as f64);
        assert!(
            p > q * 1.2,
            "{:?}: precursor {p} vs baseline {q}",
            Component::ALL[k]
        );
        eprintln!(
            "{:?}: precursor {p:.3} vs baseline {q:.3} over {}",
            Component::ALL[k],
            n[k]
        );
    }
}

#[test]
fn failure_event_json_uses_the_orgs_component_names() {
    let f = Failure {
        organization_id: "acme-heat".into(),
        machine_id: "IQ-01".into(),
        component: Component::QuenchSystem,
        start_ms: 1_704_067_230_000,
        end_ms: 1_704_069_030_000,
    };
    let schemas = OrgSchema::builtin(2);
    let s = serde_json::to_string(&f.to_event(&schemas[0])).unwrap();
    assert_eq!(
        s,
        r#"{"organizationId":"acme-heat","machineId":"IQ-01","component":"Quench System","start":"2024-01-01T00:00:30.000Z","end":"2024-01-01T00:30:30.000Z"}"#
    );
    // Borealis Forge calls the same component by its own name.
    assert_eq!(f.to_event(&schemas[1]).component, "Quench Oil Cooler");
}

#[test]
fn invalid_configs_are_errors() {
    let ok = SimConfig::default();
    ok.validate().unwrap();
    let cases: Vec<(SimConfig, &str)> = vec![
        (
            SimConfig {
                interval_ms: 999,
                ..ok.clone()
            },
            "interval_ms",
        ),
        (
            SimConfig {
                duration_ms: 0,
                ..ok.clone()
            },
            "duration_ms",
        ),
        (
            SimConfig {
                duration_ms: i64::MAX,
                ..ok.clone()
            },
            "duration_ms",
        ),
        (
            SimConfig {
                machines_per_org: 0,
                ..ok.clone()
            },
            "machines_per_org",
        ),
        (
            SimConfig {
                failure_rate_per_machine_day: f64::NAN,
                ..ok.clone()
            },
            "failure_rate_per_machine_day",
        ),
        (
            SimConfig {
                failure_rate_per_machine_day: -1.0,
                ..ok.clone()
            },
            "failure_rate_per_machine_day",
        ),
        (
            SimConfig {
                near_miss_ratio: 1.0,
                ..ok.clone()
            },
            "near_miss_ratio",
        ),
        (
            SimConfig {
                near_miss_ratio: f64::INFINITY,
                ..ok.clone()
            },
            "near_miss_ratio",
        ),
        (
            SimConfig {
                start_ms: i64::MIN,
                ..ok.clone()
            },
            "start_ms",
        ),
    ];
    let schemas = OrgSchema::builtin(1);
    let dir = tempfile::tempdir().unwrap();
    for (c, key) in cases {
        match run_to_dir(
            &c,
            &schemas,
            dir.path(),
            OutputFormat::Jsonl,
            Speed::Max,
            &|_| {},
        ) {
            Err(SimError::InvalidConfig { key: k, .. }) => assert_eq!(k, key),
            other => panic!("{key}: {other:?}"),
        }
        assert!(OrgStream::new(&c, 0, &schemas[0]).is_err());
    }
    let bad_speed = run_to_writer(&ok, &schemas, &mut Vec::new(), Speed::Factor(0.0), &|_| {});
    assert!(matches!(
        bad_speed,
        Err(SimError::InvalidConfig { key: "speed", .. })
    ));
    let mut dup = OrgSchema::builtin(2);
    dup[1].org_id = dup[0].org_id.clone();
    assert!(matches!(
        failure_events(&ok, &dup),
        Err(SimError::InvalidSchema { .. })
    ));
    let mut bad = OrgSchema::builtin(1);
    bad[0].org_id = "../x".into();
    assert!(matches!(
        bad[0].validate(),
        Err(SimError::InvalidSchema { .. })
    ));
    bad = OrgSchema::builtin(1);
    bad[0].columns[1].1 = "hz1pv".into();
    assert!(bad[0].validate().is_err());
}

#[test]
fn realtime_pacing_waits_for_the_wall_clock() {
    // 3 instants 1 s apart at 10× speed: at least ~0.2 s of pacing.
    let c = SimConfig {
        interval_ms: 1_000,
        duration_ms: 3_000,
        machines_per_org: 1,
        ..SimConfig::default()
    };
    let t0 = std::time::Instant::now();
    let mut out = Vec::new();
    run_to_writer(
        &c,
        &OrgSchema::builtin(1),
        &mut out,
        Speed::Factor(10.0),
        &|_| {},
    )
    .unwrap();
    assert!(t0.elapsed() >= std::time::Duration::from_millis(190));
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 3);
}

#[test]
fn fixed_decimal_rendering() {
    let cases = [
        (900.0, 1, "900.0"),
        (-0.04, 1, "0.0"),
        (-1.25, 1, "-1.3"),
        (0.8526, 3, "0.853"),
        (99.95, 1, "100.0"),
        (f64::NAN, 1, "0"),
        (7.0, 0, "7"),
    ];
    for (v, d, want) in cases {
        let mut out = Vec::new();
        render::push_fixed(&mut out, v, d);
        assert_eq!(std::str::from_utf8(&out).unwrap(), want, "{v}");
    }
}
