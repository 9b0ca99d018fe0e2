//! Where the live dataflow's results go: alert records into the store (which
//! groups them into alerts and numbers every change), every store change onto an
//! in-process broadcast (the WebSocket bridge subscribes to it), alert records
//! and predictions optionally as JSON lines to a file or stdout, predictions onto
//! a second broadcast while a WebSocket client asked for them, and a plain-words
//! log line per new alert.

use crate::metrics::Metrics;
use crate::store::{AlertStore, Change, ChangeKind};
use prognos_dataflows::operators::inference::ScoredRow;
use prognos_dataflows::records::{Alert, AlertStatus, Prediction};
use serde::Serialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// JSON lines to a file or stdout (`-`), flushed after every batch so a
/// `tail -f` sees records as they happen.
pub struct LineSink {
    out: Box<dyn Write + Send>,
    written: u64,
}

impl LineSink {
    /// `-` = stdout; anything else is created (truncated).
    pub fn open(path: &Path) -> anyhow::Result<LineSink> {
        let out: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            Box::new(BufWriter::new(File::create(path).map_err(|e| {
                anyhow::anyhow!("cannot create {}: {e}", path.display())
            })?))
        };
        Ok(LineSink { out, written: 0 })
    }

    /// Write a batch and flush.
    pub fn write_all<T: Serialize>(
        &mut self,
        records: impl IntoIterator<Item = T>,
    ) -> std::io::Result<()> {
        for r in records {
            serde_json::to_writer(&mut self.out, &r)?;
            self.out.write_all(b"\n")?;
            self.written += 1;
        }
        self.out.flush()
    }

    /// Records written.
    pub fn written(&self) -> u64 {
        self.written
    }
}

/// The alert outputs of a live run (cheap to clone into every worker).
#[derive(Clone)]
pub struct AlertOutputs {
    /// The product store.
    pub store: AlertStore,
    /// Store changes, for the WebSocket bridge.
    pub changes: tokio::sync::broadcast::Sender<Change>,
    /// Raw alert records as JSON lines, when asked.
    pub jsonl: Option<Arc<Mutex<LineSink>>>,
    /// Counters.
    pub metrics: Metrics,
}

/// The metric kind of a record.
pub fn kind(a: &Alert) -> &'static str {
    if a.status == AlertStatus::Resolved {
        "resolved"
    } else if a.suppressed_count > 0 {
        "summary"
    } else {
        "notification"
    }
}

impl AlertOutputs {
    /// Deliver a batch of alert records (in the dataflow's order per key).
    pub fn deliver(&self, batch: &[Alert]) {
        if batch.is_empty() {
            return;
        }
        if let Some(j) = &self.jsonl {
            let mut j = j.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = j.write_all(batch) {
                tracing::error!(error = %e, "cannot write alert records");
            }
        }
        for a in batch {
            let kind = kind(a);
            self.metrics
                .alerts
                .with_label_values(&[&a.organization_id, a.alert_type.as_str(), kind])
                .inc();
            if kind == "summary" {
                self.metrics
                    .alerts_suppressed
                    .with_label_values(&[&a.organization_id, a.alert_type.as_str()])
                    .inc_by(a.suppressed_count as u64);
            }
            match self.store.apply(a) {
                Ok(Some(change)) => {
                    log_change(&change, a);
                    // No subscriber is fine: the store keeps everything.
                    let _ = self.changes.send(change);
                }
                Ok(None) => {}
                Err(e) => {
                    self.metrics.alert_store_errors.inc();
                    tracing::error!(id = %a.id, org = %a.organization_id, error = %e, "the store refused an alert record");
                }
            }
        }
    }
}

fn log_change(change: &Change, a: &Alert) {
    match change.kind {
        ChangeKind::Created => tracing::info!(
            org = %a.organization_id, machine = %a.machine_id, component = %a.component,
            "ALERT {}: {}", a.alert_type.as_str(), a.message
        ),
        ChangeKind::Resolved => tracing::info!(
            org = %a.organization_id, machine = %a.machine_id, component = %a.component,
            "resolved {}: {}", a.alert_type.as_str(), a.message
        ),
        ChangeKind::Updated => tracing::debug!(id = %change.alert.id, "alert updated"),
    }
}

/// Predictions (the seed's PredictionResult per scored row) as JSON lines.
#[derive(Clone)]
pub struct PredictionOutput {
    /// The sink.
    pub sink: Arc<Mutex<LineSink>>,
    /// Feature names per org.
    pub names: Arc<HashMap<String, Vec<String>>>,
}

impl PredictionOutput {
    /// Write a batch of scored rows.
    pub fn deliver(&self, batch: &[ScoredRow]) {
        let now = chrono::Utc::now().timestamp_millis();
        let empty = Vec::new();
        let preds = batch.iter().map(|r| {
            r.to_prediction(
                self.names.get(&r.row.organization_id).unwrap_or(&empty),
                now,
            )
        });
        let mut s = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = s.write_all(preds) {
            tracing::error!(error = %e, "cannot write predictions");
        }
    }
}

/// One prediction on its way to WebSocket clients: the org and machine to
/// filter on, and the whole `{"type": "prediction", "prediction": {…}}` message,
/// serialized once for every client.
#[derive(Debug, Clone, PartialEq)]
pub struct LivePrediction {
    /// Organization.
    pub organization_id: String,
    /// Machine.
    pub machine_id: String,
    /// The message text.
    pub message: String,
}

impl LivePrediction {
    /// The message of one prediction.
    pub fn new(p: &Prediction) -> LivePrediction {
        LivePrediction {
            organization_id: p.organization_id.clone(),
            machine_id: p.machine_id.clone(),
            message: serde_json::to_string(&PredictionMessage {
                kind: "prediction",
                prediction: p,
            })
            .expect("predictions serialize"),
        }
    }
}

/// The wire form: a struct, not `json!`, keeps the fields (and the features)
/// in their order.
#[derive(Serialize)]
struct PredictionMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    prediction: &'a Prediction,
}

/// Predictions for the WebSocket bridge (cheap to clone into every worker).
/// Nothing is built while no client listens: the dataflow's hot path then costs
/// one receiver count per batch.
#[derive(Clone)]
pub struct PredictionFeed {
    /// The broadcast (bounded: a client that falls behind loses the oldest, the
    /// pipeline never waits).
    pub tx: tokio::sync::broadcast::Sender<Arc<LivePrediction>>,
    /// Feature names per org.
    pub names: Arc<HashMap<String, Vec<String>>>,
}

impl PredictionFeed {
    /// Broadcast a batch of scored rows, if anyone listens.
    pub fn deliver(&self, batch: &[ScoredRow]) {
        if batch.is_empty() || self.tx.receiver_count() == 0 {
            return;
        }
        let now = chrono::Utc::now().timestamp_millis();
        let empty = Vec::new();
        for r in batch {
            let p = r.to_prediction(
                self.names.get(&r.row.organization_id).unwrap_or(&empty),
                now,
            );
            // The last subscriber may have left meanwhile: nothing to do.
            let _ = self.tx.send(Arc::new(LivePrediction::new(&p)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prognos_dataflows::records::{FeatureRow, ModelHealth, SourcePosition};

    fn row(org: &str, machine: &str) -> ScoredRow {
        ScoredRow {
            row: FeatureRow {
                organization_id: org.into(),
                machine_id: machine.into(),
                ts: 1_710_028_800_000,
                pos: SourcePosition {
                    partition: 0,
                    offset: 7,
                },
                features: vec![2.0, f64::NAN],
                values: vec![],
            },
            probability: f64::NAN,
            confidence: 0.0,
            component: "General Equipment".into(),
            time_to_failure: 30.0,
            model_version: None,
            health: ModelHealth::Failed,
            fallback: true,
            fallback_reason: Some(prognos_dataflows::operators::inference::FallbackReason::NoModel),
            processing_ms: 0.0,
            load_ms: 0.0,
            importance: None,
        }
    }

    #[test]
    fn the_feed_sends_the_prediction_message_only_while_someone_listens() {
        let (tx, _) = tokio::sync::broadcast::channel(16);
        let feed = PredictionFeed {
            tx: tx.clone(),
            names: Arc::new(HashMap::from([(
                "a".to_string(),
                vec!["x".to_string(), "y".to_string()],
            )])),
        };
        feed.deliver(&[row("a", "m1")]);
        let mut rx = tx.subscribe();
        assert!(rx.try_recv().is_err(), "sent with nobody listening");
        feed.deliver(&[row("a", "m1"), row("b", "m2")]);
        let p = rx.try_recv().unwrap();
        assert_eq!(
            (p.organization_id.as_str(), p.machine_id.as_str()),
            ("a", "m1")
        );
        assert!(
            p.message.starts_with(
                r#"{"type":"prediction","prediction":{"organizationId":"a","machineId":"m1","#
            ),
            "{}",
            p.message
        );
        assert!(
            p.message.contains(r#""features":{"x":2.0,"y":null}"#),
            "features in model order: {}",
            p.message
        );
        let v: serde_json::Value = serde_json::from_str(&p.message).unwrap();
        assert_eq!(v["type"], "prediction");
        let p = &v["prediction"];
        assert_eq!(
            (&p["organizationId"], &p["machineId"], &p["ts"]),
            (
                &serde_json::json!("a"),
                &serde_json::json!("m1"),
                &serde_json::json!("2024-03-10T00:00:00.000Z")
            )
        );
        // Rules only: no probability, the fallback flagged.
        assert!(p["probability"].is_null(), "{p}");
        assert_eq!(p["modelVersion"], "rules");
        assert_eq!(p["metadata"]["fallbackUsed"], true);
        assert_eq!(p["features"], serde_json::json!({"x": 2.0, "y": null}));
        // An org without feature names still gets its prediction.
        let p = rx.try_recv().unwrap();
        assert_eq!(p.organization_id, "b");
        assert!(rx.try_recv().is_err());
    }
}
