use super::*;
use toml::{Table, Value};

const EXAMPLE: &str = include_str!("../../../config/prognos.example.toml");

fn example_table() -> Table {
    EXAMPLE.parse::<Table>().unwrap()
}

/// Navigate a dotted path (`orgs.acme-heat.signals.0.name`) to a mutable value.
fn at<'a>(t: &'a mut Table, path: &str) -> &'a mut Value {
    let mut parts = path.split('.');
    let mut v = t.get_mut(parts.next().unwrap()).unwrap();
    for p in parts {
        v = match v {
            Value::Table(t) => t.get_mut(p).unwrap_or_else(|| panic!("no key {p}")),
            Value::Array(a) => &mut a[p.parse::<usize>().unwrap()],
            _ => panic!("cannot descend into {p}"),
        };
    }
    v
}

fn table_at<'a>(t: &'a mut Table, path: &str) -> &'a mut Table {
    at(t, path).as_table_mut().unwrap()
}

/// Parse the example after `edit`, expecting an error that names `key` and says `reason`.
fn expect_error(edit: impl FnOnce(&mut Table), key: &str, reason: &str) {
    let mut t = example_table();
    edit(&mut t);
    let text = toml::to_string(&t).unwrap();
    let err = Config::from_toml_str(&text).expect_err("edited config must be refused");
    let shown = err.to_string();
    assert!(
        shown.contains(key),
        "error should name `{key}`, got: {shown}"
    );
    assert!(
        shown.contains(reason),
        "error should say `{reason}`, got: {shown}"
    );
}

#[test]
fn example_parses_with_three_differently_named_schemas() {
    let cfg = Config::from_toml_str(EXAMPLE).unwrap();
    assert_eq!(cfg.orgs.len(), 3);
    let time_columns: BTreeSet<&str> = cfg.orgs.values().map(|o| o.time_column.as_str()).collect();
    assert_eq!(time_columns.len(), 3, "time columns differ per org");
    let zone1: BTreeSet<&str> = cfg
        .orgs
        .values()
        .map(|o| o.signal("zone1_temp").unwrap().column.as_str())
        .collect();
    assert_eq!(zone1.len(), 3, "raw zone-1 columns differ per org");
    let acme = &cfg.orgs["acme-heat"];
    assert_eq!(acme.prediction.failure_threshold, 0.85);
    assert_eq!(acme.prediction.confidence_threshold, 0.7);
    assert_eq!(acme.prediction.general_component(), "General Equipment");
    assert_eq!(acme.failure_signals.len(), 4);
    assert_eq!(acme.training.hyperparameters.num_iterations, 100);
    // Borealis leaves stage2_gate out: half the failure threshold.
    assert_eq!(cfg.orgs["borealis-forge"].prediction.stage2_gate(), 0.425);
    assert_eq!(cfg.runtime, RuntimeConfig::default());
    assert_eq!(cfg.alerts, AlertsConfig::default());
}

#[test]
fn feature_names_follow_config_order() {
    let cfg = Config::from_toml_str(EXAMPLE).unwrap();
    let cobalt = &cfg.orgs["cobalt-thermal"];
    let names = cobalt.feature_names();
    // 14 current values + 8 signals x 3 lags + 6 continuous x 3 windows x 4 stats
    // + 2 booleans x 3 windows.
    assert_eq!(names.len(), 14 + 24 + 72 + 6);
    assert_eq!(names[0], "zone1_temp");
    assert_eq!(names[14], "zone1_temp_lag_60s");
    assert_eq!(names[14 + 24], "zone1_temp_rolling_180s_mean");
    assert_eq!(names[14 + 24 + 1], "zone1_temp_rolling_180s_std");
    assert_eq!(names.last().unwrap(), "cycle_active_rolling_600s_rate");
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len());
    // max(300 s lag + 60 s tolerance, 600 s window)
    assert_eq!(cobalt.history_ms(60_000), 600_000);
}

#[test]
fn defaults_fill_missing_sections() {
    let mut t = example_table();
    t.remove("runtime");
    t.remove("alerts");
    t.remove("simulator");
    table_at(&mut t, "orgs.cobalt-thermal").remove("training");
    let cfg = Config::from_toml_str(&toml::to_string(&t).unwrap()).unwrap();
    assert_eq!(cfg.runtime.allowed_lateness_ms, 5000);
    assert_eq!(cfg.runtime.idle_timeout_ms, 30000);
    assert_eq!(cfg.runtime.lag_tolerance_ms, 60000);
    assert_eq!(cfg.alerts.dedup_window_s, 300);
    assert_eq!(cfg.alerts.max_per_window, 3);
    assert_eq!(cfg.alerts.resolve_after_s, 600);
    assert_eq!(
        cfg.orgs["cobalt-thermal"].training,
        TrainingConfig::default()
    );
}

#[test]
fn unknown_key_is_refused_with_its_name() {
    expect_error(
        |t| {
            table_at(t, "runtime").insert("allowed_latenes_ms".into(), Value::Integer(1));
        },
        "allowed_latenes_ms",
        "unknown field",
    );
    expect_error(
        |t| {
            table_at(t, "orgs.acme-heat.prediction").insert("treshold".into(), Value::Float(0.5));
        },
        "treshold",
        "unknown field",
    );
}

#[test]
fn wrong_type_is_refused() {
    expect_error(
        |t| *at(t, "alerts.dedup_window_s") = Value::String("five minutes".into()),
        "dedup_window_s",
        "invalid type",
    );
    expect_error(
        |t| *at(t, "orgs.acme-heat.signals.0.kind") = Value::String("analog".into()),
        "analog",
        "unknown variant",
    );
}

#[test]
fn missing_required_key_is_refused() {
    expect_error(
        |t| {
            table_at(t, "orgs.acme-heat").remove("machine_column");
        },
        "machine_column",
        "missing field",
    );
}

/// An edit of the example, the key the error must name, and what it must say.
type Case = (Box<dyn FnOnce(&mut Table)>, &'static str, &'static str);

#[test]
fn each_semantic_mistake_names_its_key() {
    let cases: Vec<Case> = vec![
        (
            Box::new(|t| *at(t, "runtime.max_batch_rows") = Value::Integer(0)),
            "runtime.max_batch_rows",
            "must be in 1..=65536",
        ),
        (
            Box::new(|t| *at(t, "alerts.max_per_window") = Value::Integer(0)),
            "alerts.max_per_window",
            "must be >= 1",
        ),
        (
            Box::new(|t| *at(t, "simulator.interval_ms") = Value::Integer(10)),
            "simulator.interval_ms",
            "must be >= 1000",
        ),
        (
            Box::new(|t| {
                let org = table_at(t, "orgs").remove("acme-heat").unwrap();
                table_at(t, "orgs").insert("Acme Heat".into(), org);
            }),
            "orgs.Acme Heat",
            "an org id is",
        ),
        (
            Box::new(|t| {
                *at(t, "orgs.acme-heat.signals.1.name") = Value::String("zone1_temp".into())
            }),
            "orgs.acme-heat.signals[1].name",
            "declared twice",
        ),
        (
            Box::new(|t| *at(t, "orgs.acme-heat.signals.1.column") = Value::String("hz1pv".into())),
            "orgs.acme-heat.signals[1].column",
            "mapped twice",
        ),
        (
            Box::new(|t| *at(t, "orgs.acme-heat.signals.0.name") = Value::String("Zone 1".into())),
            "orgs.acme-heat.signals[0].name",
            "not a canonical name",
        ),
        (
            Box::new(|t| {
                table_at(t, "orgs.acme-heat.signals.0").remove("unit");
            }),
            "orgs.acme-heat.signals[0].unit",
            "needs a unit",
        ),
        (
            Box::new(|t| {
                *at(t, "orgs.acme-heat.signals.0.column") = Value::String("furnace_id".into())
            }),
            "orgs.acme-heat.signals[0].column",
            "machine or time column",
        ),
        (
            Box::new(|t| {
                *at(t, "orgs.acme-heat.features.lags_s") =
                    Value::Array(vec![Value::Integer(120), Value::Integer(60)])
            }),
            "orgs.acme-heat.features.lags_s",
            "strictly ascending",
        ),
        (
            Box::new(|t| {
                *at(t, "orgs.acme-heat.features.signals.0") = Value::String("zone9_temp".into())
            }),
            "orgs.acme-heat.features.signals[0]",
            "not a declared signal",
        ),
        (
            Box::new(|t| *at(t, "orgs.acme-heat.prediction.failure_threshold") = Value::Float(1.5)),
            "orgs.acme-heat.prediction.failure_threshold",
            "must be in (0, 1]",
        ),
        (
            Box::new(|t| *at(t, "orgs.acme-heat.prediction.stage2_gate") = Value::Float(0.9)),
            "orgs.acme-heat.prediction.stage2_gate",
            "must be in [0, failure_threshold",
        ),
        (
            Box::new(|t| {
                table_at(t, "orgs.acme-heat.prediction.component_mapping").remove("2");
            }),
            "orgs.acme-heat.prediction.component_mapping",
            "\"2\" is missing",
        ),
        (
            Box::new(|t| {
                *at(t, "orgs.acme-heat.prediction.component_mapping.2") =
                    Value::String("Heating System".into())
            }),
            "orgs.acme-heat.prediction.component_mapping",
            "named twice",
        ),
        (
            Box::new(|t| {
                *at(t, "orgs.acme-heat.rules.0.component") = Value::String("Boiler".into())
            }),
            "orgs.acme-heat.rules[0].component",
            "not in prediction.component_mapping",
        ),
        (
            Box::new(|t| {
                *at(t, "orgs.acme-heat.rules.0.condition.signal") =
                    Value::String("zone1_temp".into())
            }),
            "orgs.acme-heat.rules[0].condition.signal",
            "must be a boolean signal",
        ),
        (
            Box::new(|t| {
                table_at(t, "orgs.acme-heat.rules.5.condition").remove("above");
            }),
            "orgs.acme-heat.rules[5].condition",
            "needs `above`, `below` or both",
        ),
        (
            Box::new(|t| *at(t, "orgs.acme-heat.rules.4.condition.band") = Value::Float(-1.0)),
            "orgs.acme-heat.rules[4].condition.band",
            "must be a finite number > 0",
        ),
        (
            Box::new(|t| {
                *at(t, "orgs.acme-heat.rules.1.name") = Value::String("heater-fault".into())
            }),
            "orgs.acme-heat.rules[1].name",
            "declared twice",
        ),
        (
            Box::new(|t| {
                *at(t, "orgs.acme-heat.failure_signals.0.component") =
                    Value::String("General Equipment".into())
            }),
            "orgs.acme-heat.failure_signals[0].component",
            "non-general component",
        ),
        (
            Box::new(|t| {
                *at(t, "orgs.acme-heat.failure_signals.0.signal") =
                    Value::String("zone1_temp".into())
            }),
            "orgs.acme-heat.failure_signals[0].signal",
            "must be a boolean signal",
        ),
        (
            Box::new(|t| {
                *at(t, "orgs.acme-heat.training.schedule") = Value::String("every sunday".into())
            }),
            "schedule",
            "expected 5 fields",
        ),
        (
            Box::new(|t| {
                *at(t, "orgs.acme-heat.training.timezone") = Value::String("Europe/Oslo".into())
            }),
            "orgs.acme-heat.training.timezone",
            "only `UTC` is supported",
        ),
        (
            Box::new(|t| *at(t, "orgs.acme-heat.training.validation_split") = Value::Float(0.9)),
            "orgs.acme-heat.training.validation_split",
            "must be in (0, 0.5]",
        ),
        (
            Box::new(|t| {
                *at(t, "orgs.acme-heat.training.hyperparameters.objective") =
                    Value::String("regression".into())
            }),
            "orgs.acme-heat.training.hyperparameters.objective",
            "binary",
        ),
        (
            Box::new(|t| {
                *at(t, "orgs.acme-heat.training.hyperparameters.max_depth") = Value::Integer(0)
            }),
            "orgs.acme-heat.training.hyperparameters.max_depth",
            "must be -1 (unlimited) or >= 1",
        ),
        (
            Box::new(|t| {
                table_at(t, "orgs").clear();
            }),
            "orgs",
            "at least one organization",
        ),
    ];
    for (edit, key, reason) in cases {
        expect_error(edit, key, reason);
    }
}

#[test]
fn config_round_trips_through_toml() {
    let cfg = Config::from_toml_str(EXAMPLE).unwrap();
    let text = toml::to_string(&cfg).unwrap();
    assert_eq!(Config::from_toml_str(&text).unwrap(), cfg);
}
