//! Start-up and shutdown the serving processes share: `prognos run` and
//! `prognos controller` open the data dir's store (registry, alert store, the
//! organization configurations stored through the API laid over the file's) and
//! serve the API with its training scheduler; `run` and `worker` stop on Ctrl-C
//! or SIGTERM by setting a flag their dataflow reads; a worker serves its
//! Prometheus metrics and probes on an address of its own; the timely workers
//! of a batch or a worker process are joined while a tick publishes progress.
//!
//! What differs between the processes (the pipeline, the Kafka topics, which
//! API dependencies they have) stays in their own modules (`embedded`,
//! `controller`, `worker`).

use crate::api::{self, ApiState};
use crate::metrics::Metrics;
use crate::store::AlertStore;
use crate::training::registry::Registry;
use crate::training::scheduler;
use anyhow::Context;
use prognos_dataflows::config::Config;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The data dir's store, opened, and the configuration in effect.
pub struct Stored {
    /// The model registry (its sled is the store's).
    pub registry: Arc<Registry>,
    /// The alert store.
    pub store: AlertStore,
    /// The file's configuration with the stored organization configurations over it.
    pub config: Config,
}

/// Create the data dir and open its store (`<data-dir>/store`, one sled shared
/// by the model registry and the alert store; one process at a time). Training
/// runs the previous start left running are recorded as INTERRUPTED; the
/// organization configurations changed through the API replace the file's.
/// `process` names the process in the logs (`service`, `controller`).
pub fn open_store(data_dir: &Path, config: Config, process: &str) -> anyhow::Result<Stored> {
    std::fs::create_dir_all(data_dir)
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
            "a training run was cut short when the {process} last stopped: recorded as INTERRUPTED");
    }
    let stored_orgs = crate::orgs::OrgStore::open(&registry.db())?.list()?;
    for s in &stored_orgs {
        tracing::info!(org = %s.id, by = %s.updated_by, "using the organization configuration stored through the API");
    }
    let config = crate::orgs::overlay(config, &stored_orgs)
        .context("the stored organization configurations do not fit the configuration file")?;
    Ok(Stored {
        registry,
        store,
        config,
    })
}

/// The async runtime the API runs on, and its listener bound to `addr`.
pub fn bind_api(
    addr: SocketAddr,
) -> anyhow::Result<(tokio::runtime::Runtime, tokio::net::TcpListener)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("cannot listen on {addr}"))?;
    Ok((rt, listener))
}

/// The API being served, until [`ApiServer::stop`].
pub struct ApiServer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    /// `<data-dir>/service.json`, removed when the server stops.
    _service_file: api::local::ServiceFile,
}

impl ApiServer {
    /// Start the training scheduler on the API's job queue, tell commands on
    /// this host where the API is (`prognos train` hands its run over through
    /// `<data-dir>/service.json`), and serve `state` on `listener`.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        listener: tokio::net::TcpListener,
        state: ApiState,
        config: &Config,
        data_dir: &Path,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<ApiServer> {
        let addr = listener.local_addr()?;
        scheduler::start(config.clone(), state.jobs(), stop)
            .context("cannot start the training scheduler")?;
        let service_file = state.publish_local(data_dir, addr).with_context(|| {
            format!("cannot write {}", data_dir.join(api::local::FILE).display())
        })?;
        let (stop_api, stop_api_rx) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(api::run(listener, state, async {
            let _ = stop_api_rx.await;
        }));
        tracing::info!(
            "API listening on http://{addr} (OpenAPI: /api/openapi.json, alerts push: /ws)"
        );
        Ok(ApiServer {
            stop: stop_api,
            task,
            _service_file: service_file,
        })
    }

    /// Stop serving and wait for the server to end.
    pub fn stop(self, rt: &tokio::runtime::Runtime) {
        let _ = self.stop.send(());
        let _ = rt.block_on(self.task);
    }
}

/// Ctrl-C, or SIGTERM (how Kubernetes stops a pod).
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Set `stop` at Ctrl-C or SIGTERM, saying `what` happens next; the signal is
/// watched on a thread of its own.
pub fn stop_on_signal(stop: Arc<AtomicBool>, what: &'static str) {
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch for Ctrl-C");
                return;
            }
        };
        rt.block_on(shutdown_signal());
        tracing::info!("shutdown requested: {what}");
        stop.store(true, Ordering::Release);
    });
}

/// `/metrics`, `/healthz`, `/readyz` on `addr`, on a thread of its own (a
/// process without the API: the workers).
pub fn serve_probes(
    addr: SocketAddr,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    use warp::Filter;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "metrics on /metrics, probes on /healthz and /readyz");
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let m = warp::path("metrics").and(warp::path::end()).map(move || {
                warp::http::Response::builder()
                    .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                    .body(metrics.render())
                    .unwrap_or_default()
            });
            let health = warp::path("healthz").and(warp::path::end()).map(|| "ok");
            let readyz = warp::path("readyz").and(warp::path::end()).map(move || {
                let ok = ready.load(Ordering::Acquire);
                warp::reply::with_status(
                    if ok { "ready" } else { "starting" },
                    if ok {
                        warp::http::StatusCode::OK
                    } else {
                        warp::http::StatusCode::SERVICE_UNAVAILABLE
                    },
                )
            });
            rt.block_on(
                warp::serve(m.or(health).or(readyz))
                    .incoming(listener)
                    .run(),
            );
        })?;
    Ok(())
}

/// Wait for timely workers to finish, calling `tick` every `every` meanwhile
/// (progress bars, metrics). A worker that failed is an error.
pub fn join_workers<T: Send + 'static>(
    guards: timely::communication::WorkerGuards<T>,
    every: std::time::Duration,
    mut tick: impl FnMut(),
) -> anyhow::Result<Vec<T>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(guards.join());
    });
    let results = loop {
        match rx.recv_timeout(every) {
            Ok(r) => break r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => tick(),
            Err(e) => anyhow::bail!("timely workers vanished: {e}"),
        }
    };
    tick();
    results
        .into_iter()
        .map(|r| r.map_err(|e| anyhow::anyhow!("a timely worker failed: {e}")))
        .collect()
}
