//! The embedded default, as `prognos run` runs it. The furnace simulator streams each
//! configured org's rows (in the org's own schema) at `[simulator].speed` times
//! real time into the whole dataflow (schema mapping, event time, features,
//! inference, rules, dedup); alerts go to the store (and the broadcast the
//! WebSocket bridge serves), optionally to JSON lines; predictions optionally to
//! JSON lines, and to the bridge while a client asked for them; orgs without a model
//! run on rules while their first model trains in the background; the API
//! serves health and metrics; Ctrl-C or SIGTERM stops everything cleanly
//! (sources end their partitions, the dataflow drains, sinks and store flush).

use crate::api::{ApiDeps, ApiSettings, ApiState, HistoryTrainer};
use crate::metrics::Metrics;
use crate::outputs::{AlertOutputs, LineSink, LivePrediction, PredictionFeed, PredictionOutput};
use crate::service::{self, ApiServer, Stored};
use crate::simulation::schemas_from_config;
use crate::status::PipelineStatus;
use crate::store::{AlertStore, Change};
use crate::training::bootstrap::{Bootstrap, orgs_without_model};
use crate::training::history::{self, HistoryWriter};
use crate::training::python::MlEnv;
use crate::training::registry::Registry;
use crate::{onnx_runtime, settings};
use anyhow::Context;
use prognos_connectors::file::JsonlSink;
use prognos_connectors::simulator::{SimConfig, SimulatorSource};
use prognos_dataflows::alerts::{AlertSettings, Mode};
use prognos_dataflows::config::Config;
use prognos_dataflows::models::activations::Activations;
use prognos_dataflows::models::cache::CacheLimits;
use prognos_dataflows::operators::inference::{InferenceContext, ScoredRow};
use prognos_dataflows::operators::ordered_sink::ordered_sink;
use prognos_dataflows::pipeline::alert_pipeline;
use prognos_dataflows::records::{Alert, DeadLetter};
use prognos_dataflows::stats::{Stats, outcome};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;

/// What the embedded default runs with (`prognos run`'s arguments).
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The configuration file; the built-in example when absent.
    pub config: Option<PathBuf>,
    /// Where the store, models and checkpoints live.
    pub data_dir: PathBuf,
    /// API address.
    pub listen: SocketAddr,
    /// Simulator speed factor (event time / wall time); `[simulator].speed` when absent.
    pub speed: Option<f64>,
    /// Stop after this many simulated hours; run until stopped when absent.
    pub hours: Option<f64>,
    /// Also write every alert record as JSON lines to this file (`-` = stdout).
    pub alerts_out: Option<PathBuf>,
    /// Write every prediction as JSON lines to this file (`-` = stdout).
    pub predictions_out: Option<PathBuf>,
    /// Do not train first models in the background (orgs without one stay on rules).
    pub no_first_models: bool,
}

/// How often the history's retention and compaction run.
const HISTORY_MAINTENANCE_EVERY: Duration = Duration::from_secs(600);

/// Longest stretch `run` simulates: its failure schedule is drawn up front.
const MAX_RUN_MS: i64 = 365 * 86_400_000;

/// Start the embedded default and block until Ctrl-C (or `--hours` of event time).
pub fn serve(opts: RunSettings) -> anyhow::Result<()> {
    let loaded = settings::load(opts.config.as_deref())?;
    tracing::info!(config = %loaded.origin, orgs = loaded.config.orgs.len(), "configuration loaded");
    for o in &loaded.overrides {
        tracing::info!(variable = %o, "configuration key overridden from the environment");
    }
    let (config, document) = (loaded.config, loaded.effective);
    let ort = onnx_runtime::init()?;
    tracing::info!(library = %ort.located.path.display(), via = ort.located.how, "ONNX Runtime loaded");
    let Stored {
        registry,
        store,
        config,
    } = service::open_store(&opts.data_dir, config, "service")?;
    let (changes, _) = tokio::sync::broadcast::channel::<Change>(4096);
    // Rows are scored in batches of up to `max_batch_rows` per worker: room for
    // a few batches before a client that does not keep up is closed.
    let (predictions, _) = tokio::sync::broadcast::channel::<Arc<LivePrediction>>(
        (4 * config.runtime.max_batch_rows).max(4096),
    );

    let metrics = Metrics::new();
    metrics.init_orgs(config.orgs.keys());
    metrics
        .build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION"), onnx_runtime::EXPECTED_VERSION])
        .set(1);
    let ready = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));

    let (rt, listener) = service::bind_api(opts.listen)?;
    // The live activation log: the dataflow scores with it, deploy and rollback
    // (CLI-free, through the API) append to it.
    let live = Arc::new(registry.live_log()?);
    let pipeline = Arc::new(PipelineStatus::default());
    // Every mapped row goes to the org's history (what training reads).
    let history_root = history::root_for(&config, &opts.data_dir)?;
    let history = Arc::new(Mutex::new(
        HistoryWriter::open(
            &history_root,
            &history::wal_dir_for(&opts.data_dir, "run"),
            &config,
            history::settings_of(&config),
        )
        .with_context(|| format!("cannot open the history in {}", history_root.display()))?,
    ));
    let seal: Arc<dyn Fn() + Send + Sync> = {
        let h = history.clone();
        Arc::new(move || {
            if let Err(e) = h.lock().unwrap_or_else(|e| e.into_inner()).close() {
                tracing::error!(error = %e, "cannot close the history's open segments before training");
            }
        })
    };
    let api_state = ApiState::open(ApiDeps {
        metrics: metrics.clone(),
        ready: ready.clone(),
        registry: registry.clone(),
        store: store.clone(),
        changes: changes.clone(),
        predictions: Some(predictions.clone()),
        live: live.clone(),
        thresholds_live: true,
        orgs: config.orgs.keys().cloned().collect(),
        data_dir: opts.data_dir.clone(),
        trainer: Some(Arc::new(HistoryTrainer {
            config: config.clone(),
            document: document.clone(),
            data_dir: opts.data_dir.clone(),
            registry: registry.clone(),
            live: live.clone(),
            store: store.clone(),
            stop: stop.clone(),
            seal_history: Some(seal),
        })),
        pipeline: pipeline.clone(),
        cluster: None,
        config: Some(config.clone()),
        settings: ApiSettings::from_env(),
    })
    .context("cannot start the API")?;
    let training_runs = api_state.training_runs();
    let api_server = ApiServer::start(
        &rt,
        listener,
        api_state,
        &config,
        &opts.data_dir,
        stop.clone(),
    )?;
    service::stop_on_signal(stop.clone(), "stopping after the current batch");

    let speed = opts.speed.unwrap_or(config.simulator.speed);
    anyhow::ensure!(
        speed.is_finite() && speed > 0.0,
        "--speed must be > 0, got {speed}"
    );
    let duration_ms = match opts.hours {
        Some(h) if h.is_finite() && h > 0.0 => ((h * 3_600_000.0) as i64).min(MAX_RUN_MS),
        Some(h) => anyhow::bail!("--hours must be > 0, got {h}"),
        None => MAX_RUN_MS,
    };
    let services = Services {
        history,
        history_root,
        document,
        registry,
        store: store.clone(),
        changes,
        predictions,
        live,
        pipeline,
        training_runs,
    };
    let result = run_pipeline(
        &config,
        &opts,
        speed,
        duration_ms,
        &metrics,
        &stop,
        &ready,
        &services,
    );
    stop.store(true, Ordering::Release);
    let children = crate::training::pipeline::stop_training(Duration::from_secs(10));
    if children > 0 {
        tracing::info!(
            children,
            "training stopped: its runs are recorded as INTERRUPTED"
        );
    }
    if let Err(e) = store.flush() {
        tracing::error!(error = %e, "cannot flush the store");
    }

    api_server.stop(&rt);
    tracing::info!("stopped");
    result
}

/// What the pipeline delivers into, owned by the process.
struct Services {
    history: Arc<Mutex<HistoryWriter>>,
    history_root: history::HistoryStore,
    document: toml::Table,
    registry: Arc<Registry>,
    store: AlertStore,
    changes: tokio::sync::broadcast::Sender<Change>,
    predictions: tokio::sync::broadcast::Sender<Arc<LivePrediction>>,
    live: Arc<Activations>,
    pipeline: Arc<PipelineStatus>,
    training_runs: prometheus::IntCounterVec,
}

/// The embedded pipeline: simulator partitions (one per org) spread over the
/// timely workers, the whole dataflow, alerts to the store, dead letters to
/// `<data-dir>/dead_letters.jsonl`; first models train in the background.
/// Blocks until the simulated range ends or `stop` is set, updating metrics.
#[allow(clippy::too_many_arguments)]
fn run_pipeline(
    config: &Config,
    opts: &RunSettings,
    speed: f64,
    duration_ms: i64,
    metrics: &Metrics,
    stop: &Arc<AtomicBool>,
    ready: &AtomicBool,
    services: &Services,
) -> anyhow::Result<()> {
    let schemas = schemas_from_config(config)?;
    let now = chrono::Utc::now().timestamp_millis();
    let interval = config.simulator.interval_ms as i64;
    let sim = SimConfig {
        machines_per_org: config.simulator.machines_per_org,
        start_ms: now - now.rem_euclid(interval),
        duration_ms,
        interval_ms: interval,
        seed: config.simulator.seed,
        failure_rate_per_machine_day: config.simulator.failure_rate_per_machine_day,
        ..SimConfig::default()
    };
    sim.validate()?;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 2);
    tracing::info!(
        orgs = schemas.len(),
        machines_per_org = sim.machines_per_org,
        interval_ms = sim.interval_ms,
        workers,
        "simulator started: {} furnaces, one simulated hour every {:.0} s",
        schemas.len() as u64 * sim.machines_per_org as u64,
        3600.0 / speed
    );
    let stats = Arc::new(Stats::default());
    let clock = Arc::new(AtomicI64::new(sim.start_ms));
    // Models: the registry's activation log decides which version scores each row.
    let registry = &services.registry;
    let activations = services.live.clone();
    for org in config.orgs.keys() {
        match registry.active(org)? {
            Some(v) => tracing::info!(org = %org, version = %v, "scoring with the active model"),
            None => tracing::info!(org = %org, "no model yet: rules only"),
        }
    }
    let ort = onnx_runtime::init()?;
    let ctx = InferenceContext {
        env: Some(ort.environment),
        source: None,
        root: Arc::new(opts.data_dir.join("models")),
        limits: CacheLimits::from_config(&config.runtime),
        shared_cache: Default::default(),
        activations: activations.clone(),
        orgs: InferenceContext::orgs_from(config),
        max_batch_rows: config.runtime.max_batch_rows,
        stats: stats.clone(),
        cache_stats: Arc::default(),
        clock: prognos_dataflows::operators::inference::system_clock(),
    };
    let cache_stats = ctx.cache_stats.clone();
    let (history, history_root) = (&services.history, &services.history_root);
    let dead_path = opts.data_dir.join("dead_letters.jsonl");
    let dead_sink = Arc::new(Mutex::new(Some(JsonlSink::create(&dead_path)?)));
    let failures = metrics.simulated_failures.clone();
    for s in &schemas {
        for c in &s.component_names {
            failures.with_label_values(&[s.org_id.as_str(), c.as_str()]);
        }
    }
    let live_start_ms = sim.start_ms;
    let mut settings = AlertSettings::from_config(config, Mode::Live)?;
    // Threshold changes made through the API reach the alerts operator here.
    settings.live = Some(activations.clone());
    let alerts_out = AlertOutputs {
        store: services.store.clone(),
        changes: services.changes.clone(),
        jsonl: match &opts.alerts_out {
            Some(p) => Some(Arc::new(Mutex::new(LineSink::open(p)?))),
            None => None,
        },
        metrics: metrics.clone(),
    };
    let names = Arc::new(
        config
            .orgs
            .iter()
            .map(|(id, o)| (id.clone(), o.feature_names()))
            .collect::<HashMap<_, _>>(),
    );
    let predictions_out = match &opts.predictions_out {
        Some(p) => Some(PredictionOutput {
            sink: Arc::new(Mutex::new(LineSink::open(p)?)),
            names: names.clone(),
        }),
        None => None,
    };
    let feed = PredictionFeed {
        tx: services.predictions.clone(),
        names,
    };
    let (cfg2, stats2, stop2, clock2, sink2, ctx2, history2) = (
        config.clone(),
        stats.clone(),
        stop.clone(),
        clock.clone(),
        dead_sink.clone(),
        ctx,
        history.clone(),
    );
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let mine: Vec<u32> = (0..schemas.len() as u32)
            .filter(|p| *p as usize % peers == index)
            .collect();
        let failures = failures.clone();
        let source = SimulatorSource::new(
            &sim,
            &schemas,
            &mine,
            speed,
            stop2.clone(),
            clock2.clone(),
            Box::new(move |e| {
                tracing::info!(org = %e.organization_id, machine = %e.machine_id, component = %e.component,
                    "simulated failure begins (ground truth)");
                failures.with_label_values(&[&e.organization_id, &e.component]).inc();
            }),
        );
        let source = match source {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the simulator");
                return;
            }
        };
        let (cfg, stats, sink, ctx) = (cfg2.clone(), stats2.clone(), sink2.clone(), ctx2.clone());
        let history = history2.clone();
        let (settings, alerts_out, predictions_out, feed) = (
            settings.clone(),
            alerts_out.clone(),
            predictions_out.clone(),
            feed.clone(),
        );
        worker.dataflow::<u64, _, _>(move |scope| {
            let out = alert_pipeline(scope, &cfg, Box::new(source), stats, ctx, settings);
            out.alerts.sink(Pipeline, "AlertOutputs", move |(input, _)| {
                input.for_each(|_, batch: &mut Vec<Alert>| alerts_out.deliver(batch));
            });
            out.mapped.sink(Pipeline, "History", move |(input, _)| {
                input.for_each(|_, batch: &mut Vec<prognos_dataflows::records::CanonicalRow>| {
                    let mut w = history.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = w.write(batch) {
                        tracing::error!(error = %e, rows = batch.len(), "cannot append rows to the history");
                    }
                });
            });
            out.scored.sink(Pipeline, "Predictions", move |(input, _)| {
                input.for_each(|_, batch: &mut Vec<ScoredRow>| {
                    if let Some(p) = &predictions_out {
                        p.deliver(batch);
                    }
                    feed.deliver(batch);
                });
            });
            let dead = out.dead;
            ordered_sink(
                dead,
                "DeadLetters",
                |_: &DeadLetter| 0,
                |a: &DeadLetter, b: &DeadLetter| (a.partition, a.offset).cmp(&(b.partition, b.offset)),
                move |batch, _| {
                    let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                    let Some(s) = s.as_mut() else { return };
                    for d in batch {
                        if let Err(e) = s.write(d) {
                            tracing::error!(error = %e, "cannot write a dead letter");
                        }
                    }
                },
            );
        });
    })
    .map_err(|e| anyhow::anyhow!("cannot start timely workers: {e}"))?;
    services
        .pipeline
        .start(chrono::Utc::now().timestamp_millis(), config.orgs.keys());
    ready.store(true, Ordering::Release);
    start_first_models(config, opts, services, &activations, live_start_ms, stop)?;

    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(guards.join());
    });
    let mut seen: BTreeMap<(String, String), u64> = BTreeMap::new();
    // Model loads go to the audit log once (one cache per process: one sequence).
    let audit = crate::auth::AuditLog::open(&services.registry.db())?;
    let mut audited_loads = 0u64;
    let mut last_status = Instant::now();
    let mut last_maintenance = Instant::now();
    let results = loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(r) => break r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => anyhow::bail!("timely workers vanished: {e}"),
        }
        if let Err(e) = history.lock().unwrap_or_else(|e| e.into_inner()).flush() {
            tracing::error!(error = %e, "cannot flush the history");
        }
        if last_maintenance.elapsed() >= HISTORY_MAINTENANCE_EVERY {
            last_maintenance = Instant::now();
            match history::maintain(config, history_root) {
                Ok((0, 0)) => {}
                Ok((removed, merged)) => tracing::info!(
                    days_removed = removed,
                    segments_merged = merged,
                    "history maintained"
                ),
                Err(e) => tracing::warn!(error = %e, "history maintenance failed (will retry)"),
            }
        }
        metrics.publish_stats(&stats, &mut seen);
        let caches = cache_stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        metrics.publish_cache(&caches);
        audited_loads = audit_new_loads(&audit, &caches, audited_loads, "run");
        let t = clock.load(Ordering::Relaxed);
        for org in config.orgs.keys() {
            metrics.source_event_time.with_label_values(&[org]).set(t);
        }
        let event_time: BTreeMap<String, i64> =
            config.orgs.keys().map(|o| (o.clone(), t)).collect();
        services.pipeline.update(
            chrono::Utc::now().timestamp_millis(),
            &seen,
            &event_time,
            &caches,
        );
        if last_status.elapsed() >= Duration::from_secs(10) {
            let featured: u64 = seen
                .iter()
                .filter(|((_, o), _)| o == outcome::FEATURED)
                .map(|(_, v)| v)
                .sum();
            tracing::info!(
                event_time = %prognos_dataflows::time::format_rfc3339_ms(t),
                rows_featured = featured,
                "pipeline running"
            );
            last_status = Instant::now();
        }
    };
    metrics.publish_stats(&stats, &mut seen);
    {
        let mut w = history.lock().unwrap_or_else(|e| e.into_inner());
        w.close()
            .context("cannot close the history's open segments")?;
        tracing::info!(rows = w.rows, segments = w.segments, dir = %history_root.display(), "history closed");
    }
    for r in results {
        if let Err(e) = r {
            anyhow::bail!("a timely worker failed: {e}");
        }
    }
    let dead = dead_sink.lock().unwrap_or_else(|e| e.into_inner()).take();
    let n = match dead {
        Some(d) => d.finish()?,
        None => 0,
    };
    if !stop.load(Ordering::Acquire) {
        tracing::info!("simulated range complete");
    }
    tracing::info!(dead_letters = n, file = %dead_path.display(), "pipeline drained");
    Ok(())
}

/// Audit the loads in `caches`' logs after sequence number `after`; the last
/// sequence number audited.
pub(crate) fn audit_new_loads(
    audit: &crate::auth::AuditLog,
    caches: &BTreeMap<usize, prognos_dataflows::models::CacheStats>,
    after: u64,
    source: &str,
) -> u64 {
    let new: Vec<_> = caches
        .values()
        .flat_map(|c| c.load_log.iter())
        .filter(|r| r.seq > after)
        .cloned()
        .collect();
    crate::auth::audit::record_model_loads(audit, &new, source);
    new.iter().map(|r| r.seq).max().unwrap_or(after)
}

/// Train first models in the background for orgs that have none.
fn start_first_models(
    config: &Config,
    opts: &RunSettings,
    services: &Services,
    live: &Arc<Activations>,
    live_start_ms: i64,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let orgs = orgs_without_model(config, &services.registry)?;
    if orgs.is_empty() {
        return Ok(());
    }
    if opts.no_first_models || config.simulator.first_model_days <= 0.0 {
        tracing::info!(orgs = ?orgs, "first models disabled: these orgs stay on rules until `prognos train`");
        return Ok(());
    }
    if let Err(e) = MlEnv::locate() {
        tracing::warn!(error = %e, "cannot train first models (no training environment): rules only");
        return Ok(());
    }
    let job = Bootstrap {
        config: config.clone(),
        document: services.document.clone(),
        data_dir: opts.data_dir.clone(),
        registry: services.registry.clone(),
        live: live.clone(),
        store: services.store.clone(),
        live_start_ms,
        stop: stop.clone(),
        runs: Some(services.training_runs.clone()),
        audit: crate::auth::AuditLog::open(&services.registry.db())?,
    };
    std::thread::Builder::new()
        .name("first-models".into())
        .spawn(move || job.run(orgs))
        .context("cannot start the first-model trainer")?;
    Ok(())
}
