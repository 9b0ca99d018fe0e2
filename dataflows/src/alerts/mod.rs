//! Alerts from scored rows (ARCHITECTURE.md, "Alerts"): level rules
//! ([`rules`]), predictive alerts with their explanation ([`explain`]), and the
//! per-key dedup and resolution ([`dedup`]). [`MachineAlerts`] is one machine's
//! state, fed its rows in `(ts, partition, offset)` order; the timely operator
//! (`operators::alerts`) only buffers, orders and routes.
//!
//! Choices where the design is silent: a PREDICTIVE alert has severity WARNING (a
//! forecast; CRITICAL is reserved for faults present now); rule alerts carry
//! probability and confidence 1, time to failure 0, model version `rules`, and as
//! top features the signals their condition reads, with their values.

pub mod dedup;
pub mod explain;
pub mod rules;
#[cfg(test)]
mod tests;

use crate::config::{Config, Severity};
use crate::operators::inference::ScoredRow;
use crate::records::{Alert, AlertStatus, AlertType, TopFeature};
use dedup::{DedupSettings, KeyDedup};
use explain::Baseline;
use rules::{Rule, RuleError, RuleState};
use std::collections::HashMap;
use std::sync::Arc;

/// Live service or replay of history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `createdAt` is the wall clock at emission; open keys stay open when the
    /// input ends (a restart continues them).
    Live,
    /// `createdAt` is the alert's own event time, and the end of the input
    /// resolves every open key as if event time ran on: the output depends on the
    /// rows alone, byte for byte.
    Replay,
}

/// One org's compiled alerting.
#[derive(Debug, Clone)]
pub struct OrgAlerting {
    /// Level rules in config order.
    pub rules: Vec<Rule>,
    /// PREDICTIVE at or above this probability.
    pub failure_threshold: f64,
    /// Feature names (for explanations).
    pub feature_names: Arc<Vec<String>>,
}

/// Alerting of every org, plus dedup settings.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// Per org.
    pub orgs: Arc<HashMap<String, Arc<OrgAlerting>>>,
    /// Windows, cap, resolution.
    pub dedup: DedupSettings,
    /// Live or replay.
    pub mode: Mode,
}

impl AlertSettings {
    /// Compile the alerting of every enabled org.
    pub fn from_config(config: &Config, mode: Mode) -> Result<AlertSettings, RuleError> {
        let mut orgs = HashMap::new();
        for (id, o) in config.orgs.iter().filter(|(_, o)| o.enabled) {
            orgs.insert(
                id.clone(),
                Arc::new(OrgAlerting {
                    rules: Rule::compile_org(o)?,
                    failure_threshold: o.prediction.failure_threshold,
                    feature_names: Arc::new(o.feature_names()),
                }),
            );
        }
        Ok(AlertSettings {
            orgs: Arc::new(orgs),
            dedup: DedupSettings::from_config(&config.alerts),
            mode,
        })
    }

    /// The same settings with predictive alerts switched off: the rules-only
    /// configuration a backtest compares the models against.
    pub fn without_predictions(&self) -> AlertSettings {
        let orgs = self
            .orgs
            .iter()
            .map(|(k, o)| {
                let mut o = (**o).clone();
                o.failure_threshold = f64::INFINITY;
                (k.clone(), Arc::new(o))
            })
            .collect();
        AlertSettings {
            orgs: Arc::new(orgs),
            ..self.clone()
        }
    }
}

struct Key {
    id: String,
    component: Arc<str>,
    alert_type: AlertType,
    dedup: KeyDedup,
}

/// One machine's alerting state.
pub struct MachineAlerts {
    org_id: String,
    machine_id: String,
    org: Arc<OrgAlerting>,
    rules: Vec<RuleState>,
    baseline: Baseline,
    keys: Vec<Key>,
    last_ts: Option<i64>,
}

/// A detection before dedup.
struct Detection {
    alert_type: AlertType,
    severity: Severity,
    component: Arc<str>,
    probability: f64,
    confidence: f64,
    time_to_failure: f64,
    model_version: String,
    rule: Option<String>,
    message: String,
    top: Vec<TopFeature>,
}

fn type_of(s: Severity) -> AlertType {
    match s {
        Severity::Critical => AlertType::Critical,
        Severity::Warning => AlertType::Warning,
    }
}

impl MachineAlerts {
    /// Fresh state for a machine of `org`.
    pub fn new(org_id: &str, machine_id: &str, org: Arc<OrgAlerting>) -> MachineAlerts {
        MachineAlerts {
            org_id: org_id.to_string(),
            machine_id: machine_id.to_string(),
            rules: vec![RuleState::default(); org.rules.len()],
            org,
            baseline: Baseline::default(),
            keys: Vec::new(),
            last_ts: None,
        }
    }

    /// Handle the machine's next row (ts strictly ascending; a row at or before the
    /// last one is ignored, as the features operator already dropped duplicates).
    /// `now` is the wall clock (`createdAt` of a live run).
    pub fn row(&mut self, s: &AlertSettings, row: &ScoredRow, now: i64, out: &mut Vec<Alert>) {
        let ts = row.row.ts;
        if self.last_ts.is_some_and(|t| ts <= t) {
            return;
        }
        self.last_ts = Some(ts);
        let f = &row.row.features;
        let mut detections: Vec<Detection> = Vec::new();
        for (rule, state) in self.org.rules.iter().zip(self.rules.iter_mut()) {
            if state.step(rule, ts, f) {
                let signals = rule_signals(rule);
                let share = 1.0 / signals.len().max(1) as f64;
                detections.push(Detection {
                    alert_type: type_of(rule.severity),
                    severity: rule.severity,
                    component: rule.component.clone(),
                    probability: 1.0,
                    confidence: 1.0,
                    time_to_failure: 0.0,
                    model_version: "rules".into(),
                    rule: Some(rule.name.to_string()),
                    message: format!("{}: {} on {}", rule.name, rule.describe, self.machine_id),
                    top: signals
                        .into_iter()
                        .map(|i| TopFeature {
                            name: self.org.feature_names.get(i).cloned().unwrap_or_default(),
                            value: f.get(i).copied().unwrap_or(f64::NAN),
                            contribution: share,
                        })
                        .collect(),
                });
            }
        }
        if let (false, Some(v), Some(imp)) = (row.fallback, &row.model_version, &row.importance) {
            self.baseline.update(v, imp, ts, f);
            if row.probability >= self.org.failure_threshold {
                detections.push(Detection {
                    alert_type: AlertType::Predictive,
                    severity: Severity::Warning,
                    component: row.component.clone(),
                    probability: row.probability,
                    confidence: row.confidence,
                    time_to_failure: row.time_to_failure,
                    model_version: v.to_string(),
                    rule: None,
                    message: format!(
                        "{} failure predicted on {} in about {:.0} min (probability {:.2})",
                        row.component, self.machine_id, row.time_to_failure, row.probability
                    ),
                    top: self.baseline.top(&self.org.feature_names, f),
                });
            }
        }
        let created_at = match s.mode {
            Mode::Live => now,
            Mode::Replay => ts,
        };
        let from = out.len();
        for d in detections {
            let k = self.key(&d.component, d.alert_type);
            let (org, machine) = (&self.org_id, &self.machine_id);
            let key = &mut self.keys[k];
            key.dedup.detect(
                &s.dedup,
                ts,
                &key.id,
                |id| Alert {
                    probability: d.probability,
                    confidence: d.confidence,
                    time_to_failure: d.time_to_failure,
                    model_version: d.model_version,
                    rule: d.rule,
                    message: d.message,
                    created_at,
                    top_features: d.top,
                    ..Alert::notification(
                        id,
                        org,
                        machine,
                        d.alert_type,
                        d.severity,
                        &d.component,
                        ts,
                    )
                },
                out,
            );
        }
        stamp_resolutions(s, now, &mut out[from..]);
    }

    fn key(&mut self, component: &Arc<str>, t: AlertType) -> usize {
        if let Some(i) = self
            .keys
            .iter()
            .position(|k| k.alert_type == t && k.component == *component)
        {
            return i;
        }
        self.keys.push(Key {
            id: dedup::stable_id(&[&self.org_id, &self.machine_id, component, t.as_str()]),
            component: component.clone(),
            alert_type: t,
            dedup: KeyDedup::default(),
        });
        self.keys.len() - 1
    }

    /// Every row with ts < `frontier` has been handled: close windows and resolve
    /// keys that are due (keys in creation order, so the output is reproducible).
    /// `now`: the wall clock, `createdAt` of a live resolution.
    pub fn advance(&mut self, s: &AlertSettings, frontier: i64, now: i64, out: &mut Vec<Alert>) {
        let from = out.len();
        for k in &mut self.keys {
            k.dedup.advance(&s.dedup, frontier, out);
        }
        stamp_resolutions(s, now, &mut out[from..]);
    }

    /// End of input: in a replay, resolve every open key; close every window.
    pub fn finish(&mut self, s: &AlertSettings, now: i64, out: &mut Vec<Alert>) {
        let from = out.len();
        for k in &mut self.keys {
            if s.mode == Mode::Replay {
                k.dedup.advance(&s.dedup, i64::MAX, out);
            }
            k.dedup.finish(&s.dedup, out);
        }
        stamp_resolutions(s, now, &mut out[from..]);
    }

    /// Earliest event time at which [`advance`](Self::advance) has something to do.
    pub fn deadline(&self, s: &AlertSettings) -> Option<i64> {
        self.keys
            .iter()
            .filter_map(|k| k.dedup.deadline(&s.dedup))
            .min()
    }
}

/// A resolution is a new record: `createdAt` is when it is emitted (its own ts in
/// a replay). Closing re-emissions keep their notification's `createdAt`.
fn stamp_resolutions(s: &AlertSettings, now: i64, out: &mut [Alert]) {
    for a in out.iter_mut().filter(|a| a.status == AlertStatus::Resolved) {
        a.created_at = match s.mode {
            Mode::Live => now,
            Mode::Replay => a.ts,
        };
    }
}

fn rule_signals(rule: &Rule) -> Vec<usize> {
    use rules::Cond;
    match &rule.cond {
        Cond::Threshold { signal, .. }
        | Cond::FaultFlag { signal }
        | Cond::RateOfChange { signal, .. } => vec![*signal],
        Cond::Deviation {
            signal, setpoint, ..
        } => vec![*signal, *setpoint],
    }
}
