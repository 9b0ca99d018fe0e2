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
    assert_eq!(acme.prediction.failure_threshold, 0.6);
    assert_eq!(acme.prediction.for_s, 30);
    assert_eq!(acme.prediction.immediate_threshold, Some(0.8));
    assert_eq!(acme.training.ensemble, 3);
    assert_eq!(
        cfg.orgs["borealis-forge"].training.ensemble, 1,
        "the default"
    );
    assert_eq!(acme.prediction.confidence_threshold, 0.7);
    assert_eq!(acme.prediction.general_component(), "General Equipment");
    assert_eq!(acme.failure_signals.len(), 4);
    assert_eq!(acme.training.hyperparameters.num_iterations, 400);
    // Cobalt names three hyperparameters; the rest keep their defaults.
    let cobalt = &cfg.orgs["cobalt-thermal"].training.hyperparameters;
    assert_eq!((cobalt.max_depth, cobalt.num_leaves), (8, 31));
    // Borealis leaves stage2_gate out: half the failure threshold.
    assert_eq!(cfg.orgs["borealis-forge"].prediction.stage2_gate(), 0.3);
    assert_eq!(cfg.runtime, RuntimeConfig::default());
    assert_eq!(cfg.alerts, AlertsConfig::default());
}

#[test]
fn feature_names_follow_config_order() {
    let cfg = Config::from_toml_str(EXAMPLE).unwrap();
    let cobalt = &cfg.orgs["cobalt-thermal"];
    let names = cobalt.feature_names();
    // 14 current values (8 relative signals, door and cycle, 4 fault flags) + 10
    // signals x 3 lags + 10 signals x 4 deltas + 8 continuous x 3 windows x 4
    // stats + 2 booleans x 3 windows.
    assert_eq!(names.len(), 14 + 30 + 40 + 96 + 6);
    assert_eq!(names[0], "zone1_dev");
    assert_eq!(names[9], "cycle_active");
    assert_eq!(names[13], "carbon_fault");
    assert_eq!(names[14], "zone1_dev_lag_60s");
    assert_eq!(names[14 + 30], "zone1_dev_delta_60s");
    assert_eq!(names[14 + 30 + 40], "zone1_dev_rolling_180s_mean");
    assert_eq!(names[14 + 30 + 40 + 1], "zone1_dev_rolling_180s_std");
    assert_eq!(names.last().unwrap(), "cycle_active_rolling_600s_rate");
    assert!(
        !names
            .iter()
            .any(|n| n == "zone1_temp" || n == "quench_oil_temp"),
        "raw levels are not features"
    );
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len());
    // max(600 s delta + 60 s tolerance, 600 s window) + the 3600 s deviations
    assert_eq!(cobalt.history_ms(60_000), 4_260_000);
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
            Box::new(|t| *at(t, "runtime.model_cache_models") = Value::Integer(0)),
            "runtime.model_cache_models",
            "must be in 1..=100000",
        ),
        (
            Box::new(|t| *at(t, "runtime.model_cache_mib") = Value::Integer(0)),
            "runtime.model_cache_mib",
            "must be in 1..=1048576",
        ),
        (
            Box::new(|t| *at(t, "orgs.acme-heat.prediction.timeout_ms") = Value::Integer(0)),
            "orgs.acme-heat.prediction.timeout_ms",
            "must be in 1..=600000",
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
            "not a declared or derived signal",
        ),
        (
            Box::new(|t| *at(t, "orgs.acme-heat.prediction.failure_threshold") = Value::Float(1.5)),
            "orgs.acme-heat.prediction.failure_threshold",
            "must be in (0, 1]",
        ),
        (
            Box::new(|t| {
                *at(t, "orgs.acme-heat.prediction.immediate_threshold") = Value::Float(0.5)
            }),
            "orgs.acme-heat.prediction.immediate_threshold",
            "must be in [failure_threshold = 0.6, 1]",
        ),
        (
            Box::new(|t| {
                table_at(t, "orgs.acme-heat.prediction")
                    .insert("max_false_alarms_per_day".into(), Value::Float(-0.5));
            }),
            "orgs.acme-heat.prediction.max_false_alarms_per_day",
            "must be a number > 0",
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
                t.insert("training".into(), toml::toml! { max_concurrent = 0 }.into());
            }),
            "training.max_concurrent",
            "must be in 1..=16",
        ),
        (
            Box::new(|t| {
                t.insert(
                    "history".into(),
                    toml::toml! { segment_max_rows = 0 }.into(),
                );
            }),
            "history.segment_max_rows",
            "must be in 1..=10000000",
        ),
        (
            Box::new(|t| *at(t, "orgs.acme-heat.signals.0.name") = Value::String("offset".into())),
            "orgs.acme-heat.signals[0].name",
            "is reserved",
        ),
        (
            Box::new(|t| {
                *at(t, "orgs.acme-heat.training.timezone") = Value::String("Europe/Atlantis".into())
            }),
            "orgs.acme-heat.training.timezone",
            "not an IANA time zone name",
        ),
        (
            Box::new(|t| *at(t, "orgs.acme-heat.training.validation_split") = Value::Float(0.9)),
            "orgs.acme-heat.training.validation_split",
            "must be in (0, 0.5]",
        ),
        (
            Box::new(|t| *at(t, "orgs.acme-heat.training.ensemble") = Value::Integer(0)),
            "orgs.acme-heat.training.ensemble",
            "must be in 1..=8, got 0",
        ),
        (
            Box::new(|t| *at(t, "orgs.acme-heat.training.ensemble") = Value::Integer(9)),
            "orgs.acme-heat.training.ensemble",
            "must be in 1..=8, got 9",
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

/// Replace acme-heat's derived signals with one `{name, kind, of}`; every signal
/// then gets features (the example's lists name the derived signals it replaces).
fn set_derived(t: &mut Table, name: &str, kind: &str, of: &[&str]) {
    table_at(t, "orgs.acme-heat.features").remove("signals");
    table_at(t, "orgs.acme-heat.features").remove("current");
    table_at(t, "orgs.acme-heat.features").remove("pooled");
    let mut d = Table::new();
    d.insert("name".into(), Value::String(name.into()));
    d.insert("kind".into(), Value::String(kind.into()));
    d.insert(
        "of".into(),
        Value::Array(of.iter().map(|s| Value::String(s.to_string())).collect()),
    );
    table_at(t, "orgs.acme-heat.features").insert("derived".into(), Value::Array(vec![d.into()]));
}

fn set_pool(t: &mut Table, name: &str, of: &[&str], stats: &[&str]) {
    let strings =
        |xs: &[&str]| Value::Array(xs.iter().map(|s| Value::String(s.to_string())).collect());
    let mut p = Table::new();
    p.insert("name".into(), Value::String(name.into()));
    p.insert("of".into(), strings(of));
    p.insert("stats".into(), strings(stats));
    table_at(t, "orgs.acme-heat.features").insert("pooled".into(), Value::Array(vec![p.into()]));
}

#[test]
fn pool_mistakes_name_their_key() {
    let zones = ["zone1_dev", "zone2_dev", "zone3_dev"];
    let cases: Vec<Case> = vec![
        (
            Box::new(move |t| set_pool(t, "Zone Dev", &zones, &["max"])),
            "orgs.acme-heat.features.pooled[0].name",
            "not a canonical name",
        ),
        (
            Box::new(|t| set_pool(t, "zone_dev", &["zone1_dev"], &["max"])),
            "orgs.acme-heat.features.pooled[0].of",
            "a pool needs at least 2 signals, got 1",
        ),
        (
            Box::new(|t| set_pool(t, "zone_dev", &["zone1_dev", "zone1_dev"], &["max"])),
            "orgs.acme-heat.features.pooled[0].of[1]",
            "`zone1_dev` is listed twice",
        ),
        (
            Box::new(|t| set_pool(t, "zone_dev", &["zone1_dev", "zone1_temp"], &["max"])),
            "orgs.acme-heat.features.pooled[0].of[1]",
            "`zone1_temp` has no lag, delta or window features (add it to `signals`)",
        ),
        (
            Box::new(|t| set_pool(t, "zone_dev", &["zone1_dev", "door_open"], &["max"])),
            "orgs.acme-heat.features.pooled[0].of[1]",
            "`door_open` must be a continuous signal",
        ),
        (
            Box::new(move |t| set_pool(t, "zone_dev", &zones, &[])),
            "orgs.acme-heat.features.pooled[0].stats",
            "at least one",
        ),
        (
            Box::new(move |t| set_pool(t, "zone_dev", &zones, &["max", "max"])),
            "orgs.acme-heat.features.pooled[0].stats",
            "at most once",
        ),
        (
            Box::new(move |t| set_pool(t, "zone_dev", &zones, &["median"])),
            "median",
            "unknown variant",
        ),
        (
            Box::new(move |t| {
                set_pool(t, "zone_dev", &zones, &["max"]);
                let p = at(t, "orgs.acme-heat.features.pooled").as_array().unwrap()[0].clone();
                at(t, "orgs.acme-heat.features.pooled")
                    .as_array_mut()
                    .unwrap()
                    .push(p);
            }),
            "orgs.acme-heat.features.pooled[1].name",
            "pool `zone_dev` is declared twice",
        ),
        (
            // `zone1_dev_rolling_600s` + `_max` spells zone 1's own window maximum.
            Box::new(move |t| set_pool(t, "zone1_dev_rolling_600s", &zones, &["max"])),
            "orgs.acme-heat.features",
            "feature `zone1_dev_rolling_600s_max` would be generated twice",
        ),
    ];
    for (edit, key, reason) in cases {
        expect_error(edit, key, reason);
    }
}

#[test]
fn feature_mistakes_name_their_key() {
    let cases: Vec<Case> = vec![
        (
            Box::new(|t| {
                set_derived(
                    t,
                    "Zone1 Dev",
                    "difference",
                    &["zone1_temp", "temp_setpoint"],
                )
            }),
            "orgs.acme-heat.features.derived[0].name",
            "not a canonical name",
        ),
        (
            Box::new(|t| {
                set_derived(
                    t,
                    "zone2_temp",
                    "difference",
                    &["zone1_temp", "temp_setpoint"],
                )
            }),
            "orgs.acme-heat.features.derived[0].name",
            "already a declared signal",
        ),
        (
            Box::new(|t| set_derived(t, "zone1_dev", "difference", &["zone1_temp"])),
            "orgs.acme-heat.features.derived[0].of",
            "a difference needs exactly 2 signals, got 1",
        ),
        (
            Box::new(|t| set_derived(t, "zone1_dev", "difference", &["zone1_temp", "zone9_temp"])),
            "orgs.acme-heat.features.derived[0].of[1]",
            "`zone9_temp` is not a declared signal or a derived one listed before",
        ),
        (
            Box::new(|t| set_derived(t, "door_dev", "difference", &["door_open", "zone1_temp"])),
            "orgs.acme-heat.features.derived[0].of[0]",
            "must be a continuous signal",
        ),
        (
            Box::new(|t| set_derived(t, "zero", "difference", &["zone1_temp", "zone1_temp"])),
            "orgs.acme-heat.features.derived[0].of",
            "both operands are `zone1_temp`",
        ),
        (
            Box::new(|t| set_derived(t, "zone1_dev", "product", &["zone1_temp", "temp_setpoint"])),
            "product",
            "unknown variant",
        ),
        (
            Box::new(|t| {
                set_derived(
                    t,
                    "zone1_temp_lag_60s",
                    "difference",
                    &["zone1_temp", "temp_setpoint"],
                )
            }),
            "orgs.acme-heat.features",
            "feature `zone1_temp_lag_60s` would be generated twice",
        ),
        (
            Box::new(|t| {
                set_derived(
                    t,
                    "zone1_dev",
                    "difference",
                    &["zone1_temp", "temp_setpoint"],
                );
                let d = at(t, "orgs.acme-heat.features.derived").as_array().unwrap()[0].clone();
                at(t, "orgs.acme-heat.features.derived")
                    .as_array_mut()
                    .unwrap()
                    .push(d);
            }),
            "orgs.acme-heat.features.derived[1].name",
            "derived signal `zone1_dev` is declared twice",
        ),
        (
            Box::new(|t| {
                table_at(t, "orgs.acme-heat.features").insert(
                    "deltas_s".into(),
                    Value::Array(vec![Value::Integer(60), Value::Integer(60)]),
                );
            }),
            "orgs.acme-heat.features.deltas_s",
            "strictly ascending",
        ),
        (
            Box::new(|t| set_derived(t, "oil_rel", "deviation", &["quench_oil_temp"])),
            "orgs.acme-heat.features.derived[0].window_s",
            "a deviation needs the window of its baseline",
        ),
        (
            Box::new(|t| set_derived(t, "oil_rel", "median_deviation", &["quench_oil_temp"])),
            "orgs.acme-heat.features.derived[0].window_s",
            "a deviation needs the window of its baseline",
        ),
        (
            Box::new(|t| {
                set_derived(t, "oil_rel", "deviation", &["quench_oil_temp"]);
                table_at(t, "orgs.acme-heat.features.derived.0")
                    .insert("window_s".into(), Value::Integer(0));
            }),
            "orgs.acme-heat.features.derived[0].window_s",
            "must be > 0",
        ),
        (
            Box::new(|t| {
                set_derived(
                    t,
                    "zone1_dev",
                    "difference",
                    &["zone1_temp", "temp_setpoint"],
                );
                table_at(t, "orgs.acme-heat.features.derived.0")
                    .insert("window_s".into(), Value::Integer(600));
            }),
            "orgs.acme-heat.features.derived[0].window_s",
            "only a deviation has a window",
        ),
        (
            Box::new(|t| {
                set_derived(
                    t,
                    "oil_rel",
                    "deviation",
                    &["quench_oil_temp", "zone1_temp"],
                )
            }),
            "orgs.acme-heat.features.derived[0].of",
            "a deviation needs exactly 1 signal, got 2",
        ),
        (
            Box::new(|t| {
                table_at(t, "orgs.acme-heat.features").insert(
                    "current".into(),
                    Value::Array(vec![
                        Value::String("zone1_temp".into()),
                        Value::String("zone1_temp".into()),
                    ]),
                );
            }),
            "orgs.acme-heat.features.current[1]",
            "`zone1_temp` is listed twice",
        ),
        (
            Box::new(|t| {
                table_at(t, "orgs.acme-heat.features").insert(
                    "signals".into(),
                    Value::Array(vec![Value::String("no_such_derived".into())]),
                );
            }),
            "orgs.acme-heat.features.signals[0]",
            "not a declared or derived signal",
        ),
    ];
    for (edit, key, reason) in cases {
        expect_error(edit, key, reason);
    }
}

#[test]
fn derived_signals_get_features_in_config_order() {
    let mut t = example_table();
    table_at(&mut t, "orgs.acme-heat").insert("features".into(), Value::Table(Table::new()));
    set_derived(
        &mut t,
        "zone1_dev",
        "difference",
        &["zone1_temp", "temp_setpoint"],
    );
    let mut dev = Table::new();
    dev.insert("name".into(), Value::String("zone1_dev_rel".into()));
    dev.insert("kind".into(), Value::String("deviation".into()));
    dev.insert(
        "of".into(),
        Value::Array(vec![Value::String("zone1_dev".into())]),
    );
    dev.insert("window_s".into(), Value::Integer(1800));
    at(&mut t, "orgs.acme-heat.features.derived")
        .as_array_mut()
        .unwrap()
        .push(dev.into());
    let f = table_at(&mut t, "orgs.acme-heat.features");
    let strings =
        |v: &[&str]| Value::Array(v.iter().map(|s| Value::String(s.to_string())).collect());
    f.insert("current".into(), strings(&["zone1_dev_rel", "zone1_temp"]));
    f.insert("signals".into(), strings(&["zone1_dev", "door_open"]));
    f.insert("lags_s".into(), Value::Array(vec![Value::Integer(60)]));
    f.insert("deltas_s".into(), Value::Array(vec![Value::Integer(120)]));
    f.insert("windows_s".into(), Value::Array(vec![Value::Integer(300)]));
    f.insert("stats".into(), strings(&["mean"]));
    let cfg = Config::from_toml_str(&toml::to_string(&t).unwrap()).unwrap();
    let acme = &cfg.orgs["acme-heat"];
    assert_eq!(
        acme.feature_names(),
        [
            "zone1_dev_rel",
            "zone1_temp",
            "zone1_dev_lag_60s",
            "door_open_lag_60s",
            "zone1_dev_delta_120s",
            "door_open_delta_120s",
            "zone1_dev_rolling_300s_mean",
            "door_open_rolling_300s_rate",
        ]
    );
    // max(120 s delta + 60 s tolerance, 300 s window) + the 1800 s deviation
    assert_eq!(acme.history_ms(60_000), 2_100_000);
    // A derived signal may build on an earlier one, never on a later one.
    let mut t = toml::to_string(&cfg).unwrap().parse::<Table>().unwrap();
    at(&mut t, "orgs.acme-heat.features.derived")
        .as_array_mut()
        .unwrap()
        .reverse();
    let err = Config::from_table(t).unwrap_err().to_string();
    assert!(
        err.contains("orgs.acme-heat.features.derived[0].of[0]")
            && err.contains("`zone1_dev` is not a declared signal or a derived one listed before"),
        "{err}"
    );
}

#[test]
fn config_round_trips_through_toml() {
    let cfg = Config::from_toml_str(EXAMPLE).unwrap();
    let text = toml::to_string(&cfg).unwrap();
    assert_eq!(Config::from_toml_str(&text).unwrap(), cfg);
}

/// `derived = [{ name, kind = "expression", expr }]` in acme-heat, after `before`.
fn set_expression(t: &mut Table, before: &[(&str, &str, &[&str])], name: &str, expr: &str) {
    let mut list = Vec::new();
    for (n, kind, of) in before {
        set_derived(t, n, kind, of);
        list.extend(
            at(t, "orgs.acme-heat.features.derived")
                .as_array()
                .unwrap()
                .clone(),
        );
    }
    let mut d = Table::new();
    d.insert("name".into(), Value::String(name.into()));
    d.insert("kind".into(), Value::String("expression".into()));
    d.insert("expr".into(), Value::String(expr.into()));
    list.push(d.into());
    let f = table_at(t, "orgs.acme-heat.features");
    for k in ["signals", "current", "pooled"] {
        f.remove(k);
    }
    f.insert("derived".into(), Value::Array(list));
}

#[test]
fn expression_mistakes_name_their_key() {
    let expr = |e: &'static str| -> Box<dyn FnOnce(&mut Table)> {
        Box::new(move |t| set_expression(t, &[], "x", e))
    };
    let key = "orgs.acme-heat.features.derived[0].expr";
    let cases: Vec<Case> = vec![
        (
            expr("(zone1_temp - tmp_setpoint) / 2"),
            key,
            "unknown signal `tmp_setpoint` (declared: zone1_temp, zone2_temp, zone3_temp, \
             temp_setpoint,",
        ),
        (
            expr("zone1_temp + door_open"),
            key,
            "`door_open` must be a continuous signal, it is boolean",
        ),
        (expr("zone1_temp +"), key, "`zone1_temp +`: syntax error"),
        (
            expr("(zone1_temp - temp_setpoint"),
            key,
            "unbalanced parentheses",
        ),
        (expr("zone1_temp * 1e3"), key, "`1e3` is not a number"),
        (
            expr("sin(zone1_temp)"),
            key,
            "unknown function `sin` (functions: abs, sqrt,",
        ),
        (expr("-zone1_temp^2"), key, "`-x^y` is ambiguous"),
        (expr("zone1_temp^2^2"), key, "`x^y^z` is ambiguous"),
        (expr("zone1_temp % 2"), key, "unexpected `%` at offset 11"),
        (expr("2 * 3"), key, "`2 * 3` reads no signal"),
        (expr(""), key, "the expression is empty"),
        (
            Box::new(|t| set_expression(t, &[], "x", "x + 1")),
            key,
            "unknown signal `x` (declared: ",
        ),
        (
            // A derived operand must come before the expression.
            Box::new(|t| {
                set_expression(t, &[], "x", "zone1_dev / 2");
                let d = at(t, "orgs.acme-heat.features.derived")
                    .as_array_mut()
                    .unwrap();
                let mut dev = Table::new();
                dev.insert("name".into(), Value::String("zone1_dev".into()));
                dev.insert("kind".into(), Value::String("difference".into()));
                dev.insert(
                    "of".into(),
                    Value::Array(vec![
                        Value::String("zone1_temp".into()),
                        Value::String("temp_setpoint".into()),
                    ]),
                );
                d.push(dev.into());
            }),
            key,
            "unknown signal `zone1_dev` (declared: zone1_temp",
        ),
        (
            Box::new(|t| {
                set_expression(
                    t,
                    &[("zone1_dev", "difference", &["zone1_temp", "temp_setpoint"])],
                    "x",
                    "zone1_dev / zone9",
                )
            }),
            "orgs.acme-heat.features.derived[1].expr",
            "derived before: zone1_dev)",
        ),
        (
            Box::new(|t| {
                set_expression(t, &[], "x", "zone1_temp");
                table_at(t, "orgs.acme-heat.features.derived.0").remove("expr");
            }),
            key,
            "an expression needs `expr`",
        ),
        (
            Box::new(|t| {
                set_expression(t, &[], "x", "zone1_temp");
                table_at(t, "orgs.acme-heat.features.derived.0").insert(
                    "of".into(),
                    Value::Array(vec![Value::String("zone1_temp".into())]),
                );
            }),
            "orgs.acme-heat.features.derived[0].of",
            "an expression names its operands in `expr`",
        ),
        (
            Box::new(|t| {
                set_expression(t, &[], "x", "zone1_temp");
                table_at(t, "orgs.acme-heat.features.derived.0")
                    .insert("window_s".into(), Value::Integer(60));
            }),
            "orgs.acme-heat.features.derived[0].window_s",
            "only a deviation has a window",
        ),
        (
            Box::new(|t| {
                set_derived(
                    t,
                    "zone1_dev",
                    "difference",
                    &["zone1_temp", "temp_setpoint"],
                );
                table_at(t, "orgs.acme-heat.features.derived.0")
                    .insert("expr".into(), Value::String("zone1_temp".into()));
            }),
            key,
            "only an expression has `expr`",
        ),
    ];
    for (edit, key, reason) in cases {
        expect_error(edit, key, reason);
    }
}

#[test]
fn expression_history_is_its_operands_longest() {
    let mut t = example_table();
    table_at(&mut t, "orgs.acme-heat").insert("features".into(), Value::Table(Table::new()));
    set_expression(
        &mut t,
        &[
            ("oil_rel", "deviation", &["quench_oil_temp"]),
            ("zone1_dev", "difference", &["zone1_temp", "temp_setpoint"]),
        ],
        "load",
        "(zone1_output + zone2_output) / max(zone1_dev, 1) - oil_rel^2",
    );
    table_at(&mut t, "orgs.acme-heat.features.derived.0")
        .insert("window_s".into(), Value::Integer(1800));
    let cfg = Config::from_table(t).unwrap();
    let acme = &cfg.orgs["acme-heat"];
    assert_eq!(acme.derived_history_ms(), [1_800_000, 0, 1_800_000]);
    let load = &acme.features.derived[2];
    assert_eq!(
        load.operands(),
        ["oil_rel", "zone1_dev", "zone1_output", "zone2_output"]
    );
    // The round trip keeps `expr`.
    let text = toml::to_string(&cfg).unwrap();
    assert_eq!(Config::from_toml_str(&text).unwrap(), cfg);
}

#[test]
fn the_example_comment_expression_is_valid() {
    let expr = "zone1_output / max(zone1_output + zone2_output + zone3_output, 1)";
    assert!(EXAMPLE.contains(&format!("expr = \"{expr}\"")));
    let mut t = example_table();
    set_expression(&mut t, &[], "zone1_share", expr);
    let cfg = Config::from_table(t).unwrap();
    assert!(
        cfg.orgs["acme-heat"]
            .feature_names()
            .contains(&"zone1_share".to_string())
    );
}
