//! The HTTP surface: health and Prometheus metrics (the REST and WebSocket API
//! build on this router).

use crate::metrics::Metrics;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use warp::Filter;
use warp::http::StatusCode;

/// What the routes read.
#[derive(Clone)]
pub struct ApiState {
    /// Process metrics.
    pub metrics: Metrics,
    /// Set once the pipeline is running; `/readyz` answers 503 until then.
    pub ready: Arc<AtomicBool>,
}

/// The routes.
pub fn routes(
    state: ApiState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})));
    let ready = state.ready.clone();
    let readyz = warp::path!("readyz").and(warp::get()).map(move || {
        let is_ready = ready.load(Ordering::Acquire);
        warp::reply::with_status(
            warp::reply::json(&serde_json::json!({"ready": is_ready})),
            if is_ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
        )
    });
    let metrics = state.metrics.clone();
    let metrics_route = warp::path!("metrics").and(warp::get()).map(move || {
        warp::reply::with_header(
            metrics.render(),
            "content-type",
            "text/plain; version=0.0.4; charset=utf-8",
        )
    });
    healthz
        .or(readyz)
        .or(metrics_route)
        .recover(|_rej: warp::Rejection| async {
            Ok::<_, std::convert::Infallible>(warp::reply::with_status(
                warp::reply::json(&serde_json::json!({"error": "not found"})),
                StatusCode::NOT_FOUND,
            ))
        })
}

/// Serve the routes on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    warp::serve(routes(state))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

#[cfg(test)]
mod tests;
