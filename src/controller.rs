//! The cluster's control plane, as `prognos controller` runs it: it owns the
//! product store (sled is single-process), serves the REST/WebSocket API, trains
//! and registers models, consumes the alerts topic the workers write into the
//! store (which groups records into alerts and numbers every change for the
//! WebSocket), and publishes on the compacted control topic every worker reads:
//! model activations, prediction threshold changes (`PUT /api/orgs/{id}` applies
//! them live in the workers) and stored org configurations (see `crate::control`).
//!
//! Alerts-topic offsets are kept in the store, so a restart continues where it
//! stopped; re-reading a record is harmless (the store's upsert is idempotent).
//! The topic is read by the connectors' [`TopicFollower`]: an unreadable record
//! is logged, counted (`prognos_alerts_topic_unreadable_records_total`) and
//! skipped.

use crate::api::{ApiDeps, ApiSettings, ApiState, HistoryTrainer};
use crate::control::ControlRecord;
use crate::metrics::Metrics;
use crate::outputs::AlertOutputs;
use crate::service::{self, ApiServer, Stored};
use crate::store::Change;
use crate::training::registry::Registry;
use crate::{onnx_runtime, settings};
use anyhow::Context;
use prognos_connectors::kafka::{FollowConfig, KafkaClient, RecordProducer, TopicFollower, admin};
use prognos_dataflows::records::Alert;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What the controller runs with (`prognos controller`'s arguments).
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// The configuration file; the built-in example when absent.
    pub config: Option<PathBuf>,
    /// Where the store and the models live.
    pub data_dir: PathBuf,
    /// API address.
    pub listen: SocketAddr,
    /// Kafka brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic the workers write alerts to.
    pub alerts_topic: String,
    /// The compacted topic model activations are published on.
    pub control_topic: String,
}

const OFFSETS_TREE: &str = "controller_offsets";

/// Run until Ctrl-C or SIGTERM.
pub fn serve(opts: ControllerSettings) -> anyhow::Result<()> {
    let loaded = settings::load(opts.config.as_deref())?;
    let (config, document) = (loaded.config, loaded.effective);
    let ort = onnx_runtime::init()?;
    tracing::info!(library = %ort.located.path.display(), "ONNX Runtime loaded");
    let data_dir = opts.data_dir.clone();
    // Organization configurations changed through the API replace the file's here
    // too, so the API shows what it stored (workers read their own file).
    let Stored {
        registry,
        store,
        config,
    } = service::open_store(&data_dir, config, "controller")?;
    let (changes, _) = tokio::sync::broadcast::channel::<Change>(4096);
    let metrics = Metrics::new();
    let live = Arc::new(registry.live_log()?);
    let ready = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let client = KafkaClient::new(&opts.brokers);
    let wait = Duration::from_secs(120);
    admin::create_topic(&client, &opts.alerts_topic, 1, false, wait)?;
    admin::create_topic(&client, &opts.control_topic, 1, true, wait)?;

    let (rt, listener) = service::bind_api(opts.listen)?;
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
        // The dataflow runs in the workers: the health routes read their
        // heartbeats (`POST /api/cluster/heartbeat`).
        pipeline: Arc::default(),
        cluster: Some(Arc::default()),
        config: Some(config.clone()),
    })
    .context("cannot start the API")?;
    let api_server = ApiServer::start(&rt, listener, api_state, &config, &data_dir, stop.clone())?;

    let outputs = AlertOutputs {
        store: store.clone(),
        changes,
        jsonl: None,
        metrics,
    };
    let consumer = {
        let (client, topic, stop) = (client.clone(), opts.alerts_topic.clone(), stop.clone());
        let offsets = registry.db().open_tree(OFFSETS_TREE)?;
        std::thread::Builder::new()
            .name("alerts-topic".into())
            .spawn(move || consume_alerts(&client, &topic, &offsets, &outputs, &stop))?
    };
    let publisher = {
        let (client, topic, stop) = (client.clone(), opts.control_topic.clone(), stop.clone());
        let registry = registry.clone();
        std::thread::Builder::new()
            .name("control-topic".into())
            .spawn(move || publish_control(&client, &topic, &registry, &stop))?
    };
    ready.store(true, Ordering::Release);
    rt.block_on(service::shutdown_signal());
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
    api_server.stop(&rt);
    tracing::info!("stopped");
    Ok(())
}

/// Every partition of the alerts topic into the store, from the stored offsets.
/// A record that does not decode is logged and counted by the follower and
/// skipped; its offset is stored like any other.
fn consume_alerts(
    client: &KafkaClient,
    topic: &str,
    offsets: &sled::Tree,
    outputs: &AlertOutputs,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut start = BTreeMap::new();
    for kv in offsets.iter() {
        let (k, v) = kv?;
        if let (Ok(p), Ok(o)) = (k.as_ref().try_into(), v.as_ref().try_into()) {
            start.insert(i32::from_be_bytes(p), i64::from_be_bytes(o));
        }
    }
    let mut follower = TopicFollower::<Alert>::new(FollowConfig {
        client: client.clone(),
        topic: topic.to_string(),
        name: "alerts".into(),
        group_id: "prognos-controller".into(),
        start,
        refresh: Duration::from_secs(5),
        max_batch: 1024,
    })?;
    let unreadable = &outputs.metrics.alerts_topic_unreadable;
    let mut batch: Vec<Alert> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let polled = follower.poll(Duration::from_millis(200), &mut batch)?;
        if polled.is_empty() {
            continue;
        }
        unreadable.inc_by(polled.unreadable as u64);
        outputs.deliver(&batch);
        batch.clear();
        for (p, o) in follower.next_offsets() {
            offsets.insert(p.to_be_bytes(), &o.to_be_bytes())?;
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
