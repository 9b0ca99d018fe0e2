//! Level rules (ARCHITECTURE.md, "Alerts"): conditions over a machine's current
//! signal values, evaluated row by row in event-time order.
//!
//! - **threshold**: `value > above` or `value < below`;
//! - **deviation**: `|value − setpoint| > band`;
//! - **fault flag**: the boolean is on (≥ 0.5 after mapping to 0/1);
//! - **rate of change**: against the earliest sample of the machine with a finite
//!   value in `[t − window, t)`, `|Δvalue| / Δt` in units per minute exceeds
//!   `max_per_min` (no such sample: false);
//! - **forecast**: the least-squares line through the machine's finite samples
//!   in `[t − window, t]` (at least `min_points`, spanning a quarter of the
//!   window) reaches one of the signal's limits within `horizon` — the level of
//!   the line at `t` already beyond a limit counts as 0 minutes ([`trend`]).
//!
//! [`trend`]: super::trend
//! A missing (NaN) input makes a condition false. With `for_s`, a rule fires on a
//! row when its condition has held on every row of the machine from some row at
//! `t₀ ≤ t − for_s` up to this one (a false row restarts the clock); without it,
//! on every row where the condition holds. Every firing is a detection; dedup
//! decides which become notifications.

use super::trend::{Trend, minutes_to_limit};
use crate::config::{Condition, OrgConfig, RuleConfig, Severity, SignalLimits};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// A rule's condition over feature indices (current values are features named
/// after their signal).
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// `value > above || value < below`.
    Threshold {
        /// Feature index of the signal.
        signal: usize,
        /// Upper bound.
        above: Option<f64>,
        /// Lower bound.
        below: Option<f64>,
    },
    /// `|value − setpoint| > band`.
    Deviation {
        /// Feature index of the signal.
        signal: usize,
        /// Feature index of the setpoint.
        setpoint: usize,
        /// Allowed band.
        band: f64,
    },
    /// The flag is on.
    FaultFlag {
        /// Feature index of the flag.
        signal: usize,
    },
    /// Change per minute over the window.
    RateOfChange {
        /// Feature index of the signal.
        signal: usize,
        /// Limit per minute.
        max_per_min: f64,
        /// Look-back span (ms).
        window_ms: i64,
    },
    /// The trend reaches a limit within the horizon.
    Forecast {
        /// Feature index of the signal.
        signal: usize,
        /// Trend window (ms).
        window_ms: i64,
        /// Horizon (minutes).
        horizon_min: f64,
        /// Fewest samples a fit needs.
        min_points: usize,
        /// Upper limit.
        high: Option<f64>,
        /// Lower limit.
        low: Option<f64>,
    },
}

impl Cond {
    /// Whether it predicts (a PREDICTIVE alert with a time to failure) rather
    /// than states a condition.
    pub fn is_forecast(&self) -> bool {
        matches!(self, Cond::Forecast { .. })
    }
}

/// A compiled rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Name (shown on the alert).
    pub name: Arc<str>,
    /// CRITICAL or WARNING.
    pub severity: Severity,
    /// Component the alert is raised against.
    pub component: Arc<str>,
    /// How long the condition must hold (ms).
    pub for_ms: i64,
    /// The condition.
    pub cond: Cond,
    /// Human description of the condition, for alert messages.
    pub describe: String,
}

/// Why a rule cannot be compiled against an org's features.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule `{rule}`: signal `{signal}` {reason}")]
pub struct RuleError {
    /// The rule.
    pub rule: String,
    /// The signal it names.
    pub signal: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn idx(names: &[String], rule: &RuleConfig, signal: &str) -> Result<usize, RuleError> {
    names
        .iter()
        .position(|n| n == signal)
        .ok_or_else(|| RuleError {
            rule: rule.name.clone(),
            signal: signal.to_string(),
            reason: "is not a signal of the org",
        })
}

fn s_to_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

impl Rule {
    /// Compile `rule` against the names of a row's values (declared then derived
    /// signals, `OrgConfig::value_signals`).
    pub fn compile(rule: &RuleConfig, names: &[String]) -> Result<Rule, RuleError> {
        Rule::compile_with_limits(rule, names, &BTreeMap::new(), 600)
    }

    /// [`Rule::compile`], with the limits of the signals that declare them and
    /// the horizon (s) of a forecast rule that sets none.
    pub fn compile_with_limits(
        rule: &RuleConfig,
        names: &[String],
        limits: &BTreeMap<String, SignalLimits>,
        default_horizon_s: u64,
    ) -> Result<Rule, RuleError> {
        let (cond, describe) = match &rule.condition {
            Condition::Threshold {
                signal,
                above,
                below,
            } => {
                let mut d = Vec::new();
                if let Some(a) = above {
                    d.push(format!("{signal} above {a}"));
                }
                if let Some(b) = below {
                    d.push(format!("{signal} below {b}"));
                }
                (
                    Cond::Threshold {
                        signal: idx(names, rule, signal)?,
                        above: *above,
                        below: *below,
                    },
                    d.join(" or "),
                )
            }
            Condition::Deviation {
                signal,
                setpoint,
                band,
            } => (
                Cond::Deviation {
                    signal: idx(names, rule, signal)?,
                    setpoint: idx(names, rule, setpoint)?,
                    band: *band,
                },
                format!("{signal} more than {band} off {setpoint}"),
            ),
            Condition::FaultFlag { signal } => (
                Cond::FaultFlag {
                    signal: idx(names, rule, signal)?,
                },
                format!("{signal} is on"),
            ),
            Condition::RateOfChange {
                signal,
                max_per_min,
                window_s,
            } => (
                Cond::RateOfChange {
                    signal: idx(names, rule, signal)?,
                    max_per_min: *max_per_min,
                    window_ms: s_to_ms(*window_s).max(1),
                },
                format!("{signal} changing faster than {max_per_min}/min"),
            ),
            Condition::Forecast {
                signal,
                window_s,
                horizon_s,
                min_points,
            } => {
                let l = limits.get(signal).ok_or_else(|| RuleError {
                    rule: rule.name.clone(),
                    signal: signal.clone(),
                    reason: "has no limits to forecast a crossing of",
                })?;
                let horizon_s = horizon_s.unwrap_or(default_horizon_s);
                let bounds: Vec<String> = [("high", l.high), ("low", l.low)]
                    .iter()
                    .filter_map(|(k, v)| v.map(|v| format!("{k} limit {v}")))
                    .collect();
                (
                    Cond::Forecast {
                        signal: idx(names, rule, signal)?,
                        window_ms: s_to_ms(*window_s).max(1),
                        horizon_min: horizon_s as f64 / 60.0,
                        min_points: *min_points,
                        high: l.high,
                        low: l.low,
                    },
                    format!(
                        "{signal} trending to its {} within {} min",
                        bounds.join(" or "),
                        horizon_s / 60
                    ),
                )
            }
        };
        Ok(Rule {
            name: Arc::from(rule.name.as_str()),
            severity: rule.severity,
            component: Arc::from(rule.component.as_str()),
            for_ms: s_to_ms(rule.for_s),
            cond,
            describe,
        })
    }

    /// Compile every rule of `org`.
    pub fn compile_org(org: &OrgConfig) -> Result<Vec<Rule>, RuleError> {
        let names: Vec<String> = org
            .value_signals()
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        let limits: BTreeMap<String, SignalLimits> = org
            .signals
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.limits.clone()?)))
            .collect();
        let horizon_s = u64::from(org.prediction.horizon_minutes.max(1)) * 60;
        org.rules
            .iter()
            .map(|r| Rule::compile_with_limits(r, &names, &limits, horizon_s))
            .collect()
    }
}

/// One rule's state on one machine.
#[derive(Debug, Clone, Default)]
pub struct RuleState {
    /// Ts of the first row of the current run of rows where the condition held.
    since: Option<i64>,
    /// Rate of change: recent finite samples `(ts, value)`, oldest first.
    history: VecDeque<(i64, f64)>,
    /// Forecast: the trend over the window.
    trend: Trend,
    /// Forecast: minutes to the limit at the last row (NaN when none).
    pub minutes_to_limit: f64,
}

impl RuleState {
    /// Evaluate `rule` on the machine's next row (`ts` ascending across calls);
    /// true when it fires.
    pub fn step(&mut self, rule: &Rule, ts: i64, f: &[f64]) -> bool {
        let get = |i: usize| f.get(i).copied().unwrap_or(f64::NAN);
        let holds = match &rule.cond {
            Cond::Threshold {
                signal,
                above,
                below,
            } => {
                let v = get(*signal);
                above.is_some_and(|a| v > a) || below.is_some_and(|b| v < b)
            }
            Cond::Deviation {
                signal,
                setpoint,
                band,
            } => (get(*signal) - get(*setpoint)).abs() > *band,
            Cond::FaultFlag { signal } => get(*signal) >= 0.5,
            Cond::RateOfChange {
                signal,
                max_per_min,
                window_ms,
            } => {
                let v = get(*signal);
                let from = ts.saturating_sub(*window_ms);
                while self.history.front().is_some_and(|(t, _)| *t < from) {
                    self.history.pop_front();
                }
                let fired = match self.history.front() {
                    Some(&(t0, v0)) if v.is_finite() && t0 < ts => {
                        let minutes = (ts - t0) as f64 / 60_000.0;
                        (v - v0).abs() / minutes > *max_per_min
                    }
                    _ => false,
                };
                if v.is_finite() {
                    self.history.push_back((ts, v));
                }
                fired
            }
            Cond::Forecast {
                signal,
                window_ms,
                horizon_min,
                min_points,
                high,
                low,
            } => {
                let v = get(*signal);
                self.minutes_to_limit = f64::NAN;
                if v.is_finite() {
                    self.trend.push(ts, v, *window_ms);
                    if let Some(m) = self
                        .trend
                        .fit(*min_points, window_ms / 4)
                        .and_then(|f| minutes_to_limit(f, *high, *low))
                    {
                        self.minutes_to_limit = m;
                    }
                }
                self.minutes_to_limit <= *horizon_min
            }
        };
        if !holds {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert(ts);
        ts.saturating_sub(since) >= rule.for_ms
    }
}
