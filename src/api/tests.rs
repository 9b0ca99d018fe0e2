//! Health, readiness, metrics and the route table over real HTTP (the role ×
//! org matrix, WebSocket and OpenAPI tests are in `tests/api.rs`).

use super::*;
use std::sync::atomic::Ordering;

async fn start() -> (
    String,
    ApiState,
    tempfile::TempDir,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::open(&dir.path().join("store")).unwrap());
    let store = AlertStore::open(&registry.db()).unwrap();
    let state = ApiState::open(ApiDeps {
        metrics: Metrics::new(),
        ready: Arc::new(AtomicBool::new(false)),
        registry,
        store,
        changes: tokio::sync::broadcast::channel(16).0,
        predictions: None,
        live: Arc::default(),
        thresholds_live: false,
        orgs: BTreeSet::from(["acme-heat".to_string()]),
        data_dir: dir.path().to_path_buf(),
        trainer: None,
        pipeline: Arc::default(),
        config: None,
        settings: ApiSettings {
            admin_password: Some("bootstrap password".into()),
            ..ApiSettings::default()
        },
    })
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let h = tokio::spawn(run(listener, state.clone(), async {
        let _ = rx.await;
    }));
    (format!("http://{addr}"), state, dir, tx, h)
}

#[tokio::test]
async fn health_readiness_and_metrics_over_real_http() {
    let (base, state, _dir, stop, handle) = start().await;
    let client = reqwest::Client::new();

    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
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
    assert!(body.contains("prognos_http_requests_total{"), "{body}");

    let r = client.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "not_found");
    let r = client.post(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");

    // The bootstrap super admin exists exactly once and is audited.
    assert_eq!(state.users().list().unwrap().len(), 1);
    let (entries, _) = state.audit().list(None, 10, None).unwrap();
    assert_eq!(entries[0].action, "users.bootstrap");

    stop.send(()).unwrap();
    handle.await.unwrap();
}

#[test]
fn bad_query_parameters_are_field_errors() {
    let route = routes::ROUTES
        .iter()
        .find(|r| r.operation_id == "listAlerts")
        .unwrap();
    let e = request::parse_query(
        route,
        "limit=0&type=NOPE&from=2024-01-02T00:00:00Z&to=5&bogus=1",
        500,
    )
    .unwrap_err();
    let fields: Vec<&str> = e.fields.keys().map(String::as_str).collect();
    assert_eq!(fields, vec!["bogus", "limit", "to", "type"]);
    let ok = request::parse_query(
        route,
        "limit=10&type=PREDICTIVE&from=2024-01-02T00:00:00Z&cursor=1700000000000:abc",
        500,
    )
    .unwrap();
    assert_eq!(ok["limit"], request::Value::Int(10));
    assert_eq!(ok["from"], request::Value::Int(1_704_153_600_000));
    assert!(request::parse_query(route, "limit=501", 500).is_err());
    assert!(request::parse_query(route, "limit=5&limit=6", 500).is_err());
}
