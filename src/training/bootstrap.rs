//! First models for orgs that have none (`prognos run`, embedded default): while
//! the org runs on rules, a background thread simulates `[simulator]
//! .first_model_days` of its history (its own schema, a seed the live simulation
//! never uses, ending where the live simulation starts), trains a version with
//! the same code as `prognos train`, and activates it through the live
//! activation log — so predictions start at the next frontier without a restart.
//! Orgs are trained one at a time (the machine is small); Ctrl-C stops between
//! steps and the next start picks up whatever is still missing.

use crate::cli::{ConfigArg, DataDirArg};
use crate::commands::simulate::schemas_from_config;
use crate::commands::train::{TrainArgs, train_org};
use crate::store::AlertStore;
use crate::training::registry::Registry;
use prognos_connectors::simulator::{OutputFormat, SimConfig, Speed, run_to_dir_with_threads};
use prognos_dataflows::config::Config;
use prognos_dataflows::models::activations::Activations;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Added to the simulator seed for training history, so it never repeats live data.
pub const HISTORY_SEED_OFFSET: u64 = 1_000_003;

/// Everything the background trainer needs.
pub struct Bootstrap {
    /// The configuration (and the file it came from, for `ml/train.py`).
    pub config: Config,
    /// `--config` as given.
    pub config_path: Option<PathBuf>,
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
            match self.train_one(&org) {
                Ok(Some(version)) => tracing::info!(
                    org = %org, version = %version, minutes = format!("{:.1}", t0.elapsed().as_secs_f64() / 60.0),
                    "first model trained and active: predictive alerts from now on"
                ),
                Ok(None) => {}
                Err(e) => tracing::error!(org = %org, error = format!("{e:#}"),
                    "could not train a first model; this org stays on rules (see `prognos train`)"),
            }
        }
    }

    fn train_one(&self, org: &str) -> anyhow::Result<Option<String>> {
        let days = self.config.simulator.first_model_days;
        let machines = self.config.simulator.machines_per_org.max(2);
        tracing::info!(org = %org, days, machines,
            "no model yet: scoring with rules only while the first model trains on simulated history");
        let schemas: Vec<_> = schemas_from_config(&self.config)?
            .into_iter()
            .filter(|s| s.org_id == org)
            .collect();
        anyhow::ensure!(!schemas.is_empty(), "no simulator schema for `{org}`");
        let interval = self.config.simulator.interval_ms as i64;
        let duration_ms = (days * 86_400_000.0) as i64;
        let start = self.live_start_ms - duration_ms;
        let sim = SimConfig {
            machines_per_org: machines,
            start_ms: start - start.rem_euclid(interval),
            duration_ms,
            interval_ms: interval,
            seed: self.config.simulator.seed.wrapping_add(HISTORY_SEED_OFFSET),
            failure_rate_per_machine_day: self.config.simulator.failure_rate_per_machine_day,
            ..SimConfig::default()
        };
        let dir = self
            .data_dir
            .join("training")
            .join(format!("{org}-history"));
        run_to_dir_with_threads(
            &sim,
            &schemas,
            &dir,
            OutputFormat::Jsonl,
            Speed::Max,
            1,
            &|_| {},
        )?;
        if self.stop.load(Ordering::Acquire) {
            return Ok(None);
        }
        tracing::info!(org = %org, "simulated history written; training");
        let args = TrainArgs {
            config: ConfigArg {
                config: self.config_path.clone(),
            },
            data_dir: DataDirArg {
                data_dir: self.data_dir.clone(),
            },
            org: org.to_string(),
            input: vec![dir.join(format!("{org}.jsonl"))],
            events: Some(dir.join("events.jsonl")),
            feedback: None,
            tune: false,
            trials: 0,
            force: false,
            workers: 1,
            seed: self.config.simulator.seed,
        };
        let outcome = train_org(&args, &self.registry, &self.live, Some(&self.store))?;
        let _ = std::fs::remove_dir_all(&dir);
        let m = &outcome.metrics;
        tracing::info!(org = %org, version = %outcome.version,
            auc = %m.get("auc").cloned().unwrap_or_default(),
            event_recall = %m.get("eventRecall").cloned().unwrap_or_default(),
            false_alarms_per_machine_day = %m.get("falseAlarmsPerMachineDay").cloned().unwrap_or_default(),
            "validation of the first model");
        Ok(outcome.deployed.then_some(outcome.version))
    }
}
