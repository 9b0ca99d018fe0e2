use super::*;

async fn start() -> (
    String,
    ApiState,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = ApiState {
        metrics: Metrics::new(),
        ready: Arc::new(AtomicBool::new(false)),
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let h = tokio::spawn(run(listener, state.clone(), async {
        let _ = rx.await;
    }));
    (format!("http://{addr}"), state, tx, h)
}

#[tokio::test]
async fn health_readiness_and_metrics_over_real_http() {
    let (base, state, stop, handle) = start().await;
    let client = reqwest::Client::new();

    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["status"], "ok");

    let r = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    state.ready.store(true, Ordering::Release);
    let r = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    state
        .metrics
        .rows
        .with_label_values(&["acme-heat", "received"])
        .inc_by(42);
    let r = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let body = r.text().await.unwrap();
    assert!(
        body.contains(r#"prognos_rows_total{org="acme-heat",outcome="received"} 42"#),
        "{body}"
    );

    let r = client.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    stop.send(()).unwrap();
    handle.await.unwrap();
}
