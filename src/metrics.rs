//! Prometheus metrics: names in one place, bounded label sets (org, machine,
//! component, reason; never row ids), updated per batch on hot paths. The
//! API's own (requests, WebSocket, logins, training runs) are in
//! [`crate::api::metrics`].

use prognos_dataflows::stats::{BatchSample, Stage, Stats};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use std::collections::BTreeMap;

/// Rows by org and outcome (`received`, `mapped`, `dead_letter`, ...).
pub const ROWS_TOTAL: &str = "prognos_rows_total";
/// Ground-truth failures the embedded simulator produced, by org and component.
pub const SIMULATED_FAILURES_TOTAL: &str = "prognos_simulated_failures_total";
/// Constant 1, labelled with the version and the ONNX Runtime library in use.
pub const BUILD_INFO: &str = "prognos_build_info";
/// Event time (ms since epoch) the source has reached, per org.
pub const SOURCE_EVENT_TIME_MS: &str = "prognos_source_event_time_ms";
/// Model cache lookups served from memory.
pub const MODEL_CACHE_HITS_TOTAL: &str = "prognos_model_cache_hits_total";
/// Model cache lookups that loaded a version from disk.
pub const MODEL_CACHE_MISSES_TOTAL: &str = "prognos_model_cache_misses_total";
/// Versions evicted from the model cache.
pub const MODEL_CACHE_EVICTIONS_TOTAL: &str = "prognos_model_cache_evictions_total";
/// Seconds spent loading and checking model versions.
pub const MODEL_LOAD_SECONDS_TOTAL: &str = "prognos_model_load_seconds_total";
/// Memory held by the loaded model versions (measured as each loads).
pub const MODEL_CACHE_BYTES: &str = "prognos_model_cache_bytes";
/// Versions held by the model cache.
pub const MODEL_CACHE_MODELS: &str = "prognos_model_cache_models";
/// Hits over lookups of the model cache since start (preloads are not lookups).
pub const MODEL_CACHE_HIT_RATIO: &str = "prognos_model_cache_hit_ratio";
/// Each org's inference circuit breaker: 0 closed, 1 half-open, 2 open.
pub const MODEL_BREAKER_STATE: &str = "prognos_model_breaker_state";

/// Alert records by org, type and kind (`notification`, `summary`, `resolved`),
/// as delivered to the store.
pub const ALERTS_TOTAL: &str = "prognos_alerts_total";
/// Alert records the store could not take (each is logged with its reason).
pub const ALERT_STORE_ERRORS_TOTAL: &str = "prognos_alert_store_errors_total";
/// Records on the alerts topic the controller could not decode (each logged
/// with its partition, offset and reason, then skipped).
pub const ALERTS_TOPIC_UNREADABLE_RECORDS_TOTAL: &str =
    "prognos_alerts_topic_unreadable_records_total";
/// Detections deduplication suppressed, by org and type (from the window summaries).
pub const ALERTS_SUPPRESSED_TOTAL: &str = "prognos_alerts_suppressed_total";

/// Seconds per `ort` run (one org's batch), by org.
pub const INFERENCE_DURATION_SECONDS: &str = "prognos_inference_duration_seconds";
/// Rows per `ort` run, by org.
pub const INFERENCE_BATCH_ROWS: &str = "prognos_inference_batch_rows";
/// Seconds per activation of the features operator (all its ready rows).
pub const FEATURES_DURATION_SECONDS: &str = "prognos_features_duration_seconds";
/// Rows per activation of the features operator.
pub const FEATURES_BATCH_ROWS: &str = "prognos_features_batch_rows";
/// Batch timings dropped because the publish loop fell behind.
pub const BATCH_SAMPLES_DROPPED_TOTAL: &str = "prognos_batch_samples_dropped_total";

/// Resident memory (Prometheus's standard process metric).
pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "process_resident_memory_bytes";
/// Virtual memory.
pub const PROCESS_VIRTUAL_MEMORY_BYTES: &str = "process_virtual_memory_bytes";
/// User and system CPU time.
pub const PROCESS_CPU_SECONDS_TOTAL: &str = "process_cpu_seconds_total";
/// Start time, seconds since the epoch.
pub const PROCESS_START_TIME_SECONDS: &str = "process_start_time_seconds";
/// Open file descriptors.
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
/// OS threads.
pub const PROCESS_THREADS: &str = "process_threads";

/// Buckets of per-batch durations: 50 µs to 2.5 s.
const DURATION_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
];
/// Buckets of batch sizes (rows): powers of two to 16384.
const ROWS_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
    16384.0,
];

/// The process's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// See [`ROWS_TOTAL`].
    pub rows: IntCounterVec,
    /// See [`SIMULATED_FAILURES_TOTAL`].
    pub simulated_failures: IntCounterVec,
    /// See [`BUILD_INFO`].
    pub build_info: IntGaugeVec,
    /// See [`SOURCE_EVENT_TIME_MS`].
    pub source_event_time: IntGaugeVec,
    /// See [`MODEL_CACHE_HITS_TOTAL`].
    pub cache_hits: prometheus::IntCounter,
    /// See [`MODEL_CACHE_MISSES_TOTAL`].
    pub cache_misses: prometheus::IntCounter,
    /// See [`MODEL_CACHE_EVICTIONS_TOTAL`].
    pub cache_evictions: prometheus::IntCounter,
    /// See [`MODEL_LOAD_SECONDS_TOTAL`].
    pub model_load_seconds: prometheus::Counter,
    /// See [`MODEL_CACHE_BYTES`].
    pub cache_bytes: prometheus::IntGauge,
    /// See [`MODEL_CACHE_MODELS`].
    pub cache_models: prometheus::IntGauge,
    /// See [`MODEL_CACHE_HIT_RATIO`].
    pub cache_hit_ratio: prometheus::Gauge,
    /// See [`MODEL_BREAKER_STATE`].
    pub breaker_state: IntGaugeVec,
    /// See [`ALERTS_TOTAL`].
    pub alerts: IntCounterVec,
    /// See [`ALERT_STORE_ERRORS_TOTAL`].
    pub alert_store_errors: prometheus::IntCounter,
    /// See [`ALERTS_TOPIC_UNREADABLE_RECORDS_TOTAL`].
    pub alerts_topic_unreadable: prometheus::IntCounter,
    /// See [`ALERTS_SUPPRESSED_TOTAL`].
    pub alerts_suppressed: IntCounterVec,
    /// See [`INFERENCE_DURATION_SECONDS`].
    pub inference_seconds: HistogramVec,
    /// See [`INFERENCE_BATCH_ROWS`].
    pub inference_rows: HistogramVec,
    /// See [`FEATURES_DURATION_SECONDS`].
    pub features_seconds: prometheus::Histogram,
    /// See [`FEATURES_BATCH_ROWS`].
    pub features_rows: prometheus::Histogram,
    /// See [`BATCH_SAMPLES_DROPPED_TOTAL`].
    pub batch_samples_dropped: prometheus::IntCounter,
}

impl Metrics {
    /// A fresh registry with every prognos metric registered.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let rows = IntCounterVec::new(
            Opts::new(ROWS_TOTAL, "Rows by organization and outcome."),
            &["org", "outcome"],
        )
        .expect("valid metric");
        let simulated_failures = IntCounterVec::new(
            Opts::new(
                SIMULATED_FAILURES_TOTAL,
                "Failures (ground truth) produced by the embedded simulator.",
            ),
            &["org", "component"],
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(BUILD_INFO, "prognos build information."),
            &["version", "onnxruntime"],
        )
        .expect("valid metric");
        let source_event_time = IntGaugeVec::new(
            Opts::new(
                SOURCE_EVENT_TIME_MS,
                "Event time the source has reached, in ms since the epoch.",
            ),
            &["org"],
        )
        .expect("valid metric");
        let ic = |n: &str, h: &str| prometheus::IntCounter::new(n, h).expect("valid metric");
        let cache_hits = ic(
            MODEL_CACHE_HITS_TOTAL,
            "Model cache lookups served from memory.",
        );
        let cache_misses = ic(
            MODEL_CACHE_MISSES_TOTAL,
            "Model cache lookups that loaded from disk.",
        );
        let cache_evictions = ic(
            MODEL_CACHE_EVICTIONS_TOTAL,
            "Model versions evicted from the cache.",
        );
        let model_load_seconds = prometheus::Counter::new(
            MODEL_LOAD_SECONDS_TOTAL,
            "Seconds spent loading and checking model versions.",
        )
        .expect("valid metric");
        let cache_bytes = prometheus::IntGauge::new(
            MODEL_CACHE_BYTES,
            "Memory held by the loaded model versions, measured as each loads (at least its ONNX files).",
        )
        .expect("valid metric");
        let cache_models =
            prometheus::IntGauge::new(MODEL_CACHE_MODELS, "Model versions held by the cache.")
                .expect("valid metric");
        let cache_hit_ratio = prometheus::Gauge::new(
            MODEL_CACHE_HIT_RATIO,
            "Model cache hits over lookups since start (preloads at start are not lookups; 0 before the first).",
        )
        .expect("valid metric");
        let breaker_state = IntGaugeVec::new(
            Opts::new(
                MODEL_BREAKER_STATE,
                "Inference circuit breaker by organization: 0 closed, 1 half-open, 2 open.",
            ),
            &["org"],
        )
        .expect("valid metric");
        let alerts = IntCounterVec::new(
            Opts::new(
                ALERTS_TOTAL,
                "Alert records by organization, type and kind.",
            ),
            &["org", "type", "kind"],
        )
        .expect("valid metric");
        let alert_store_errors = prometheus::IntCounter::new(
            ALERT_STORE_ERRORS_TOTAL,
            "Alert records the store could not take.",
        )
        .expect("valid metric");
        let alerts_topic_unreadable = prometheus::IntCounter::new(
            ALERTS_TOPIC_UNREADABLE_RECORDS_TOTAL,
            "Records on the alerts topic the controller could not decode (logged, skipped).",
        )
        .expect("valid metric");
        let alerts_suppressed = IntCounterVec::new(
            Opts::new(
                ALERTS_SUPPRESSED_TOTAL,
                "Detections suppressed by deduplication, by organization and type.",
            ),
            &["org", "type"],
        )
        .expect("valid metric");
        let hist = |name: &str, help: &str, buckets: &[f64]| {
            HistogramOpts::new(name, help).buckets(buckets.to_vec())
        };
        let inference_seconds = HistogramVec::new(
            hist(
                INFERENCE_DURATION_SECONDS,
                "Seconds per ONNX Runtime run (one organization's batch).",
                DURATION_BUCKETS,
            ),
            &["org"],
        )
        .expect("valid metric");
        let inference_rows = HistogramVec::new(
            hist(
                INFERENCE_BATCH_ROWS,
                "Rows per ONNX Runtime run.",
                ROWS_BUCKETS,
            ),
            &["org"],
        )
        .expect("valid metric");
        let features_seconds = prometheus::Histogram::with_opts(hist(
            FEATURES_DURATION_SECONDS,
            "Seconds per activation of the features operator.",
            DURATION_BUCKETS,
        ))
        .expect("valid metric");
        let features_rows = prometheus::Histogram::with_opts(hist(
            FEATURES_BATCH_ROWS,
            "Rows per activation of the features operator.",
            ROWS_BUCKETS,
        ))
        .expect("valid metric");
        let batch_samples_dropped = prometheus::IntCounter::new(
            BATCH_SAMPLES_DROPPED_TOTAL,
            "Batch timings dropped because the publish loop fell behind.",
        )
        .expect("valid metric");
        for c in [
            Box::new(rows.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(alerts_suppressed.clone()),
            Box::new(inference_seconds.clone()),
            Box::new(inference_rows.clone()),
            Box::new(features_seconds.clone()),
            Box::new(features_rows.clone()),
            Box::new(batch_samples_dropped.clone()),
            Box::new(ProcessCollector::new()),
            Box::new(alerts.clone()),
            Box::new(alert_store_errors.clone()),
            Box::new(alerts_topic_unreadable.clone()),
            Box::new(simulated_failures.clone()),
            Box::new(build_info.clone()),
            Box::new(source_event_time.clone()),
            Box::new(cache_hits.clone()),
            Box::new(cache_misses.clone()),
            Box::new(cache_evictions.clone()),
            Box::new(model_load_seconds.clone()),
            Box::new(cache_bytes.clone()),
            Box::new(cache_models.clone()),
            Box::new(cache_hit_ratio.clone()),
            Box::new(breaker_state.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        Metrics {
            registry,
            rows,
            simulated_failures,
            build_info,
            source_event_time,
            cache_hits,
            cache_misses,
            cache_evictions,
            model_load_seconds,
            cache_bytes,
            cache_models,
            cache_hit_ratio,
            breaker_state,
            alerts,
            alert_store_errors,
            alerts_topic_unreadable,
            alerts_suppressed,
            inference_seconds,
            inference_rows,
            features_seconds,
            features_rows,
            batch_samples_dropped,
        }
    }

    /// Create every per-org series at zero (alerts by type, suppressed, inference
    /// histograms), so dashboards and rate() see them before the first event.
    pub fn init_orgs<'a>(&self, orgs: impl IntoIterator<Item = &'a String>) {
        for org in orgs {
            for t in ["CRITICAL", "WARNING", "PREDICTIVE"] {
                for kind in ["notification", "summary", "resolved"] {
                    self.alerts.with_label_values(&[org.as_str(), t, kind]);
                }
                self.alerts_suppressed.with_label_values(&[org.as_str(), t]);
            }
            self.inference_seconds.with_label_values(&[org.as_str()]);
            self.breaker_state.with_label_values(&[org.as_str()]);
            self.inference_rows.with_label_values(&[org.as_str()]);
        }
    }

    /// Move new counts and batch timings from the dataflow's stats into the
    /// counters and histograms; `seen` holds the counts already published.
    pub fn publish_stats(&self, stats: &Stats, seen: &mut BTreeMap<(String, String), u64>) {
        let (batches, dropped) = stats.take_batches();
        self.observe_batches(&batches, dropped);
        self.publish_breakers(stats);
        for (k, v) in stats.snapshot() {
            let before = seen.get(&k).copied().unwrap_or(0);
            if v > before {
                self.rows
                    .with_label_values(&[&k.0, &k.1])
                    .inc_by(v - before);
                seen.insert(k, v);
            }
        }
    }

    /// Move the dataflow's batch timings into the histograms.
    pub fn observe_batches(&self, batches: &[BatchSample], dropped_so_far: u64) {
        for b in batches {
            match (b.stage, &b.org) {
                (Stage::Inference, Some(org)) => {
                    self.inference_seconds
                        .with_label_values(&[org.as_str()])
                        .observe(b.seconds);
                    self.inference_rows
                        .with_label_values(&[org.as_str()])
                        .observe(b.rows as f64);
                }
                (Stage::Inference, None) => {}
                (Stage::Features, _) => {
                    self.features_seconds.observe(b.seconds);
                    self.features_rows.observe(b.rows as f64);
                }
            }
        }
        let c = &self.batch_samples_dropped;
        if dropped_so_far > c.get() {
            c.inc_by(dropped_so_far - c.get());
        }
    }

    /// Set the model cache metrics from the cache counters (one entry per cache;
    /// a process has one).
    pub fn publish_cache(
        &self,
        per_worker: &std::collections::BTreeMap<usize, prognos_dataflows::models::CacheStats>,
    ) {
        let sum = |f: fn(&prognos_dataflows::models::CacheStats) -> u64| {
            per_worker.values().map(f).sum::<u64>()
        };
        let bump = |c: &prometheus::IntCounter, v: u64| {
            if v > c.get() {
                c.inc_by(v - c.get());
            }
        };
        bump(&self.cache_hits, sum(|s| s.hits));
        bump(&self.cache_misses, sum(|s| s.misses));
        bump(&self.cache_evictions, sum(|s| s.evictions));
        let secs: f64 = per_worker.values().map(|s| s.load_seconds).sum();
        if secs > self.model_load_seconds.get() {
            self.model_load_seconds
                .inc_by(secs - self.model_load_seconds.get());
        }
        self.cache_bytes.set(sum(|s| s.bytes) as i64);
        self.cache_models
            .set(per_worker.values().map(|s| s.models as i64).sum());
        let (hits, lookups) = (sum(|s| s.hits), sum(|s| s.hits + s.misses));
        if lookups > 0 {
            self.cache_hit_ratio.set(hits as f64 / lookups as f64);
        }
    }

    /// Set each org's breaker gauge from the dataflow's breaker states.
    pub fn publish_breakers(&self, stats: &Stats) {
        for (org, state) in stats.breaker_states() {
            self.breaker_state
                .with_label_values(&[org.as_str()])
                .set(state as i64);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("UTF-8 exposition")
    }
}

/// Prometheus's standard `process_*` metrics for this process, read from
/// `/proc/self` at scrape time (the prometheus crate's own collector needs the
/// `procfs` crate; these few reads do not). Off Linux it reports nothing.
struct ProcessCollector {
    descs: Vec<Desc>,
    page_size: f64,
    ticks_per_s: f64,
}

impl ProcessCollector {
    fn new() -> ProcessCollector {
        let d = |name: &str, help: &str| {
            Desc::new(name.into(), help.into(), vec![], Default::default()).expect("valid metric")
        };
        // SAFETY: sysconf only reads a system constant.
        let (page, ticks) = unsafe {
            (
                libc::sysconf(libc::_SC_PAGESIZE),
                libc::sysconf(libc::_SC_CLK_TCK),
            )
        };
        ProcessCollector {
            descs: vec![
                d(
                    PROCESS_RESIDENT_MEMORY_BYTES,
                    "Resident memory size in bytes.",
                ),
                d(
                    PROCESS_VIRTUAL_MEMORY_BYTES,
                    "Virtual memory size in bytes.",
                ),
                d(
                    PROCESS_CPU_SECONDS_TOTAL,
                    "Total user and system CPU time spent in seconds.",
                ),
                d(
                    PROCESS_START_TIME_SECONDS,
                    "Start time of the process since unix epoch in seconds.",
                ),
                d(PROCESS_OPEN_FDS, "Number of open file descriptors."),
                d(PROCESS_THREADS, "Number of OS threads in the process."),
            ],
            page_size: if page > 0 { page as f64 } else { 4096.0 },
            ticks_per_s: if ticks > 0 { ticks as f64 } else { 100.0 },
        }
    }

    fn read(&self) -> Option<ProcessSample> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces), from field 3 on.
        let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let num = |i: usize| f.get(i - 3)?.parse::<f64>().ok();
        let boot_s = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
        Some(ProcessSample {
            cpu_s: (num(14)? + num(15)?) / self.ticks_per_s,
            threads: num(20)?,
            start_s: boot_s + num(22)? / self.ticks_per_s,
            virtual_bytes: num(23)?,
            resident_bytes: num(24)? * self.page_size,
            open_fds: std::fs::read_dir("/proc/self/fd").ok()?.count() as f64,
        })
    }
}

struct ProcessSample {
    cpu_s: f64,
    threads: f64,
    start_s: f64,
    virtual_bytes: f64,
    resident_bytes: f64,
    open_fds: f64,
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(s) = self.read() else {
            return Vec::new();
        };
        let gauge = |name: &str, help: &str, v: f64| {
            let g = prometheus::Gauge::new(name, help).expect("valid metric");
            g.set(v);
            g.collect()
        };
        let cpu = prometheus::Counter::new(
            PROCESS_CPU_SECONDS_TOTAL,
            "Total user and system CPU time spent in seconds.",
        )
        .expect("valid metric");
        cpu.inc_by(s.cpu_s);
        [
            gauge(
                PROCESS_RESIDENT_MEMORY_BYTES,
                "Resident memory size in bytes.",
                s.resident_bytes,
            ),
            gauge(
                PROCESS_VIRTUAL_MEMORY_BYTES,
                "Virtual memory size in bytes.",
                s.virtual_bytes,
            ),
            cpu.collect(),
            gauge(
                PROCESS_START_TIME_SECONDS,
                "Start time of the process since unix epoch in seconds.",
                s.start_s,
            ),
            gauge(
                PROCESS_OPEN_FDS,
                "Number of open file descriptors.",
                s.open_fds,
            ),
            gauge(
                PROCESS_THREADS,
                "Number of OS threads in the process.",
                s.threads,
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }

    #[test]
    fn process_metrics_are_read_from_proc() {
        let m = Metrics::new();
        let keep: Vec<u8> = vec![1; 32 << 20];
        let text = m.render();
        let rss = value(&text, PROCESS_RESIDENT_MEMORY_BYTES);
        assert!(
            rss >= (32 << 20) as f64,
            "{rss}: the 32 MiB this test holds"
        );
        assert!(value(&text, PROCESS_VIRTUAL_MEMORY_BYTES) >= rss);
        assert!(value(&text, PROCESS_OPEN_FDS) >= 3.0);
        assert!(value(&text, PROCESS_THREADS) >= 1.0);
        let now_s = chrono::Utc::now().timestamp() as f64;
        let start = value(&text, PROCESS_START_TIME_SECONDS);
        assert!(start <= now_s + 1.0 && start > now_s - 86_400.0, "{start}");
        assert!(text.contains("# TYPE process_cpu_seconds_total counter"));
        assert_eq!(keep.iter().map(|&b| b as usize).sum::<usize>(), 32 << 20);
    }

    #[test]
    fn the_cache_hit_ratio_is_hits_over_lookups() {
        use prognos_dataflows::models::CacheStats;
        let m = Metrics::new();
        assert_eq!(value(&m.render(), MODEL_CACHE_HIT_RATIO), 0.0);
        let mut caches = std::collections::BTreeMap::new();
        caches.insert(
            0,
            CacheStats {
                hits: 9,
                misses: 1,
                preloads: 5,
                bytes: 3 << 20,
                models: 2,
                ..CacheStats::default()
            },
        );
        m.publish_cache(&caches);
        let text = m.render();
        assert_eq!(value(&text, MODEL_CACHE_HIT_RATIO), 0.9);
        assert_eq!(value(&text, MODEL_CACHE_BYTES), (3 << 20) as f64);
        assert_eq!(value(&text, MODEL_CACHE_MODELS), 2.0);
        assert_eq!(value(&text, MODEL_CACHE_MISSES_TOTAL), 1.0);
    }

    #[test]
    fn breaker_state_is_published_per_org() {
        use prognos_dataflows::stats::BreakerState;
        let m = Metrics::new();
        m.init_orgs(&["a".to_string(), "b".to_string()]);
        assert!(
            m.render()
                .contains(r#"prognos_model_breaker_state{org="a"} 0"#)
        );
        let stats = Stats::default();
        stats.set_breakers(
            0,
            [("a", BreakerState::Open), ("b", BreakerState::HalfOpen)],
        );
        m.publish_breakers(&stats);
        let text = m.render();
        assert!(
            text.contains(r#"prognos_model_breaker_state{org="a"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"prognos_model_breaker_state{org="b"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn batches_land_in_histograms_and_orgs_start_at_zero() {
        let m = Metrics::new();
        m.init_orgs(&["a".to_string()]);
        let text = m.render();
        assert!(text.contains(r#"prognos_alerts_suppressed_total{org="a",type="PREDICTIVE"} 0"#));
        assert!(text.contains(r#"prognos_inference_batch_rows_count{org="a"} 0"#));
        m.observe_batches(
            &[
                BatchSample {
                    stage: Stage::Inference,
                    org: Some("a".into()),
                    rows: 100,
                    seconds: 0.002,
                },
                BatchSample {
                    stage: Stage::Features,
                    org: None,
                    rows: 7,
                    seconds: 0.0003,
                },
            ],
            3,
        );
        let text = m.render();
        assert!(text.contains(r#"prognos_inference_batch_rows_bucket{org="a",le="64"} 0"#));
        assert!(text.contains(r#"prognos_inference_batch_rows_bucket{org="a",le="128"} 1"#));
        assert!(text.contains(r#"prognos_inference_duration_seconds_sum{org="a"} 0.002"#));
        assert!(text.contains("prognos_features_batch_rows_sum 7"));
        assert!(text.contains("prognos_features_duration_seconds_count 1"));
        assert!(text.contains("prognos_batch_samples_dropped_total 3"));
    }
}
