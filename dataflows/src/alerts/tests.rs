//! Oracle tests: the streaming dedup and rules against naive recomputations over
//! the whole history.

use super::dedup::{DedupSettings, KeyDedup, stable_id};
use super::rules::{Rule, RuleState};
use crate::config::{Condition, RuleConfig, Severity};
use crate::records::{Alert, AlertStatus, AlertType};
use proptest::prelude::*;

const KEY: &str = "k";

fn notification(id: String, ts: i64) -> Alert {
    let a = Alert::notification(
        id,
        "acme",
        "m1",
        AlertType::Predictive,
        Severity::Warning,
        "Heating",
        ts,
    );
    Alert {
        probability: 0.9,
        confidence: 0.8,
        time_to_failure: 7.0,
        model_version: "v1".into(),
        ..a
    }
}

/// (id, ts, status, suppressedCount): what identifies an emitted record.
type Emitted = (String, i64, AlertStatus, u32);

fn emitted(a: &Alert) -> Emitted {
    (a.id.clone(), a.ts, a.status, a.suppressed_count)
}

/// Streaming: detections (sorted) delivered in batches; after each batch the
/// frontier moves to the next batch's first ts (or `final_frontier`), then finish.
fn streaming(s: &DedupSettings, ts: &[i64], cuts: &[usize], final_frontier: i64) -> Vec<Emitted> {
    let mut d = KeyDedup::default();
    let mut out = Vec::new();
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (ts.len() + 1)).collect();
    bounds.push(0);
    bounds.push(ts.len());
    bounds.sort_unstable();
    bounds.dedup();
    for w in bounds.windows(2) {
        for &t in &ts[w[0]..w[1]] {
            d.detect(s, t, KEY, |id| notification(id, t), &mut out);
        }
        let f = ts.get(w[1]).copied().unwrap_or(final_frontier);
        d.advance(s, f, &mut out);
    }
    d.finish(s, &mut out);
    out.iter().map(emitted).collect()
}

/// The definition, computed over the whole history at once.
fn reference(s: &DedupSettings, ts: &[i64], final_frontier: i64) -> Vec<Emitted> {
    // (event time, 0 = closing / 1 = detection, tiebreak, record)
    let mut ev: Vec<(i64, u8, i64, Emitted)> = Vec::new();
    let mut i = 0;
    let mut seq_in_stream = 0;
    while i < ts.len() {
        let w = s.window_start(ts[i]);
        let mut j = i;
        while j < ts.len() && s.window_start(ts[j]) == w {
            j += 1;
        }
        let n = (j - i) as u32;
        for (k, &t) in ts[i..j].iter().enumerate() {
            if (k as u32) < s.max_per_window {
                let id = stable_id(&[KEY, &w.to_string(), &(k + 1).to_string()]);
                ev.push((t, 1, seq_in_stream, (id, t, AlertStatus::Active, 0)));
            }
            seq_in_stream += 1;
        }
        if n > s.max_per_window && s.max_per_window > 0 {
            let k = s.max_per_window as usize - 1;
            let id = stable_id(&[KEY, &w.to_string(), &s.max_per_window.to_string()]);
            let e = w + s.window_ms;
            ev.push((
                e,
                0,
                e,
                (id, ts[i + k], AlertStatus::Active, n - s.max_per_window),
            ));
        }
        i = j;
    }
    // Resolutions: a gap longer than resolve_ms, or the end of event time.
    for (k, &t) in ts.iter().enumerate() {
        let r = t + s.resolve_ms;
        let next = ts.get(k + 1).copied();
        let due = match next {
            Some(n) => n > r,
            None => final_frontier > r,
        };
        if due {
            let id = stable_id(&[
                "acme",
                "m1",
                "Heating",
                "PREDICTIVE",
                "resolved",
                &r.to_string(),
            ]);
            ev.push((r + 1, 0, r, (id, r, AlertStatus::Resolved, 0)));
        }
    }
    ev.sort_by_key(|e| (e.0, e.1, e.2));
    ev.into_iter().map(|e| e.3).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn dedup_matches_the_reference(
        // Mostly on a 30 s grid, as rows are, so boundaries are hit exactly.
        gaps in prop::collection::vec(prop_oneof![Just(0i64), (1i64..40).prop_map(|k| k * 30_000), 1i64..900_000], 1..60),
        cuts in prop::collection::vec(0usize..100, 0..8),
        window_s in prop_oneof![Just(300u64), (2u64..20).prop_map(|k| k * 30), 60u64..600],
        max_per_window in 1u32..5,
        resolve_s in prop_oneof![Just(600u64), (10u64..40).prop_map(|k| k * 30), 300u64..1200],
        tail in prop_oneof![(0i64..70).prop_map(|k| k * 30_000), 0i64..2_000_000],
    ) {
        let s = DedupSettings { window_ms: window_s as i64 * 1000, max_per_window, resolve_ms: resolve_s as i64 * 1000 };
        let mut t = 1_700_000_000_000i64;
        let ts: Vec<i64> = gaps.iter().map(|g| { t += g; t }).collect();
        let fin = t + tail;
        prop_assert_eq!(streaming(&s, &ts, &cuts, fin), reference(&s, &ts, fin));
    }
}

#[test]
fn three_pass_then_the_count_comes_at_window_close() {
    let s = DedupSettings {
        window_ms: 300_000,
        max_per_window: 3,
        resolve_ms: 600_000,
    };
    let base = 1_700_000_100_000i64 - 1_700_000_100_000i64.rem_euclid(300_000);
    let ts: Vec<i64> = (0..10).map(|k| base + k * 30_000).collect();
    let out = streaming(&s, &ts, &[], base + 2_000_000);
    assert_eq!(out.len(), 5, "{out:?}");
    assert!(
        out[..3]
            .iter()
            .all(|e| e.3 == 0 && e.2 == AlertStatus::Active)
    );
    assert_eq!(out[3].0, out[2].0, "the third notification is re-emitted");
    assert_eq!(out[3].3, 7, "7 suppressed");
    assert_eq!(out[4].2, AlertStatus::Resolved);
    assert_eq!(
        out[4].1,
        ts[9] + 600_000,
        "resolved 600 s after the last detection"
    );
    // Ids are distinct per sequence and stable.
    assert_ne!(out[0].0, out[1].0);
    assert_eq!(
        out[0].0,
        stable_id(&[KEY, &base.to_string(), "1"]),
        "id = hash(key, window start, sequence)"
    );
}

// ---------------------------------------------------------------------------
// Rules

fn rule(cond: Condition, for_s: u64) -> RuleConfig {
    RuleConfig {
        name: "r".into(),
        severity: Severity::Warning,
        component: "C".into(),
        for_s,
        condition: cond,
    }
}

fn holds(cond: &Condition, rows: &[(i64, [f64; 3])], k: usize) -> bool {
    let names = ["a", "b", "c"];
    let v = |r: &[f64; 3], s: &str| r[names.iter().position(|n| *n == s).unwrap()];
    let (t, row) = rows[k];
    match cond {
        Condition::Threshold {
            signal,
            above,
            below,
        } => {
            let x = v(&row, signal);
            above.is_some_and(|a| x > a) || below.is_some_and(|b| x < b)
        }
        Condition::Deviation {
            signal,
            setpoint,
            band,
        } => (v(&row, signal) - v(&row, setpoint)).abs() > *band,
        Condition::FaultFlag { signal } => v(&row, signal) >= 0.5,
        Condition::RateOfChange {
            signal,
            max_per_min,
            window_s,
        } => {
            let x = v(&row, signal);
            let from = t - *window_s as i64 * 1000;
            let earliest = rows[..k]
                .iter()
                .find(|(t0, r)| *t0 >= from && v(r, signal).is_finite());
            match earliest {
                Some((t0, r)) if x.is_finite() => {
                    (x - v(r, signal)).abs() / ((t - t0) as f64 / 60_000.0) > *max_per_min
                }
                _ => false,
            }
        }
        Condition::Forecast {
            signal,
            window_s,
            horizon_s,
            min_points,
        } => {
            if !v(&row, signal).is_finite() {
                return false;
            }
            let window = *window_s as i64 * 1000;
            let pts: Vec<(f64, f64)> = rows[..=k]
                .iter()
                .filter(|(t0, r)| *t0 >= t - window && v(r, signal).is_finite())
                .map(|(t0, r)| (*t0 as f64 / 60_000.0, v(r, signal)))
                .collect();
            let span = rows[..=k]
                .iter()
                .find(|(t0, r)| *t0 >= t - window && v(r, signal).is_finite())
                .map_or(0, |(t0, _)| t - t0);
            if pts.len() < (*min_points).max(2) || span < (window / 4).max(1) {
                return false;
            }
            let n = pts.len() as f64;
            let mt = pts.iter().map(|p| p.0).sum::<f64>() / n;
            let mv = pts.iter().map(|p| p.1).sum::<f64>() / n;
            let stt: f64 = pts.iter().map(|p| (p.0 - mt).powi(2)).sum();
            let stv: f64 = pts.iter().map(|p| (p.0 - mt) * (p.1 - mv)).sum();
            if stt <= 0.0 {
                return false;
            }
            let slope = stv / stt;
            let level = mv + slope * (t as f64 / 60_000.0 - mt);
            let (high, low) = REFERENCE_LIMITS;
            let minutes = if level >= high || level <= low {
                0.0
            } else if slope > 0.0 {
                (high - level) / slope
            } else if slope < 0.0 {
                (low - level) / slope
            } else {
                return false;
            };
            minutes <= horizon_s.unwrap_or(600) as f64 / 60.0
        }
    }
}

/// The limits every signal of the reference rules has: (high, low).
const REFERENCE_LIMITS: (f64, f64) = (1.5, -1.5);

fn reference_limits() -> std::collections::BTreeMap<String, crate::config::SignalLimits> {
    ["a", "b", "c"]
        .iter()
        .map(|s| {
            (
                s.to_string(),
                crate::config::SignalLimits {
                    high: Some(REFERENCE_LIMITS.0),
                    low: Some(REFERENCE_LIMITS.1),
                    component: "Heating".into(),
                },
            )
        })
        .collect()
}

fn fires_reference(cfg: &RuleConfig, rows: &[(i64, [f64; 3])], k: usize) -> bool {
    if !holds(&cfg.condition, rows, k) {
        return false;
    }
    // Walk back over the run of rows where the condition held.
    let mut j = k;
    while j > 0 && holds(&cfg.condition, rows, j - 1) {
        j -= 1;
    }
    rows[k].0 - rows[j].0 >= cfg.for_s as i64 * 1000
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![8 => -5.0f64..5.0, 1 => Just(f64::NAN), 1 => Just(0.0), 1 => Just(1.0)]
}

fn condition() -> impl Strategy<Value = Condition> {
    let sig = prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(String::from);
    prop_oneof![
        (
            sig.clone(),
            prop::option::of(-2.0f64..2.0),
            prop::option::of(-2.0f64..2.0)
        )
            .prop_map(|(signal, above, below)| Condition::Threshold {
                signal,
                above,
                below
            }),
        (sig.clone(), sig.clone(), 0.0f64..3.0).prop_map(|(signal, setpoint, band)| {
            Condition::Deviation {
                signal,
                setpoint,
                band,
            }
        }),
        sig.clone()
            .prop_map(|signal| Condition::FaultFlag { signal }),
        (sig.clone(), 0.5f64..20.0, 30u64..300).prop_map(|(signal, max_per_min, window_s)| {
            Condition::RateOfChange {
                signal,
                max_per_min,
                window_s,
            }
        }),
        (sig, 30u64..1200, 30u64..3600, 3usize..8).prop_map(
            |(signal, window_s, horizon_s, min_points)| Condition::Forecast {
                signal,
                window_s,
                horizon_s: (horizon_s % 2 == 0).then_some(horizon_s),
                min_points,
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn rules_match_the_reference(
        cond in condition(),
        for_s in prop_oneof![Just(0u64), 1u64..300],
        steps in prop::collection::vec((1i64..90_000, value(), value(), value()), 1..80),
    ) {
        let cfg = rule(cond, for_s);
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let compiled = Rule::compile_with_limits(&cfg, &names, &reference_limits(), 600).unwrap();
        let mut t = 0i64;
        let rows: Vec<(i64, [f64; 3])> = steps.iter().map(|(g, a, b, c)| { t += g; (t, [*a, *b, *c]) }).collect();
        let mut state = RuleState::default();
        for k in 0..rows.len() {
            let got = state.step(&compiled, rows[k].0, &rows[k].1);
            prop_assert_eq!(got, fires_reference(&cfg, &rows, k), "row {} of {:?}", k, rows);
        }
    }
}

#[test]
fn a_rule_on_an_unknown_signal_is_refused_with_its_name() {
    let cfg = rule(
        Condition::FaultFlag {
            signal: "nope".into(),
        },
        0,
    );
    let err = Rule::compile(&cfg, &["a".to_string()]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "rule `r`: signal `nope` is not a signal of the org"
    );
}

/// An org whose model sees only the temperature's deviation from setpoint, while
/// its rule reads the fault flag: rules read a row's values, not its features.
const PREDICTIVE_CONFIG: &str = r#"
[alerts]
dedup_window_s = 300
max_per_window = 3
resolve_after_s = 600

[orgs.alpha]
name = "Alpha"
machine_column = "m"
time_column = "t"
[[orgs.alpha.signals]]
name = "temp"
column = "T"
kind = "continuous"
unit = "degC"
[[orgs.alpha.signals]]
name = "setpoint"
column = "S"
kind = "continuous"
unit = "degC"
[[orgs.alpha.signals]]
name = "fault"
column = "F"
kind = "boolean"
[orgs.alpha.features]
derived = [{ name = "dev", kind = "difference", of = ["temp", "setpoint"] }]
current = ["dev"]
signals = []
lags_s = []
windows_s = []
[[orgs.alpha.rules]]
name = "fault"
severity = "CRITICAL"
component = "Heater"
condition = { kind = "fault_flag", signal = "fault" }
[orgs.alpha.prediction]
failure_threshold = 0.8
for_s = 60
component_mapping = { "0" = "General", "1" = "Heater" }
"#;

/// `(ts_s, probability, fault)` rows of one machine (NaN probability: unscored)
/// through `MachineAlerts`; the ts (s) of new notifications of `alert_type`.
fn notified(config: &str, rows: &[(i64, f64, f64)], alert_type: AlertType) -> Vec<i64> {
    notified_live(config, rows, alert_type, &Default::default())
}

/// [`notified`] with threshold changes made while running.
fn notified_live(
    config: &str,
    rows: &[(i64, f64, f64)],
    alert_type: AlertType,
    changes: &crate::models::activations::Activations,
) -> Vec<i64> {
    use super::{AlertSettings, MachineAlerts, Mode};
    use crate::operators::inference::ScoredRow;
    use crate::records::{FeatureRow, ModelHealth, SourcePosition};
    use std::sync::Arc;
    let config = crate::config::Config::from_toml_str(config).unwrap();
    let mut s = AlertSettings::from_config(&config, Mode::Replay).unwrap();
    if let Some(log) = changes.thresholds_if_changed(&mut 0) {
        s.thresholds = log;
    }
    let mut m = MachineAlerts::new("alpha", "m1", s.orgs["alpha"].clone());
    let mut out = Vec::new();
    for (i, &(t, p, fault)) in rows.iter().enumerate() {
        let scored = !p.is_nan();
        let row = ScoredRow {
            row: FeatureRow {
                organization_id: "alpha".into(),
                machine_id: "m1".into(),
                ts: t * 1000,
                pos: SourcePosition {
                    partition: 0,
                    offset: i as u64,
                },
                features: vec![3.0],
                values: vec![853.0, 850.0, fault, 3.0],
            },
            probability: p,
            confidence: 0.9,
            component: Arc::from("Heater"),
            time_to_failure: 6.0,
            model_version: scored.then(|| Arc::from("v1")),
            health: ModelHealth::Healthy,
            fallback: !scored,
            fallback_reason: (!scored)
                .then_some(crate::operators::inference::FallbackReason::NoModel),
            processing_ms: 0.0,
            load_ms: 0.0,
            importance: scored.then(|| Arc::new(vec![(0, 1.0)])),
        };
        m.row(&s, &row, 0, &mut out);
    }
    m.finish(&s, 0, &mut out);
    out.iter()
        .filter(|a| {
            a.alert_type == alert_type && a.status == AlertStatus::Active && a.suppressed_count == 0
        })
        .map(|a| a.ts / 1000)
        .collect()
}

#[test]
fn predictive_alerts_wait_for_the_probability_to_hold_for_s() {
    let nan = f64::NAN;
    let rows = [
        (0, 0.9, 0.0),
        (30, 0.9, 0.0),
        (60, 0.5, 0.0), // below: the run restarts
        (90, 0.9, 0.0),
        (120, nan, 0.0), // unscored: the run restarts
        (150, 0.9, 0.0),
        (180, 0.8, 0.0),  // at the threshold counts
        (210, 0.95, 0.0), // held 60 s: detected
        (240, 0.9, 0.0),
    ];
    assert_eq!(
        notified(PREDICTIVE_CONFIG, &rows, AlertType::Predictive),
        [210, 240]
    );
    let immediate = PREDICTIVE_CONFIG.replace("for_s = 60", "for_s = 0");
    assert_eq!(
        notified(&immediate, &rows, AlertType::Predictive),
        [0, 30, 90],
        "without for_s the first three detections of the window pass"
    );
}

#[test]
fn a_probability_at_the_immediate_threshold_alerts_without_waiting_for_s() {
    let rows = [
        (0, 0.9, 0.0),    // above 0.8 but under 0.95: waits for_s
        (30, 0.95, 0.0),  // at the immediate threshold: alerts on this row
        (60, 0.9, 0.0),   // held 60 s since 0: alerts
        (90, 0.5, 0.0),   // below: the run restarts
        (120, 0.97, 0.0), // a jump straight past the immediate threshold
        (150, 0.85, 0.0), // held only 30 s
        (300, 0.99, 0.0), // next dedup window (held since 120 s anyway)
    ];
    let two_tier =
        PREDICTIVE_CONFIG.replace("for_s = 60", "for_s = 60\nimmediate_threshold = 0.95");
    assert_eq!(
        notified(&two_tier, &rows, AlertType::Predictive),
        [30, 60, 120, 300]
    );
    assert_eq!(
        notified(PREDICTIVE_CONFIG, &rows, AlertType::Predictive),
        [60, 300],
        "without it every alert waits for_s"
    );
}

#[test]
fn threshold_changes_apply_from_their_effective_ts() {
    use crate::models::activations::{Activations, Thresholds};
    let rows = [
        (0, 0.9, 0.0),
        (30, 0.9, 0.0),
        (60, 0.9, 0.0), // held 60 s under the configured 0.8 / 60 s: detected
        (120, 0.9, 0.0),
        (150, 0.96, 0.0),
        (180, 0.9, 0.0),
    ];
    let changes = Activations::default();
    changes.set_thresholds(
        "alpha",
        Thresholds {
            failure_threshold: 0.95,
            for_s: 0,
            immediate_threshold: None,
            confidence_threshold: 0.7,
        },
        100_000,
    );
    // From 100 s: 0.9 is below the new threshold; 0.96 alerts at once.
    assert_eq!(
        notified_live(PREDICTIVE_CONFIG, &rows, AlertType::Predictive, &changes),
        [60, 150]
    );
    assert_eq!(
        notified(PREDICTIVE_CONFIG, &rows, AlertType::Predictive),
        [60, 120, 150],
        "the configured thresholds without the change"
    );
    changes.set_thresholds(
        "other",
        Thresholds {
            failure_threshold: 0.1,
            for_s: 0,
            immediate_threshold: None,
            confidence_threshold: 0.1,
        },
        0,
    );
    assert_eq!(
        notified_live(PREDICTIVE_CONFIG, &rows, AlertType::Predictive, &changes),
        [60, 150],
        "another org's change does not apply"
    );
}

#[test]
fn rules_read_signals_that_are_not_features() {
    // No model scored these rows; the fault flag is no feature of the model.
    let rows = [(0, f64::NAN, 0.0), (30, f64::NAN, 1.0), (60, f64::NAN, 0.0)];
    assert_eq!(
        notified(PREDICTIVE_CONFIG, &rows, AlertType::Critical),
        [30]
    );
}

/// A rising temperature whose trend reaches its declared limit within the
/// horizon raises one PREDICTIVE alert, before any threshold is crossed, with
/// the predicted minutes to the limit and no probability; no model scored.
#[test]
fn a_forecast_rule_alerts_before_the_limit_with_the_time_to_reach_it() {
    use super::{AlertSettings, MachineAlerts, Mode};
    use crate::operators::inference::ScoredRow;
    use crate::records::{FeatureRow, ModelHealth, SourcePosition};
    use std::sync::Arc;
    let text = PREDICTIVE_CONFIG
        .replace(
            "unit = \"degC\"\n[[orgs.alpha.signals]]\nname = \"setpoint\"",
            "unit = \"degC\"\nlimits = { high = 900.0, component = \"Heater\" }\n[[orgs.alpha.signals]]\nname = \"setpoint\"",
        )
        .replace(
            "condition = { kind = \"fault_flag\", signal = \"fault\" }",
            "condition = { kind = \"fault_flag\", signal = \"fault\" }\n[[orgs.alpha.rules]]\nname = \"temp-trend\"\nseverity = \"WARNING\"\ncomponent = \"Heater\"\ncondition = { kind = \"forecast\", signal = \"temp\", window_s = 600, horizon_s = 900 }",
        );
    let config = crate::config::Config::from_toml_str(&text).unwrap();
    let s = AlertSettings::from_config(&config, Mode::Replay).unwrap();
    let mut m = MachineAlerts::new("alpha", "m1", s.orgs["alpha"].clone());
    let mut out = Vec::new();
    // 1 degC per minute from 850: the limit 900 is 50 min away at t = 0, so the
    // crossing is 15 min ahead at t = 35 min; rows every 30 s up to 40 min.
    for i in 0..=80i64 {
        let t = i * 30_000;
        let temp = 850.0 + t as f64 / 60_000.0;
        let row = ScoredRow {
            row: FeatureRow {
                organization_id: "alpha".into(),
                machine_id: "m1".into(),
                ts: t,
                pos: SourcePosition {
                    partition: 0,
                    offset: i as u64,
                },
                features: vec![temp - 850.0],
                values: vec![temp, 850.0, 0.0, temp - 850.0],
            },
            probability: f64::NAN,
            confidence: f64::NAN,
            component: Arc::from("General"),
            time_to_failure: f64::NAN,
            model_version: None,
            health: ModelHealth::Healthy,
            fallback: true,
            fallback_reason: Some(crate::operators::inference::FallbackReason::NoModel),
            processing_ms: 0.0,
            load_ms: 0.0,
            importance: None,
        };
        m.row(&s, &row, 0, &mut out);
    }
    let new: Vec<&Alert> = out
        .iter()
        .filter(|a| a.status == AlertStatus::Active && a.suppressed_count == 0)
        .collect();
    // Every row from then on is a detection; dedup lets the first three of its
    // window through, as for any rule.
    assert_eq!(
        new.iter().map(|a| a.ts / 1000).collect::<Vec<_>>(),
        [2100, 2130, 2160, 2400],
        "{new:?}"
    );
    let a = new[0];
    assert_eq!(a.alert_type, AlertType::Predictive);
    assert_eq!(
        a.ts,
        35 * 60_000,
        "the first row with the crossing 15 min ahead"
    );
    assert!(
        (a.time_to_failure - 15.0).abs() < 1e-6,
        "{}",
        a.time_to_failure
    );
    assert!(a.probability.is_nan(), "a trend has no probability");
    assert_eq!(a.model_version, "forecast");
    assert_eq!(a.rule.as_deref(), Some("temp-trend"));
    assert_eq!(a.component, "Heater");
    assert!(a.message.contains("high limit 900"), "{}", a.message);
}

#[test]
fn forecasts_and_limit_labels_need_a_signal_with_limits() {
    let text = PREDICTIVE_CONFIG.replace(
        "condition = { kind = \"fault_flag\", signal = \"fault\" }",
        "condition = { kind = \"forecast\", signal = \"temp\", window_s = 600, horizon_s = 900 }",
    );
    let err = crate::config::Config::from_toml_str(&text)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("orgs.alpha.rules[0].condition.signal") && err.contains("has no `limits`"),
        "{err}"
    );
    let bad = PREDICTIVE_CONFIG.replace(
        "unit = \"degC\"\n[[orgs.alpha.signals]]\nname = \"setpoint\"",
        "unit = \"degC\"\nlimits = { high = 1.0, low = 2.0, component = \"Heater\" }\n[[orgs.alpha.signals]]\nname = \"setpoint\"",
    );
    let err = crate::config::Config::from_toml_str(&bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("orgs.alpha.signals[0].limits") && err.contains("must be below"),
        "{err}"
    );
    // A limit-crossing failure signal needs limits too; with them it is valid.
    let label = |limits: &str| {
        PREDICTIVE_CONFIG
            .replace(
                "unit = \"degC\"\n[[orgs.alpha.signals]]\nname = \"setpoint\"",
                &format!("unit = \"degC\"\n{limits}\n[[orgs.alpha.signals]]\nname = \"setpoint\""),
            )
            .replace(
                "[orgs.alpha.prediction]",
                "[[orgs.alpha.failure_signals]]\nsignal = \"temp\"\ncomponent = \"Heater\"\nkind = \"limit\"\nhold_s = 120\n[orgs.alpha.prediction]",
            )
    };
    let err = crate::config::Config::from_toml_str(&label(""))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("orgs.alpha.failure_signals[0].signal") && err.contains("no `limits`"),
        "{err}"
    );
    let ok = crate::config::Config::from_toml_str(&label(
        "limits = { high = 900.0, component = \"Heater\" }",
    ))
    .unwrap();
    let f = &ok.orgs["alpha"].failure_signals[0];
    assert_eq!(
        (f.kind, f.hold_s),
        (crate::config::FailureSignalKind::Limit, 120)
    );
    // A flag (the default kind) must still be boolean.
    let flag = label("limits = { high = 900.0, component = \"Heater\" }")
        .replace("kind = \"limit\"\n", "");
    let err = crate::config::Config::from_toml_str(&flag)
        .unwrap_err()
        .to_string();
    assert!(err.contains("must be a boolean signal"), "{err}");
}
