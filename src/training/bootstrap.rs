//! First models for orgs that have none (`prognos run`, embedded default): while
//! the org runs on rules, a background thread simulates `[simulator]
//! .first_model_days` of its history (its own schema, a seed the live simulation
//! never uses, ending where the live simulation starts), writes it into the
//! org's history as an import would, trains on the history through the training
//! pipeline, and activates the version through the live activation log — so
//! predictions start at the next frontier without a restart.
//! Orgs are trained one at a time (the machine is small); Ctrl-C stops between
//! steps and the next start picks up whatever is still missing.

use crate::simulation::schemas_from_config;
use crate::store::AlertStore;
use crate::training::history::{self, HistoryWriter, import::import};
use crate::training::pipeline::{TrainContext, TrainOutcome, TrainSpec, Trigger, train};
use crate::training::registry::Registry;
use prognos_connectors::simulator::{OutputFormat, SimConfig, Speed, run_to_dir_with_threads};
use prognos_dataflows::config::Config;
use prognos_dataflows::models::activations::Activations;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Added to the simulator seed for training history, so it never repeats live data.
pub const HISTORY_SEED_OFFSET: u64 = 1_000_003;

/// Everything the background trainer needs.
pub struct Bootstrap {
    /// The effective configuration.
    pub config: Config,
    /// The effective configuration document (for `ml/train.py`).
    pub document: toml::Table,
    /// The data dir.
    pub data_dir: PathBuf,
    /// The service's registry and live activation log.
    pub registry: Arc<Registry>,
    /// Live activations (the dataflow's).
    pub live: Arc<Activations>,
    /// Operator feedback to learn from.
    pub store: AlertStore,
    /// Where the live simulation starts (history ends here).
    pub live_start_ms: i64,
    /// Set on shutdown.
    pub stop: Arc<AtomicBool>,
    /// `prognos_training_runs_total`, counted under trigger `first_model`.
    pub runs: Option<prometheus::IntCounterVec>,
    /// Every run is audited here (`ml.train.done` by `system`).
    pub audit: crate::auth::AuditLog,
}

/// Orgs that need a first model: enabled, predicting, training enabled, none active.
pub fn orgs_without_model(config: &Config, registry: &Registry) -> anyhow::Result<Vec<String>> {
    let mut v = Vec::new();
    for (id, o) in &config.orgs {
        if o.enabled && o.prediction.enabled && o.training.enabled && registry.active(id)?.is_none()
        {
            v.push(id.clone());
        }
    }
    Ok(v)
}

impl Bootstrap {
    /// Train every org in `orgs`, one after the other; errors are logged per org.
    pub fn run(self, orgs: Vec<String>) {
        for org in orgs {
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let t0 = Instant::now();
            let result = self.train_one(&org);
            let outcome = match &result {
                Ok(Some((_, _, status))) => status.to_ascii_lowercase(),
                Ok(None) => continue, // stopped
                Err(_) => "failed".to_string(),
            };
            // Counted before it is logged, so whoever reads the log finds it counted.
            if let Some(r) = &self.runs {
                r.with_label_values(&["first_model", &outcome]).inc();
            }
            let detail = match &result {
                Ok(Some((version, deployed, status))) => serde_json::json!({
                    "trigger": "first_model", "status": status, "version": version, "deployed": deployed}),
                Err(e) => serde_json::json!({
                    "trigger": "first_model", "status": "FAILED", "error": format!("{e:#}")}),
                Ok(None) => serde_json::Value::Null,
            };
            use crate::auth::audit::SYSTEM;
            if let Err(e) = self.audit.record(
                chrono::Utc::now().timestamp_millis(),
                SYSTEM,
                SYSTEM,
                Some(&org),
                "ml.train.done",
                if result.is_ok() { "ok" } else { "error" },
                detail,
            ) {
                tracing::error!(error = %e, "cannot write the audit log");
            }
            match result {
                Ok(Some((version, true, _))) => tracing::info!(
                    org = %org, version = %version, minutes = format!("{:.1}", t0.elapsed().as_secs_f64() / 60.0),
                    "first model trained and active: predictive alerts from now on"
                ),
                Err(e) => tracing::error!(org = %org, error = format!("{e:#}"),
                    "could not train a first model; this org stays on rules (see `prognos train`)"),
                _ => {}
            }
        }
    }

    /// The version trained, whether it was activated and the run's status;
    /// None when stopped.
    fn train_one(&self, org: &str) -> anyhow::Result<Option<(String, bool, String)>> {
        let days = self.config.simulator.first_model_days;
        tracing::info!(org = %org, days, machines = history_machines(&self.config),
            "no model yet: scoring with rules only while the first model trains on simulated history");
        let outcome = train_on_simulated_history(
            &SimulatedTraining {
                config: &self.config,
                document: &self.document,
                data_dir: &self.data_dir,
                registry: &self.registry,
                live: &self.live,
                store: &self.store,
                stop: Some(&self.stop),
            },
            org,
            &HistoryRequest {
                days,
                end_ms: self.live_start_ms,
                seed: self.config.simulator.seed.wrapping_add(HISTORY_SEED_OFFSET),
            },
        )?;
        let Some(outcome) = outcome else {
            return Ok(None);
        };
        let m = &outcome.metrics;
        tracing::info!(org = %org, version = %outcome.version,
            auc = %m.get("auc").cloned().unwrap_or_default(),
            event_recall = %m.get("eventRecall").cloned().unwrap_or_default(),
            false_alarms_per_machine_day = %m.get("falseAlarmsPerMachineDay").cloned().unwrap_or_default(),
            "validation of the first model");
        Ok(Some((outcome.version, outcome.deployed, outcome.status)))
    }
}

/// Furnaces simulated for training history: the live count, at least 2.
fn history_machines(config: &Config) -> u32 {
    config.simulator.machines_per_org.max(2)
}

/// The service's handles a first-model run needs.
pub struct SimulatedTraining<'a> {
    /// The effective configuration.
    pub config: &'a Config,
    /// The effective configuration document (for `ml/train.py`).
    pub document: &'a toml::Table,
    /// The data dir.
    pub data_dir: &'a Path,
    /// The registry.
    pub registry: &'a Registry,
    /// The live activation log.
    pub live: &'a Activations,
    /// Operator feedback to learn from.
    pub store: &'a AlertStore,
    /// Shutdown flag: checked between simulating and training.
    pub stop: Option<&'a AtomicBool>,
}

/// What history to simulate.
#[derive(Debug, Clone)]
pub struct HistoryRequest {
    /// Days of history.
    pub days: f64,
    /// History ends here (ms).
    pub end_ms: i64,
    /// Simulator and training seed.
    pub seed: u64,
}

/// Simulate `req.days` of `org`'s history (its own schema, the configured
/// furnace count), import it into the org's history as a historian export
/// would be, then train on the history through the training pipeline. None
/// when `stop` was set before training started.
pub fn train_on_simulated_history(
    t: &SimulatedTraining<'_>,
    org: &str,
    req: &HistoryRequest,
) -> anyhow::Result<Option<TrainOutcome>> {
    let schemas: Vec<_> = schemas_from_config(t.config)?
        .into_iter()
        .filter(|s| s.org_id == org)
        .collect();
    anyhow::ensure!(!schemas.is_empty(), "no simulator schema for `{org}`");
    anyhow::ensure!(
        req.days.is_finite() && req.days > 0.0,
        "days of history must be > 0, got {}",
        req.days
    );
    let interval = t.config.simulator.interval_ms as i64;
    let duration_ms = (req.days * 86_400_000.0) as i64;
    let start = req.end_ms - duration_ms;
    let sim = SimConfig {
        machines_per_org: history_machines(t.config),
        start_ms: start - start.rem_euclid(interval),
        duration_ms,
        interval_ms: interval,
        seed: req.seed,
        failure_rate_per_machine_day: t.config.simulator.failure_rate_per_machine_day,
        ..SimConfig::default()
    };
    let dir = t
        .data_dir
        .join("training")
        .join(format!("{org}-backfill-{}", req.end_ms));
    run_to_dir_with_threads(
        &sim,
        &schemas,
        &dir,
        OutputFormat::Jsonl,
        Speed::Max,
        1,
        &|_| {},
    )?;
    let root = history::root_for(t.config, t.data_dir)?;
    let imported = (|| -> anyhow::Result<_> {
        let mut writer = HistoryWriter::open(
            &root,
            &history::wal_dir_for(t.data_dir, &format!("backfill-{org}")),
            t.config,
            history::settings_of(t.config),
        )?;
        Ok(import(
            &mut writer,
            t.config,
            org,
            &[dir.join(format!("{org}.jsonl"))],
            |_| {},
            |_| {},
        )?)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let imported = imported?;
    tracing::info!(org = %org, rows = imported.rows, days = req.days,
        "simulated backfill written into the history; training on the history");
    if t.stop.is_some_and(|s| s.load(Ordering::Acquire)) {
        return Ok(None);
    }
    let mut spec = TrainSpec::on_history(org, Trigger::FirstModel);
    spec.seed = req.seed;
    let outcome = train(
        &TrainContext {
            config: t.config,
            document: t.document,
            data_dir: t.data_dir,
            registry: t.registry,
            live: t.live,
            store: Some(t.store),
            stop: t.stop,
            seal_history: None,
        },
        &spec,
    )?;
    Ok(Some(outcome))
}
