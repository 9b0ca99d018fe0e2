//! Operating points: where on its threshold curve a model alerts. The org sets
//! a false-alarm budget (`prediction.max_false_alarms_per_day`); the alerts of
//! one replay — the rows read, featured and scored once, then alerted on once
//! per `(failure_threshold, for_s)` of a grid with the alert, dedup and episode
//! rules of `prognos replay` ([`crate::replay::replay_variants`]) — give the
//! curve (event recall, lead, false episodes per machine-day per point), and the
//! point chosen is the best recall within the budget.
//!
//! The same replay alerts once more with the rules and forecasts alone (no
//! model), so a version can be judged on what it adds: [`Sweep::adds`].

use crate::backtest::{self, Figures, OrgWindows};
use crate::replay::{ReplayedVariants, replay_variants};
use crate::training::registry::Registry;
use prognos_dataflows::alerts::{AlertSettings, Mode};
use prognos_dataflows::config::{Config, PredictionConfig};
use prognos_dataflows::models::activations::{self, Activations, ThresholdChange, Thresholds};
use prognos_dataflows::operators::inference::InferenceContext;
use prognos_dataflows::records::FailureEvent;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The failure thresholds swept: 0.05 to 0.95 by 0.05, and the configured one.
pub fn threshold_grid(p: &PredictionConfig) -> Vec<f64> {
    let mut v: Vec<f64> = (1..=19).map(|i| f64::from(i) / 20.0).collect();
    v.push(p.failure_threshold);
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

/// The `for_s` values swept: none, 30 s, 60 s and the configured one.
pub fn for_s_grid(p: &PredictionConfig) -> Vec<u64> {
    let mut v = vec![0, 30, 60, p.for_s];
    v.sort_unstable();
    v.dedup();
    v
}

/// The thresholds of one point: `failure_threshold` and `for_s` from the grid,
/// the rest as configured (an immediate threshold below the point's failure
/// threshold does not apply).
pub fn thresholds_at(p: &PredictionConfig, failure_threshold: f64, for_s: u64) -> Thresholds {
    Thresholds {
        failure_threshold,
        for_s,
        immediate_threshold: p.immediate_threshold.filter(|i| *i >= failure_threshold),
        confidence_threshold: p.confidence_threshold,
    }
}

/// The figures of one way of alerting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    /// Failure threshold (None: the rules and forecasts alone).
    pub failure_threshold: Option<f64>,
    /// `for_s` (None: the rules and forecasts alone).
    pub for_s: Option<u64>,
    /// Failures that started within the rows.
    pub failures: usize,
    /// Of which detected in time.
    pub detected: usize,
    /// detected / failures.
    pub event_recall: Option<f64>,
    /// Median lead (minutes).
    pub median_lead_minutes: Option<f64>,
    /// 10th percentile of the leads (minutes).
    pub p10_lead_minutes: Option<f64>,
    /// Alert episodes.
    pub episodes: usize,
    /// Episodes with no failure.
    pub false_alarms: usize,
    /// Machine-days of rows.
    pub machine_days: f64,
    /// False episodes per machine-day.
    pub false_alarms_per_machine_day: Option<f64>,
}

impl Point {
    fn of(t: Option<&Thresholds>, f: &Figures) -> Point {
        Point {
            failure_threshold: t.map(|t| t.failure_threshold),
            for_s: t.map(|t| t.for_s),
            failures: f.failures,
            detected: f.detected,
            event_recall: f.event_recall,
            median_lead_minutes: f.median_lead_minutes,
            p10_lead_minutes: f.p10_lead_minutes,
            episodes: f.episodes,
            false_alarms: f.false_alarms,
            machine_days: f.machine_days,
            false_alarms_per_machine_day: f.false_alarms_per_machine_day,
        }
    }

    fn fa(&self) -> f64 {
        self.false_alarms_per_machine_day.unwrap_or(0.0)
    }
}

/// One org's curve on a set of rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sweep {
    /// The rows judged: `[from, to)` (ms; None: all).
    pub from: Option<i64>,
    /// See `from`.
    pub to: Option<i64>,
    /// The budget the point was chosen for (false episodes per machine-day).
    pub budget: Option<f64>,
    /// The rules and forecasts alone (no model) on the same rows.
    pub rules_and_forecasts: Point,
    /// Every point of the grid, by `for_s` then threshold.
    pub points: Vec<Point>,
    /// The index of the chosen point in `points`: the best recall among those
    /// within the budget — or, when the rules and forecasts alone exceed the
    /// budget, within their own false-alarm rate (the model may not add false
    /// alarms beyond either) — then the longer median lead, the fewer false
    /// alarms, the higher threshold. None without a budget or a failure.
    pub chosen: Option<usize>,
}

impl Sweep {
    /// The chosen point.
    pub fn chosen_point(&self) -> Option<&Point> {
        self.chosen.and_then(|i| self.points.get(i))
    }

    /// Whether the chosen point adds to the rules and forecasts alone: a higher
    /// recall, or the same recall with a median lead a minute longer or more.
    pub fn adds(&self) -> bool {
        let Some(p) = self.chosen_point() else {
            return false;
        };
        let r = &self.rules_and_forecasts;
        let (rp, rr) = (p.event_recall.unwrap_or(0.0), r.event_recall.unwrap_or(0.0));
        rp > rr + 1e-9
            || ((rp - rr).abs() <= 1e-9
                && rp > 0.0
                && p.median_lead_minutes.unwrap_or(0.0)
                    >= r.median_lead_minutes.unwrap_or(0.0) + 1.0)
    }
}

/// The index of the best point within `budget` (see [`Sweep::chosen`]).
pub fn choose(points: &[Point], rules_and_forecasts: &Point, budget: f64) -> Option<usize> {
    let limit = budget.max(rules_and_forecasts.fa());
    let key = |p: &Point| {
        (
            p.event_recall.unwrap_or(0.0),
            p.median_lead_minutes.unwrap_or(0.0),
            -p.fa(),
            p.failure_threshold.unwrap_or(0.0),
        )
    };
    points
        .iter()
        .enumerate()
        .filter(|(_, p)| p.failures > 0 && p.fa() <= limit + 1e-12)
        .max_by(|(_, a), (_, b)| {
            let (a, b) = (key(a), key(b));
            a.0.total_cmp(&b.0)
                .then(a.1.total_cmp(&b.1))
                .then(a.2.total_cmp(&b.2))
                .then(a.3.total_cmp(&b.3))
        })
        .map(|(i, _)| i)
}

/// What to sweep: one org's rows with a model context.
pub struct SweepSpec<'a> {
    /// The configuration (the org's rules, features, prediction settings).
    pub config: &'a Config,
    /// The org.
    pub org: &'a str,
    /// Its rows (the org is given, not taken from the file names).
    pub inputs: &'a [PathBuf],
    /// Scores the rows (the candidate or the registry's versions).
    pub ctx: InferenceContext,
    /// Known failures.
    pub events: &'a [FailureEvent],
    /// Judge only rows in `[from, to)` (the rows before are featured and scored,
    /// not alerted on).
    pub range: Option<(i64, i64)>,
    /// Timely workers.
    pub workers: usize,
    /// The budget; None: the org's `max_false_alarms_per_day`.
    pub budget: Option<f64>,
}

/// Replay the org's rows once and alert on them at every point of the grid and
/// with the rules and forecasts alone; the curve and the point chosen.
pub fn sweep(spec: SweepSpec<'_>) -> anyhow::Result<Sweep> {
    let o = spec
        .config
        .orgs
        .get(spec.org)
        .ok_or_else(|| anyhow::anyhow!("organization `{}` is not configured", spec.org))?;
    let p = &o.prediction;
    let base = AlertSettings::from_config(spec.config, Mode::Replay)?;
    let mut points: Vec<Thresholds> = Vec::new();
    for f in for_s_grid(p) {
        for t in threshold_grid(p) {
            points.push(thresholds_at(p, t, f));
        }
    }
    let mut variants = vec![base.without_predictions()];
    variants.extend(points.iter().map(|t| base.with_thresholds(spec.org, *t)));
    let r = replay_variants(
        spec.config,
        spec.inputs,
        Some(spec.org),
        Some(spec.ctx),
        spec.workers,
        variants,
        spec.range,
    )?;
    let figures = |i: usize| org_figures(&r, i, spec.org, spec.events, spec.config);
    let rules_and_forecasts = Point::of(None, &figures(0));
    let curve: Vec<Point> = points
        .iter()
        .enumerate()
        .map(|(i, t)| Point::of(Some(t), &figures(i + 1)))
        .collect();
    let budget = spec.budget.or(p.max_false_alarms_per_day);
    let chosen = budget.and_then(|b| choose(&curve, &rules_and_forecasts, b));
    Ok(Sweep {
        from: spec.range.map(|r| r.0),
        to: spec.range.map(|r| r.1),
        budget,
        rules_and_forecasts,
        points: curve,
        chosen,
    })
}

/// The thresholds a version brings: with a budget and no pin, its chosen point
/// (the configured thresholds when it has none); None without a budget or
/// with a pin (the configuration's are in force).
pub fn thresholds_of(
    p: &PredictionConfig,
    operating_point: &serde_json::Value,
) -> Option<Thresholds> {
    if p.max_false_alarms_per_day.is_none() || p.pin_threshold {
        return None;
    }
    let chosen = operating_point["chosen"]
        .as_u64()
        .and_then(|i| operating_point["points"].get(i as usize));
    Some(
        match chosen.map(|c| (c["failureThreshold"].as_f64(), c["forS"].as_u64())) {
            Some((Some(t), Some(f))) => thresholds_at(p, t, f),
            _ => Thresholds::of(p),
        },
    )
}

/// When `version` of `org` has just been activated at `effective_ts`: put the
/// thresholds it brings ([`thresholds_of`]) in force from then on, unless they
/// already are. Returns the change made.
pub fn apply(
    registry: &Registry,
    p: &PredictionConfig,
    org: &str,
    version: &str,
    effective_ts: i64,
    live: &Activations,
) -> anyhow::Result<Option<ThresholdChange>> {
    let rec = registry.version(org, version)?;
    let Some(t) = thresholds_of(p, &rec.operating_point) else {
        return Ok(None);
    };
    let now = activations::thresholds_at(&live.threshold_snapshot(), org, i64::MAX)
        .unwrap_or_else(|| Thresholds::of(p));
    if now == t {
        return Ok(None);
    }
    let c = registry.set_thresholds(org, Thresholds::of(p), t, effective_ts, live)?;
    tracing::info!(org = %org, version = %version, failure_threshold = t.failure_threshold,
        for_s = t.for_s, effective_ts = c.effective_ts, "operating point in force");
    Ok(Some(c))
}

/// The org's total figures of variant `i`.
fn org_figures(
    r: &ReplayedVariants,
    i: usize,
    org: &str,
    events: &[FailureEvent],
    config: &Config,
) -> Figures {
    let windows: std::collections::BTreeMap<String, OrgWindows> = crate::replay::windows(config);
    backtest::figures(&r.alerts[i], events, &r.spans, &windows)
        .remove(org)
        .map(|f| f.total)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(t: f64, recall: f64, lead: f64, fa: f64) -> Point {
        Point {
            failure_threshold: Some(t),
            for_s: Some(0),
            failures: 10,
            detected: (recall * 10.0) as usize,
            event_recall: Some(recall),
            median_lead_minutes: Some(lead),
            p10_lead_minutes: Some(lead / 2.0),
            episodes: 0,
            false_alarms: 0,
            machine_days: 10.0,
            false_alarms_per_machine_day: Some(fa),
        }
    }

    #[test]
    fn the_best_recall_within_the_budget_is_chosen() {
        let rf = Point {
            failure_threshold: None,
            for_s: None,
            ..pt(0.0, 0.5, 3.0, 0.1)
        };
        let points = [
            pt(0.2, 1.0, 9.0, 2.0), // over budget
            pt(0.4, 0.9, 7.0, 0.5),
            pt(0.5, 0.9, 7.0, 0.3), // same recall and lead, fewer false alarms
            pt(0.8, 0.6, 5.0, 0.1),
        ];
        assert_eq!(choose(&points, &rf, 0.5), Some(2));
        // A tighter budget moves down the curve.
        assert_eq!(choose(&points, &rf, 0.2), Some(3));
        // Nothing within budget, and the rules alone are within it: nothing.
        assert_eq!(choose(&points[..1], &rf, 0.5), None);
        // Rules alone over budget: the model may add no false alarm beyond them.
        let noisy = Point {
            false_alarms_per_machine_day: Some(2.0),
            ..rf.clone()
        };
        assert_eq!(choose(&points, &noisy, 0.5), Some(0));
    }

    #[test]
    fn a_model_adds_recall_or_a_minute_of_lead() {
        let rf = Point {
            failure_threshold: None,
            for_s: None,
            ..pt(0.0, 0.9, 6.0, 0.1)
        };
        let sweep = |p: Point| Sweep {
            from: None,
            to: None,
            budget: Some(0.5),
            rules_and_forecasts: rf.clone(),
            points: vec![p],
            chosen: Some(0),
        };
        assert!(sweep(pt(0.5, 1.0, 5.0, 0.2)).adds());
        assert!(sweep(pt(0.5, 0.9, 7.5, 0.2)).adds());
        assert!(!sweep(pt(0.5, 0.9, 6.5, 0.2)).adds());
        assert!(!sweep(pt(0.5, 0.8, 9.0, 0.2)).adds());
        let mut none = sweep(pt(0.5, 1.0, 9.0, 0.2));
        none.chosen = None;
        assert!(!none.adds());
    }

    #[test]
    fn the_grid_holds_the_configured_point() {
        let mut p: PredictionConfig = toml::from_str("component_mapping = { 0 = \"g\" }").unwrap();
        p.failure_threshold = 0.62;
        p.for_s = 45;
        let t = threshold_grid(&p);
        assert_eq!(t.len(), 20);
        assert!(t.contains(&0.62) && t.contains(&0.05) && t.contains(&0.95));
        assert!(t.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(for_s_grid(&p), vec![0, 30, 45, 60]);
        p.immediate_threshold = Some(0.9);
        assert_eq!(thresholds_at(&p, 0.95, 0).immediate_threshold, None);
        assert_eq!(thresholds_at(&p, 0.5, 0).immediate_threshold, Some(0.9));
    }
}
