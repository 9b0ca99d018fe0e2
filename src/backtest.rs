//! Backtest figures of an alert stream against known failures (what `prognos
//! replay` prints): the numbers an admin reads before trusting a model.
//!
//! Definitions (the alert-level counterparts of `ml/prognos_ml/metrics.py`):
//! - **notifications**: alert records with status ACTIVE and `suppressedCount` 0
//!   (re-emissions with a count and RESOLVED records are not new alerts);
//! - **failures**: events whose start lies within the replayed rows of their
//!   machine (first ts ≤ start ≤ last ts);
//! - a failure is **detected** when a notification of its machine, of any type,
//!   has ts in `[start − horizon, start)` (horizon = the org's
//!   `prediction.horizon_minutes`): a warning that came in time to act. Its
//!   **lead** is start minus the first such notification (minutes); median and
//!   p10 (90 % of detections came at least this early);
//! - **episodes**: a machine's notifications (any type and component) in ts
//!   order, split where two are `resolve_after_s` or more apart — what an operator
//!   experiences as one incident. An episode is **true** when one of its
//!   notifications lies in `[start − horizon, end]` of a failure of the machine
//!   (fault alerts during the failure are true), else a **false alarm**;
//! - **machine-days**: per machine, last − first row ts plus one sampling interval
//!   (mean spacing), summed, / 1 day.
//!
//! Per component: failures by their component, episodes by the component of
//! their first notification.

use prognos_dataflows::records::{Alert, AlertStatus, AlertType, FailureEvent};
use serde::Serialize;
use std::collections::BTreeMap;

/// One machine's replayed time span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First row ts.
    pub first: i64,
    /// Last row ts.
    pub last: i64,
    /// Median sampling interval (ms).
    pub step: i64,
}

/// Figures of one org, or of one component of an org.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// Failures that started within the replayed rows.
    pub failures: usize,
    /// Of which detected in time.
    pub detected: usize,
    /// detected / failures.
    pub event_recall: Option<f64>,
    /// Median lead of the detected failures (minutes).
    pub median_lead_minutes: Option<f64>,
    /// 10th percentile of the leads (minutes).
    pub p10_lead_minutes: Option<f64>,
    /// Alert episodes.
    pub episodes: usize,
    /// Episodes with no failure.
    pub false_alarms: usize,
    /// Machine-days replayed.
    pub machine_days: f64,
    /// false alarms / machine-days.
    pub false_alarms_per_machine_day: Option<f64>,
    /// Notifications by type.
    pub notifications: BTreeMap<String, usize>,
    /// Leads of the detected failures (minutes), ascending.
    pub lead_minutes: Vec<f64>,
}

/// Figures of one org: the whole and per component.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgFigures {
    /// All components.
    pub total: Figures,
    /// Per component.
    pub components: BTreeMap<String, Figures>,
}

/// Settings of the definitions, per org.
#[derive(Debug, Clone, Copy)]
pub struct OrgWindows {
    /// `prediction.horizon_minutes` in ms.
    pub horizon_ms: i64,
    /// `alerts.resolve_after_s` in ms (episode split).
    pub episode_gap_ms: i64,
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    // Linear interpolation, as numpy's default.
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

impl Figures {
    fn finish(&mut self) {
        self.lead_minutes.sort_by(f64::total_cmp);
        self.event_recall =
            (self.failures > 0).then(|| self.detected as f64 / self.failures as f64);
        self.median_lead_minutes = quantile(&self.lead_minutes, 0.5);
        self.p10_lead_minutes = quantile(&self.lead_minutes, 0.1);
        self.false_alarms_per_machine_day =
            (self.machine_days > 0.0).then(|| self.false_alarms as f64 / self.machine_days);
    }
}

/// Is this record a new notification?
pub fn is_notification(a: &Alert) -> bool {
    a.status == AlertStatus::Active && a.suppressed_count == 0
}

/// Compute the figures of every org in `windows`.
pub fn figures(
    alerts: &[Alert],
    events: &[FailureEvent],
    spans: &BTreeMap<(String, String), Span>,
    windows: &BTreeMap<String, OrgWindows>,
) -> BTreeMap<String, OrgFigures> {
    let mut out: BTreeMap<String, OrgFigures> = BTreeMap::new();
    // Notifications per machine, in ts order.
    let mut notes: BTreeMap<(&str, &str), Vec<&Alert>> = BTreeMap::new();
    for a in alerts.iter().filter(|a| is_notification(a)) {
        notes
            .entry((a.organization_id.as_str(), a.machine_id.as_str()))
            .or_default()
            .push(a);
    }
    for v in notes.values_mut() {
        v.sort_by(|a, b| (a.ts, &a.id).cmp(&(b.ts, &b.id)));
    }
    // Failures per machine (within the replayed span).
    let mut fails: BTreeMap<(&str, &str), Vec<&FailureEvent>> = BTreeMap::new();
    for e in events {
        let Some(span) = spans.get(&(e.organization_id.clone(), e.machine_id.clone())) else {
            continue;
        };
        if e.start < span.first || e.start > span.last {
            continue;
        }
        fails
            .entry((e.organization_id.as_str(), e.machine_id.as_str()))
            .or_default()
            .push(e);
    }
    for (org, w) in windows {
        let of = out.entry(org.clone()).or_default();
        for ((o, m), span) in spans.iter().filter(|((o, _), _)| o == org) {
            let days = ((span.last - span.first) + span.step) as f64 / 86_400_000.0;
            of.total.machine_days += days;
            let key = (o.as_str(), m.as_str());
            let ns: &[&Alert] = notes.get(&key).map_or(&[], |v| v.as_slice());
            let fs: &[&FailureEvent] = fails.get(&key).map_or(&[], |v| v.as_slice());
            for n in ns {
                *of.total
                    .notifications
                    .entry(n.alert_type.as_str().to_string())
                    .or_default() += 1;
            }
            // Failures: detected in time?
            for f in fs {
                let first = ns
                    .iter()
                    .find(|n| n.ts >= f.start - w.horizon_ms && n.ts < f.start);
                for fig in [
                    &mut of.total,
                    of.components.entry(f.component.clone()).or_default(),
                ] {
                    fig.failures += 1;
                    if let Some(n) = first {
                        fig.detected += 1;
                        fig.lead_minutes.push((f.start - n.ts) as f64 / 60_000.0);
                    }
                }
            }
            // Episodes.
            let mut i = 0;
            while i < ns.len() {
                let mut j = i + 1;
                while j < ns.len() && ns[j].ts - ns[j - 1].ts < w.episode_gap_ms {
                    j += 1;
                }
                let episode = &ns[i..j];
                let truthful = episode.iter().any(|n| {
                    fs.iter()
                        .any(|f| n.ts >= f.start - w.horizon_ms && n.ts <= f.end)
                });
                for fig in [
                    &mut of.total,
                    of.components
                        .entry(episode[0].component.clone())
                        .or_default(),
                ] {
                    fig.episodes += 1;
                    if !truthful {
                        fig.false_alarms += 1;
                    }
                }
                i = j;
            }
        }
        let days = of.total.machine_days;
        of.total.finish();
        for c in of.components.values_mut() {
            c.machine_days = days;
            c.finish();
        }
    }
    out
}

/// Only the PREDICTIVE part of a stream (to judge the models alone).
pub fn predictive_only(alerts: &[Alert]) -> Vec<Alert> {
    alerts
        .iter()
        .filter(|a| a.alert_type == AlertType::Predictive)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prognos_dataflows::config::Severity;

    const MIN: i64 = 60_000;

    fn note(machine: &str, ts: i64, t: AlertType, component: &str) -> Alert {
        let id = format!("{machine}-{ts}");
        Alert::notification(id, "acme", machine, t, Severity::Warning, component, ts)
    }

    fn fail(machine: &str, start: i64, component: &str) -> FailureEvent {
        FailureEvent {
            organization_id: "acme".into(),
            machine_id: machine.into(),
            component: component.into(),
            start,
            end: start + 20 * MIN,
        }
    }

    #[test]
    fn figures_by_hand() {
        let day = 86_400_000;
        let spans: BTreeMap<(String, String), Span> = ["m1", "m2"]
            .iter()
            .map(|m| {
                (
                    ("acme".to_string(), m.to_string()),
                    Span {
                        first: 0,
                        last: day - 30_000,
                        step: 30_000,
                    },
                )
            })
            .collect();
        let windows = BTreeMap::from([(
            "acme".to_string(),
            OrgWindows {
                horizon_ms: 10 * MIN,
                episode_gap_ms: 10 * MIN,
            },
        )]);
        let p = AlertType::Predictive;
        let mut alerts = vec![
            // m1: failure at 100 min detected 8 and 7 min ahead (one episode), the
            // fault alert during it joins the episode.
            note("m1", 92 * MIN, p, "Heating"),
            note("m1", 93 * MIN, p, "Heating"),
            note("m1", 101 * MIN, AlertType::Critical, "Heating"),
            // m1: a lone false alarm at 500 min, and a second one 10 min later
            // (gap = episode gap: a new episode).
            note("m1", 500 * MIN, p, "Quench"),
            note("m1", 510 * MIN, p, "Quench"),
            // m2: a warning 12 min before the failure at 300 min is outside the
            // 10-min horizon: the failure is missed and the episode is false.
            note("m2", 288 * MIN, p, "Quench"),
        ];
        // A re-emission and a resolution never count as notifications.
        let mut re = note("m1", 92 * MIN, p, "Heating");
        re.suppressed_count = 4;
        alerts.push(re);
        let mut res = note("m1", 103 * MIN, p, "Heating");
        res.status = AlertStatus::Resolved;
        alerts.push(res);
        let events = vec![
            fail("m1", 100 * MIN, "Heating"),
            fail("m2", 300 * MIN, "Quench"),
            // Outside the replayed span: ignored.
            fail("m2", 2 * day, "Quench"),
        ];
        let f = &figures(&alerts, &events, &spans, &windows)["acme"];
        assert_eq!(f.total.failures, 2);
        assert_eq!(f.total.detected, 1);
        assert_eq!(f.total.event_recall, Some(0.5));
        assert_eq!(f.total.lead_minutes, vec![8.0]);
        assert_eq!(f.total.median_lead_minutes, Some(8.0));
        assert_eq!(f.total.episodes, 4);
        assert_eq!(f.total.false_alarms, 3, "two on m1, the early one on m2");
        assert!((f.total.machine_days - 2.0).abs() < 1e-9);
        assert_eq!(f.total.false_alarms_per_machine_day, Some(1.5));
        assert_eq!(f.total.notifications["PREDICTIVE"], 5);
        assert_eq!(f.total.notifications["CRITICAL"], 1);
        assert_eq!(f.components["Heating"].failures, 1);
        assert_eq!(f.components["Heating"].detected, 1);
        assert_eq!(f.components["Quench"].false_alarms, 3);
        assert_eq!(f.components["Quench"].event_recall, Some(0.0));
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.1), Some(1.4));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
