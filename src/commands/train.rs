//! `prognos train` and `prognos models`: train an org's model version through the
//! training pipeline (`crate::training::pipeline`) from its stored history or
//! from files, and manage versions (list, show, activate, rollback).
//!
//! These commands open the registry in `--data-dir` directly; the store is
//! single-process. While `prognos run` or `prognos controller` runs on the data
//! dir, `prognos train` hands its run to the service (see `crate::api::local`);
//! `prognos models` wants the service stopped (its API has the same operations).

use crate::auth::audit::{self, AuditLog};
use crate::cli::{ConfigArg, DataDirArg};
use crate::settings;
use crate::store::AlertStore;
use crate::training::pipeline::{TrainContext, TrainSpec, TrainingData, Trigger, train};
use crate::training::registry::Registry;
use anyhow::Context;
use clap::{Args, Subcommand};
use prognos_dataflows::models::activations::Activations;
use std::path::{Path, PathBuf};

pub use crate::training::pipeline::{KEEP_VERSIONS, TrainOutcome};

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
    /// Raw history of the org (JSONL/CSV files in its own schema); without it,
    /// the org's stored history (`prognos history`).
    #[arg(long, num_args = 1.., value_name = "FILES")]
    pub input: Vec<PathBuf>,
    /// Days of stored history to train on (default `training.data_days`).
    #[arg(long, conflicts_with = "input")]
    pub days: Option<f64>,
    /// Failure events (JSONL: organizationId?, machineId, component, start,
    /// end?); labels are these with the org's work orders and the rising edges
    /// of its failure signals.
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
    // `--version` names the model version here, not the program's.
    #[command(disable_version_flag = true)]
    Show {
        /// Organization.
        #[arg(long)]
        org: String,
        /// Version.
        #[arg(long)]
        version: String,
    },
    /// Make a version active from now on (event time).
    // `--version` names the model version here, not the program's.
    #[command(disable_version_flag = true)]
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
    let store = data_dir.join("store");
    Registry::open(&store).with_context(|| {
        format!(
            "cannot open the store in {} (while `prognos run` or `prognos controller` runs on this data dir, train through its API: POST /api/ml/train)",
            store.display()
        )
    })
}

/// Run `prognos train`.
pub fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    let data_dir = &args.data_dir.data_dir;
    if let Some(service) = crate::api::local::running_service(data_dir) {
        return hand_over(&args, &service);
    }
    let loaded = settings::load(args.config.config.as_deref())?;
    let config = crate::orgs::effective_config(loaded.config, data_dir)?;
    let reg = registry(data_dir)?;
    let live = Activations::from_log(reg.activation_log()?);
    let store = AlertStore::open(&reg.db())?;
    let spec = TrainSpec {
        org: args.org.clone(),
        trigger: Trigger::Cli,
        data: if args.input.is_empty() {
            TrainingData::History { days: args.days }
        } else {
            TrainingData::Files {
                input: args.input.clone(),
            }
        },
        events: args.events.clone(),
        feedback: args.feedback.clone(),
        tune: args.tune,
        trials: args.trials,
        force: args.force,
        workers: args.workers,
        seed: args.seed,
    };
    let ctx = TrainContext {
        config: &config,
        document: &loaded.effective,
        data_dir,
        registry: &reg,
        live: &live,
        store: Some(&store),
        stop: None,
        seal_history: None,
    };
    let result = train(&ctx, &spec);
    let audit = AuditLog::open(&reg.db())?;
    let (outcome, detail) = match &result {
        Ok(o) => (
            "ok",
            serde_json::json!({"trigger": "cli", "status": o.status, "version": o.version,
                "deployed": o.deployed, "error": o.reason}),
        ),
        Err(e) => (
            "error",
            serde_json::json!({"trigger": "cli", "status": "FAILED", "error": format!("{e:#}")}),
        ),
    };
    audit.record(
        now_ms(),
        &audit::cli_actor(),
        audit::CLI_ROLE,
        Some(&args.org),
        "ml.train.done",
        outcome,
        detail,
    )?;
    let outcome = result?;
    println!("{}", serde_json::to_string_pretty(&outcome)?);
    Ok(())
}

/// The service running on the data dir trains instead (its store is locked):
/// the run is queued through its API with the local token, as the `cli`
/// trigger, and followed until it ends; the job is printed as
/// `/api/ml/status` lists it. The run uses the service's configuration.
fn hand_over(args: &TrainArgs, service: &crate::api::local::ServiceInfo) -> anyhow::Result<()> {
    let local_only = [
        (
            !args.input.is_empty(),
            "--input (import the files with `prognos history import` first)",
        ),
        (args.events.is_some(), "--events"),
        (args.feedback.is_some(), "--feedback"),
    ];
    if let Some((_, flag)) = local_only.iter().find(|(given, _)| *given) {
        anyhow::bail!(
            "the service (pid {}) runs on this data dir and trains for this command, without {flag}; stop it to use that option",
            service.pid
        );
    }
    eprintln!(
        "the service (pid {}, {}) runs on this data dir: it trains {} on its stored history",
        service.pid, service.url, args.org
    );
    let http = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let org: String = form_urlencoded::byte_serialize(args.org.as_bytes()).collect();
    let mut body = serde_json::json!({"tune": args.tune, "force": args.force, "seed": args.seed});
    if args.tune {
        body["trials"] = args.trials.into();
    }
    if let Some(d) = args.days {
        body["days"] = d.into();
    }
    let r = http
        .post(format!("{}/api/ml/train?org={org}", service.url))
        .bearer_auth(&service.token)
        .header(
            crate::api::local::OS_USER_HEADER,
            crate::auth::audit::os_user(),
        )
        .json(&body)
        .send()
        .with_context(|| format!("cannot reach the service at {}", service.url))?;
    let status = r.status();
    let job: serde_json::Value = r.json().context("the service's answer")?;
    if !status.is_success() {
        anyhow::bail!("the service refused the run ({status}): {job}");
    }
    let id = job["id"]
        .as_str()
        .context("the service's answer has no job id")?
        .to_string();
    eprintln!("queued as job {id}");
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let s: serde_json::Value = http
            .get(format!("{}/api/ml/status?org={org}", service.url))
            .bearer_auth(&service.token)
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.json())
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot follow job {id} at {} (did the service stop?): {e}",
                    service.url
                )
            })?;
        let Some(job) = s["jobs"]
            .as_array()
            .and_then(|j| j.iter().find(|j| j["id"] == id.as_str()))
        else {
            anyhow::bail!("the service no longer lists job {id} (was it restarted?)");
        };
        match job["status"].as_str() {
            Some("QUEUED" | "RUNNING") => continue,
            Some("FAILED" | "INTERRUPTED") => {
                println!("{}", serde_json::to_string_pretty(job)?);
                anyhow::bail!("training {}: {}", job["status"], job["error"]);
            }
            _ => {
                println!("{}", serde_json::to_string_pretty(job)?);
                return Ok(());
            }
        }
    }
}

/// Audit a `prognos models` change as `cli:<os user>`: `ok` with the
/// activation, or `error` with why it was refused.
fn audit_cli<T: serde::Serialize, E: std::fmt::Display>(
    reg: &Registry,
    org: &str,
    action: &str,
    result: &Result<T, E>,
    mut detail: serde_json::Value,
) -> anyhow::Result<()> {
    let outcome = match result {
        Ok(a) => {
            detail["activation"] = serde_json::to_value(a)?;
            "ok"
        }
        Err(e) => {
            detail["error"] = e.to_string().into();
            "error"
        }
    };
    AuditLog::open(&reg.db())?.record(
        now_ms(),
        &audit::cli_actor(),
        audit::CLI_ROLE,
        Some(org),
        action,
        outcome,
        detail,
    )?;
    Ok(())
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
            let a = reg.activate(&org, Some(&version), now_ms(), &live);
            audit_cli(
                &reg,
                &org,
                "ml.deploy",
                &a,
                serde_json::json!({"version": version}),
            )?;
            println!("{}", serde_json::to_string(&a?)?);
        }
        ModelsAction::Rollback { org } => {
            let a = reg.rollback(&org, now_ms(), &live);
            audit_cli(&reg, &org, "ml.rollback", &a, serde_json::json!({}))?;
            println!("{}", serde_json::to_string(&a?)?);
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
        let p =
            crate::training::pipeline::write_trainer_config(&loaded.effective, None, work.path())
                .unwrap();
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
