//! Prometheus metrics: names in one place, bounded label sets (org, machine,
//! component, reason; never row ids), updated per batch on hot paths.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

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
/// ONNX bytes held by the model caches.
pub const MODEL_CACHE_BYTES: &str = "prognos_model_cache_bytes";
/// Versions held by the model caches.
pub const MODEL_CACHE_MODELS: &str = "prognos_model_cache_models";

/// Alert records by org, type and kind (`notification`, `summary`, `resolved`),
/// as delivered to the store.
pub const ALERTS_TOTAL: &str = "prognos_alerts_total";
/// Alert records the store could not take (each is logged with its reason).
pub const ALERT_STORE_ERRORS_TOTAL: &str = "prognos_alert_store_errors_total";

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
    /// See [`ALERTS_TOTAL`].
    pub alerts: IntCounterVec,
    /// See [`ALERT_STORE_ERRORS_TOTAL`].
    pub alert_store_errors: prometheus::IntCounter,
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
        let cache_bytes =
            prometheus::IntGauge::new(MODEL_CACHE_BYTES, "ONNX bytes held by the model caches.")
                .expect("valid metric");
        let cache_models =
            prometheus::IntGauge::new(MODEL_CACHE_MODELS, "Model versions held by the caches.")
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
        for c in [
            Box::new(rows.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(alerts.clone()),
            Box::new(alert_store_errors.clone()),
            Box::new(simulated_failures.clone()),
            Box::new(build_info.clone()),
            Box::new(source_event_time.clone()),
            Box::new(cache_hits.clone()),
            Box::new(cache_misses.clone()),
            Box::new(cache_evictions.clone()),
            Box::new(model_load_seconds.clone()),
            Box::new(cache_bytes.clone()),
            Box::new(cache_models.clone()),
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
            alerts,
            alert_store_errors,
        }
    }

    /// Set the model cache metrics from the per-worker cache counters.
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

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
