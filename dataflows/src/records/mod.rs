//! Record types that flow through the dataflow and leave the process.
//!
//! Everything that leaves a process is JSON in camelCase with the seed's field
//! names (ARCHITECTURE.md, "Record formats"): timestamps are RFC 3339 strings with
//! milliseconds, missing numbers are `null` (NaN inside).

use crate::config::Severity;
use crate::time::{rfc3339, rfc3339_opt};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Where a row came from: the unit of preserved order and the row's place in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourcePosition {
    /// Kafka partition, input file or simulated org stream (global numbering).
    pub partition: u32,
    /// Kafka offset or line number within the partition.
    pub offset: u64,
}

/// The bytes of a raw row as its source delivered them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "format")]
pub enum RawPayload {
    /// One JSON object.
    Json {
        /// The object's text.
        text: String,
    },
    /// One CSV record with the header of its file.
    Csv {
        /// Column names from the file's first line.
        header: std::sync::Arc<[String]>,
        /// The record's text.
        text: String,
    },
    /// A row whose bytes are not UTF-8: it becomes an `invalid_utf8` dead letter.
    InvalidUtf8 {
        /// The bytes as lossy text (U+FFFD for each invalid sequence).
        text: String,
        /// Byte offset of the first invalid sequence.
        valid_up_to: usize,
    },
}

impl RawPayload {
    /// The original text, as a dead letter carries it.
    pub fn text(&self) -> &str {
        match self {
            RawPayload::Json { text }
            | RawPayload::Csv { text, .. }
            | RawPayload::InvalidUtf8 { text, .. } => text,
        }
    }

    /// `bytes` as text, or as [`RawPayload::InvalidUtf8`] when they are not UTF-8.
    pub fn from_bytes(bytes: &[u8], text: impl FnOnce(String) -> RawPayload) -> RawPayload {
        match std::str::from_utf8(bytes) {
            Ok(t) => text(t.to_string()),
            Err(e) => RawPayload::InvalidUtf8 {
                text: String::from_utf8_lossy(bytes).into_owned(),
                valid_up_to: e.valid_up_to(),
            },
        }
    }
}

/// A raw row with its source position, before schema mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawRow {
    /// Source position.
    pub pos: SourcePosition,
    /// Organization from the Kafka key or the file; `None` when a column carries it.
    pub organization_id: Option<String>,
    /// The row itself.
    pub payload: RawPayload,
}

/// A schema-mapped row: canonical signals in the org's configured order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanonicalRow {
    /// Organization.
    pub organization_id: String,
    /// Machine within the organization.
    pub machine_id: String,
    /// Event time.
    #[serde(with = "rfc3339")]
    pub ts: i64,
    /// Source position, the tie-breaker of event-time order.
    pub pos: SourcePosition,
    /// Signal values in config order; booleans 0/1, missing NaN.
    #[serde(with = "nan_as_null_vec")]
    pub values: Vec<f64>,
}

/// A row's features, named by the org's `feature_names()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureRow {
    /// Organization.
    pub organization_id: String,
    /// Machine within the organization.
    pub machine_id: String,
    /// Event time.
    #[serde(with = "rfc3339")]
    pub ts: i64,
    /// Source position of the row the features describe.
    pub pos: SourcePosition,
    /// Feature values in the org's feature order; NaN when undefined.
    #[serde(with = "nan_as_null_vec")]
    pub features: Vec<f64>,
    /// The row's own values the features came from: declared signals in config
    /// order, then derived signals (`OrgConfig::value_signals`). Rules read these,
    /// so they work on any signal whether or not it is a model feature.
    #[serde(default, with = "nan_as_null_vec")]
    pub values: Vec<f64>,
}

/// Health of the model that scored a row (the seed's `modelHealth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelHealth {
    /// Loaded and checked.
    Healthy,
    /// Serving, but errors were seen recently.
    Degraded,
    /// Unusable: missing, failed its check, or its circuit breaker is open.
    Failed,
}

/// The seed's `PredictionResult.metadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PredictionMetadata {
    /// Milliseconds spent scoring the row's batch, per row.
    pub processing_time: f64,
    /// Milliseconds spent loading the model for this batch (0 when cached).
    pub model_load_time: f64,
    /// Number of features the model consumed.
    pub feature_count: usize,
    /// Model health when the row was scored.
    pub model_health: ModelHealth,
    /// True when rules alone judged the row (no usable model).
    pub fallback_used: bool,
    /// Why rules alone judged it: `disabled`, `no_model`, `no_runtime`,
    /// `model_unusable`, `breaker_open`, `inference_error` or `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
}

/// Named feature values in model order, a JSON object on the wire.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeatureMap(pub Vec<(String, f64)>);

impl Serialize for FeatureMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, &v.is_finite().then_some(*v))?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for FeatureMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = FeatureMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of feature values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<FeatureMap, A::Error> {
                let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0));
                while let Some((k, x)) = a.next_entry::<String, Option<f64>>()? {
                    v.push((k, x.unwrap_or(f64::NAN)));
                }
                Ok(FeatureMap(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// The seed's `PredictionResult`, plus the machine and event time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Prediction {
    /// Organization.
    pub organization_id: String,
    /// Machine.
    pub machine_id: String,
    /// Event time of the scored row.
    #[serde(with = "rfc3339")]
    pub ts: i64,
    /// Probability that a failure starts within the horizon.
    pub probability: f64,
    /// Probability of the predicted component.
    pub confidence: f64,
    /// Predicted component (the general component when not confident).
    pub predicted_component: String,
    /// Minutes until failure.
    pub time_to_failure: f64,
    /// Model version that scored the row (`rules` when none did).
    pub model_version: String,
    /// When the row was scored (wall clock).
    #[serde(with = "rfc3339")]
    pub timestamp: i64,
    /// The features the model saw.
    pub features: FeatureMap,
    /// Timing and health.
    pub metadata: PredictionMetadata,
}

/// Alert type: the two rule levels and the model's prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertType {
    /// Immediate issue (rule).
    Critical,
    /// Threshold violation (rule).
    Warning,
    /// Failure predicted by the model.
    Predictive,
}

impl AlertType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertType::Critical => "CRITICAL",
            AlertType::Warning => "WARNING",
            AlertType::Predictive => "PREDICTIVE",
        }
    }
}

/// Alert lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertStatus {
    /// Raised, nobody has acted.
    Active,
    /// An operator has seen it.
    Acknowledged,
    /// No detection for `resolve_after_s`, or resolved by an operator.
    Resolved,
}

/// A feature that pushed a prediction up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopFeature {
    /// Feature name.
    pub name: String,
    /// Its value on the scored row.
    #[serde(with = "nan_as_null")]
    pub value: f64,
    /// Its share of the explanation (importance x deviation from baseline).
    pub contribution: f64,
}

/// The seed's `PredictionAlert` plus machine, event time, lifecycle and dedup count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Stable id: hash of key, window start and sequence.
    pub id: String,
    /// Organization.
    pub organization_id: String,
    /// Machine.
    pub machine_id: String,
    /// CRITICAL, WARNING or PREDICTIVE.
    #[serde(rename = "type")]
    pub alert_type: AlertType,
    /// How urgent.
    pub severity: Severity,
    /// Component at risk.
    pub component: String,
    /// Failure probability (1 for rules).
    #[serde(with = "nan_as_null")]
    pub probability: f64,
    /// Component confidence (1 for rules).
    #[serde(with = "nan_as_null")]
    pub confidence: f64,
    /// Minutes until failure (0 for rules: it is happening).
    #[serde(with = "nan_as_null")]
    pub time_to_failure: f64,
    /// Model version, or `rules`.
    pub model_version: String,
    /// Rule that fired, for rule alerts.
    pub rule: Option<String>,
    /// One line for a phone notification.
    pub message: String,
    /// Event time of the detection.
    #[serde(with = "rfc3339")]
    pub ts: i64,
    /// When prognos emitted it (wall clock).
    #[serde(with = "rfc3339")]
    pub created_at: i64,
    /// When it was resolved.
    #[serde(with = "rfc3339_opt")]
    pub resolved_at: Option<i64>,
    /// Lifecycle status.
    pub status: AlertStatus,
    /// Detections of this key in the window that were not notified.
    pub suppressed_count: u32,
    /// Features that explain a predictive alert.
    pub top_features: Vec<TopFeature>,
    /// Operator feedback: was the alert right?
    pub is_accurate: Option<bool>,
    /// When feedback was given.
    #[serde(with = "rfc3339_opt")]
    pub feedback_at: Option<i64>,
    /// Who gave feedback.
    pub feedback_by: Option<String>,
}

impl Alert {
    /// An ACTIVE notification of a key at event time `ts` with neutral scores
    /// (probability and confidence 1, time to failure 0, model version `rules`),
    /// no message, no top features, `createdAt` = `ts`; set the rest with
    /// struct-update syntax.
    pub fn notification(
        id: String,
        organization_id: &str,
        machine_id: &str,
        alert_type: AlertType,
        severity: Severity,
        component: &str,
        ts: i64,
    ) -> Alert {
        Alert {
            id,
            organization_id: organization_id.to_string(),
            machine_id: machine_id.to_string(),
            alert_type,
            severity,
            component: component.to_string(),
            probability: 1.0,
            confidence: 1.0,
            time_to_failure: 0.0,
            model_version: "rules".into(),
            rule: None,
            message: String::new(),
            ts,
            created_at: ts,
            resolved_at: None,
            status: AlertStatus::Active,
            suppressed_count: 0,
            top_features: Vec::new(),
            is_accurate: None,
            feedback_at: None,
            feedback_by: None,
        }
    }
}

/// Why a row became a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// Not a JSON object.
    MalformedJson,
    /// A CSV record that does not fit its header.
    MalformedCsv,
    /// No organization, or one that is not configured.
    UnknownOrg,
    /// The machine column is missing or empty.
    MissingMachine,
    /// The time column is missing.
    MissingTime,
    /// The time column does not parse.
    BadTime,
    /// A time before 2000 or more than a day in the future of the wall clock.
    AbsurdTime,
    /// A signal value of the wrong type.
    WrongType,
    /// An infinite signal value.
    NonFinite,
    /// Below its partition's watermark on arrival.
    Late,
    /// Behind the frontier after its idle partition was released.
    LateIdle,
    /// The row's bytes are not UTF-8 (the payload shows them lossily).
    InvalidUtf8,
}

impl DeadLetterReason {
    /// Every reason, for metrics and tests.
    pub const ALL: [DeadLetterReason; 12] = [
        DeadLetterReason::MalformedJson,
        DeadLetterReason::MalformedCsv,
        DeadLetterReason::UnknownOrg,
        DeadLetterReason::MissingMachine,
        DeadLetterReason::MissingTime,
        DeadLetterReason::BadTime,
        DeadLetterReason::AbsurdTime,
        DeadLetterReason::WrongType,
        DeadLetterReason::NonFinite,
        DeadLetterReason::Late,
        DeadLetterReason::LateIdle,
        DeadLetterReason::InvalidUtf8,
    ];

    /// Wire and metric label name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::MalformedJson => "malformed_json",
            DeadLetterReason::MalformedCsv => "malformed_csv",
            DeadLetterReason::UnknownOrg => "unknown_org",
            DeadLetterReason::MissingMachine => "missing_machine",
            DeadLetterReason::MissingTime => "missing_time",
            DeadLetterReason::BadTime => "bad_time",
            DeadLetterReason::AbsurdTime => "absurd_time",
            DeadLetterReason::WrongType => "wrong_type",
            DeadLetterReason::NonFinite => "non_finite",
            DeadLetterReason::Late => "late",
            DeadLetterReason::LateIdle => "late_idle",
            DeadLetterReason::InvalidUtf8 => "invalid_utf8",
        }
    }
}

/// A row that could not be used, with the reason and the original payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Why.
    pub reason: DeadLetterReason,
    /// Source partition.
    pub partition: u32,
    /// Offset (line) within the partition.
    pub offset: u64,
    /// Organization, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub organization_id: Option<String>,
    /// The row as received.
    pub payload: String,
    /// Specifics: the column, the value, the watermark.
    pub detail: String,
}

/// Ground truth or label: a failure of a component on a machine.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureEvent {
    /// Organization.
    pub organization_id: String,
    /// Machine.
    pub machine_id: String,
    /// Failed component.
    pub component: String,
    /// Rising edge of the fault.
    #[serde(with = "rfc3339")]
    pub start: i64,
    /// Falling edge of the fault (repair).
    #[serde(with = "rfc3339")]
    pub end: i64,
}

/// Serde adapter: NaN inside, `null` on the wire.
pub mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// NaN/inf → null.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        v.is_finite().then_some(*v).serialize(s)
    }

    /// null → NaN.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// Serde adapter for vectors: NaN inside, `null` on the wire.
pub mod nan_as_null_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    /// NaN/inf → null, element-wise.
    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.is_finite().then_some(*x)))
    }

    /// null → NaN, element-wise.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?
            .into_iter()
            .map(|x| x.unwrap_or(f64::NAN))
            .collect())
    }
}

#[cfg(test)]
mod tests;
