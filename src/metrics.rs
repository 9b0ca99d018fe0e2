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
        for c in [
            Box::new(rows.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(simulated_failures.clone()),
            Box::new(build_info.clone()),
            Box::new(source_event_time.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        Metrics {
            registry,
            rows,
            simulated_failures,
            build_info,
            source_event_time,
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

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
