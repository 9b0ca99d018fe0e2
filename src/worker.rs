//! One process of the cluster, as `prognos worker` runs it. Its timely workers read their
//! share of the SCADA topic (partition `p` belongs to global worker
//! `p % total_workers`, assigned explicitly), run the whole dataflow, and write
//! alert records to the alerts topic (dead letters and predictions to their
//! topics when asked).
//!
//! Recovery (ARCHITECTURE.md, `crate::recovery`): every `--checkpoint-ms` the
//! process records, in its own sled under `<data-dir>/worker-<process>/`, the
//! durable output frontier F and where to resume from; a restart replays from
//! there, drops everything below F, and skips records already in the alerts
//! topic: nothing lost, nothing twice.
//!
//! The control topic (the controller publishes it, see `crate::control`)
//! brings model activations and prediction threshold changes, applied live,
//! and organization configurations, laid over the file's at start. Model files
//! are fetched from the controller's API with `--controller-url` (checked and
//! kept in `<data-dir>/models`, see `crate::training::shipping`); without it they
//! must already be in `<data-dir>/models`.

use crate::control::{ControlFollower, ControlRecord};
use crate::heartbeat::Heartbeat;
use crate::metrics::Metrics;
use crate::recovery::{self, CheckpointStore, Resume, SkipSet};
use crate::service;
use crate::status::PipelineStatus;
use crate::training::history::{self, HistoryWriter};
use crate::training::shipping::{FetchMetrics, HttpModelSource};
use crate::{onnx_runtime, settings};
use anyhow::Context;
use prognos_connectors::kafka::{
    KafkaClient, KafkaSource, KafkaSourceConfig, Lag, OffsetTracker, RecordProducer, admin,
};
use prognos_dataflows::alerts::{AlertSettings, Mode};
use prognos_dataflows::models::activations::Activations;
use prognos_dataflows::models::cache::CacheLimits;
use prognos_dataflows::models::cache::ModelSource;
use prognos_dataflows::operators::flushing_sink::flushing_sink;
use prognos_dataflows::operators::inference::{InferenceContext, ScoredRow};
use prognos_dataflows::pipeline::alert_pipeline;
use prognos_dataflows::records::{Alert, DeadLetter};
use prognos_dataflows::stats::Stats;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Concatenate, Probe};

/// What a worker process runs with (`prognos worker`'s arguments).
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The configuration file; the built-in example when absent.
    pub config: Option<PathBuf>,
    /// Where this process keeps its checkpoints (`worker-<process>/`) and finds models.
    pub data_dir: PathBuf,
    /// Kafka brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The SCADA topic (key = org id; JSON rows).
    pub topic: String,
    /// Where alert records go (key = org id; JSON).
    pub alerts_topic: String,
    /// Also write dead letters (bad or late rows, with the reason) to this topic.
    pub dead_letters_topic: Option<String>,
    /// Also write every prediction to this topic (one record per scored row).
    pub predictions_topic: Option<String>,
    /// Model activations, threshold changes and org configurations published by
    /// the controller (compacted).
    pub control_topic: String,
    /// Process what the topic holds now, then stop (a batch run), instead of
    /// following the topic until stopped.
    pub until_end: bool,
    /// How often to checkpoint (ms).
    pub checkpoint_ms: u64,
    /// Ignore any checkpoint and start every partition from the beginning.
    pub from_beginning: bool,
    /// Fetch model versions from this controller's API (`http://host:port`);
    /// without it `<data-dir>/models` must already hold them.
    pub controller_url: Option<String>,
    /// The token the controller's `/api/cluster` routes want.
    pub cluster_token: Option<String>,
    /// Serve `/metrics`, `/healthz` and `/readyz` here; none when absent.
    pub metrics_listen: Option<SocketAddr>,
    /// timely's own arguments: `-w THREADS -n PROCESSES -p INDEX -h HOSTFILE`.
    pub timely: Vec<String>,
}

/// Run a worker process until the input ends (`--until-end`) or Ctrl-C/SIGTERM.
pub fn serve(opts: WorkerSettings) -> anyhow::Result<()> {
    let config = settings::load(opts.config.as_deref())?.config;
    let timely_config = timely::Config::from_args(opts.timely.iter().cloned())
        .map_err(|e| anyhow::anyhow!("timely arguments after `--`: {e}"))?;
    let (threads, process) = match &timely_config.communication {
        timely::CommunicationConfig::Thread => (1, 0),
        timely::CommunicationConfig::Process(n) | timely::CommunicationConfig::ProcessBinary(n) => {
            (*n, 0)
        }
        timely::CommunicationConfig::Cluster {
            threads, process, ..
        } => (*threads, *process),
    };
    let client = KafkaClient::new(&opts.brokers);
    let wait = Duration::from_secs(120);

    // The control topic as it is now: stored org configurations are laid over
    // the file's before anything is built; activations and threshold changes
    // already published apply before the first row. A thread follows the rest.
    let activations = Arc::new(Activations::default());
    admin::create_topic(&client, &opts.control_topic, 1, true, wait)?;
    let (control, control_next) = read_control(
        &client,
        &opts.control_topic,
        config,
        activations.clone(),
        wait,
    )?;
    let config = control.config().clone();

    // This process's checkpoints.
    let store = CheckpointStore::open(&opts.data_dir, process, &opts.topic, &opts.alerts_topic)?;
    let processes = timely_processes(&timely_config);
    let fronts_topic = recovery::fronts_topic(&opts.alerts_topic);
    admin::create_topic(&client, &fronts_topic, 1, true, wait)?;
    let resume = if opts.from_beginning {
        Resume::default()
    } else {
        recovery::plan_resume(&client, &fronts_topic, &store, process, processes, wait)?
    };
    let margin = config.replay_margin_ms();
    // Records already in the alerts topic at or after where this process resumes.
    let resume_frontier = resume.frontier;
    // Without a checkpoint, the whole topic: an earlier run may have written
    // records before its first checkpoint.
    let from = resume
        .checkpoint
        .as_ref()
        .map(|c| c.alerts_from.clone())
        .unwrap_or_default();
    admin::create_topic(&client, &opts.alerts_topic, 1, false, wait)?;
    let skip = SkipSet::from_records(&admin::read_all(&client, &opts.alerts_topic, &from, wait)?);
    match &resume.checkpoint {
        Some(c) => tracing::info!(
            frontier = %prognos_dataflows::time::format_rfc3339_ms(resume.frontier as i64),
            checkpoint = %prognos_dataflows::time::format_rfc3339_ms(c.frontier as i64),
            partitions = c.offsets.len(),
            already_written = skip.len(),
            "resuming from the checkpoint"
        ),
        None if resume.frontier > 0 => tracing::warn!(
            frontier = resume.frontier,
            already_written = skip.len(),
            "no checkpoint of this process at or before the cluster's frontier: replaying every partition from the beginning"
        ),
        None => {
            tracing::info!(topic = %opts.topic, already_written = skip.len(), "no checkpoint: reading every partition from the beginning")
        }
    }
    let resume = resume.checkpoint;
    let start_offsets = resume
        .as_ref()
        .map(|c| c.offsets.clone())
        .unwrap_or_default();

    let alerts = Arc::new(RecordProducer::new(&client, &opts.alerts_topic)?);
    let fronts = Arc::new(RecordProducer::new(&client, &fronts_topic)?);
    let dead = match &opts.dead_letters_topic {
        Some(t) => {
            admin::create_topic(&client, t, 1, false, wait)?;
            Some(Arc::new(RecordProducer::new(&client, t)?))
        }
        None => None,
    };
    let predictions = match &opts.predictions_topic {
        Some(t) => {
            admin::create_topic(&client, t, 1, false, wait)?;
            Some(Arc::new(RecordProducer::new(&client, t)?))
        }
        None => None,
    };

    let stop = Arc::new(AtomicBool::new(false));

    let ort = onnx_runtime::init()?;
    let stats = Arc::new(Stats::default());
    let metrics = Metrics::new();
    let source = match &opts.controller_url {
        Some(url) => {
            let token = opts.cluster_token.as_deref().context(
                "--controller-url needs the cluster token (--cluster-token or PROGNOS_CLUSTER_TOKEN)",
            )?;
            let fetch = FetchMetrics::register(&metrics.registry)?;
            let src: Arc<dyn ModelSource> =
                Arc::new(HttpModelSource::new(url, token, fetch, stop.clone())?);
            tracing::info!(controller = %url, "model versions come from the controller");
            Some(src)
        }
        None => None,
    };
    let models_dir = opts.data_dir.join("models");
    let ctx = InferenceContext {
        env: Some(ort.environment),
        source: source.clone(),
        root: Arc::new(models_dir.clone()),
        limits: CacheLimits::from_config(&config.runtime),
        shared_cache: Default::default(),
        activations: activations.clone(),
        orgs: InferenceContext::orgs_from(&config),
        max_batch_rows: config.runtime.max_batch_rows,
        stats: stats.clone(),
        cache_stats: Arc::default(),
        clock: prognos_dataflows::operators::inference::system_clock(),
    };
    let settings = AlertSettings::from_config(&config, Mode::Stream)?;
    metrics.init_orgs(config.orgs.keys());
    let kafka = KafkaMetrics::register(&metrics.registry)?;
    follow_control(
        &client,
        &opts.control_topic,
        control,
        control_next,
        kafka.restart_pending.clone(),
        &stop,
        source.map(|s| (s, models_dir.clone())),
    )?;
    let ready = Arc::new(AtomicBool::new(false));
    if let Some(addr) = opts.metrics_listen {
        service::serve_probes(addr, metrics.clone(), ready.clone())?;
    }
    // This process's pipeline, for the controller's health routes.
    let pipeline = Arc::new(PipelineStatus::default());
    let cache_stats = ctx.cache_stats.clone();
    let (org_names, stop_end): (Vec<String>, _) =
        (config.orgs.keys().cloned().collect(), stop.clone());
    let heartbeat = match (&opts.controller_url, &opts.cluster_token) {
        (Some(url), Some(token)) => Some(
            Heartbeat {
                url: url.clone(),
                token: token.clone(),
                process,
                processes,
                threads,
                pipeline: pipeline.clone(),
                cache: cache_stats.clone(),
                ready: ready.clone(),
                stop: stop.clone(),
            }
            .start()?,
        ),
        _ => None,
    };
    let tracker = Arc::new(OffsetTracker::default());
    let lag: Lag = Arc::default();
    let names: Arc<HashMap<String, Vec<String>>> = Arc::new(
        config
            .orgs
            .iter()
            .map(|(id, o)| (id.clone(), o.feature_names()))
            .collect(),
    );
    let skip = Arc::new(Mutex::new(skip));
    // Every mapped row goes to the org's history, durable before a checkpoint
    // passes it (the history sink is one of the sinks the checkpoint waits for).
    let history_root = history::root_for(&config, &opts.data_dir)?;
    let history = Arc::new(Mutex::new(
        HistoryWriter::open(
            &history_root,
            &history::wal_dir_for(&opts.data_dir, &format!("worker-{process}")),
            &config,
            history::settings_of(&config),
        )
        .with_context(|| format!("cannot open the history in {}", history_root.display()))?,
    ));
    let history_end = history.clone();
    // Segments that reached their age are sealed (and so readable by the
    // controller's training) even while no row arrives.
    {
        let (history, stop) = (history.clone(), stop.clone());
        std::thread::Builder::new()
            .name("history-seal".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_secs(1));
                    if let Err(e) = history.lock().unwrap_or_else(|e| e.into_inner()).flush() {
                        tracing::warn!(error = %e, "cannot seal the history's due segments (retrying)");
                    }
                }
            })?;
    }
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let skipped = Arc::new(std::sync::atomic::AtomicU64::new(0));

    service::stop_on_signal(
        stop.clone(),
        "ending the partitions, flushing, checkpointing",
    );

    let source_cfg = KafkaSourceConfig {
        client: client.clone(),
        topic: opts.topic.clone(),
        index: 0,
        workers: 1,
        start: start_offsets,
        stop_at_end: opts.until_end,
        refresh: Duration::from_secs(2),
    };
    let every = Duration::from_millis(opts.checkpoint_ms.max(10));
    // Partitions this process has not written to since the restart keep the
    // previous checkpoint's starting points.
    let prev_alerts = resume
        .as_ref()
        .map(|c| c.alerts_from.clone())
        .unwrap_or_default();
    let store2 = store.clone();
    let t0 = Instant::now();
    let (written2, skipped2) = (written.clone(), skipped.clone());
    let (lag_m, alerts_m, stats_m) = (lag.clone(), alerts.clone(), stats.clone());
    let rows_in = Arc::new(RowClock::new());
    let durable = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let rows_in2 = rows_in.clone();
    let guards = timely::execute(timely_config, move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let source = KafkaSource::new(
            KafkaSourceConfig {
                index,
                workers: peers,
                ..source_cfg.clone()
            },
            tracker.clone(),
            lag.clone(),
            wait,
        );
        let source = match source {
            Ok(s) => StoppableSource {
                inner: s,
                stop: stop.clone(),
                rows: rows_in2.clone(),
                durable: durable.clone(),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot read the SCADA topic");
                return;
            }
        };
        let (sink_alerts, dead, predictions) = (alerts.clone(), dead.clone(), predictions.clone());
        let (history_w, history_f) = (history.clone(), history.clone());
        let (skip, written, skipped, names) = (
            skip.clone(),
            written2.clone(),
            skipped2.clone(),
            names.clone(),
        );
        let (cfg, stats, ctx, settings) =
            (config.clone(), stats.clone(), ctx.clone(), settings.clone());
        let probe = worker.dataflow::<u64, _, _>(move |scope| {
            let out = alert_pipeline(scope, &cfg, Box::new(source), stats, ctx, settings);
            let alerts = sink_alerts;
            let a2 = alerts.clone();
            let mut durable = vec![flushing_sink(
                out.alerts,
                "AlertsToKafka",
                Duration::from_millis(100),
                move |t, batch: &mut Vec<Alert>| {
                    if t < resume_frontier {
                        return; // written before the checkpoint
                    }
                    let mut skip = skip.lock().unwrap_or_else(|e| e.into_inner());
                    for a in batch.drain(..) {
                        if skip.take(&a) {
                            skipped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        match serde_json::to_vec(&a) {
                            Ok(v) => {
                                alerts.send(a.organization_id.as_bytes(), &v, t);
                                written.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                tracing::error!(error = %e, id = %a.id, "cannot encode an alert")
                            }
                        }
                    }
                    alerts.service();
                },
                move || flush_ok(&a2),
            )];
            durable.push(flushing_sink(
                out.mapped,
                "History",
                Duration::from_millis(200),
                move |_t, batch: &mut Vec<prognos_dataflows::records::CanonicalRow>| {
                    let mut w = history_w.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = w.write(batch) {
                        tracing::error!(error = %e, rows = batch.len(), "cannot append rows to the history");
                    }
                },
                move || match history_f.lock().unwrap_or_else(|e| e.into_inner()).flush() {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "history not yet durable (retrying)");
                        false
                    }
                },
            ));
            if let Some(p) = dead {
                durable.push(topic_sink(
                    out.dead,
                    "DeadLettersToKafka",
                    p,
                    resume_frontier,
                    |d: &DeadLetter| {
                        let key = d.organization_id.clone().unwrap_or_default();
                        serde_json::to_vec(d).ok().map(|v| (key, v))
                    },
                ));
            }
            if let Some(p) = predictions {
                let empty = Vec::new();
                durable.push(topic_sink(
                    out.scored,
                    "PredictionsToKafka",
                    p,
                    resume_frontier,
                    move |r: &ScoredRow| {
                        let org = &r.row.organization_id;
                        let pred = r.to_prediction(names.get(org).unwrap_or(&empty), r.row.ts);
                        serde_json::to_vec(&pred).ok().map(|v| (org.clone(), v))
                    },
                ));
            }
            scope.concatenate(durable).probe().0
        });
        // The first worker of each process checkpoints for the process.
        let checkpointer = index % threads.max(1) == 0;
        let take_checkpoint = |f: u64| {
            recovery::checkpoint(
                &tracker,
                &alerts,
                &fronts,
                process,
                &prev_alerts,
                f,
                margin,
                &store2,
            )
        };
        let mut last = Instant::now();
        let mut last_frontier = None;
        while worker.step_or_park(Some(Duration::from_millis(50))) {
            if let Some(f) = probe.with_frontier(|f| f.first().copied()) {
                last_frontier = Some(f);
                durable.fetch_max(f, Ordering::AcqRel);
            }
            if checkpointer && last.elapsed() >= every {
                last = Instant::now();
                if let Some(f) = last_frontier {
                    take_checkpoint(f);
                }
            }
        }
        if checkpointer && let Some(f) = last_frontier {
            take_checkpoint(f);
        }
    })
    .map_err(|e| anyhow::anyhow!("cannot start timely workers: {e}"))?;
    tracing::info!(process, threads, "worker running");
    pipeline.start(now_ms(), &org_names);
    ready.store(true, Ordering::Release);
    let mut seen = BTreeMap::new();
    let mut last_log = Instant::now();
    service::join_workers(guards, Duration::from_millis(500), || {
        metrics.publish_stats(&stats_m, &mut seen);
        let caches = cache_stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        metrics.publish_cache(&caches);
        pipeline.update(now_ms(), &seen, &BTreeMap::new(), &caches);
        kafka.publish(&opts.topic, &lag_m, &alerts_m, &written, &skipped);
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = Instant::now();
            tracing::info!(
                alerts_written = written.load(Ordering::Relaxed),
                already_written = skipped.load(Ordering::Relaxed),
                seconds = t0.elapsed().as_secs(),
                "worker progress"
            );
        }
    })?;
    stop_end.store(true, Ordering::Release);
    if let Some(h) = heartbeat {
        let _ = h.join();
    }
    store.flush()?;
    history_end
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .close()
        .context("cannot close the history's open segments")?;
    let (rows, secs) = rows_in.rows_and_seconds();
    tracing::info!(
        alerts_written = written.load(Ordering::Relaxed),
        already_written = skipped.load(Ordering::Relaxed),
        rows,
        seconds = format!("{secs:.3}"),
        rows_per_s = format!("{:.0}", rows as f64 / secs.max(1e-9)),
        cpu_seconds = format!("{:.3}", cpu_seconds().unwrap_or(f64::NAN)),
        "worker stopped"
    );
    Ok(())
}

/// The worker's Kafka metrics (on top of the pipeline's, see README "Metrics").
struct KafkaMetrics {
    lag: prometheus::IntGaugeVec,
    sent: prometheus::IntGauge,
    delivered: prometheus::IntGauge,
    retried: prometheus::IntGauge,
    written: prometheus::IntGauge,
    skipped: prometheus::IntGauge,
    restart_pending: prometheus::IntGauge,
}

impl KafkaMetrics {
    fn register(r: &prometheus::Registry) -> anyhow::Result<KafkaMetrics> {
        let gauge = |name: &str, help: &str| -> anyhow::Result<prometheus::IntGauge> {
            let g = prometheus::IntGauge::new(name, help)?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let lag = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "prognos_kafka_consumer_lag_records",
                "Records between this worker's position and the end of each partition it owns.",
            ),
            &["topic", "partition"],
        )?;
        r.register(Box::new(lag.clone()))?;
        Ok(KafkaMetrics {
            lag,
            sent: gauge(
                "prognos_kafka_alert_records_sent",
                "Alert records handed to the producer since start.",
            )?,
            delivered: gauge(
                "prognos_kafka_alert_records_delivered",
                "Alert records the brokers acknowledged since start.",
            )?,
            retried: gauge(
                "prognos_kafka_alert_records_retried",
                "Alert record deliveries that failed and were sent again since start.",
            )?,
            written: gauge(
                "prognos_kafka_alert_records_written",
                "Alert records this process wrote since start.",
            )?,
            skipped: gauge(
                "prognos_kafka_alert_records_already_written",
                "Alert records skipped at a restart because the topic already had them.",
            )?,
            restart_pending: gauge(
                "prognos_worker_config_restart_pending",
                "Organizations whose configuration on the control topic changed in keys this worker applies only at its next start.",
            )?,
        })
    }

    fn publish(
        &self,
        topic: &str,
        lag: &Lag,
        alerts: &RecordProducer,
        written: &std::sync::atomic::AtomicU64,
        skipped: &std::sync::atomic::AtomicU64,
    ) {
        for (p, l) in lag.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            self.lag.with_label_values(&[topic, &p.to_string()]).set(*l);
        }
        let c = alerts.counts();
        self.sent.set(c.sent.load(Ordering::Relaxed) as i64);
        self.delivered
            .set(c.delivered.load(Ordering::Relaxed) as i64);
        self.retried.set(c.retried.load(Ordering::Relaxed) as i64);
        self.written.set(written.load(Ordering::Relaxed) as i64);
        self.skipped.set(skipped.load(Ordering::Relaxed) as i64);
    }
}

/// Records of `stream` to `producer`'s topic, keyed and encoded by `encode`,
/// durable behind a [`flushing_sink`]. Records at times before `resume` were
/// written before the checkpoint.
fn topic_sink<'s, D: Clone + 'static>(
    stream: timely::dataflow::Stream<'s, u64, Vec<D>>,
    name: &str,
    producer: Arc<RecordProducer>,
    resume: u64,
    encode: impl Fn(&D) -> Option<(String, Vec<u8>)> + 'static,
) -> timely::dataflow::Stream<'s, u64, Vec<()>> {
    let p2 = producer.clone();
    flushing_sink(
        stream,
        name,
        Duration::from_millis(200),
        move |t, batch: &mut Vec<D>| {
            if t < resume {
                return;
            }
            for d in batch.drain(..) {
                if let Some((key, v)) = encode(&d) {
                    producer.send(key.as_bytes(), &v, t);
                }
            }
            producer.service();
        },
        move || flush_ok(&p2),
    )
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Flush a producer for a sink: false (try again later) while the brokers are away.
fn flush_ok(p: &RecordProducer) -> bool {
    match p.flush(Duration::from_millis(500)) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, topic = p.topic(), "records not yet acknowledged (retrying)");
            false
        }
    }
}

fn timely_processes(c: &timely::Config) -> usize {
    match &c.communication {
        timely::CommunicationConfig::Cluster { addresses, .. } => addresses.len().max(1),
        _ => 1,
    }
}

/// The control topic up to its end now, and where to read on from.
fn read_control(
    client: &KafkaClient,
    topic: &str,
    config: prognos_dataflows::config::Config,
    activations: Arc<Activations>,
    wait: Duration,
) -> anyhow::Result<(ControlFollower, BTreeMap<i32, i64>)> {
    let now = admin::read_all(client, topic, &BTreeMap::new(), wait)?;
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut records = Vec::new();
    for r in &now {
        records.extend(parse_control(&r.payload));
        next.insert(r.partition, r.offset + 1);
    }
    let follower = ControlFollower::start(config, records, activations).with_context(|| {
        format!("the organization configurations on the control topic `{topic}` do not fit the configuration file")
    })?;
    if !now.is_empty() {
        tracing::info!(topic, records = now.len(), "control topic read");
    }
    Ok((follower, next))
}

/// Follow the control topic from `next` on a thread until `stop`.
fn follow_control(
    client: &KafkaClient,
    topic: &str,
    mut control: ControlFollower,
    mut next: BTreeMap<i32, i64>,
    restart_pending: prometheus::IntGauge,
    stop: &Arc<AtomicBool>,
    prefetch: Option<(Arc<dyn ModelSource>, std::path::PathBuf)>,
) -> anyhow::Result<()> {
    let (client, topic, stop) = (client.clone(), topic.to_string(), stop.clone());
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_secs(1));
                match admin::read_all(&client, &topic, &next, Duration::from_secs(10)) {
                    Ok(recs) => {
                        for r in &recs {
                            if let Some(c) = parse_control(&r.payload) {
                                // A newly activated version is fetched now, not
                                // when the first row needs it.
                                if let (ControlRecord::Activation(a), Some((src, dir))) =
                                    (&c, &prefetch)
                                    && let Some(v) = &a.version
                                {
                                    let (src, org, v) =
                                        (src.clone(), a.organization_id.clone(), v.clone());
                                    let dir = dir.join(&org).join(&v);
                                    std::thread::spawn(move || {
                                        let _ = src.ensure(&org, &v, &dir);
                                    });
                                }
                                control.apply(c);
                            }
                            next.insert(r.partition, r.offset + 1);
                        }
                        restart_pending.set(control.pending_restart().len() as i64);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the control topic (retrying)")
                    }
                }
            }
        })?;
    Ok(())
}

fn parse_control(value: &[u8]) -> Option<ControlRecord> {
    serde_json::from_slice::<ControlRecord>(value)
        .inspect_err(|e| tracing::warn!(error = %e, "unreadable control record skipped"))
        .ok()
}

/// Ends every partition when a shutdown is requested (so the dataflow drains
/// and the last checkpoint is taken), else reads as the inner source does.
struct StoppableSource {
    inner: KafkaSource,
    stop: Arc<AtomicBool>,
    rows: Arc<RowClock>,
    /// The durable output frontier the workers' probes last saw.
    durable: Arc<std::sync::atomic::AtomicU64>,
}

/// Rows read by this process, and when the first and the last arrived.
struct RowClock {
    t0: Instant,
    rows: std::sync::atomic::AtomicU64,
    first_ns: std::sync::atomic::AtomicU64,
    last_ns: std::sync::atomic::AtomicU64,
}

impl RowClock {
    fn new() -> RowClock {
        RowClock {
            t0: Instant::now(),
            rows: Default::default(),
            first_ns: std::sync::atomic::AtomicU64::new(u64::MAX),
            last_ns: Default::default(),
        }
    }

    fn add(&self, n: u64) {
        if n == 0 {
            return;
        }
        let now = self.t0.elapsed().as_nanos() as u64;
        self.rows.fetch_add(n, Ordering::Relaxed);
        self.first_ns.fetch_min(now, Ordering::Relaxed);
        self.last_ns.fetch_max(now, Ordering::Relaxed);
    }

    /// Rows, and seconds from the first row to now (the dataflow drained).
    fn rows_and_seconds(&self) -> (u64, f64) {
        let first = self.first_ns.load(Ordering::Relaxed);
        let now = self.t0.elapsed().as_nanos() as u64;
        let secs = if first == u64::MAX {
            0.0
        } else {
            now.saturating_sub(first) as f64 / 1e9
        };
        (self.rows.load(Ordering::Relaxed), secs)
    }
}

/// CPU time (user + system) of this process so far, from /proc/self/stat.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

impl prognos_dataflows::source::Source for StoppableSource {
    fn poll(
        &mut self,
        out: &mut Vec<prognos_dataflows::source::SourceEvent>,
        max_rows: usize,
    ) -> prognos_dataflows::source::SourceStatus {
        if self.stop.load(Ordering::Acquire) {
            return prognos_dataflows::source::SourceStatus::Finished;
        }
        let before = out.len();
        let status = self.inner.poll(out, max_rows);
        let rows = out[before..]
            .iter()
            .filter(|e| matches!(e, prognos_dataflows::source::SourceEvent::Row(_)))
            .count();
        self.rows.add(rows as u64);
        status
    }

    fn set_waker(&mut self, waker: prognos_dataflows::source::Waker) {
        self.inner.set_waker(waker)
    }

    /// At the end of a batch run, hold event time at the input's end until
    /// every record due before it is durable: the run then writes exactly the
    /// records due before the end frontier, whatever the scheduling (a shutdown
    /// releases at once; the restart continues from the checkpoint).
    fn hold_end(&mut self, end: u64) -> bool {
        !self.stop.load(Ordering::Acquire) && self.durable.load(Ordering::Acquire) < end
    }

    fn mapped(&mut self, pos: prognos_dataflows::records::SourcePosition, ts: Option<i64>) {
        self.inner.mapped(pos, ts)
    }
}
