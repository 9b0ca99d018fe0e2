//! `prognos train` and `prognos models`: train an org's model version from raw
//! history (the same feature dataflow as live scoring → `ml/train.py`), register
//! it, deploy it when it beats the active version on the same validation rows
//! (or when forced), and manage versions (list, show, activate, rollback).
//!
//! These commands open the registry in `--data-dir` directly; the store is
//! single-process, so run them while `prognos run` is stopped (the running service
//! exposes the same operations over its API).

use crate::cli::{ConfigArg, DataDirArg};
use crate::commands::features::{FeaturesArgs, compute};
use crate::settings;
use crate::store::AlertStore;
use crate::training::python::{MlEnv, arg};
use crate::training::registry::{Registry, TrainingRun, beats};
use anyhow::Context;
use clap::{Args, Subcommand};
use prognos_dataflows::models::activations::Activations;
use std::path::{Path, PathBuf};

/// Versions kept on disk per org (the active and any in the activation log are never removed).
pub const KEEP_VERSIONS: usize = 5;

/// Arguments of `prognos train`.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Configuration (schemas, features, thresholds, hyperparameters).
    #[command(flatten)]
    pub config: ConfigArg,
    /// Registry, models and training runs live here.
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Organization to train.
    #[arg(long)]
    pub org: String,
    /// Raw history of the org (JSONL/CSV files in its own schema).
    #[arg(long, required = true, num_args = 1.., value_name = "FILES")]
    pub input: Vec<PathBuf>,
    /// Ground-truth failure events (JSONL); labels come from the org's failure
    /// signals when absent.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Operator feedback (JSONL of alerts with isAccurate) to learn from.
    #[arg(long, value_name = "FILE")]
    pub feedback: Option<PathBuf>,
    /// Search hyperparameters (bounded trials) before the final fit.
    #[arg(long)]
    pub tune: bool,
    /// Trials when tuning.
    #[arg(long, default_value_t = 10)]
    pub trials: u32,
    /// Deploy even if the candidate does not beat the active version.
    #[arg(long)]
    pub force: bool,
    /// Timely workers for the feature computation.
    #[arg(short = 'w', long, default_value_t = 2)]
    pub workers: usize,
    /// Seed for training (deterministic).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// Arguments of `prognos models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Where the registry lives.
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// What to do.
    #[command(subcommand)]
    pub action: ModelsAction,
}

/// `prognos models` actions.
#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// List versions per org with their validation metrics and which is active.
    List {
        /// Only this org.
        #[arg(long)]
        org: Option<String>,
    },
    /// Show one version's record and metadata.
    Show {
        /// Organization.
        #[arg(long)]
        org: String,
        /// Version.
        #[arg(long)]
        version: String,
    },
    /// Make a version active from now on (event time).
    Activate {
        /// Organization.
        #[arg(long)]
        org: String,
        /// Version.
        #[arg(long)]
        version: String,
    },
    /// Re-activate the version that was active before the current one.
    Rollback {
        /// Organization.
        #[arg(long)]
        org: String,
    },
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn registry(data_dir: &Path) -> anyhow::Result<Registry> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    Ok(Registry::open(&data_dir.join("store"))?)
}

/// Run `prognos train`.
pub fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    let reg = registry(&args.data_dir.data_dir)?;
    let live = Activations::from_log(reg.activation_log()?);
    let store = AlertStore::open(&reg.db())?;
    let outcome = train_org(&args, &reg, &live, Some(&store))?;
    println!("{}", serde_json::to_string_pretty(&outcome)?);
    Ok(())
}

/// Orgs with a training run in progress in this process: two runs of one org
/// would race for the same version number.
static TRAINING: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// One org's training slot, released when dropped.
struct TrainingSlot(String);

impl TrainingSlot {
    fn take(org: &str) -> anyhow::Result<TrainingSlot> {
        let mut t = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
        anyhow::ensure!(
            t.insert(org.to_string()),
            "`{org}` is already training; try again when that run has finished"
        );
        Ok(TrainingSlot(org.to_string()))
    }
}

impl Drop for TrainingSlot {
    fn drop(&mut self) {
        TRAINING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

/// What a training run produced.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainOutcome {
    /// Organization.
    pub organization_id: String,
    /// Version trained.
    pub version: String,
    /// Whether it was activated.
    pub deployed: bool,
    /// Where it lives.
    pub dir: PathBuf,
    /// Validation metrics.
    pub metrics: serde_json::Value,
}

/// Train, register and (when it wins, or on `--force`) activate a version of
/// `args.org` through `live`, recording the run; the store's operator feedback
/// of the org, when given, is exported next to the training data and learned from.
pub fn train_org(
    args: &TrainArgs,
    reg: &Registry,
    live: &Activations,
    store: Option<&AlertStore>,
) -> anyhow::Result<TrainOutcome> {
    let _busy = TrainingSlot::take(&args.org)?;
    let loaded = settings::load(args.config.config.as_deref())?;
    anyhow::ensure!(
        loaded.config.orgs.contains_key(&args.org),
        "organization `{}` is not in the configuration ({})",
        args.org,
        loaded.origin
    );
    let ml = MlEnv::locate()?;
    let data_dir = &args.data_dir.data_dir;
    let next = reg
        .versions(&args.org)?
        .iter()
        .filter_map(|r| {
            r.version
                .strip_prefix('v')
                .and_then(|n| n.parse::<u64>().ok())
        })
        .max()
        .unwrap_or(0)
        + 1;
    let version = format!("v{next}");
    let run_id = format!("{}-{version}-{}", args.org, now_ms());
    let work = data_dir.join("training").join(&run_id);
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let version_dir = data_dir.join("models").join(&args.org).join(&version);
    let mut args = args.clone();
    if args.feedback.is_none()
        && let Some(store) = store
    {
        let path = work.join("feedback.jsonl");
        let f = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let n = store.export_feedback(&args.org, std::io::BufWriter::new(f))?;
        if n > 0 {
            tracing::info!(org = %args.org, alerts = n, "learning from operator feedback");
            args.feedback = Some(path);
        }
    }
    let mut run = TrainingRun {
        id: run_id.clone(),
        organization_id: args.org.clone(),
        status: "RUNNING".into(),
        version: version.clone(),
        started_at: now_ms(),
        completed_at: None,
        config: serde_json::json!({
            "inputs": args.input, "events": args.events, "feedback": args.feedback,
            "tune": args.tune, "trials": args.trials, "force": args.force, "seed": args.seed,
        }),
        metrics: None,
        error_message: None,
    };
    reg.record_run(&run)?;
    let result = Steps {
        args: &args,
        ml: &ml,
        reg,
        live,
        effective: &loaded.effective,
        work: &work,
        version_dir: &version_dir,
        version: &version,
    }
    .run();
    run.completed_at = Some(now_ms());
    match &result {
        Ok((metrics, deployed)) => {
            run.status = if *deployed { "COMPLETED" } else { "REJECTED" }.into();
            run.metrics = Some(metrics.clone());
        }
        Err(e) => {
            run.status = "FAILED".into();
            run.error_message = Some(format!("{e:#}"));
        }
    }
    reg.record_run(&run)?;
    let (metrics, deployed) = result?;
    let removed = reg.retain(&args.org, KEEP_VERSIONS)?;
    if !removed.is_empty() {
        tracing::info!(org = %args.org, removed = ?removed, "old versions removed from disk");
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(TrainOutcome {
        organization_id: args.org.clone(),
        version,
        deployed,
        dir: version_dir,
        metrics,
    })
}

/// Write the configuration the Python trainer reads: the effective document
/// (the file or the built-in example, with this process's `PROGNOS_*`
/// overrides applied), so labels, horizon and hyperparameters agree with the
/// features computed here.
fn write_trainer_config(effective: &toml::Table, work: &Path) -> anyhow::Result<PathBuf> {
    let p = work.join("config.toml");
    std::fs::write(&p, toml::to_string(effective)?)?;
    Ok(p)
}

/// One training run's context: what `train_org` prepared for the steps.
struct Steps<'a> {
    args: &'a TrainArgs,
    ml: &'a MlEnv,
    reg: &'a Registry,
    live: &'a Activations,
    /// The configuration as loaded, overrides applied (`settings::Loaded::effective`).
    effective: &'a toml::Table,
    work: &'a Path,
    version_dir: &'a Path,
    version: &'a str,
}

impl Steps<'_> {
    /// Features, training, registration and the deploy gate; the metrics and
    /// whether the version was activated.
    fn run(&self) -> anyhow::Result<(serde_json::Value, bool)> {
        let Steps {
            args,
            ml,
            reg,
            live,
            effective,
            work,
            version_dir,
            version,
        } = *self;
        tracing::info!(org = %args.org, version, "computing features with the live dataflow");
        let feats_dir = work.join("features");
        let summary = compute(&FeaturesArgs {
            config: args.config.clone(),
            input: args.input.clone(),
            org: Some(args.org.clone()),
            out: feats_dir.clone(),
            workers: args.workers,
            discard: false,
        })?;
        let rows = summary.rows.get(&args.org).copied().unwrap_or(0);
        anyhow::ensure!(rows > 0, "no usable rows for `{}` in the inputs", args.org);
        tracing::info!(org = %args.org, rows, dead_letters = summary.dead_letters, "features ready; training");
        let config_path = write_trainer_config(effective, work)?;
        let features = feats_dir.join(format!("{}.parquet", args.org));
        let mut py_args = vec![
            "--org".into(),
            args.org.clone(),
            "--config".into(),
            arg(&config_path),
            "--features".into(),
            arg(&features),
            "--out".into(),
            arg(version_dir),
            "--version".into(),
            version.into(),
            "--seed".into(),
            args.seed.to_string(),
        ];
        if let Some(e) = &args.events {
            py_args.extend(["--events".into(), arg(e)]);
        }
        if let Some(f) = &args.feedback {
            py_args.extend(["--feedback".into(), arg(f)]);
        }
        if args.tune {
            py_args.extend(["--tune".into(), "--trials".into(), args.trials.to_string()]);
        }
        let done = ml.run("train.py", &py_args, |line| {
            let stage = line.get("stage").and_then(|s| s.as_str()).unwrap_or("");
            let msg = line.get("message").and_then(|s| s.as_str()).unwrap_or("");
            tracing::info!(org = %args.org, stage, "{msg}");
        })?;
        let metrics = done
            .as_ref()
            .and_then(|d| d.get("metrics").cloned())
            .unwrap_or_default();
        let record = reg.register(version_dir, now_ms())?;
        let active = reg.active(&args.org)?;
        let deploy = match (&active, args.force) {
            (None, _) => true,
            (Some(_), true) => true,
            (Some(active), false) => {
                let active_rec = reg.version(&args.org, active)?;
                let split = &record.split;
                let from = split
                    .get("validationStart")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                let to = split
                    .get("validationEnd")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                let mut eval_args = vec![
                    "--version-dir".into(),
                    arg(&active_rec.dir),
                    "--features".into(),
                    arg(&features),
                    "--config".into(),
                    arg(&config_path),
                    "--org".into(),
                    args.org.clone(),
                    "--from".into(),
                    from.to_string(),
                    "--to".into(),
                    to.to_string(),
                ];
                if let Some(e) = &args.events {
                    eval_args.extend(["--events".into(), arg(e)]);
                }
                let active_metrics = ml
                    .run("evaluate.py", &eval_args, |_| {})?
                    .map(|v| v.get("metrics").cloned().unwrap_or(v))
                    .unwrap_or_default();
                let better = beats(&metrics, &active_metrics);
                tracing::info!(org = %args.org, candidate = version, active = %active, better,
                candidate_metrics = %metrics, active_metrics = %active_metrics,
                "deploy gate: both scored on the candidate's validation rows");
                better
            }
        };
        if deploy {
            let a = reg.activate(&args.org, Some(version), now_ms(), live)?;
            tracing::info!(org = %args.org, version, effective_ts = a.effective_ts, "activated");
        } else {
            tracing::warn!(org = %args.org, version, "not deployed: it does not beat the active version (use --force to deploy anyway)");
        }
        Ok((metrics, deploy))
    }
}

/// Run `prognos models`.
pub fn run_models(args: ModelsArgs) -> anyhow::Result<()> {
    let reg = registry(&args.data_dir.data_dir)?;
    let live = Activations::from_log(reg.activation_log()?);
    match args.action {
        ModelsAction::List { org } => {
            let orgs = match org {
                Some(o) => vec![o],
                None => reg.orgs()?,
            };
            for o in orgs {
                let active = reg.active(&o)?;
                for r in reg.versions(&o)? {
                    let mark = if active.as_deref() == Some(r.version.as_str()) {
                        "*"
                    } else {
                        " "
                    };
                    let m = |k: &str| {
                        r.metrics
                            .get(k)
                            .and_then(|v| v.as_f64())
                            .map_or("-".into(), |v| format!("{v:.3}"))
                    };
                    println!(
                        "{mark} {o} {} created={} eventRecall={} medianLeadMin={} falseAlarmsPerMachineDay={} auc={}",
                        r.version,
                        prognos_dataflows::time::format_rfc3339_ms(r.created_at),
                        m("eventRecall"),
                        m("medianLeadMinutes"),
                        m("falseAlarmsPerMachineDay"),
                        m("auc")
                    );
                }
            }
        }
        ModelsAction::Show { org, version } => {
            let r = reg.version(&org, &version)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        ModelsAction::Activate { org, version } => {
            let a = reg.activate(&org, Some(&version), now_ms(), &live)?;
            println!("{}", serde_json::to_string(&a)?);
        }
        ModelsAction::Rollback { org } => {
            let a = reg.rollback(&org, now_ms(), &live)?;
            println!("{}", serde_json::to_string(&a)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trainer reads a file, not this process's environment: the overrides
    /// must be in the file it is given (they once were not, and
    /// `..__HYPERPARAMETERS__NUM_ITERATIONS` silently trained 400 trees).
    #[test]
    fn the_trainer_config_carries_the_environment_overrides() {
        let work = tempfile::tempdir().unwrap();
        let env = [
            (
                "PROGNOS_ORGS__ACME_HEAT__TRAINING__HYPERPARAMETERS__NUM_ITERATIONS",
                "100",
            ),
            (
                "PROGNOS_ORGS__COBALT_THERMAL__PREDICTION__HORIZON_MINUTES",
                "12",
            ),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let loaded = settings::load_with_env(None, env).unwrap();
        let p = write_trainer_config(&loaded.effective, work.path()).unwrap();
        let written: toml::Table = std::fs::read_to_string(&p).unwrap().parse().unwrap();
        let org = |o: &str| written["orgs"][o].clone();
        assert_eq!(
            org("acme-heat")["training"]["hyperparameters"]["num_iterations"].as_integer(),
            Some(100)
        );
        assert_eq!(
            org("cobalt-thermal")["prediction"]["horizon_minutes"].as_integer(),
            Some(12)
        );
        // Untouched keys keep the example's values, and the file is a valid config.
        assert_eq!(
            org("borealis-forge")["training"]["hyperparameters"]["num_iterations"].as_integer(),
            Some(400)
        );
        let again = settings::load_with_env(Some(&p), Vec::new()).unwrap();
        let base = settings::load_with_env(None, Vec::new()).unwrap();
        assert_eq!(again.config.orgs.len(), base.config.orgs.len());
    }
}
