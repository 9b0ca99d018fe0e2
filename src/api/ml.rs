//! The seed's model routes (status, versions, metrics, deploy, rollback, train)
//! and the audit log route. Deploy and rollback go through the live activation
//! log, so they take effect at the dataflow's next frontier (event time);
//! training runs are queued and run one at a time on a background thread
//! (the machine is small), each recorded in the audit log when queued and when done.

use super::ApiState;
use super::error::ApiError;
use super::metrics::ApiMetrics;
use super::request::{Reply, Req, Scope};
use crate::auth::AuditLog;
use crate::commands::train::TrainOutcome;
use crate::store::AlertStore;
use crate::training::registry::Registry;
use prognos_dataflows::models::activations::Activations;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use warp::http::StatusCode;

/// Body of `POST /api/ml/train`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrainRequest {
    /// Days of history to train on (simulated history in the embedded service;
    /// default `[simulator].first_model_days`).
    #[serde(default)]
    pub days: Option<f64>,
    /// Search hyperparameters first.
    #[serde(default)]
    pub tune: bool,
    /// Trials when tuning (1–50, default 10).
    #[serde(default)]
    pub trials: Option<u32>,
    /// Deploy even when the candidate does not beat the active version.
    #[serde(default)]
    pub force: bool,
    /// Seed of the history and the training (default: a new one per version).
    #[serde(default)]
    pub seed: Option<u64>,
}

impl TrainRequest {
    fn validate(&self) -> Result<(), ApiError> {
        let mut fields = std::collections::BTreeMap::new();
        if self
            .days
            .is_some_and(|d| !(d.is_finite() && (0.25..=60.0).contains(&d)))
        {
            fields.insert("days".into(), "must be from 0.25 to 60".into());
        }
        if self.trials.is_some_and(|t| !(1..=50).contains(&t)) {
            fields.insert("trials".into(), "must be from 1 to 50".into());
        }
        if fields.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(fields))
        }
    }
}

/// Trains one version of an org (blocking; minutes).
pub trait Trainer: Send + Sync + 'static {
    /// Train, register and (when it wins, or when forced) activate a version.
    fn train(&self, org: &str, req: &TrainRequest) -> anyhow::Result<TrainOutcome>;
}

/// The embedded service's trainer: simulates `days` of the org's history (its own
/// schema, a seed the live simulation never uses, ending now) and trains on it
/// with the same code as `prognos train`.
pub struct SimulatorTrainer {
    /// The configuration.
    pub config: prognos_dataflows::config::Config,
    /// `--config` as given (for `ml/train.py`).
    pub config_path: Option<PathBuf>,
    /// The data dir.
    pub data_dir: PathBuf,
    /// The service's registry.
    pub registry: Arc<Registry>,
    /// The live activation log.
    pub live: Arc<Activations>,
    /// Operator feedback to learn from.
    pub store: AlertStore,
}

impl Trainer for SimulatorTrainer {
    fn train(&self, org: &str, req: &TrainRequest) -> anyhow::Result<TrainOutcome> {
        use crate::training::bootstrap::{
            HISTORY_SEED_OFFSET, HistoryRequest, SimulatedTraining, train_on_simulated_history,
        };
        let sim_cfg = &self.config.simulator;
        let versions = self.registry.versions(org)?.len() as u64;
        let seed = req.seed.unwrap_or_else(|| {
            sim_cfg
                .seed
                .wrapping_add(HISTORY_SEED_OFFSET)
                .wrapping_add(versions + 1)
        });
        let outcome = train_on_simulated_history(
            &SimulatedTraining {
                config: &self.config,
                config_path: self.config_path.clone(),
                data_dir: &self.data_dir,
                registry: &self.registry,
                live: &self.live,
                store: &self.store,
                stop: None,
            },
            org,
            &HistoryRequest {
                days: req.days.unwrap_or(sim_cfg.first_model_days.max(1.0)),
                end_ms: chrono::Utc::now().timestamp_millis(),
                seed,
                tune: req.tune,
                trials: req.trials.unwrap_or(10),
                force: req.force,
            },
        )?;
        outcome.ok_or_else(|| anyhow::anyhow!("training of `{org}` was stopped"))
    }
}

/// A training run asked for through the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainJob {
    /// Job id (returned by `POST /api/ml/train`).
    pub id: String,
    /// Organization.
    pub organization_id: String,
    /// Who asked.
    pub requested_by: String,
    /// `QUEUED`, `RUNNING`, `COMPLETED` (deployed), `REJECTED` (did not beat the
    /// active version), `FAILED`.
    pub status: String,
    /// When it was queued.
    #[serde(with = "prognos_dataflows::time::rfc3339")]
    pub queued_at: i64,
    /// When it started.
    #[serde(with = "prognos_dataflows::time::rfc3339_opt")]
    pub started_at: Option<i64>,
    /// When it ended.
    #[serde(with = "prognos_dataflows::time::rfc3339_opt")]
    pub completed_at: Option<i64>,
    /// Version trained.
    pub version: Option<String>,
    /// Whether it was activated.
    pub deployed: Option<bool>,
    /// Validation metrics.
    pub metrics: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// What was asked.
    pub request: TrainRequest,
}

/// Jobs kept in memory (older finished ones are dropped; the registry keeps every run).
pub const MAX_JOBS: usize = 200;

/// The training queue and its jobs.
pub struct Jobs {
    table: Arc<Mutex<Vec<TrainJob>>>,
    tx: Option<std::sync::mpsc::Sender<String>>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn update(
    table: &Mutex<Vec<TrainJob>>,
    id: &str,
    f: impl FnOnce(&mut TrainJob),
) -> Option<TrainJob> {
    let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
    let j = t.iter_mut().find(|j| j.id == id)?;
    f(j);
    Some(j.clone())
}

impl Jobs {
    /// The queue; with a trainer, a thread that runs queued jobs one at a time.
    pub fn start(trainer: Option<Arc<dyn Trainer>>, audit: AuditLog, m: ApiMetrics) -> Arc<Jobs> {
        let table: Arc<Mutex<Vec<TrainJob>>> = Arc::default();
        let tx = trainer.map(|trainer| {
            let (tx, rx) = std::sync::mpsc::channel::<String>();
            let table = table.clone();
            std::thread::Builder::new()
                .name("api-training".into())
                .spawn(move || {
                    // Ends when the API state (the sender) is dropped.
                    for id in rx {
                        let Some(job) = update(&table, &id, |j| {
                            j.status = "RUNNING".into();
                            j.started_at = Some(now_ms());
                        }) else {
                            continue;
                        };
                        tracing::info!(job = %id, org = %job.organization_id, "training started (API)");
                        let result = trainer.train(&job.organization_id, &job.request);
                        let done = update(&table, &id, |j| {
                            j.completed_at = Some(now_ms());
                            match &result {
                                Ok(o) => {
                                    j.status = if o.deployed { "COMPLETED" } else { "REJECTED" }.into();
                                    j.version = Some(o.version.clone());
                                    j.deployed = Some(o.deployed);
                                    j.metrics = Some(o.metrics.clone());
                                }
                                Err(e) => {
                                    j.status = "FAILED".into();
                                    j.error = Some(format!("{e:#}"));
                                }
                            }
                        })
                        .unwrap_or(job);
                        let outcome = done.status.to_ascii_lowercase();
                        m.training_runs.with_label_values(&["api", &outcome]).inc();
                        match &result {
                            Ok(_) => tracing::info!(job = %id, org = %done.organization_id, status = %done.status, version = ?done.version, "training finished (API)"),
                            Err(e) => tracing::error!(job = %id, org = %done.organization_id, error = format!("{e:#}"), "training failed (API)"),
                        }
                        if let Err(e) = audit.record(
                            now_ms(),
                            &done.requested_by,
                            "system",
                            Some(&done.organization_id),
                            "ml.train.done",
                            if result.is_ok() { "ok" } else { "error" },
                            serde_json::json!({"jobId": done.id, "status": done.status,
                                "version": done.version, "deployed": done.deployed, "error": done.error}),
                        ) {
                            tracing::error!(error = %e, "cannot write the audit log");
                        }
                    }
                })
                .expect("spawning the training thread");
            tx
        });
        Arc::new(Jobs { table, tx })
    }

    /// Queue a job: 503 without a trainer, 409 when the org has one queued or running.
    fn submit(&self, org: &str, by: &str, request: TrainRequest) -> Result<TrainJob, ApiError> {
        let Some(tx) = &self.tx else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "training_unavailable",
                "this service does not train models",
            ));
        };
        let now = now_ms();
        let job = {
            let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(j) = t.iter().find(|j| {
                j.organization_id == org && (j.status == "QUEUED" || j.status == "RUNNING")
            }) {
                return Err(ApiError::conflict(format!(
                    "training {} of this org is {}",
                    j.id,
                    j.status.to_ascii_lowercase()
                )));
            }
            let job = TrainJob {
                id: format!(
                    "train-{org}-{now}-{}",
                    crate::auth::hex(&crate::auth::random_bytes::<3>())
                ),
                organization_id: org.into(),
                requested_by: by.into(),
                status: "QUEUED".into(),
                queued_at: now,
                started_at: None,
                completed_at: None,
                version: None,
                deployed: None,
                metrics: None,
                error: None,
                request,
            };
            if t.len() >= MAX_JOBS
                && let Some(i) = t
                    .iter()
                    .position(|j| j.status != "QUEUED" && j.status != "RUNNING")
            {
                t.remove(i);
            }
            t.push(job.clone());
            job
        };
        tx.send(job.id.clone())
            .map_err(|_| ApiError::internal("the training thread is gone"))?;
        Ok(job)
    }

    /// Whether jobs can run (the service has a trainer).
    pub fn available(&self) -> bool {
        self.tx.is_some()
    }

    /// The jobs of `org`, newest first.
    pub fn of_org(&self, org: &str) -> Vec<TrainJob> {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.iter()
            .rev()
            .filter(|j| j.organization_id == org)
            .cloned()
            .collect()
    }
}

/// An audit-log entry (who, org, what, outcome, when) for the caller's request.
pub(crate) fn audit(
    st: &ApiState,
    req: &Req,
    org: &str,
    action: &str,
    outcome: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    let c = req.caller()?;
    st.svc.audit.record(
        req.now_ms,
        &c.username,
        c.role.as_str(),
        Some(org),
        action,
        outcome,
        detail,
    )?;
    Ok(())
}

/// A version without its server path.
fn version_view(
    r: &crate::training::registry::ModelRecord,
    active: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({
        "organizationId": r.organization_id,
        "version": r.version,
        "createdAt": prognos_dataflows::time::format_rfc3339_ms(r.created_at),
        "active": active == Some(r.version.as_str()),
        "featureCount": r.feature_count,
        "metrics": r.metrics,
        "split": r.split,
    })
}

/// `GET /api/ml/status`.
pub fn status(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let org = req.org()?;
    let reg = &st.svc.registry;
    let active = reg.active(org)?;
    let mut activations: Vec<_> = reg
        .activation_log()?
        .into_iter()
        .filter(|a| a.organization_id == org)
        .collect();
    activations.reverse();
    activations.truncate(10);
    let mut runs = reg.runs(org)?;
    runs.truncate(20);
    Ok(Reply::ok(&serde_json::json!({
        "organizationId": org,
        "activeVersion": active,
        "versionCount": reg.versions(org)?.len(),
        "activations": activations,
        "trainingRuns": runs,
        "jobs": st.svc.jobs.of_org(org),
    })))
}

/// `GET /api/ml/versions`.
pub fn versions(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let org = req.org()?;
    let reg = &st.svc.registry;
    let active = reg.active(org)?;
    let versions: Vec<_> = reg
        .versions(org)?
        .iter()
        .map(|r| version_view(r, active.as_deref()))
        .collect();
    Ok(Reply::ok(&serde_json::json!({
        "organizationId": org,
        "activeVersion": active,
        "versions": versions,
    })))
}

/// `GET /api/ml/metrics`.
pub fn metrics(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let org = req.org()?;
    let reg = &st.svc.registry;
    let active = reg.active(org)?;
    let active_metrics = match &active {
        Some(v) => match reg.version(org, v) {
            Ok(r) => r.metrics,
            Err(crate::training::registry::RegistryError::NoSuchVersion { .. }) => {
                serde_json::Value::Null
            }
            Err(e) => return Err(e.into()),
        },
        None => serde_json::Value::Null,
    };
    let stats = st.svc.store.stats(org, i64::MIN, i64::MAX)?;
    Ok(Reply::ok(&serde_json::json!({
        "organizationId": org,
        "activeVersion": active,
        "validation": active_metrics,
        "feedback": {
            "alerts": stats.total,
            "withFeedback": stats.with_feedback,
            "accurate": stats.accurate,
            "accuracy": stats.feedback_accuracy,
        },
    })))
}

/// Body of `POST /api/ml/deploy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Version to activate.
    pub version: String,
}

/// `POST /api/ml/deploy`.
pub fn deploy(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let body: DeployRequest = req.json()?;
    if body.version.is_empty() || body.version.len() > 64 {
        return Err(ApiError::field("version", "must be 1 to 64 bytes"));
    }
    let org = req.org()?;
    let previous = st.svc.registry.active(org)?;
    match st
        .svc
        .registry
        .activate(org, Some(&body.version), req.now_ms, &st.svc.live)
    {
        Ok(a) => {
            audit(
                st,
                req,
                org,
                "ml.deploy",
                "ok",
                serde_json::json!({
                "version": a.version, "previousVersion": previous, "effectiveTs": a.effective_ts}),
            )?;
            tracing::info!(org, version = %body.version, by = %req.caller()?.username, "deployed through the API");
            Ok(Reply::ok(&a))
        }
        Err(e) => {
            audit(
                st,
                req,
                org,
                "ml.deploy",
                "error",
                serde_json::json!({
                "version": body.version, "error": e.to_string()}),
            )?;
            Err(e.into())
        }
    }
}

/// `POST /api/ml/rollback`.
pub fn rollback(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let org = req.org()?;
    let previous = st.svc.registry.active(org)?;
    match st.svc.registry.rollback(org, req.now_ms, &st.svc.live) {
        Ok(a) => {
            audit(
                st,
                req,
                org,
                "ml.rollback",
                "ok",
                serde_json::json!({
                "version": a.version, "previousVersion": previous, "effectiveTs": a.effective_ts}),
            )?;
            tracing::info!(org, version = ?a.version, by = %req.caller()?.username, "rolled back through the API");
            Ok(Reply::ok(&a))
        }
        Err(e) => {
            audit(
                st,
                req,
                org,
                "ml.rollback",
                "error",
                serde_json::json!({"error": e.to_string()}),
            )?;
            Err(e.into())
        }
    }
}

/// `POST /api/ml/train`.
pub fn train(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let body: TrainRequest = req.json()?;
    body.validate()?;
    let org = req.org()?;
    let job = st.svc.jobs.submit(org, &req.caller()?.username, body)?;
    audit(
        st,
        req,
        org,
        "ml.train",
        "accepted",
        serde_json::json!({
        "jobId": job.id, "request": job.request}),
    )?;
    Ok(Reply::json(StatusCode::ACCEPTED, &job))
}

/// `GET /api/audit`.
pub fn audit_log(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let org = match req.scope.as_ref() {
        Some(Scope::Org(o)) => Some(o.as_str()),
        Some(Scope::All) => None,
        None => return Err(ApiError::unauthorized()),
    };
    let after = match req.text("cursor") {
        Some(c) => Some(
            crate::auth::audit::parse_cursor(c)
                .ok_or_else(|| ApiError::field("cursor", "not a cursor from a previous page"))?,
        ),
        None => None,
    };
    let limit = req.int("limit").unwrap_or(50) as usize;
    let (entries, next) = st.svc.audit.list(org, limit, after)?;
    Ok(Reply::ok(
        &serde_json::json!({"entries": entries, "next": next}),
    ))
}
