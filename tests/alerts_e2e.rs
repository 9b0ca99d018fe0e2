//! Alerts end to end, as an admin would run them: simulate a training week of
//! one org, `prognos train`, then `prognos replay` a held-out simulated stretch
//! (another seed, with bad rows mixed in) through the whole dataflow, and check
//! the alerts against the ground truth and the raw rows:
//! - most failures get a PREDICTIVE alert 5–10 minutes ahead;
//! - every failure gets a CRITICAL alert from its fault flag while it lasts;
//! - dedup holds the count: per machine, component and window, the fault-flag
//!   notifications are min(rows with the flag on, 3) and the closing re-emission
//!   carries the rest;
//! - the store, fed every record, answers every query shape consistently and a
//!   second delivery changes nothing;
//! - bad rows become dead letters and never stop the pipeline.
//!
//! It trains a full-size model for minutes, so `make test` leaves it out and
//! `make eval` runs it (`cargo test --release --test alerts_e2e -- --ignored`).

use prognos::store::{AlertQuery, AlertStore};
use prognos_dataflows::records::{Alert, AlertStatus, AlertType, FailureEvent};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const ORG: &str = "acme-heat";
const MIN: i64 = 60_000;
const WINDOW: i64 = 300_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn simulate(bin: &str, out: &Path, machines: &str, hours: &str, seed: &str, rate: &str) {
    run(Command::new(bin)
        .args([
            "simulate",
            "--orgs",
            "1",
            "--machines",
            machines,
            "--hours",
            hours,
        ])
        .args(["--seed", seed, "--failure-rate", rate, "--out"])
        .arg(out));
}

fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (machine, flag column) → ts of rows with the flag on.
fn flag_rows(path: &Path) -> BTreeMap<(String, String), Vec<i64>> {
    let mut m: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(machine), Some(ts)) = (v["furnace_id"].as_str(), v["timestamp"].as_str()) else {
            continue;
        };
        let Some(ts) = prognos_dataflows::time::parse_rfc3339_ms(ts) else {
            continue;
        };
        for flag in ["hz1hfail", "tcfail", "oilfail", "cpfail"] {
            if v[flag].as_bool() == Some(true) {
                m.entry((machine.to_string(), flag.to_string()))
                    .or_default()
                    .push(ts);
            }
        }
    }
    m
}

#[test]
#[ignore = "a model-quality evaluation (about 12 minutes on 2 cores): `make eval` runs it"]
fn a_held_out_stretch_through_the_whole_dataflow() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_prognos");
    let config = root().join("config/prognos.example.toml");
    let data = tmp.path().join("data");

    // Train on a week of 24 furnaces (~170 failures: fewer leave the model
    // guessing on furnaces it has not seen).
    let train_sim = tmp.path().join("train");
    simulate(bin, &train_sim, "24", "168", "31", "1");
    run(Command::new(bin)
        .args(["train", "--org", ORG, "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .arg("--input")
        .arg(train_sim.join(format!("{ORG}.jsonl")))
        .arg("--events")
        .arg(train_sim.join("events.jsonl")));

    // Held out: another seed, more failures, and three bad rows.
    let test_sim = tmp.path().join("test");
    simulate(bin, &test_sim, "6", "72", "4242", "2");
    let input = test_sim.join(format!("{ORG}.jsonl"));
    let text = std::fs::read_to_string(&input).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let n_rows = lines.len();
    lines.insert(n_rows / 3, "{not json");
    lines.insert(n_rows / 2, r#"{"furnace_id":"IQ-01","hz1pv":900.0}"#);
    lines.insert(
        2 * n_rows / 3,
        r#"{"furnace_id":"IQ-02","timestamp":"yesterday"}"#,
    );
    let mut f = std::fs::File::create(&input).unwrap();
    for l in &lines {
        writeln!(f, "{l}").unwrap();
    }
    drop(f);
    let alerts_path = tmp.path().join("alerts.jsonl");
    let report = run(Command::new(bin)
        .args([
            "replay",
            "--json",
            "--compare-rules-only",
            "-w",
            "2",
            "--config",
        ])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .arg("--input")
        .arg(&input)
        .arg("--events")
        .arg(test_sim.join("events.jsonl"))
        .arg("--alerts-out")
        .arg(&alerts_path));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let alerts: Vec<Alert> = read_jsonl(&alerts_path);
    let events: Vec<FailureEvent> = read_jsonl(&test_sim.join("events.jsonl"));
    assert!(
        events.len() >= 20,
        "enough failures to judge: {}",
        events.len()
    );

    // Bad rows: dead letters, and every good row still scored.
    let hybrid = &report[0];
    assert_eq!(hybrid["configuration"], "hybrid");
    let dead: u64 = hybrid["deadLetters"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(dead, 3, "{}", hybrid["deadLetters"]);

    let notes: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Active && a.suppressed_count == 0)
        .collect();
    // Most failures (two in three) get a PREDICTIVE alert within the 10-minute
    // horizon, and a quarter of them 5-10 minutes ahead. (Precursors start 5-15
    // minutes before the trip and grow with the square of their progress, so the
    // first minutes of a short one look like normal work.) A model trained on 24
    // furnaces, as here, warns ahead of 0.77-0.93 of a held-out week's ~50
    // failures (seven weeks, benches/README.md), so 27 failures can land anywhere
    // from about 20 up.
    let warned = |earliest: i64, latest: i64| {
        events
            .iter()
            .filter(|e| {
                notes.iter().any(|a| {
                    a.alert_type == AlertType::Predictive
                        && a.machine_id == e.machine_id
                        && a.ts >= e.start - earliest
                        && a.ts <= e.start - latest
                })
            })
            .count()
    };
    let (ahead, early) = (warned(10 * MIN, 1), warned(10 * MIN, 5 * MIN));
    let figures = &hybrid["orgs"][ORG]["total"];
    assert!(
        ahead * 3 > events.len() * 2,
        "{ahead} of {} failures warned ahead; figures: {figures}",
        events.len(),
    );
    assert!(
        early * 4 >= events.len(),
        "{early} of {} failures warned 5-10 min ahead; figures: {figures}",
        events.len(),
    );
    assert!(
        figures["falseAlarmsPerMachineDay"].as_f64().unwrap() <= 1.5,
        "false alarms; figures: {figures}"
    );
    // And the backtest's own figures agree that the models add recall.
    let recall = |i: usize| {
        report[i]["orgs"][ORG]["total"]["eventRecall"]
            .as_f64()
            .unwrap()
    };
    assert!(
        recall(0) > recall(1),
        "hybrid {} vs rules-only {}",
        recall(0),
        recall(1)
    );

    // Every failure: a CRITICAL alert of its component from the fault flag, while it lasts.
    for e in &events {
        assert!(
            notes.iter().any(|a| a.alert_type == AlertType::Critical
                && a.machine_id == e.machine_id
                && a.component == e.component
                && a.ts >= e.start
                && a.ts <= e.end),
            "no CRITICAL alert for {e:?}"
        );
    }

    // Dedup holds the count, per machine, fault flag and window.
    let component_of = |flag: &str| match flag {
        "hz1hfail" => "Heating System",
        "tcfail" => "Temperature Sensing",
        "oilfail" => "Quench System",
        _ => "Atmosphere Control",
    };
    let mut checked = 0;
    for ((machine, flag), ts) in flag_rows(&input) {
        let mut windows: BTreeMap<i64, u32> = BTreeMap::new();
        for t in ts {
            *windows.entry(t - t.rem_euclid(WINDOW)).or_default() += 1;
        }
        for (w, n) in windows {
            let of_window: Vec<&Alert> = alerts
                .iter()
                .filter(|a| {
                    a.alert_type == AlertType::Critical
                        && a.machine_id == machine
                        && a.component == component_of(&flag)
                        && a.status == AlertStatus::Active
                        && a.ts >= w
                        && a.ts < w + WINDOW
                })
                .collect();
            let passed = of_window.iter().filter(|a| a.suppressed_count == 0).count() as u32;
            let suppressed: u32 = of_window.iter().map(|a| a.suppressed_count).sum();
            assert_eq!(passed, n.min(3), "{machine} {flag} window {w}");
            assert_eq!(
                suppressed,
                n.saturating_sub(3),
                "{machine} {flag} window {w}"
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "windows checked: {checked}");

    // The store: every record in, every query shape consistent.
    let db = sled::open(tmp.path().join("store")).unwrap();
    let store = AlertStore::open(&db).unwrap();
    let mut created = 0;
    for a in &alerts {
        if let Some(c) = store.apply(a).unwrap()
            && c.kind == prognos::store::ChangeKind::Created
        {
            created += 1;
        }
    }
    for a in &alerts {
        assert!(
            store.apply(a).unwrap().is_none(),
            "re-delivery changes nothing"
        );
    }
    let everything = AlertQuery {
        limit: 1000,
        ..AlertQuery::default()
    };
    let all = store.query(ORG, &everything).unwrap();
    assert_eq!(all.total as usize, created);
    assert_eq!(all.alerts.len(), created);
    // Pages of 7 cover everything once.
    let mut seen = Vec::new();
    let mut q = AlertQuery {
        limit: 7,
        ..AlertQuery::default()
    };
    loop {
        let page = store.query(ORG, &q).unwrap();
        seen.extend(page.alerts.iter().map(|a| a.id.clone()));
        match page.next {
            Some(c) => q.after = Some(c),
            None => break,
        }
    }
    let mut ids: Vec<String> = all.alerts.iter().map(|a| a.id.clone()).collect();
    assert_eq!(seen, ids, "pages in order, no gap, no repeat");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), created);
    // Filters partition the whole.
    let by = |f: &dyn Fn(&mut AlertQuery)| {
        let mut q = AlertQuery {
            limit: 1000,
            ..AlertQuery::default()
        };
        f(&mut q);
        store.query(ORG, &q).unwrap().total as usize
    };
    let types = [
        AlertType::Critical,
        AlertType::Warning,
        AlertType::Predictive,
    ];
    let per_type: usize = types.iter().map(|t| by(&|q| q.alert_type = Some(*t))).sum();
    assert_eq!(per_type, created);
    let statuses = [
        AlertStatus::Active,
        AlertStatus::Acknowledged,
        AlertStatus::Resolved,
    ];
    let per_status: usize = statuses.iter().map(|s| by(&|q| q.status = Some(*s))).sum();
    assert_eq!(per_status, created);
    assert!(
        by(&|q| q.status = Some(AlertStatus::Resolved)) > 0,
        "replays resolve"
    );
    let components = [
        "Heating System",
        "Temperature Sensing",
        "Quench System",
        "Atmosphere Control",
        "General Equipment",
    ];
    let per_component: usize = components
        .iter()
        .map(|c| by(&|q| q.component = Some(c.to_string())))
        .sum();
    assert_eq!(per_component, created);
    let mid = alerts[alerts.len() / 2].ts;
    let before = by(&|q| q.to = mid);
    let after = by(&|q| q.from = mid);
    assert_eq!(
        before + after,
        created,
        "a time split partitions the alerts"
    );
    let stats = store.stats(ORG, i64::MIN, i64::MAX).unwrap();
    assert_eq!(stats.total as usize, created);
    let trends = store.daily_trends(ORG, i64::MIN, i64::MAX).unwrap();
    assert_eq!(
        trends.iter().map(|d| d.total as usize).sum::<usize>(),
        created
    );
    assert!(store.query("another-org", &everything).unwrap().total == 0);
}
