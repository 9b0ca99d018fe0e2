//! The one training pipeline (ARCHITECTURE.md, "History and training"): the CLI,
//! the API, the scheduler and the embedded first-model bootstrap all call
//! [`train`]. From the org's *effective* configuration (file + environment +
//! configurations stored through `/api/orgs`) it reads the last `data_days` of
//! the org's history (or files given to `prognos train --input`), computes the
//! features with the live dataflow code, labels them (failure signals, ground
//! truth events), runs `ml/train.py`, gates the candidate against the active
//! version on the same validation rows, registers it and activates it in event
//! time. Every run is in the TrainingLog with its trigger and outcome; a run
//! with too little history or no failure in it is `SKIPPED` with the reason.
//! Version numbers come from the TrainingLog as well as the registry, so a
//! failed or interrupted run's number is never reused.

use crate::store::AlertStore;
use crate::training::failures::{WorkOrder, WorkOrders};
use crate::training::features::compute_with;
use crate::training::history::{self, HistoryReader};
use crate::training::operating_point::{self, Sweep, SweepSpec};
use crate::training::python::{MlEnv, arg};
use crate::training::registry::{Registry, TrainingRun, beats};
use anyhow::Context;
use prognos_dataflows::config::{Config, FailureSignalKind, OrgConfig, SignalKind};
use prognos_dataflows::models::activations::{Activation, Activations};
use prognos_dataflows::models::cache::CacheLimits;
use prognos_dataflows::operators::inference::InferenceContext;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Versions kept on disk per org (the active and any in the activation log are never removed).
pub const KEEP_VERSIONS: usize = 5;

/// Who asked for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The org's `training.schedule` fired.
    Schedule,
    /// `POST /api/ml/train`.
    Api,
    /// `prognos train`.
    Cli,
    /// The embedded default's first model of an org.
    FirstModel,
}

impl Trigger {
    /// The label in metrics and the TrainingLog.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Api => "api",
            Trigger::Cli => "cli",
            Trigger::FirstModel => "first_model",
        }
    }
}

/// What to train on.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainingData {
    /// The org's stored history: the last `days` (default `training.data_days`)
    /// before its latest row.
    History {
        /// Days of history.
        days: Option<f64>,
    },
    /// Raw files in the org's own schema (`prognos train --input`).
    Files {
        /// The files.
        input: Vec<PathBuf>,
    },
}

/// One training run's request.
#[derive(Debug, Clone)]
pub struct TrainSpec {
    /// Organization.
    pub org: String,
    /// Who asked.
    pub trigger: Trigger,
    /// The data.
    pub data: TrainingData,
    /// Failure events (JSONL, the labels format): labels are the rising edges
    /// of the org's failure signals, its work orders and these.
    pub events: Option<PathBuf>,
    /// Operator feedback (JSONL); the store's when absent.
    pub feedback: Option<PathBuf>,
    /// Search hyperparameters first.
    pub tune: bool,
    /// Trials when tuning.
    pub trials: u32,
    /// Deploy even if the candidate does not beat the active version.
    pub force: bool,
    /// Timely workers for the features.
    pub workers: usize,
    /// Training seed.
    pub seed: u64,
}

impl TrainSpec {
    /// A run on the org's history with the defaults.
    pub fn on_history(org: &str, trigger: Trigger) -> TrainSpec {
        TrainSpec {
            org: org.to_string(),
            trigger,
            data: TrainingData::History { days: None },
            events: None,
            feedback: None,
            tune: false,
            trials: 10,
            force: false,
            workers: 1,
            seed: 7,
        }
    }
}

/// The service's handles a run needs.
pub struct TrainContext<'a> {
    /// The effective configuration.
    pub config: &'a Config,
    /// The effective configuration document (file + environment), which the
    /// Python trainer reads; the trained org's table is replaced by `config`'s.
    pub document: &'a toml::Table,
    /// The data dir (models, training work folders).
    pub data_dir: &'a Path,
    /// The registry.
    pub registry: &'a Registry,
    /// The live activation log.
    pub live: &'a Activations,
    /// Operator feedback to learn from.
    pub store: Option<&'a AlertStore>,
    /// Set when the service stops: the run ends as `INTERRUPTED`.
    pub stop: Option<&'a AtomicBool>,
    /// Called before the history is read (closes the service's open segments).
    pub seal_history: Option<&'a (dyn Fn() + Sync)>,
}

/// What a run produced.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainOutcome {
    /// Organization.
    pub organization_id: String,
    /// Version trained (the number is taken even when the run was skipped).
    pub version: String,
    /// Whether it was activated.
    pub deployed: bool,
    /// Where it lives.
    pub dir: PathBuf,
    /// Validation metrics.
    pub metrics: serde_json::Value,
    /// `COMPLETED`, `REJECTED` or `SKIPPED`.
    pub status: String,
    /// Why it was skipped or rejected.
    pub reason: Option<String>,
    /// Rows trained on (feature rows).
    pub training_rows: u64,
}

/// Orgs with a run in progress in this process: two runs of one org would race.
static TRAINING: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Whether any run is in progress in this process.
pub fn training_in_progress() -> bool {
    !TRAINING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_empty()
}

/// Stop every trainer child and wait (at most `grace` more) until the runs in
/// progress have recorded how they ended (`INTERRUPTED`). Returns the children
/// stopped.
pub fn stop_training(grace: std::time::Duration) -> usize {
    let n = crate::training::python::stop_children(grace);
    let t0 = std::time::Instant::now();
    while training_in_progress() && t0.elapsed() < grace {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    n
}

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

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Why a run did not train, though nothing failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Skipped(pub String);

/// Run the pipeline for `spec.org`; see the module documentation.
pub fn train(ctx: &TrainContext<'_>, spec: &TrainSpec) -> anyhow::Result<TrainOutcome> {
    anyhow::ensure!(
        !ctx.stop.is_some_and(|s| s.load(Ordering::Acquire))
            && !crate::training::python::stopping(),
        "the service is stopping: `{}` not trained",
        spec.org
    );
    let _busy = TrainingSlot::take(&spec.org)?;
    let org = ctx
        .config
        .orgs
        .get(&spec.org)
        .with_context(|| format!("organization `{}` is not in the configuration", spec.org))?;
    if let Some(e) = &spec.events {
        crate::training::labels::validate_events(e)?;
    }
    let ml = MlEnv::locate()?;
    let reg = ctx.registry;
    let next = reg.next_version_number(&spec.org)?;
    let version = format!("v{next}");
    let run_id = format!("{}-{version}-{}", spec.org, now_ms());
    let work = ctx.data_dir.join("training").join(&run_id);
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let version_dir = ctx.data_dir.join("models").join(&spec.org).join(&version);
    let mut feedback = spec.feedback.clone();
    if feedback.is_none()
        && let Some(store) = ctx.store
    {
        let path = work.join("feedback.jsonl");
        let f = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let n = store.export_feedback(&spec.org, std::io::BufWriter::new(f))?;
        if n > 0 {
            tracing::info!(org = %spec.org, alerts = n, "learning from operator feedback");
            feedback = Some(path);
        }
    }
    let data = match &spec.data {
        TrainingData::History { days } => serde_json::json!({"source": "history", "days": days}),
        TrainingData::Files { input } => serde_json::json!({"source": "files", "inputs": input}),
    };
    let mut run = TrainingRun {
        id: run_id.clone(),
        organization_id: spec.org.clone(),
        status: "RUNNING".into(),
        version: version.clone(),
        started_at: now_ms(),
        completed_at: None,
        config: serde_json::json!({
            "trigger": spec.trigger.as_str(), "data": data, "events": spec.events,
            "feedback": feedback, "tune": spec.tune, "trials": spec.trials,
            "force": spec.force, "seed": spec.seed,
        }),
        metrics: None,
        error_message: None,
    };
    reg.record_run(&run)?;
    let work_orders = std::cell::Cell::new(0);
    let result = Steps {
        ctx,
        work_orders: &work_orders,
        spec,
        org,
        ml: &ml,
        feedback: feedback.as_deref(),
        work: &work,
        version_dir: &version_dir,
        version: &version,
    }
    .run();
    run.completed_at = Some(now_ms());
    run.config["workOrders"] = work_orders.get().into();
    let stopped = ctx.stop.is_some_and(|s| s.load(Ordering::Acquire));
    match &result {
        Ok(o) => {
            run.status = o.status.clone();
            run.metrics = Some(o.metrics.clone());
            run.error_message = o.reason.clone();
            run.config["trainingRows"] = o.training_rows.into();
        }
        Err(e) if stopped => {
            run.status = "INTERRUPTED".into();
            run.error_message = Some(format!("the service stopped during the run: {e:#}"));
        }
        Err(e) => {
            run.status = "FAILED".into();
            run.error_message = Some(format!("{e:#}"));
        }
    }
    reg.record_run(&run)?;
    let _ = std::fs::remove_dir_all(&work);
    let outcome = result?;
    let removed = reg.retain(&spec.org, KEEP_VERSIONS)?;
    if !removed.is_empty() {
        tracing::info!(org = %spec.org, removed = ?removed, "old versions removed from disk");
    }
    Ok(outcome)
}

/// One run's context.
struct Steps<'a> {
    ctx: &'a TrainContext<'a>,
    spec: &'a TrainSpec,
    org: &'a OrgConfig,
    ml: &'a MlEnv,
    feedback: Option<&'a Path>,
    work: &'a Path,
    version_dir: &'a Path,
    version: &'a str,
    /// Work orders labelled in this run.
    work_orders: &'a std::cell::Cell<u64>,
}

/// The trainer's configuration file: the effective document with the trained
/// org's table as the service runs it (stored configurations included), so
/// labels, horizon and hyperparameters agree with the features computed here.
pub fn write_trainer_config(
    document: &toml::Table,
    org: Option<(&str, &OrgConfig)>,
    work: &Path,
) -> anyhow::Result<PathBuf> {
    let mut doc = document.clone();
    if let Some((id, o)) = org {
        let orgs = doc
            .entry("orgs")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = orgs {
            t.insert(id.to_string(), toml::Value::try_from(o)?);
        }
    }
    let p = work.join("config.toml");
    std::fs::write(&p, toml::to_string(&doc)?)?;
    Ok(p)
}

impl Steps<'_> {
    fn stopped(&self) -> bool {
        self.ctx.stop.is_some_and(|s| s.load(Ordering::Acquire))
    }

    fn run(&self) -> anyhow::Result<TrainOutcome> {
        let (ctx, spec) = (self.ctx, self.spec);
        let skipped = |reason: String, rows: u64| {
            tracing::info!(org = %spec.org, version = self.version, reason = %reason, "training skipped");
            TrainOutcome {
                organization_id: spec.org.clone(),
                version: self.version.to_string(),
                deployed: false,
                dir: self.version_dir.to_path_buf(),
                metrics: serde_json::Value::Null,
                status: "SKIPPED".into(),
                reason: Some(reason),
                training_rows: rows,
            }
        };
        let orders =
            WorkOrders::new(&history::local_dir_for(ctx.config, ctx.data_dir), &spec.org).list()?;
        let (inputs, org_arg, orders) = match &spec.data {
            TrainingData::Files { input } => (input.clone(), Some(spec.org.clone()), orders),
            TrainingData::History { days } => {
                if let Some(seal) = ctx.seal_history {
                    seal();
                }
                let path = self.work.join("history.jsonl");
                let ex = export_history(ctx.config, ctx.data_dir, &spec.org, *days, &path)?;
                let min = ctx.config.training.min_history_rows;
                if ex.rows < min {
                    return Ok(skipped(
                        format!(
                            "too little history: {} rows, at least {min} needed",
                            ex.rows
                        ),
                        ex.rows,
                    ));
                }
                let horizon_ms = i64::from(self.org.prediction.horizon_minutes) * 60_000;
                let orders = orders_in(orders, ex.from, ex.to.saturating_add(horizon_ms));
                if let Some(reason) = no_failure(&ex, orders.len(), spec.events.is_some()) {
                    return Ok(skipped(reason, ex.rows));
                }
                tracing::info!(org = %spec.org, rows = ex.rows, failures = ex.failures, work_orders = orders.len(),
                    from = %prognos_dataflows::time::format_rfc3339_ms(ex.from),
                    to = %prognos_dataflows::time::format_rfc3339_ms(ex.to),
                    "training on the org's history");
                (vec![path], Some(spec.org.clone()), orders)
            }
        };
        self.work_orders.set(orders.len() as u64);
        let events = if orders.is_empty() {
            spec.events.clone()
        } else {
            let p = self.work.join("events.jsonl");
            write_events(&p, &orders, spec.events.as_deref())?;
            Some(p)
        };
        anyhow::ensure!(!self.stopped(), "stopped before computing features");
        tracing::info!(org = %spec.org, version = self.version, "computing features with the live dataflow");
        let feats_dir = self.work.join("features");
        let summary = compute_with(
            ctx.config,
            &inputs,
            org_arg.as_deref(),
            &feats_dir,
            spec.workers.max(1),
            false,
        )?;
        let rows = summary.rows.get(&spec.org).copied().unwrap_or(0);
        anyhow::ensure!(rows > 0, "no usable rows for `{}` in the inputs", spec.org);
        anyhow::ensure!(!self.stopped(), "stopped before training");
        tracing::info!(org = %spec.org, rows, dead_letters = summary.dead_letters, "features ready; training");
        let config_path =
            write_trainer_config(ctx.document, Some((&spec.org, self.org)), self.work)?;
        let features = feats_dir.join(format!("{}.parquet", spec.org));
        let mut py_args = vec![
            "--org".into(),
            spec.org.clone(),
            "--config".into(),
            arg(&config_path),
            "--features".into(),
            arg(&features),
            "--out".into(),
            arg(self.version_dir),
            "--version".into(),
            self.version.into(),
            "--seed".into(),
            spec.seed.to_string(),
        ];
        if let Some(e) = &events {
            py_args.extend(["--events".into(), arg(e)]);
        }
        let failures_file = self.work.join("failures.jsonl");
        py_args.extend(["--failures-out".into(), arg(&failures_file)]);
        if let Some(f) = self.feedback {
            py_args.extend(["--feedback".into(), arg(f)]);
        }
        if spec.tune {
            py_args.extend(["--tune".into(), "--trials".into(), spec.trials.to_string()]);
        }
        let done = self.ml.run("train.py", &py_args, |line| {
            let stage = line.get("stage").and_then(|s| s.as_str()).unwrap_or("");
            let msg = line.get("message").and_then(|s| s.as_str()).unwrap_or("");
            tracing::info!(org = %spec.org, stage, "{msg}");
        })?;
        let metrics = done
            .as_ref()
            .and_then(|d| d.get("metrics").cloned())
            .unwrap_or_default();
        anyhow::ensure!(!self.stopped(), "stopped before the operating point");
        let sweep = self.operating_point(&inputs, &failures_file)?;
        let budget = self.org.prediction.max_false_alarms_per_day;
        let reg = ctx.registry;
        let record = reg.register(self.version_dir, now_ms())?;
        let active = reg.active(&spec.org)?;
        // With a false-alarm budget, a version must add to the rules and
        // forecasts alone on its validation rows (unless forced).
        let adds_nothing = budget.is_some() && !spec.force && !sweep.adds();
        let mut too_few: Option<usize> = None;
        let deploy = match (&active, spec.force) {
            _ if adds_nothing => false,
            (None, _) | (Some(_), true) => true,
            (Some(active), false) => {
                let active_rec = reg.version(&spec.org, active)?;
                let split = &record.split;
                let bound = |k: &str| {
                    split
                        .get(k)
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string()
                };
                let mut eval_args = vec![
                    "--version-dir".into(),
                    arg(&active_rec.dir),
                    "--features".into(),
                    arg(&features),
                    "--config".into(),
                    arg(&config_path),
                    "--org".into(),
                    spec.org.clone(),
                    "--from".into(),
                    bound("validationStart"),
                    "--to".into(),
                    bound("validationEnd"),
                ];
                if let Some(e) = &events {
                    eval_args.extend(["--events".into(), arg(e)]);
                }
                let active_metrics = self
                    .ml
                    .run("evaluate.py", &eval_args, |_| {})?
                    .map(|v| v.get("metrics").cloned().unwrap_or(v))
                    .unwrap_or_default();
                let better = beats(&metrics, &active_metrics);
                tracing::info!(org = %spec.org, candidate = self.version, active = %active, better,
                    candidate_metrics = %metrics, active_metrics = %active_metrics,
                    "deploy gate: both scored on the candidate's validation rows");
                // Too few validation failures and no comparison means anything.
                let failures = sweep.points.first().map_or(0, |p| p.failures);
                let min = self.org.training.min_validation_events as usize;
                if failures < min {
                    too_few = Some(failures);
                }
                better && too_few.is_none()
            }
        };
        if deploy {
            let a = reg.activate(&spec.org, Some(self.version), now_ms(), ctx.live)?;
            tracing::info!(org = %spec.org, version = self.version, effective_ts = a.effective_ts, "activated");
            operating_point::apply(
                reg,
                &self.org.prediction,
                &spec.org,
                self.version,
                a.effective_ts,
                ctx.live,
            )?;
        } else if adds_nothing {
            tracing::warn!(org = %spec.org, version = self.version,
                rules_and_forecasts = ?sweep.rules_and_forecasts, chosen = ?sweep.chosen_point(),
                "not deployed: within the false-alarm budget it adds nothing to the rules and forecasts alone");
        } else {
            tracing::warn!(org = %spec.org, version = self.version,
                "not deployed: it does not beat the active version (train with force to deploy anyway)");
        }
        Ok(TrainOutcome {
            organization_id: spec.org.clone(),
            version: self.version.to_string(),
            deployed: deploy,
            dir: self.version_dir.to_path_buf(),
            metrics,
            status: if deploy { "COMPLETED" } else { "REJECTED" }.into(),
            reason: (!deploy).then(|| match (adds_nothing, sweep.chosen_point()) {
                (false, _) if too_few.is_some() => format!(
                    "{} failures in its validation rows, fewer than training.min_validation_events = {}: too few to call it better than the active version",
                    too_few.unwrap_or_default(),
                    self.org.training.min_validation_events
                ),
                (true, None) => format!(
                    "no failure threshold keeps within the false-alarm budget of {} per machine-day on the validation rows",
                    budget.unwrap_or_default()
                ),
                (true, Some(_)) => "within the false-alarm budget it adds nothing to the rules and forecasts alone on the validation rows".to_string(),
                (false, _) => "does not beat the active version on the same validation rows".to_string(),
            }),
            training_rows: rows,
        })
    }
}

impl Steps<'_> {
    /// Sweep the candidate's operating points on its validation rows (scored by
    /// the candidate through the live runner, alerted on with `prognos
    /// replay`'s rules) and record the curve in its `metadata.json` as
    /// `operatingPoint`.
    fn operating_point(&self, inputs: &[PathBuf], failures: &Path) -> anyhow::Result<Sweep> {
        let (ctx, spec) = (self.ctx, self.spec);
        let meta_path = self.version_dir.join("metadata.json");
        let mut meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&meta_path)
                .with_context(|| format!("cannot read {}", meta_path.display()))?,
        )
        .with_context(|| format!("{} is not JSON", meta_path.display()))?;
        let bound = |k: &str| {
            meta["split"][k]
                .as_str()
                .and_then(prognos_dataflows::time::parse_rfc3339_ms)
                .with_context(|| format!("{}: no split.{k}", meta_path.display()))
        };
        let range = (bound("validationStart")?, bound("validationEnd")?);
        let events = crate::replay::read_events(failures)?;
        let ort = crate::onnx_runtime::init()?;
        let candidate = Activations::from_log([Activation {
            organization_id: spec.org.clone(),
            version: Some(self.version.to_string()),
            effective_ts: i64::MIN,
        }]);
        let ictx = InferenceContext {
            env: Some(ort.environment),
            source: None,
            root: Arc::new(ctx.data_dir.join("models")),
            limits: CacheLimits::from_config(&ctx.config.runtime),
            shared_cache: Default::default(),
            activations: Arc::new(candidate),
            orgs: InferenceContext::orgs_from(ctx.config),
            max_batch_rows: ctx.config.runtime.max_batch_rows,
            stats: Arc::default(),
            cache_stats: Arc::default(),
            clock: prognos_dataflows::operators::inference::system_clock(),
        };
        let t0 = std::time::Instant::now();
        let sweep = operating_point::sweep(SweepSpec {
            config: ctx.config,
            org: &spec.org,
            inputs,
            ctx: ictx,
            events: &events,
            range: Some(range),
            workers: spec.workers.max(1),
            budget: None,
        })?;
        tracing::info!(org = %spec.org, version = self.version, points = sweep.points.len(),
            chosen = ?sweep.chosen_point().map(|p| (p.failure_threshold, p.for_s)),
            adds = sweep.adds(), seconds = format!("{:.1}", t0.elapsed().as_secs_f64()),
            "operating points swept on the validation rows");
        let mut op = serde_json::to_value(&sweep)?;
        op["adds"] = sweep.adds().into();
        op["pinned"] = self.org.prediction.pin_threshold.into();
        meta["operatingPoint"] = op;
        std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta)?)
            .with_context(|| format!("cannot write {}", meta_path.display()))?;
        self.ml.run(
            "plot_curve.py",
            &["--version-dir".into(), arg(self.version_dir)],
            |_| {},
        )?;
        Ok(sweep)
    }
}

/// Why a run on `ex` has nothing to learn from: no failure signal rose in it,
/// no work order falls in it and no events were given.
pub fn no_failure(ex: &Exported, work_orders: usize, events: bool) -> Option<String> {
    (ex.failures == 0 && work_orders == 0 && !events).then(|| {
        format!(
            "no failure in the history ({} rows): no failure signal rose and no work order falls in it",
            ex.rows
        )
    })
}

/// The work orders whose failure starts in `[from, to]`.
pub fn orders_in(orders: Vec<WorkOrder>, from: i64, to: i64) -> Vec<WorkOrder> {
    orders
        .into_iter()
        .filter(|w| (from..=to).contains(&w.start))
        .collect()
}

/// Write the events file `ml/train.py --events` reads: the work orders, then
/// the lines of `given` (an events file already checked), as JSON lines in the
/// labels format. `train.py` labels with these together with the rising edges
/// of the org's failure signals.
pub fn write_events(out: &Path, orders: &[WorkOrder], given: Option<&Path>) -> anyhow::Result<()> {
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?,
    );
    for o in orders {
        serde_json::to_writer(&mut w, &o.event_line())?;
        w.write_all(b"\n")?;
    }
    if let Some(g) = given {
        let text =
            std::fs::read_to_string(g).with_context(|| format!("cannot read {}", g.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            w.write_all(line.as_bytes())?;
            w.write_all(b"\n")?;
        }
    }
    w.flush()
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// What [`export_history`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// Rows written.
    pub rows: u64,
    /// Rising edges of the org's failure signals among them.
    pub failures: u64,
    /// First event time.
    pub from: i64,
    /// Last event time.
    pub to: i64,
}

/// Write the last `days` (default `training.data_days`) of `org`'s history,
/// before its latest row, to `out` as JSON lines in the org's own schema (its
/// machine, time and signal columns), so the live dataflow maps and features
/// them exactly as it does live rows; count the failure-signal rising edges.
pub fn export_history(
    config: &Config,
    data_dir: &Path,
    org: &str,
    days: Option<f64>,
    out: &Path,
) -> anyhow::Result<Exported> {
    let o = config
        .orgs
        .get(org)
        .with_context(|| format!("organization `{org}` is not in the configuration"))?;
    let reader = HistoryReader::new(&history::root_for(config, data_dir)?);
    let signals: Vec<String> = o.signals.iter().map(|s| s.name.clone()).collect();
    let mut ex = Exported {
        rows: 0,
        failures: 0,
        from: i64::MAX,
        to: i64::MIN,
    };
    let Some(last) = reader.last_ts(org)? else {
        std::fs::File::create(out)?;
        return Ok(ex);
    };
    let days = days.unwrap_or(o.training.data_days as f64);
    let from = last - (days * history::DAY_MS as f64) as i64;
    // Each failure signal's column, the test of "on", and how long "on" must hold
    // (a flag: at once; a limit crossing: `hold_s`).
    type Marker = (usize, Box<dyn Fn(f64) -> bool>, i64);
    let fail: Vec<Marker> = o
        .failure_signals
        .iter()
        .filter_map(|f| {
            let i = signals.iter().position(|s| *s == f.signal)?;
            Some(match f.kind {
                FailureSignalKind::Flag => {
                    (i, Box::new(|v: f64| v > 0.5) as Box<dyn Fn(f64) -> bool>, 0)
                }
                FailureSignalKind::Limit => {
                    let l = o.signal(&f.signal)?.limits.clone()?;
                    let beyond = move |v: f64| {
                        l.high.is_some_and(|h| v >= h) || l.low.is_some_and(|lo| v <= lo)
                    };
                    (
                        i,
                        Box::new(beyond) as Box<dyn Fn(f64) -> bool>,
                        f.hold_s as i64 * 1000,
                    )
                }
            })
        })
        .collect();
    // Per machine and failure signal: the last known state (NaN carries it
    // forward), since when it is on (when the machine was seen off before: a
    // signal already on at a machine's first row is no observed failure start),
    // and whether that run was counted.
    #[derive(Clone, Default)]
    struct Mark {
        on: Option<bool>,
        since: Option<i64>,
        counted: bool,
    }
    let mut state: std::collections::HashMap<String, Vec<Mark>> = Default::default();
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?,
    );
    let mut line = serde_json::Map::new();
    reader.scan(org, from, last + 1, &signals, |rows| {
        let r: anyhow::Result<()> = (|| {
            for r in rows {
                let st = state
                    .entry(r.machine.clone())
                    .or_insert_with(|| vec![Mark::default(); fail.len()]);
                for ((i, is_on, hold), m) in fail.iter().zip(st.iter_mut()) {
                    let v = r.values[*i];
                    if !v.is_nan() {
                        let on = is_on(v);
                        if on && m.on == Some(false) {
                            m.since = Some(r.ts);
                            m.counted = false;
                        } else if !on {
                            m.since = None;
                        }
                        m.on = Some(on);
                    }
                    if let Some(t0) = m.since
                        && !m.counted
                        && r.ts - t0 >= *hold
                    {
                        ex.failures += 1;
                        m.counted = true;
                    }
                }
                line.clear();
                line.insert(o.machine_column.clone(), r.machine.clone().into());
                line.insert(o.time_column.clone(), r.ts.into());
                for (s, v) in o.signals.iter().zip(&r.values) {
                    let value = match (v.is_nan(), s.kind) {
                        (true, _) => serde_json::Value::Null,
                        (false, SignalKind::Boolean) => ((*v > 0.5) as u8).into(),
                        (false, _) => serde_json::Number::from_f64(*v)
                            .map_or(serde_json::Value::Null, serde_json::Value::Number),
                    };
                    line.insert(s.column.clone(), value);
                }
                serde_json::to_writer(&mut w, &line)?;
                w.write_all(b"\n")?;
                ex.rows += 1;
                ex.from = ex.from.min(r.ts);
                ex.to = ex.to.max(r.ts);
            }
            Ok(())
        })();
        r.map_err(|e| history::HistoryError::Format {
            path: out.to_path_buf(),
            reason: format!("{e:#}"),
        })
    })?;
    w.flush()?;
    Ok(ex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::failures::{NewWorkOrder, Source};

    #[test]
    fn work_orders_and_given_events_make_one_events_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = WorkOrders::new(dir.path(), "acme");
        let t0 = 1_767_225_600_000; // 2026-01-01
        for (m, start, end) in [
            ("m1", t0, Some(t0 + 600_000)),
            ("m2", t0 + 86_400_000, None),
        ] {
            let n = NewWorkOrder {
                machine_id: m.into(),
                component: "Heating".into(),
                start,
                end,
                note: Some("replaced".into()),
            };
            store.add(n, Source::Cli, "ops", t0).unwrap();
        }
        let given = dir.path().join("given.jsonl");
        std::fs::write(
            &given,
            "{\"machineId\":\"m3\",\"component\":\"Sensing\",\"start\":1767225600000}\n\n",
        )
        .unwrap();
        let orders = orders_in(store.list().unwrap(), t0 - 1, t0 + 1);
        assert_eq!(orders.len(), 1, "only the one in the window");
        let out = dir.path().join("events.jsonl");
        write_events(&out, &store.list().unwrap(), Some(&given)).unwrap();
        assert_eq!(crate::training::labels::validate_events(&out).unwrap(), 3);
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["organizationId"], "acme");
        assert_eq!(lines[0]["machineId"], "m1");
        assert_eq!(lines[0]["start"], "2026-01-01T00:00:00.000Z");
        assert_eq!(lines[0]["end"], "2026-01-01T00:10:00.000Z");
        assert!(lines[1].get("end").is_none());
        assert_eq!(lines[2]["machineId"], "m3");
    }

    #[test]
    fn a_work_order_is_a_failure_to_learn_from() {
        let ex = Exported {
            rows: 5000,
            failures: 0,
            from: 0,
            to: 1,
        };
        assert!(no_failure(&ex, 0, false).is_some());
        assert_eq!(no_failure(&ex, 1, false), None);
        assert_eq!(no_failure(&ex, 0, true), None);
        assert_eq!(no_failure(&Exported { failures: 2, ..ex }, 0, false), None);
    }
}
