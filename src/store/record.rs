//! The stored alert (what the REST API returns) and the change `apply` reports.

use prognos_dataflows::config::Severity;
use prognos_dataflows::records::{Alert, AlertStatus, AlertType, TopFeature, nan_as_null};
use prognos_dataflows::time::{rfc3339, rfc3339_opt};
use serde::{Deserialize, Serialize};

/// An alert as the store keeps it: one episode of a dedup key (org, machine,
/// component, type), grouping that key's notifications, with its lifecycle.
///
/// The JSON is the dataflow's [`Alert`] (the seed's `PredictionAlert` plus
/// `machineId, ts, severity, status, suppressedCount, topFeatures`) followed by the
/// lifecycle fields. It is an explicit struct rather than `#[serde(flatten)]` of
/// [`Alert`] so that non-finite numbers survive a round trip (`null` ⇄ NaN) and
/// reading a page of alerts does not go through serde's flatten buffering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredAlert {
    /// The id of the episode's first notification.
    pub id: String,
    /// Organization.
    pub organization_id: String,
    /// Machine.
    pub machine_id: String,
    /// CRITICAL, WARNING or PREDICTIVE.
    #[serde(rename = "type")]
    pub alert_type: AlertType,
    /// The highest severity among the episode's notifications.
    pub severity: Severity,
    /// Component at risk.
    pub component: String,
    /// The highest failure probability among the episode's notifications.
    #[serde(with = "nan_as_null")]
    pub probability: f64,
    /// The highest component confidence among the episode's notifications.
    #[serde(with = "nan_as_null")]
    pub confidence: f64,
    /// Minutes until failure, from the latest notification (by event time).
    #[serde(with = "nan_as_null")]
    pub time_to_failure: f64,
    /// Model version of the latest notification.
    pub model_version: String,
    /// Rule of the latest notification, for rule alerts.
    pub rule: Option<String>,
    /// Message of the latest notification.
    pub message: String,
    /// Event time of the first notification: the alert's time for queries and trends.
    #[serde(with = "rfc3339")]
    pub ts: i64,
    /// When the dataflow emitted the first notification (wall clock).
    #[serde(with = "rfc3339")]
    pub created_at: i64,
    /// When it was resolved: the resolution's event time, or the operator's time.
    #[serde(with = "rfc3339_opt")]
    pub resolved_at: Option<i64>,
    /// ACTIVE, ACKNOWLEDGED or RESOLVED.
    pub status: AlertStatus,
    /// Sum over the episode's notifications of each one's latest `suppressedCount`.
    pub suppressed_count: u32,
    /// Features of the latest notification.
    pub top_features: Vec<TopFeature>,
    /// Operator feedback: was the alert right? (latest wins)
    pub is_accurate: Option<bool>,
    /// When the latest feedback was given.
    #[serde(with = "rfc3339_opt")]
    pub feedback_at: Option<i64>,
    /// Who gave the latest feedback.
    pub feedback_by: Option<String>,
    /// The latest feedback's comment.
    pub feedback_comment: Option<String>,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// When it was acknowledged.
    #[serde(with = "rfc3339_opt")]
    pub acknowledged_at: Option<i64>,
    /// The operator who resolved it; `null` with `resolvedAt` set means the dataflow
    /// resolved it (no detection for `resolve_after_s`).
    pub resolved_by: Option<String>,
    /// Distinct notifications grouped into this alert.
    pub notification_count: u32,
    /// Event time of the latest notification.
    #[serde(with = "rfc3339")]
    pub last_ts: i64,
    /// Store sequence number of the latest change (the WebSocket `since` cursor).
    pub seq: u64,
    /// Wall-clock time of the latest change: the largest of the applied records'
    /// `createdAt` and the operators' times (it never goes back).
    #[serde(with = "rfc3339")]
    pub updated_at: i64,
}

impl StoredAlert {
    /// A new episode opened by `n`.
    pub(super) fn open(n: &Alert) -> StoredAlert {
        StoredAlert {
            id: n.id.clone(),
            organization_id: n.organization_id.clone(),
            machine_id: n.machine_id.clone(),
            alert_type: n.alert_type,
            severity: n.severity,
            component: n.component.clone(),
            probability: n.probability,
            confidence: n.confidence,
            time_to_failure: n.time_to_failure,
            model_version: n.model_version.clone(),
            rule: n.rule.clone(),
            message: n.message.clone(),
            ts: n.ts,
            created_at: n.created_at,
            resolved_at: None,
            status: AlertStatus::Active,
            suppressed_count: n.suppressed_count,
            top_features: n.top_features.clone(),
            is_accurate: None,
            feedback_at: None,
            feedback_by: None,
            feedback_comment: None,
            acknowledged_by: None,
            acknowledged_at: None,
            resolved_by: None,
            notification_count: 1,
            last_ts: n.ts,
            seq: 0,
            updated_at: n.created_at,
        }
    }

    /// Fold a further (not yet seen) notification of the episode in.
    pub(super) fn group(&mut self, n: &Alert) {
        self.notification_count += 1;
        self.suppressed_count = self.suppressed_count.saturating_add(n.suppressed_count);
        self.probability = max_nan(self.probability, n.probability);
        self.confidence = max_nan(self.confidence, n.confidence);
        if severity_rank(n.severity) > severity_rank(self.severity) {
            self.severity = n.severity;
        }
        // "Latest" is by event time, so a reordered delivery converges to the same
        // fields; on a tie the later arrival wins.
        if n.ts >= self.last_ts {
            self.last_ts = n.ts;
            self.time_to_failure = n.time_to_failure;
            self.model_version.clone_from(&n.model_version);
            self.rule.clone_from(&n.rule);
            self.message.clone_from(&n.message);
            self.top_features.clone_from(&n.top_features);
        }
        self.updated_at = self.updated_at.max(n.created_at);
    }
}

/// The larger of two numbers, a NaN counting as unknown.
fn max_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() { b } else { a.max(b) }
}

pub(super) fn severity_rank(s: Severity) -> u8 {
    match s {
        Severity::Warning => 1,
        Severity::Critical => 2,
    }
}

/// Wire name of a severity.
pub fn severity_str(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "CRITICAL",
        Severity::Warning => "WARNING",
    }
}

/// Wire name of a status.
pub fn status_str(s: AlertStatus) -> &'static str {
    match s {
        AlertStatus::Active => "ACTIVE",
        AlertStatus::Acknowledged => "ACKNOWLEDGED",
        AlertStatus::Resolved => "RESOLVED",
    }
}

/// What a change did to a stored alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeKind {
    /// A new alert (a key's first notification, or the first after a resolution):
    /// the WebSocket's `alert.created`.
    Created,
    /// A grouped notification, a larger suppressed count, an acknowledgement or
    /// feedback: `alert.updated`.
    Updated,
    /// Resolved by the dataflow or an operator (also an `alert.updated`).
    Resolved,
}

/// One change of the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The store sequence number of this change (equal to `alert.seq`).
    pub seq: u64,
    /// The alert's state after the change.
    pub alert: StoredAlert,
}
