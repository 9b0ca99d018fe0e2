//! `prognos run`: the embedded default. The furnace simulator streams each
//! configured org's rows (in the org's own schema) at `[simulator].speed` times
//! real time into the pipeline, the API serves health and metrics, and Ctrl-C
//! stops everything cleanly.

use crate::api::{self, ApiState};
use crate::cli::{ConfigArg, DataDirArg, ListenArg};
use crate::commands::simulate::schemas_from_config;
use crate::metrics::Metrics;
use crate::{onnx_runtime, settings};
use anyhow::Context;
use clap::Args;
use prognos_connectors::simulator::{OrgStream, OutputFormat, SimConfig};
use prognos_dataflows::config::Config;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Arguments of `prognos run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration (organizations, schemas, thresholds, simulator).
    #[command(flatten)]
    pub config: ConfigArg,
    /// Where the store, models and checkpoints live.
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// API address.
    #[command(flatten)]
    pub listen: ListenArg,
    /// Simulator speed factor (event time / wall time); `[simulator].speed` when absent.
    #[arg(long)]
    pub speed: Option<f64>,
    /// Stop after this many simulated hours; run until Ctrl-C when absent.
    #[arg(long)]
    pub hours: Option<f64>,
}

/// Longest stretch `run` simulates: its failure schedule is drawn up front.
const MAX_RUN_MS: i64 = 365 * 86_400_000;

/// Start the embedded default and block until Ctrl-C (or `--hours` of event time).
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let loaded = settings::load(args.config.config.as_deref())?;
    tracing::info!(config = %loaded.origin, orgs = loaded.config.orgs.len(), "configuration loaded");
    for o in &loaded.overrides {
        tracing::info!(variable = %o, "configuration key overridden from the environment");
    }
    let config = loaded.config;
    let ort = onnx_runtime::init()?;
    tracing::info!(library = %ort.located.path.display(), via = ort.located.how, "ONNX Runtime loaded");
    std::fs::create_dir_all(&args.data_dir.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}",
            args.data_dir.data_dir.display()
        )
    })?;

    let metrics = Metrics::new();
    metrics
        .build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION"), onnx_runtime::EXPECTED_VERSION])
        .set(1);
    let ready = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(args.listen.listen))
        .with_context(|| format!("cannot listen on {}", args.listen.listen))?;
    let addr = listener.local_addr()?;
    let (stop_api, stop_api_rx) = tokio::sync::oneshot::channel::<()>();
    let api_task = rt.spawn(api::run(
        listener,
        ApiState {
            metrics: metrics.clone(),
            ready: ready.clone(),
        },
        async {
            let _ = stop_api_rx.await;
        },
    ));
    tracing::info!("API listening on http://{addr} (GET /healthz, /readyz, /metrics)");

    {
        let stop = stop.clone();
        rt.spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutdown requested: stopping after the current batch");
            stop.store(true, Ordering::Release);
        });
    }

    let speed = args.speed.unwrap_or(config.simulator.speed);
    anyhow::ensure!(
        speed.is_finite() && speed > 0.0,
        "--speed must be > 0, got {speed}"
    );
    let duration_ms = match args.hours {
        Some(h) if h.is_finite() && h > 0.0 => ((h * 3_600_000.0) as i64).min(MAX_RUN_MS),
        Some(h) => anyhow::bail!("--hours must be > 0, got {h}"),
        None => MAX_RUN_MS,
    };
    let source = LiveSimulator::new(&config, speed, duration_ms)?;
    ready.store(true, Ordering::Release);
    let result = source.stream(&metrics, &stop);

    let _ = stop_api.send(());
    let _ = rt.block_on(api_task);
    tracing::info!("stopped");
    result
}

/// Ctrl-C, or SIGTERM (how Kubernetes stops a pod).
async fn shutdown_signal() {
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

/// The simulator as a live source: every org's stream, merged in event-time order
/// and paced against the wall clock.
struct LiveSimulator {
    streams: Vec<OrgStream>,
    cfg: SimConfig,
    speed: f64,
}

impl LiveSimulator {
    fn new(config: &Config, speed: f64, duration_ms: i64) -> anyhow::Result<Self> {
        let schemas = schemas_from_config(config)?;
        let now = chrono::Utc::now().timestamp_millis();
        let interval = config.simulator.interval_ms as i64;
        let cfg = SimConfig {
            machines_per_org: config.simulator.machines_per_org,
            start_ms: now - now.rem_euclid(interval),
            duration_ms,
            interval_ms: interval,
            seed: config.simulator.seed,
            failure_rate_per_machine_day: config.simulator.failure_rate_per_machine_day,
            ..SimConfig::default()
        };
        cfg.validate()?;
        let streams = schemas
            .iter()
            .enumerate()
            .map(|(i, s)| OrgStream::new(&cfg, i, s))
            .collect::<Result<Vec<_>, _>>()?;
        tracing::info!(
            orgs = streams.len(),
            machines_per_org = cfg.machines_per_org,
            interval_ms = cfg.interval_ms,
            speed,
            "simulator started: {} furnaces, one simulated hour every {:.0} s",
            streams.len() as u64 * cfg.machines_per_org as u64,
            3600.0 / speed
        );
        Ok(LiveSimulator {
            streams,
            cfg,
            speed,
        })
    }

    /// Emit rows until the range ends or `stop` is set. Each wall-clock tick takes
    /// every row that is due, so metrics are updated per batch, not per row.
    fn stream(mut self, metrics: &Metrics, stop: &AtomicBool) -> anyhow::Result<()> {
        let wall0 = Instant::now();
        let mut line = Vec::with_capacity(512);
        let mut announced = vec![0usize; self.streams.len()];
        let events: Vec<Vec<_>> = self
            .streams
            .iter()
            .map(|s| {
                let mut e = s.failure_events().to_vec();
                e.sort_by_key(|e| e.start_ms);
                e
            })
            .collect();
        let mut last_status = Instant::now();
        let mut counts = vec![0u64; self.streams.len()];
        loop {
            if stop.load(Ordering::Acquire) {
                return Ok(());
            }
            let due =
                self.cfg.start_ms + (wall0.elapsed().as_secs_f64() * 1000.0 * self.speed) as i64;
            let mut any_left = false;
            for (i, s) in self.streams.iter_mut().enumerate() {
                let before = s.rows();
                while s.peek_ts().is_some_and(|t| t <= due) {
                    line.clear();
                    s.next_into(&mut line, OutputFormat::Jsonl);
                }
                any_left |= s.peek_ts().is_some();
                let org = s.schema().org_id.clone();
                let n = s.rows() - before;
                counts[i] += n;
                metrics
                    .rows
                    .with_label_values(&[&org, "received"])
                    .inc_by(n);
                metrics
                    .source_event_time
                    .with_label_values(&[&org])
                    .set(due);
                let events = &events[i];
                while announced[i] < events.len() && events[announced[i]].start_ms <= due {
                    let e = &events[announced[i]];
                    let component = s.schema().component_name(e.component);
                    tracing::info!(
                        org = %org, machine = %e.machine_id, component,
                        "simulated failure begins (ground truth)"
                    );
                    metrics
                        .simulated_failures
                        .with_label_values(&[&org, component])
                        .inc();
                    announced[i] += 1;
                }
            }
            if last_status.elapsed() >= Duration::from_secs(10) {
                let total: u64 = counts.iter().sum();
                tracing::info!(
                    event_time = %prognos_dataflows::time::format_rfc3339_ms(due),
                    rows = total,
                    "simulator running"
                );
                last_status = Instant::now();
            }
            if !any_left {
                tracing::info!("simulated range complete");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
