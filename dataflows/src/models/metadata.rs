//! `metadata.json` of a model version, as `ml/train.py` writes it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Thresholds the model was trained and evaluated with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Thresholds {
    /// PREDICTIVE at or above this probability.
    pub failure: f64,
    /// The component is trusted at or above this probability.
    pub confidence: f64,
    /// Component and time-to-failure models run at or above this probability.
    pub stage2_gate: f64,
    /// Alerts at once at or above this probability (`prediction.immediate_threshold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immediate: Option<f64>,
}

/// Rows of `testVector`: inputs and the outputs the models must reproduce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestVector {
    /// Feature rows (null = NaN).
    pub input: Vec<Vec<Option<f64>>>,
    /// Expected failure probability per row.
    pub failure_probability: Vec<f64>,
    /// Expected component probabilities per row.
    pub component_probabilities: Vec<Vec<f64>>,
    /// Expected minutes to failure per row.
    pub time_to_failure_minutes: Vec<f64>,
}

/// ONNX files of the version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnnxInfo {
    /// Opset the models were exported at.
    pub opset: u32,
    /// Name of the input tensor.
    pub input: String,
    /// File names by role: `failure`, `component`, `ttf`.
    pub files: BTreeMap<String, String>,
}

/// The part of `metadata.json` the runtime needs (other keys are kept by the registry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelMetadata {
    /// Organization.
    pub organization_id: String,
    /// Version label.
    pub version: String,
    /// Feature names in model input order.
    pub feature_names: Vec<String>,
    /// Component-model class index → component name.
    pub components: BTreeMap<String, String>,
    /// The org's general component.
    pub general_component: String,
    /// Thresholds.
    pub thresholds: Thresholds,
    /// Positive-label horizon.
    pub horizon_minutes: f64,
    /// Reported time to failure when the regressor did not run.
    pub time_to_failure_minutes: f64,
    /// Normalized gain importance per feature.
    #[serde(default)]
    pub feature_importance: BTreeMap<String, f64>,
    /// Inputs and outputs that must be reproduced at load.
    pub test_vector: TestVector,
    /// ONNX files.
    pub onnx: OnnxInfo,
}

impl ModelMetadata {
    /// Component names in class order.
    pub fn component_classes(&self) -> Vec<String> {
        let mut v: Vec<(usize, &String)> = self
            .components
            .iter()
            .filter_map(|(k, c)| k.parse().ok().map(|k| (k, c)))
            .collect();
        v.sort();
        v.into_iter().map(|(_, c)| c.clone()).collect()
    }
}
