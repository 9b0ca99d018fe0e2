//! A second equipment domain end to end with the real binary: the pump fleet of
//! `config/examples/pumps.toml` (fixture `tests/data/pumps/`, generated once with
//! NASA progpy, see its README) is imported into the history, importing it again
//! adds nothing, the generator's raw work orders are refused before any work
//! starts, and — once the converted work orders are stored with `prognos
//! history failures import` — `prognos train` without `--input` or `--events`
//! trains and activates a first version on the stored history with the work
//! orders as labels (the fleet has no fault flag: no rising edge to label from).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/data/pumps").join(name)
}

const CONFIG: &str = "config/examples/pumps.toml";

fn prognos(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prognos"))
        .current_dir(root())
        .args(args)
        // Through the environment: `history` takes its flags before the action.
        .env("PROGNOS_CONFIG", CONFIG)
        .env("PROGNOS_DATA_DIR", data)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// The fixture's rows, machines and time range, counted from the file itself.
fn expected() -> (u64, Vec<String>, String, String) {
    let text = std::fs::read_to_string(fixture("pumpco.jsonl")).unwrap();
    let mut machines = std::collections::BTreeSet::new();
    let mut times = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        machines.insert(v["asset"].as_str().unwrap().to_string());
        times.push(v["time"].as_str().unwrap().to_string());
    }
    times.sort();
    (
        times.len() as u64,
        machines.into_iter().collect(),
        times.first().unwrap().clone(),
        times.last().unwrap().clone(),
    )
}

#[test]
fn a_pump_fleet_is_imported_once_and_trains_from_its_history() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let rows_file = fixture("pumpco.jsonl");
    let rows_arg = rows_file.to_str().unwrap();
    let (rows, machines, first, last) = expected();

    // Import: every row is stored, with its machines and time range.
    let s = ok(&prognos(
        &data,
        &["history", "import", "--org", "pumpco", "--json", rows_arg],
    ));
    assert_eq!(s["rows"], rows, "{s}");
    assert_eq!(s["machines"], serde_json::json!(machines), "{s}");
    assert_eq!(s["firstTs"], first.as_str(), "{s}");
    assert_eq!(s["lastTs"], last.as_str(), "{s}");
    assert_eq!(s["deadLetters"], serde_json::json!({}), "{s}");
    let shown = ok(&prognos(
        &data,
        &["history", "show", "--org", "pumpco", "--json"],
    ));
    assert_eq!(shown["rows"], rows, "{shown}");
    assert_eq!(shown["machines"].as_array().unwrap().len(), machines.len());

    // Again: the file is recognised and nothing is added.
    let again = ok(&prognos(
        &data,
        &["history", "import", "--org", "pumpco", "--json", rows_arg],
    ));
    assert_eq!(again["rows"], 0, "{again}");
    assert_eq!(again["files"], serde_json::json!([]), "{again}");
    assert_eq!(
        again["alreadyImported"],
        serde_json::json!([rows_arg]),
        "{again}"
    );
    let shown = ok(&prognos(
        &data,
        &["history", "show", "--org", "pumpco", "--json"],
    ));
    assert_eq!(shown["rows"], rows, "{shown}");

    // The generator's own work orders (`org`/`machine`): refused up front, the
    // line and the field named, no version taken.
    let raw = fixture("events.raw.jsonl");
    let out = prognos(
        &data,
        &[
            "train",
            "--org",
            "pumpco",
            "--events",
            raw.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "raw events accepted: {err}");
    assert!(
        err.contains("events.raw.jsonl:1: ") && err.contains(": unknown field"),
        "the line and the field are named: {err}"
    );

    // The converted work orders, stored as the org's work orders: a first
    // version trained on the whole stored history, registered and activated.
    let events = fixture("events.jsonl");
    let imported = prognos(
        &data,
        &[
            "history",
            "failures",
            "import",
            "--org",
            "pumpco",
            events.to_str().unwrap(),
        ],
    );
    assert!(imported.status.success(), "{imported:?}");
    let outcome = ok(&prognos(&data, &["train", "--org", "pumpco"]));
    assert_eq!(outcome["version"], "v1", "{outcome}");
    assert_eq!(outcome["trainingRows"], shown["rows"], "{outcome}");
    // Its operating points, swept on its validation rows: 19 thresholds (0.7 is
    // one of them) x for_s 0, 30, 60; with the example's budget it is deployed
    // exactly when its chosen point adds to the rules and forecasts alone.
    let op = {
        let registry = prognos::training::registry::Registry::open(&data.join("store")).unwrap();
        registry.version("pumpco", "v1").unwrap().operating_point
    };
    assert_eq!(op["budget"], 0.5, "{op}");
    assert_eq!(op["points"].as_array().unwrap().len(), 57, "{op}");
    let adds = op["adds"].as_bool().unwrap();
    assert_eq!(outcome["deployed"], adds, "{outcome} {op}");
    assert_eq!(
        outcome["status"],
        if adds { "COMPLETED" } else { "REJECTED" },
        "{outcome}"
    );
    if let Some(i) = op["chosen"].as_u64() {
        let p = &op["points"][i as usize];
        assert!(
            p["falseAlarmsPerMachineDay"].as_f64().unwrap() <= 0.5 + 1e-12
                || p["falseAlarmsPerMachineDay"].as_f64()
                    <= op["rulesAndForecasts"]["falseAlarmsPerMachineDay"].as_f64(),
            "{op}"
        );
    }
    if !adds {
        // Activated by hand (the configured thresholds stay in force).
        let a = Command::new(env!("CARGO_BIN_EXE_prognos"))
            .current_dir(root())
            .args([
                "models",
                "activate",
                "--org",
                "pumpco",
                "--version",
                "v1",
                "--data-dir",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(a.status.success(), "{a:?}");
    }
    // The thresholds in force: the chosen point when it was deployed with one.
    let in_force = match (adds, op["chosen"].as_u64()) {
        (true, Some(i)) => (
            op["points"][i as usize]["failureThreshold"]
                .as_f64()
                .unwrap(),
            op["points"][i as usize]["forS"].as_u64().unwrap(),
        ),
        _ => (0.7, 30),
    };
    let list = Command::new(env!("CARGO_BIN_EXE_prognos"))
        .current_dir(root())
        .args(["models", "list", "--org", "pumpco", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.starts_with("* pumpco v1 "), "{list}");
    let registry = prognos::training::registry::Registry::open(&data.join("store")).unwrap();
    let runs = registry.runs("pumpco").unwrap();
    if !adds {
        let run = runs.iter().find(|r| r.version == "v1").unwrap();
        assert!(
            run.error_message
                .as_deref()
                .unwrap_or_default()
                .contains("adds nothing")
                || run
                    .error_message
                    .as_deref()
                    .unwrap_or_default()
                    .contains("budget"),
            "{run:?}"
        );
    }
    let run = runs.iter().find(|r| r.version == "v1").unwrap();
    assert_eq!(run.config["workOrders"], 5, "{:?}", run.config);
    drop(registry); // the replay opens the store
    // `prognos replay` of the fixture's rows against its work orders.
    let replay = |extra: &[&str]| {
        let mut args = vec![
            "replay",
            "--input",
            rows_arg,
            "--org",
            "pumpco",
            "--events",
            events.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        ok(&prognos(&data, &args))
    };

    // The curve on every row equals `prognos replay` on the same rows: the point
    // in force, alerted on by its own operator in the sweep, gives the hybrid
    // replay's figures.
    let sweep = replay(&["--sweep", "--json"]);
    let hybrid = replay(&["--json"]);
    let total = &hybrid[0]["orgs"]["pumpco"]["total"];
    let point = sweep["pumpco"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["failureThreshold"].as_f64() == Some(in_force.0) && p["forS"] == in_force.1)
        .unwrap_or_else(|| panic!("{in_force:?} not swept: {sweep}"));
    for k in [
        "failures",
        "detected",
        "episodes",
        "falseAlarms",
        "eventRecall",
        "medianLeadMinutes",
        "p10LeadMinutes",
    ] {
        assert_eq!(point[k], total[k], "{k}: sweep {point} vs replay {total}");
    }
    assert!(point["episodes"].as_u64().unwrap() > 0, "{point}");
    // The rules and forecasts alone, alerted on in the same sweep, equal the
    // breakdown's rules+forecast replay below.
    let rules_and_forecasts = sweep["pumpco"]["rulesAndForecasts"].clone();

    // What each part contributes, on the same rows and work orders: five
    // replays, each with its own dedup; the forecast rules alert on their own,
    // with no model and no label.
    let out = replay(&["--breakdown", "--json"]);
    let out = out.as_array().unwrap();
    let names: Vec<&str> = out
        .iter()
        .map(|r| r["configuration"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["hybrid", "rules+forecast", "rules", "forecast", "ml"]
    );
    for r in out {
        assert_eq!(r["orgs"]["pumpco"]["total"]["failures"], 5, "{r}");
    }
    let records = |i: usize| out[i]["alertRecords"].as_u64().unwrap();
    assert!(records(3) > 0, "the forecast rules alone alert: {}", out[3]);
    let rf = &out[1]["orgs"]["pumpco"]["total"];
    for k in ["failures", "detected", "episodes", "falseAlarms"] {
        assert_eq!(rules_and_forecasts[k], rf[k], "{k}");
    }
    // Level rules and forecasts raise different alert types, so their dedup
    // keys never meet: together they are exactly the sum of the parts.
    assert_eq!(records(1), records(2) + records(3), "{out:?}");
}
