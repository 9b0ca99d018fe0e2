//! `prognos controller`: the cluster's control plane. It owns the product store
//! (sled is single-process), serves the REST/WebSocket API, trains and registers
//! models, consumes the alerts topic the workers write into the store (which
//! groups records into alerts and numbers every change for the WebSocket), and
//! publishes on the compacted control topic every worker reads: model
//! activations, prediction threshold changes (`PUT /api/orgs/{id}` applies them
//! live in the workers) and stored org configurations (see `crate::control`).
//!
//! Alerts-topic offsets are kept in the store, so a restart continues where it
//! stopped; re-reading a record is harmless (the store's upsert is idempotent).

use crate::api::{self, ApiDeps, ApiSettings, ApiState, HistoryTrainer};
use crate::cli::{ConfigArg, DataDirArg, ListenArg};
use crate::control::ControlRecord;
use crate::metrics::Metrics;
use crate::outputs::AlertOutputs;
use crate::store::{AlertStore, Change};
use crate::training::registry::Registry;
use crate::training::scheduler;
use crate::{onnx_runtime, settings};
use anyhow::Context;
use clap::Args;
use prognos_connectors::kafka::{KafkaClient, ReaderContext, RecordProducer, admin};
use prognos_dataflows::records::Alert;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Arguments of `prognos controller`.
#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Configuration (organizations, thresholds, training).
    #[command(flatten)]
    pub config: ConfigArg,
    /// Where the store and the models live.
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// API address.
    #[command(flatten)]
    pub listen: ListenArg,
    /// Kafka brokers, `host:port[,host:port...]`.
    #[arg(long, env = "PROGNOS_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// The topic the workers write alerts to.
    #[arg(long, default_value = "prognos.alerts")]
    pub alerts_topic: String,
    /// The compacted topic model activations are published on.
    #[arg(long, default_value = "prognos.control")]
    pub control_topic: String,
}

const OFFSETS_TREE: &str = "controller_offsets";

/// Run until Ctrl-C or SIGTERM.
pub fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let loaded = settings::load(args.config.config.as_deref())?;
    let (config, document) = (loaded.config, loaded.effective);
    let ort = onnx_runtime::init()?;
    tracing::info!(library = %ort.located.path.display(), "ONNX Runtime loaded");
    let data_dir = args.data_dir.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let store_dir = data_dir.join("store");
    let registry = Arc::new(Registry::open(&store_dir).with_context(|| {
        format!(
            "cannot open the store in {} (is another prognos process using this data dir?)",
            store_dir.display()
        )
    })?);
    let store = AlertStore::open(&registry.db())?;
    for r in registry.interrupt_running(chrono::Utc::now().timestamp_millis())? {
        tracing::warn!(org = %r.organization_id, run = %r.id, version = %r.version,
            "a training run was cut short when the controller last stopped: recorded as INTERRUPTED");
    }
    // Organization configurations changed through the API replace the file's here
    // too, so the API shows what it stored (workers read their own file).
    let stored_orgs = crate::orgs::OrgStore::open(&registry.db())?.list()?;
    let config = crate::orgs::overlay(config, &stored_orgs)
        .context("the stored organization configurations do not fit the configuration file")?;
    let (changes, _) = tokio::sync::broadcast::channel::<Change>(4096);
    let metrics = Metrics::new();
    let live = Arc::new(registry.live_log()?);
    let ready = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let client = KafkaClient::new(&args.brokers);
    let wait = Duration::from_secs(120);
    admin::create_topic(&client, &args.alerts_topic, 1, false, wait)?;
    admin::create_topic(&client, &args.control_topic, 1, true, wait)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(args.listen.listen))
        .with_context(|| format!("cannot listen on {}", args.listen.listen))?;
    let addr = listener.local_addr()?;
    let api_state = ApiState::open(ApiDeps {
        metrics: metrics.clone(),
        ready: ready.clone(),
        registry: registry.clone(),
        store: store.clone(),
        changes: changes.clone(),
        predictions: None,
        live: live.clone(),
        thresholds_live: true,
        orgs: config.orgs.keys().cloned().collect(),
        data_dir: data_dir.clone(),
        // Trains on the history the workers write (`[history].dir`, shared).
        trainer: Some(Arc::new(HistoryTrainer {
            config: config.clone(),
            document,
            data_dir: data_dir.clone(),
            registry: registry.clone(),
            live: live.clone(),
            store: store.clone(),
            stop: stop.clone(),
            seal_history: None,
        })),
        settings: ApiSettings::from_env(),
        // The dataflow runs in the workers: the controller's own pipeline status
        // stays empty (its background-monitor reports no pipeline here).
        pipeline: Arc::default(),
        config: Some(config.clone()),
    })
    .context("cannot start the API")?;
    scheduler::start(config.clone(), api_state.jobs(), stop.clone())
        .context("cannot start the training scheduler")?;
    // `prognos train` on this host hands its run over through this file.
    let _service_file = api_state
        .publish_local(&data_dir, addr)
        .with_context(|| format!("cannot write {}", data_dir.join(api::local::FILE).display()))?;
    let (stop_api, stop_api_rx) = tokio::sync::oneshot::channel::<()>();
    let api_task = rt.spawn(api::run(listener, api_state, async {
        let _ = stop_api_rx.await;
    }));
    tracing::info!("API listening on http://{addr}");

    let outputs = AlertOutputs {
        store: store.clone(),
        changes,
        jsonl: None,
        metrics,
    };
    let consumer = {
        let (client, topic, stop) = (client.clone(), args.alerts_topic.clone(), stop.clone());
        let offsets = registry.db().open_tree(OFFSETS_TREE)?;
        std::thread::Builder::new()
            .name("alerts-topic".into())
            .spawn(move || consume_alerts(&client, &topic, &offsets, &outputs, &stop))?
    };
    let publisher = {
        let (client, topic, stop) = (client.clone(), args.control_topic.clone(), stop.clone());
        let registry = registry.clone();
        std::thread::Builder::new()
            .name("control-topic".into())
            .spawn(move || publish_control(&client, &topic, &registry, &stop))?
    };
    ready.store(true, Ordering::Release);
    rt.block_on(crate::commands::run::shutdown_signal());
    tracing::info!("shutdown requested");
    stop.store(true, Ordering::Release);
    crate::training::pipeline::stop_training(Duration::from_secs(10));
    for (name, t) in [
        ("alerts consumer", consumer),
        ("control publisher", publisher),
    ] {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the {name} failed"),
            Err(_) => tracing::error!("the {name} panicked"),
        }
    }
    store.flush()?;
    let _ = stop_api.send(());
    let _ = rt.block_on(api_task);
    tracing::info!("stopped");
    Ok(())
}

/// Every partition of the alerts topic into the store, from the stored offsets.
fn consume_alerts(
    client: &KafkaClient,
    topic: &str,
    offsets: &sled::Tree,
    outputs: &AlertOutputs,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let c: BaseConsumer<ReaderContext> = client
        .config()
        .set("group.id", "prognos-controller")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create_with_context(ReaderContext)?;
    let mut owned: BTreeSet<i32> = BTreeSet::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut last_look = std::time::Instant::now() - Duration::from_secs(60);
    let mut batch: Vec<Alert> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        // Pick up new partitions now and then.
        if last_look.elapsed() >= Duration::from_secs(5) {
            last_look = std::time::Instant::now();
            match admin::partitions(&admin::reader(client)?, topic) {
                Ok(n) => {
                    let mut tpl = TopicPartitionList::new();
                    let new: Vec<i32> = (0..n).filter(|p| !owned.contains(p)).collect();
                    for p in new {
                        let from = offsets
                            .get(p.to_be_bytes())?
                            .and_then(|v| v.as_ref().try_into().ok().map(i64::from_be_bytes))
                            .unwrap_or(0);
                        tpl.add_partition_offset(topic, p, Offset::Offset(from))?;
                        owned.insert(p);
                        tracing::info!(topic, partition = p, from, "reading alerts");
                    }
                    if tpl.count() > 0 {
                        c.incremental_assign(&tpl)?;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the alerts topic's partitions (retrying)")
                }
            }
        }
        match c.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => tracing::warn!(error = %e, "alerts topic read error (retrying)"),
            Some(Ok(m)) => {
                match serde_json::from_slice::<Alert>(m.payload().unwrap_or_default()) {
                    Ok(a) => batch.push(a),
                    Err(e) => {
                        tracing::error!(error = %e, partition = m.partition(), offset = m.offset(),
                        "an unreadable record on the alerts topic was skipped")
                    }
                }
                next.insert(m.partition(), m.offset() + 1);
                // Take what is already there before delivering.
                while batch.len() < 1024 {
                    match c.poll(Duration::ZERO) {
                        Some(Ok(m)) => {
                            match serde_json::from_slice::<Alert>(m.payload().unwrap_or_default()) {
                                Ok(a) => batch.push(a),
                                Err(e) => tracing::error!(error = %e, partition = m.partition(),
                                    offset = m.offset(), "an unreadable record on the alerts topic was skipped"),
                            }
                            next.insert(m.partition(), m.offset() + 1);
                        }
                        _ => break,
                    }
                }
                outputs.deliver(&batch);
                batch.clear();
                for (p, o) in &next {
                    offsets.insert(p.to_be_bytes(), &o.to_be_bytes())?;
                }
            }
        }
    }
    offsets.flush()?;
    Ok(())
}

/// What the control topic should hold now: every stored org configuration,
/// every threshold change and every activation.
fn control_records(
    registry: &Registry,
    orgs: &crate::orgs::OrgStore,
) -> anyhow::Result<Vec<ControlRecord>> {
    let mut out: Vec<ControlRecord> = orgs
        .list()?
        .into_iter()
        .map(|o| ControlRecord::OrgConfig(Box::new(o)))
        .collect();
    out.extend(
        registry
            .threshold_log()?
            .into_iter()
            .map(ControlRecord::Thresholds),
    );
    out.extend(
        registry
            .activation_log()?
            .into_iter()
            .map(ControlRecord::Activation),
    );
    Ok(out)
}

/// Publish every control record not yet published as it is now (a changed org
/// configuration again, under the same key).
fn publish_control(
    client: &KafkaClient,
    topic: &str,
    registry: &Registry,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let producer = RecordProducer::new(client, topic)?;
    let orgs = crate::orgs::OrgStore::open(&registry.db())?;
    let mut published: HashMap<String, Vec<u8>> = HashMap::new();
    while !stop.load(Ordering::Acquire) {
        match control_records(registry, &orgs) {
            Ok(recs) => {
                for r in recs {
                    let (key, bytes) = (r.key(), serde_json::to_vec(&r)?);
                    if published.get(&key) == Some(&bytes) {
                        continue;
                    }
                    producer.send(key.as_bytes(), &bytes, 0);
                    tracing::info!(key, "control record published");
                    published.insert(key, bytes);
                }
                if let Err(e) = producer.flush(Duration::from_secs(10)) {
                    tracing::warn!(error = %e, "control records not yet acknowledged (retrying)");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read what the control topic should hold"),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}
