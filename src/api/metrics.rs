//! The API's own Prometheus metrics, registered into the process registry.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Requests by route template, method and status.
pub const HTTP_REQUESTS_TOTAL: &str = "prognos_http_requests_total";
/// Request latency by route template.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "prognos_http_request_duration_seconds";
/// Connected WebSocket clients.
pub const WS_CLIENTS: &str = "prognos_ws_clients";
/// WebSocket events sent.
pub const WS_EVENTS_TOTAL: &str = "prognos_ws_events_total";
/// WebSocket connections ended, by reason (`client`, `slow`, `lagged`, `heartbeat`, `error`, `shutdown`).
pub const WS_DISCONNECTS_TOTAL: &str = "prognos_ws_disconnects_total";
/// Login attempts by outcome (`ok`, `failed`, `rate_limited`).
pub const LOGIN_ATTEMPTS_TOTAL: &str = "prognos_login_attempts_total";
/// Training runs by trigger (`api`: `POST /api/ml/train`; `first_model`: the
/// embedded service's first models) and outcome (`completed`, `rejected`, `failed`).
pub const TRAINING_RUNS_TOTAL: &str = "prognos_training_runs_total";

/// The API's metrics.
#[derive(Clone)]
pub struct ApiMetrics {
    /// See [`HTTP_REQUESTS_TOTAL`].
    pub requests: IntCounterVec,
    /// See [`HTTP_REQUEST_DURATION_SECONDS`].
    pub duration: HistogramVec,
    /// See [`WS_CLIENTS`].
    pub ws_clients: IntGauge,
    /// See [`WS_EVENTS_TOTAL`].
    pub ws_events: prometheus::IntCounter,
    /// See [`WS_DISCONNECTS_TOTAL`].
    pub ws_disconnects: IntCounterVec,
    /// See [`LOGIN_ATTEMPTS_TOTAL`].
    pub logins: IntCounterVec,
    /// See [`TRAINING_RUNS_TOTAL`].
    pub training_runs: IntCounterVec,
}

impl ApiMetrics {
    /// Create and register into `registry` (once per registry).
    pub fn register(registry: &Registry) -> Result<ApiMetrics, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                HTTP_REQUESTS_TOTAL,
                "HTTP requests by route, method and status.",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(HTTP_REQUEST_DURATION_SECONDS, "HTTP request latency.")
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            &["route"],
        )?;
        let ws_clients = IntGauge::new(WS_CLIENTS, "Connected WebSocket clients.")?;
        let ws_events = prometheus::IntCounter::new(WS_EVENTS_TOTAL, "WebSocket events sent.")?;
        let ws_disconnects = IntCounterVec::new(
            Opts::new(
                WS_DISCONNECTS_TOTAL,
                "WebSocket connections ended, by reason.",
            ),
            &["reason"],
        )?;
        let logins = IntCounterVec::new(
            Opts::new(LOGIN_ATTEMPTS_TOTAL, "Login attempts by outcome."),
            &["outcome"],
        )?;
        let training_runs = IntCounterVec::new(
            Opts::new(TRAINING_RUNS_TOTAL, "Training runs by trigger and outcome."),
            &["trigger", "outcome"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(ws_clients.clone()))?;
        registry.register(Box::new(ws_events.clone()))?;
        registry.register(Box::new(ws_disconnects.clone()))?;
        registry.register(Box::new(logins.clone()))?;
        registry.register(Box::new(training_runs.clone()))?;
        // Every outcome exists from the start, so rate() and dashboards see zeros.
        for trigger in ["schedule", "api", "cli", "first_model"] {
            for outcome in ["completed", "rejected", "skipped", "failed", "interrupted"] {
                training_runs.with_label_values(&[trigger, outcome]);
            }
        }
        for outcome in ["ok", "failed", "rate_limited"] {
            logins.with_label_values(&[outcome]);
        }
        for reason in ["client", "slow", "lagged", "heartbeat", "error", "shutdown"] {
            ws_disconnects.with_label_values(&[reason]);
        }
        Ok(ApiMetrics {
            requests,
            duration,
            ws_clients,
            ws_events,
            ws_disconnects,
            logins,
            training_runs,
        })
    }
}
