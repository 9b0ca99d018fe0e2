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
pub mod trend;

use crate::config::{Config, Severity};
use crate::models::activations::{ThresholdLog, Thresholds, thresholds_at};
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
    /// A worker reading a log it can resume (Kafka): `createdAt` is the event
    /// time, so a restart that replays from a checkpoint emits the same bytes;
    /// the end of the input (shutdown) emits nothing, neither closing windows nor
    /// resolving keys: the restart continues them.
    Stream,
}

/// One org's compiled alerting.
#[derive(Debug, Clone)]
pub struct OrgAlerting {
    /// Level rules in config order.
    pub rules: Vec<Rule>,
    /// PREDICTIVE thresholds as configured (threshold changes made while
    /// running override them from their effective ts on).
    pub thresholds: Thresholds,
    /// Feature names (for explanations).
    pub feature_names: Arc<Vec<String>>,
    /// Value names, declared then derived signals (rules and their explanations).
    pub signal_names: Arc<Vec<String>>,
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
    /// Where threshold changes made while running come from (live runs); the
    /// operator refreshes [`AlertSettings::thresholds`] from it.
    pub live: Option<Arc<crate::models::activations::Activations>>,
    /// Threshold changes in event time; they override the org's configured
    /// failure threshold and `for_s` from their effective ts on.
    pub thresholds: Arc<ThresholdLog>,
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
                    thresholds: Thresholds::of(&o.prediction),
                    feature_names: Arc::new(o.feature_names()),
                    signal_names: Arc::new(
                        o.value_signals()
                            .iter()
                            .map(|s| s.name.to_string())
                            .collect(),
                    ),
                }),
            );
        }
        Ok(AlertSettings {
            orgs: Arc::new(orgs),
            dedup: DedupSettings::from_config(&config.alerts),
            mode,
            live: None,
            thresholds: Arc::default(),
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
                o.thresholds.failure_threshold = f64::INFINITY;
                (k.clone(), Arc::new(o))
            })
            .collect();
        AlertSettings {
            orgs: Arc::new(orgs),
            live: None,
            thresholds: Arc::default(),
            ..self.clone()
        }
    }

    /// The same settings with `org`'s prediction thresholds fixed to `t` on every
    /// row (no threshold log, no live changes): one point of an operating-point
    /// sweep. Other orgs keep their own.
    pub fn with_thresholds(&self, org: &str, t: Thresholds) -> AlertSettings {
        let mut orgs = (*self.orgs).clone();
        if let Some(o) = orgs.get_mut(org) {
            let mut a = (**o).clone();
            a.thresholds = t;
            *o = Arc::new(a);
        }
        let mut log = (*self.thresholds).clone();
        log.remove(org);
        AlertSettings {
            orgs: Arc::new(orgs),
            live: None,
            thresholds: Arc::new(log),
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
    /// Ts of the first row of the current run of scored rows at or above the
    /// failure threshold.
    above_since: Option<i64>,
    scratch: Vec<Detection>,
}

/// A detection before dedup: the rule (index) or the model. The alert itself is
/// built only if dedup lets it through (during an incident most detections are
/// only counted).
#[derive(Debug, Clone, Copy)]
enum Detection {
    Rule(usize),
    Predictive,
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
            above_since: None,
            scratch: Vec::new(),
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
        let mut detections = std::mem::take(&mut self.scratch);
        detections.clear();
        for (i, (rule, state)) in self.org.rules.iter().zip(self.rules.iter_mut()).enumerate() {
            if state.step(rule, ts, &row.row.values) {
                detections.push(Detection::Rule(i));
            }
        }
        match (row.fallback, &row.model_version, &row.importance) {
            (false, Some(v), Some(imp)) => {
                self.baseline.update(v, imp, ts, f);
                let t =
                    thresholds_at(&s.thresholds, &self.org_id, ts).unwrap_or(self.org.thresholds);
                if row.probability >= t.failure_threshold {
                    let since = *self.above_since.get_or_insert(ts);
                    if t.alerts(row.probability, ts.saturating_sub(since)) {
                        detections.push(Detection::Predictive);
                    }
                } else {
                    self.above_since = None;
                }
            }
            // An unscored row breaks the run: nothing says the probability held.
            _ => self.above_since = None,
        }
        let created_at = match s.mode {
            Mode::Live => now,
            Mode::Replay | Mode::Stream => ts,
        };
        let from = out.len();
        for &d in &detections {
            let (component, alert_type) = match d {
                // A forecast predicts: its alerts share the model's key, so a
                // crossing foreseen by both is one episode.
                Detection::Rule(i) if self.org.rules[i].cond.is_forecast() => {
                    (&self.org.rules[i].component, AlertType::Predictive)
                }
                Detection::Rule(i) => {
                    let r = &self.org.rules[i];
                    (&r.component, type_of(r.severity))
                }
                Detection::Predictive => (&row.component, AlertType::Predictive),
            };
            let k = self.key(&component.clone(), alert_type);
            let Self {
                org_id,
                machine_id,
                org,
                baseline,
                keys,
                rules: states,
                ..
            } = self;
            let key = &mut keys[k];
            key.dedup.detect(
                &s.dedup,
                ts,
                &key.id,
                |id| {
                    let base = |severity, component: &str| {
                        Alert::notification(
                            id, org_id, machine_id, alert_type, severity, component, ts,
                        )
                    };
                    match d {
                        Detection::Rule(i) => {
                            let rule = &org.rules[i];
                            let signals = rule_signals(rule);
                            let share = 1.0 / signals.len().max(1) as f64;
                            let b = if rule.cond.is_forecast() {
                                let m = states[i].minutes_to_limit;
                                Alert {
                                    // A trend has no probability: null, not a number.
                                    probability: f64::NAN,
                                    confidence: f64::NAN,
                                    time_to_failure: m,
                                    model_version: "forecast".to_string(),
                                    message: format!(
                                        "{}: {} on {}; about {:.0} min to the limit",
                                        rule.name, rule.describe, machine_id, m
                                    ),
                                    ..base(rule.severity, &rule.component)
                                }
                            } else {
                                Alert {
                                    message: format!(
                                        "{}: {} on {}",
                                        rule.name, rule.describe, machine_id
                                    ),
                                    ..base(rule.severity, &rule.component)
                                }
                            };
                            Alert {
                                rule: Some(rule.name.to_string()),
                                created_at,
                                top_features: signals
                                    .into_iter()
                                    .map(|i| TopFeature {
                                        name: org.signal_names.get(i).cloned().unwrap_or_default(),
                                        value: row.row.values.get(i).copied().unwrap_or(f64::NAN),
                                        contribution: share,
                                    })
                                    .collect(),
                                ..b
                            }
                        }
                        Detection::Predictive => Alert {
                            probability: row.probability,
                            confidence: row.confidence,
                            time_to_failure: row.time_to_failure,
                            model_version: row
                                .model_version
                                .as_deref()
                                .unwrap_or("rules")
                                .to_string(),
                            message: format!(
                                "{} failure predicted on {} in about {:.0} min (probability {:.2})",
                                row.component, machine_id, row.time_to_failure, row.probability
                            ),
                            created_at,
                            top_features: baseline.top(&org.feature_names, f),
                            ..base(Severity::Warning, &row.component)
                        },
                    }
                },
                out,
            );
        }
        self.scratch = detections;
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
        if s.mode == Mode::Stream {
            return;
        }
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
            Mode::Replay | Mode::Stream => a.ts,
        };
    }
}

fn rule_signals(rule: &Rule) -> Vec<usize> {
    use rules::Cond;
    match &rule.cond {
        Cond::Threshold { signal, .. }
        | Cond::FaultFlag { signal }
        | Cond::RateOfChange { signal, .. }
        | Cond::Forecast { signal, .. } => vec![*signal],
        Cond::Deviation {
            signal, setpoint, ..
        } => vec![*signal, *setpoint],
    }
}
