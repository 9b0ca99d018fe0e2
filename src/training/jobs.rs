//! The training job queue: runs asked for through the API (`POST
//! /api/ml/train`), by `prognos train` handing its run to the service, and by
//! the scheduler. At most `training.max_concurrent` run at once on threads of
//! their own (the rest wait in the queue), one queued or running per org; a
//! failed scheduled run is queued again after a backoff that doubles up to
//! `training.retry_backoff_max_s`. Every run that ends is audited, counted in
//! `prognos_training_runs_total{trigger, outcome}` and told to the admins' `/ws`.

use crate::auth::AuditLog;
use crate::store::AlertStore;
use crate::training::pipeline::{TrainContext, TrainOutcome, TrainSpec, TrainingData, Trigger};
use crate::training::registry::Registry;
use prognos_dataflows::models::activations::Activations;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Why a run was not queued.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The service has no trainer.
    #[error("this service does not train models")]
    Unavailable,
    /// The org already has a run queued or running.
    #[error("training {job} of this org is {status}")]
    Busy {
        /// That run's job id.
        job: String,
        /// `queued` or `running`.
        status: String,
    },
    /// The training threads have ended.
    #[error("the training threads are gone")]
    Gone,
}

/// Body of `POST /api/ml/train`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrainRequest {
    /// Days of the org's stored history to train on (default
    /// `training.data_days`).
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
    /// Seed of the training (default: a new one per version).
    #[serde(default)]
    pub seed: Option<u64>,
}

/// Trains one version of an org (blocking; minutes).
pub trait Trainer: Send + Sync + 'static {
    /// Train, register and (when it wins, or when forced) activate a version.
    fn train(&self, org: &str, req: &TrainRequest) -> anyhow::Result<TrainOutcome>;

    /// [`Trainer::train`] for a run asked for by `trigger` (recorded in the
    /// TrainingLog by trainers that keep one).
    fn train_as(
        &self,
        org: &str,
        req: &TrainRequest,
        trigger: Trigger,
    ) -> anyhow::Result<TrainOutcome> {
        let _ = trigger;
        self.train(org, req)
    }
}

/// The service's trainer: the org's stored history through the training
/// pipeline (`crate::training::pipeline`), with the effective configuration.
pub struct HistoryTrainer {
    /// The effective configuration.
    pub config: prognos_dataflows::config::Config,
    /// The effective configuration document (for `ml/train.py`).
    pub document: toml::Table,
    /// The data dir.
    pub data_dir: PathBuf,
    /// The service's registry.
    pub registry: Arc<Registry>,
    /// The live activation log.
    pub live: Arc<Activations>,
    /// Operator feedback to learn from.
    pub store: AlertStore,
    /// Set when the service stops (runs end as INTERRUPTED).
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    /// Closes the service's open history segments before a run reads them.
    pub seal_history: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Trainer for HistoryTrainer {
    fn train(&self, org: &str, req: &TrainRequest) -> anyhow::Result<TrainOutcome> {
        self.train_as(org, req, Trigger::Api)
    }

    fn train_as(
        &self,
        org: &str,
        req: &TrainRequest,
        trigger: Trigger,
    ) -> anyhow::Result<TrainOutcome> {
        let versions = self.registry.next_version_number(org)?;
        let mut spec = TrainSpec::on_history(org, trigger);
        spec.data = TrainingData::History { days: req.days };
        spec.tune = req.tune;
        spec.trials = req.trials.unwrap_or(10);
        spec.force = req.force;
        spec.seed = req.seed.unwrap_or(7 + versions);
        // The configurations stored through `/api/orgs` since the start count.
        let config = crate::orgs::effective_config(self.config.clone(), &self.data_dir)?;
        let seal = self.seal_history.clone();
        let seal_fn = move || {
            if let Some(s) = &seal {
                s()
            }
        };
        crate::training::pipeline::train(
            &TrainContext {
                config: &config,
                document: &self.document,
                data_dir: &self.data_dir,
                registry: &self.registry,
                live: &self.live,
                store: Some(&self.store),
                stop: Some(&self.stop),
                seal_history: Some(&seal_fn),
            },
            &spec,
        )
    }
}

/// A training run asked for through the API or by the scheduler.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainJob {
    /// Job id (returned by `POST /api/ml/train`).
    pub id: String,
    /// Organization.
    pub organization_id: String,
    /// Who asked (`system` for the scheduler).
    pub requested_by: String,
    /// `api` or `schedule`.
    pub trigger: Trigger,
    /// 1 for the first try; retries of a failed scheduled run count up.
    pub attempt: u32,
    /// `QUEUED`, `RUNNING`, `COMPLETED` (deployed), `REJECTED` (did not beat the
    /// active version), `SKIPPED` (too little history or no failure in it),
    /// `FAILED`, `INTERRUPTED` (the service stopped).
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
    /// Why it failed or was skipped.
    pub error: Option<String>,
    /// What was asked.
    pub request: TrainRequest,
}

/// Jobs kept in memory (older finished ones are dropped; the registry keeps every run).
pub const MAX_JOBS: usize = 200;

/// How the queue runs jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Jobs run at once (`training.max_concurrent`).
    pub max_concurrent: u32,
    /// Retries of a failed scheduled run.
    pub max_retries: u32,
    /// First retry after this long, doubled each time, at most `backoff_max`.
    pub backoff: std::time::Duration,
    /// Longest wait between retries.
    pub backoff_max: std::time::Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            max_concurrent: 1,
            max_retries: 3,
            backoff: std::time::Duration::from_secs(60),
            backoff_max: std::time::Duration::from_secs(3600),
        }
    }
}

impl QueueSettings {
    /// The configuration's `[training]` section.
    pub fn from_config(c: &prognos_dataflows::config::TrainerConfig) -> QueueSettings {
        QueueSettings {
            max_concurrent: c.max_concurrent,
            max_retries: c.max_retries,
            backoff: std::time::Duration::from_secs(c.retry_backoff_s),
            backoff_max: std::time::Duration::from_secs(c.retry_backoff_max_s),
        }
    }

    /// The wait before retry `n` (1 = the first retry).
    pub fn backoff_for(&self, n: u32) -> std::time::Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(self.backoff_max)
    }
}

/// The training queue and its jobs.
pub struct Jobs {
    table: Arc<Mutex<Vec<TrainJob>>>,
    tx: Option<Mutex<std::sync::mpsc::Sender<String>>>,
    settings: QueueSettings,
    events: tokio::sync::broadcast::Sender<Arc<AdminEvent>>,
}

/// An event for the admins of an org on `/ws`: a training run that ended,
/// `{"type": "training.<status>", "organizationId", "job": TrainJob}` with
/// status `completed`, `rejected`, `failed`, `skipped` or `interrupted`.
#[derive(Debug)]
pub struct AdminEvent {
    /// The org.
    pub organization_id: String,
    /// The JSON text sent.
    pub message: String,
}

impl AdminEvent {
    /// The event of a job that ended.
    pub fn training(job: &TrainJob) -> AdminEvent {
        let kind = format!("training.{}", job.status.to_ascii_lowercase());
        AdminEvent {
            organization_id: job.organization_id.clone(),
            message:
                serde_json::json!({"type": kind, "organizationId": job.organization_id, "job": job})
                    .to_string(),
        }
    }
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
    /// Training runs that end from now on, for the admins' `/ws`.
    pub fn admin_events(&self) -> tokio::sync::broadcast::Receiver<Arc<AdminEvent>> {
        self.events.subscribe()
    }

    /// The queue; with a trainer, `settings.max_concurrent` threads that run
    /// queued jobs (the rest wait in the queue).
    pub fn start(
        trainer: Option<Arc<dyn Trainer>>,
        audit: AuditLog,
        runs: prometheus::IntCounterVec,
    ) -> Arc<Jobs> {
        Jobs::start_with(trainer, audit, runs, QueueSettings::default())
    }

    /// [`Jobs::start`] with explicit queue settings.
    pub fn start_with(
        trainer: Option<Arc<dyn Trainer>>,
        audit: AuditLog,
        runs: prometheus::IntCounterVec,
        settings: QueueSettings,
    ) -> Arc<Jobs> {
        let table: Arc<Mutex<Vec<TrainJob>>> = Arc::default();
        let (events, _) = tokio::sync::broadcast::channel(256);
        let Some(trainer) = trainer else {
            return Arc::new(Jobs {
                table,
                tx: None,
                settings,
                events,
            });
        };
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let jobs = Arc::new(Jobs {
            table: table.clone(),
            tx: Some(Mutex::new(tx)),
            settings,
            events: events.clone(),
        });
        let rx = Arc::new(Mutex::new(rx));
        let weak = Arc::downgrade(&jobs);
        for i in 0..settings.max_concurrent.max(1) {
            let (rx, table, trainer, audit, runs, weak, events) = (
                rx.clone(),
                table.clone(),
                trainer.clone(),
                audit.clone(),
                runs.clone(),
                weak.clone(),
                events.clone(),
            );
            std::thread::Builder::new()
                .name(format!("training-{i}"))
                .spawn(move || {
                    loop {
                        // Ends when the queue (the sender) is dropped.
                        let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(id) = next else { break };
                        let done = run_job(
                            &id,
                            &table,
                            trainer.as_ref(),
                            &audit,
                            &runs,
                            &weak,
                            settings,
                        );
                        if let Some(job) = done {
                            // No admin listening is fine.
                            let _ = events.send(Arc::new(AdminEvent::training(&job)));
                        }
                    }
                })
                .expect("spawning a training thread");
        }
        jobs
    }

    /// Queue a job for `trigger` (the scheduler's runs, and their retries).
    pub fn submit_as(
        &self,
        org: &str,
        by: &str,
        request: TrainRequest,
        trigger: Trigger,
        attempt: u32,
    ) -> Result<TrainJob, SubmitError> {
        let Some(tx) = &self.tx else {
            return Err(SubmitError::Unavailable);
        };
        let now = now_ms();
        let job = {
            let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(j) = t.iter().find(|j| {
                j.organization_id == org && (j.status == "QUEUED" || j.status == "RUNNING")
            }) {
                return Err(SubmitError::Busy {
                    job: j.id.clone(),
                    status: j.status.to_ascii_lowercase(),
                });
            }
            let job = TrainJob {
                id: format!(
                    "train-{org}-{now}-{}",
                    crate::auth::hex(&crate::auth::random_bytes::<3>())
                ),
                organization_id: org.into(),
                requested_by: by.into(),
                trigger,
                attempt,
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
        tx.lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job.id.clone())
            .map_err(|_| SubmitError::Gone)?;
        Ok(job)
    }

    /// Whether jobs can run (the service has a trainer).
    pub fn available(&self) -> bool {
        self.tx.is_some()
    }

    /// The queue settings.
    pub fn settings(&self) -> QueueSettings {
        self.settings
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

/// Run one queued job; a failed scheduled job is queued again after its
/// backoff. The job as it ended.
fn run_job(
    id: &str,
    table: &Mutex<Vec<TrainJob>>,
    trainer: &dyn Trainer,
    audit: &AuditLog,
    runs: &prometheus::IntCounterVec,
    jobs: &std::sync::Weak<Jobs>,
    settings: QueueSettings,
) -> Option<TrainJob> {
    let job = update(table, id, |j| {
        j.status = "RUNNING".into();
        j.started_at = Some(now_ms());
    })?;
    tracing::info!(job = %id, org = %job.organization_id, trigger = job.trigger.as_str(), "training started");
    let result = trainer.train_as(&job.organization_id, &job.request, job.trigger);
    let done = update(table, id, |j| {
        j.completed_at = Some(now_ms());
        match &result {
            Ok(o) => {
                j.status = o.status.clone();
                j.version = Some(o.version.clone());
                j.deployed = Some(o.deployed);
                j.metrics = Some(o.metrics.clone());
                j.error = o.reason.clone();
            }
            Err(e) => {
                j.status = if crate::training::python::stopping() {
                    "INTERRUPTED"
                } else {
                    "FAILED"
                }
                .into();
                j.error = Some(format!("{e:#}"));
            }
        }
    })
    .unwrap_or(job);
    let outcome = done.status.to_ascii_lowercase();
    runs.with_label_values(&[done.trigger.as_str(), &outcome])
        .inc();
    match &result {
        Ok(_) => {
            tracing::info!(job = %id, org = %done.organization_id, status = %done.status, version = ?done.version, "training finished")
        }
        Err(e) => {
            tracing::error!(job = %id, org = %done.organization_id, error = format!("{e:#}"), "training failed")
        }
    }
    if let Err(e) = audit.record(
        now_ms(),
        &done.requested_by,
        "system",
        Some(&done.organization_id),
        "ml.train.done",
        if result.is_ok() { "ok" } else { "error" },
        serde_json::json!({"jobId": done.id, "status": done.status, "trigger": done.trigger,
            "attempt": done.attempt, "version": done.version, "deployed": done.deployed, "error": done.error}),
    ) {
        tracing::error!(error = %e, "cannot write the audit log");
    }
    if done.status == "FAILED"
        && done.trigger == Trigger::Schedule
        && done.attempt <= settings.max_retries
    {
        let wait = settings.backoff_for(done.attempt);
        tracing::warn!(org = %done.organization_id, attempt = done.attempt, retry_in_s = wait.as_secs(),
            "scheduled training failed; retrying after a backoff");
        let jobs = jobs.clone();
        let (org, request, attempt) = (
            done.organization_id.clone(),
            done.request.clone(),
            done.attempt,
        );
        let _ = std::thread::Builder::new()
            .name("training-retry".into())
            .spawn(move || {
                std::thread::sleep(wait);
                if let Some(j) = jobs.upgrade()
                    && !crate::training::python::stopping()
                    && let Err(e) =
                        j.submit_as(&org, "system", request, Trigger::Schedule, attempt + 1)
                {
                    tracing::warn!(org = %org, error = %e, "retry not queued");
                }
            });
    }
    Some(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn audit() -> AuditLog {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        AuditLog::open(&db).expect("audit")
    }

    fn runs() -> prometheus::IntCounterVec {
        prometheus::IntCounterVec::new(
            prometheus::Opts::new("runs_total", "runs"),
            &["trigger", "outcome"],
        )
        .expect("counter")
    }

    /// Fails every run after waiting for `gate` (one message per run).
    struct FailingTrainer {
        gate: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl Trainer for FailingTrainer {
        fn train(&self, org: &str, _req: &TrainRequest) -> anyhow::Result<TrainOutcome> {
            let _ = self.gate.lock().expect("gate").recv();
            anyhow::bail!("no history for {org}")
        }
    }

    fn wait_for(jobs: &Jobs, org: &str, done: impl Fn(&[TrainJob]) -> bool) -> Vec<TrainJob> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let j = jobs.of_org(org);
            if done(&j) {
                return j;
            }
            assert!(Instant::now() < deadline, "jobs never got there: {j:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_backoff_doubles_up_to_its_ceiling() {
        let s = QueueSettings::default();
        let secs = |n| s.backoff_for(n).as_secs();
        assert_eq!([secs(1), secs(2), secs(3), secs(6)], [60, 120, 240, 1920]);
        assert_eq!(secs(7), 3600);
        assert_eq!(secs(40), 3600);
    }

    #[test]
    fn without_a_trainer_nothing_is_queued() {
        let jobs = Jobs::start(None, audit(), runs());
        assert!(!jobs.available());
        let e = jobs.submit_as("acme", "ann", TrainRequest::default(), Trigger::Api, 1);
        assert_eq!(e, Err(SubmitError::Unavailable));
    }

    #[test]
    fn one_run_per_org_and_failed_scheduled_runs_are_retried() {
        let (open, gate) = std::sync::mpsc::channel();
        let trainer = Arc::new(FailingTrainer {
            gate: Mutex::new(gate),
        });
        let settings = QueueSettings {
            max_concurrent: 1,
            max_retries: 1,
            backoff: Duration::from_millis(10),
            backoff_max: Duration::from_millis(10),
        };
        let counter = runs();
        let jobs = Jobs::start_with(Some(trainer), audit(), counter.clone(), settings);
        let first = jobs
            .submit_as(
                "acme",
                "system",
                TrainRequest::default(),
                Trigger::Schedule,
                1,
            )
            .expect("queued");
        let busy = jobs.submit_as("acme", "ann", TrainRequest::default(), Trigger::Api, 1);
        assert!(
            matches!(&busy, Err(SubmitError::Busy { job, .. }) if *job == first.id),
            "{busy:?}"
        );
        // Another org is not held up by this one's run.
        let other = jobs.submit_as("beta", "bob", TrainRequest::default(), Trigger::Api, 1);
        assert!(other.is_ok(), "{other:?}");
        for _ in 0..3 {
            open.send(()).expect("gate");
        }
        // The failed scheduled run is queued again once (max_retries 1), as attempt 2.
        let acme = wait_for(&jobs, "acme", |j| {
            j.len() == 2 && j.iter().all(|j| j.status == "FAILED")
        });
        assert_eq!(
            acme.iter().map(|j| j.attempt).collect::<Vec<_>>(),
            [2, 1],
            "newest first"
        );
        assert_eq!(acme[1].error.as_deref(), Some("no history for acme"));
        wait_for(&jobs, "beta", |j| j.len() == 1 && j[0].status == "FAILED");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(jobs.of_org("acme").len(), 2, "no third attempt");
        assert_eq!(counter.with_label_values(&["schedule", "failed"]).get(), 2);
        assert_eq!(counter.with_label_values(&["api", "failed"]).get(), 1);
    }
}
