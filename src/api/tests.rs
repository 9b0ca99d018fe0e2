//! Health, readiness, metrics and the route table over real HTTP (the role ×
//! org matrix, WebSocket and OpenAPI tests are in `tests/api.rs`).

use super::*;
use std::sync::atomic::Ordering;

type Started = (
    String,
    ApiState,
    tempfile::TempDir,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
);

async fn start() -> Started {
    start_at("127.0.0.1:0", None, |_| {}).await
}

/// The API on `addr`, with this cluster token, after `prepare` ran on its
/// registry (e.g. to register versions).
async fn start_at(
    addr: &str,
    cluster_token: Option<&str>,
    prepare: impl FnOnce(&Registry),
) -> Started {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::open(&dir.path().join("store")).unwrap());
    let store = AlertStore::open(&registry.db()).unwrap();
    prepare(&registry);
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
        cluster: None,
        config: None,
        settings: ApiSettings {
            admin_password: Some("bootstrap password".into()),
            cluster_token: cluster_token.map(str::to_string),
            ..ApiSettings::default()
        },
    })
    .unwrap();
    let listener = TcpListener::bind(addr).await.unwrap();
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

/// A version folder registered for acme-heat: metadata and two model files.
fn register_version(registry: &Registry, root: &std::path::Path, version: &str) {
    let dir = root.join("acme-heat").join(version);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("metadata.json"),
        format!(r#"{{"organizationId":"acme-heat","version":"{version}"}}"#),
    )
    .unwrap();
    std::fs::write(dir.join("failure.onnx"), vec![7u8; 70_000]).unwrap();
    std::fs::write(dir.join("ttf.onnx"), b"ttf bytes").unwrap();
    registry.register(&dir, 0).unwrap();
}

#[test]
fn workers_fetch_checked_versions_with_the_cluster_token_and_wait_for_the_controller() {
    use crate::training::shipping::{FetchMetrics, HttpModelSource, MANIFEST_FILE};
    use prognos_dataflows::models::cache::ModelSource;
    const TOKEN: &str = "a-cluster-token-of-some-length-000";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let models = tempfile::tempdir().unwrap();
    let cached = tempfile::tempdir().unwrap();
    // A port nothing listens on yet: the worker starts before the controller.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let reg = prometheus::Registry::new();
    let m = FetchMetrics::register(&reg).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let src = Arc::new(HttpModelSource::new(&base, TOKEN, m.clone(), stop).unwrap());
    let dir = cached.path().join("acme-heat/v1");
    let fetching = {
        let (src, dir) = (src.clone(), dir.clone());
        std::thread::spawn(move || src.ensure("acme-heat", "v1", &dir))
    };
    let t0 = std::time::Instant::now();
    while m.waiting.get() == 0 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "not waiting"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        !dir.exists(),
        "nothing is there while the controller is away"
    );
    // The controller comes up: the waiting fetch completes.
    let root = models.path().to_path_buf();
    let (_, _state, _d, stop_api, h) =
        rt.block_on(start_at(&format!("127.0.0.1:{port}"), Some(TOKEN), |r| {
            register_version(r, &root, "v1")
        }));
    fetching.join().unwrap().unwrap();
    assert_eq!(m.waiting.get(), 0);
    assert!(m.fetches.with_label_values(&["retry"]).get() >= 1);
    assert_eq!(m.fetches.with_label_values(&["fetched"]).get(), 1);
    for f in ["failure.onnx", "ttf.onnx", "metadata.json"] {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(root.join("acme-heat/v1").join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(dir.join(MANIFEST_FILE).exists());
    // Checked files on disk are used without a request; a damaged one is fetched again.
    src.ensure("acme-heat", "v1", &dir).unwrap();
    assert_eq!(m.fetches.with_label_values(&["cached"]).get(), 1);
    std::fs::write(dir.join("ttf.onnx"), b"TTF bytes").unwrap();
    src.ensure("acme-heat", "v1", &dir).unwrap();
    assert_eq!(m.fetches.with_label_values(&["fetched"]).get(), 2);
    assert_eq!(std::fs::read(dir.join("ttf.onnx")).unwrap(), b"ttf bytes");
    // A version the controller does not have is final (the org runs on its rules).
    let e = src
        .ensure("acme-heat", "v9", &cached.path().join("acme-heat/v9"))
        .unwrap_err();
    assert!(e.contains("404"), "{e}");
    assert_eq!(m.fetches.with_label_values(&["missing"]).get(), 1);

    // The routes want the token; no other caller gets a file.
    let http = reqwest::blocking::Client::new();
    let url = format!("{base}/api/cluster/models/acme-heat/v1/files/failure.onnx");
    assert_eq!(http.get(&url).send().unwrap().status(), 401);
    let r = http.get(&url).bearer_auth("not-the-token").send().unwrap();
    assert_eq!(r.status(), 401);
    let r = http.get(&url).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().len(), 70_000);
    for bad in ["..%2Fv1%2Fmetadata.json", ".manifest.json", "nope.onnx"] {
        let u = format!("{base}/api/cluster/models/acme-heat/v1/files/{bad}");
        assert_eq!(
            http.get(&u).bearer_auth(TOKEN).send().unwrap().status(),
            404,
            "{bad}"
        );
    }
    stop_api.send(()).unwrap();
    rt.block_on(h).unwrap();

    // A controller without a cluster token serves no model at all.
    let root2 = models.path().join("other");
    let (base2, _s, _d2, stop2, h2) = rt.block_on(start_at("127.0.0.1:0", None, |r| {
        register_version(r, &root2, "v1")
    }));
    let r = http
        .get(format!("{base2}/api/cluster/models/acme-heat/v1"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    stop2.send(()).unwrap();
    rt.block_on(h2).unwrap();
}

#[tokio::test]
async fn the_local_file_names_the_api_and_its_secret_is_the_only_local_token() {
    use std::os::unix::fs::PermissionsExt;
    let (base, state, dir, stop, handle) = start().await;
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let file = state.publish_local(dir.path(), addr).unwrap();
    let path = dir.path().join(local::FILE);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let info = local::running_service(dir.path()).unwrap();
    assert_eq!(info.url, base);
    let client = reqwest::Client::new();
    let me = |token: String| {
        let c = client.clone();
        let url = format!("{base}/api/auth/me");
        async move { c.get(url).bearer_auth(token).send().await.unwrap() }
    };
    let r = me(info.token.clone()).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (v["username"].as_str(), v["role"].as_str()),
        (Some(local::CLI_USER), Some("super_admin"))
    );
    for bad in ["local:", "local:0000", &format!("{}x", info.token)] {
        assert_eq!(me(bad.to_string()).await.status(), 401, "{bad}");
    }
    // A command names its OS user: the caller (and so the audit actor) is
    // `cli:<user>`, cleaned to the characters an actor may carry.
    for (sent, want) in [
        ("anna", "cli:anna"),
        ("o'brien x", "cli:obrienx"),
        ("", local::CLI_USER),
    ] {
        let v: serde_json::Value = client
            .get(format!("{base}/api/auth/me"))
            .bearer_auth(&info.token)
            .header(local::OS_USER_HEADER, sent)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["username"], want, "{sent:?}");
    }
    // The header means nothing to anyone else.
    let login: serde_json::Value = client
        .post(format!("{base}/api/auth/login"))
        .json(&serde_json::json!({"username": "admin", "password": "bootstrap password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin = login["token"].as_str().unwrap().to_string();
    let v: serde_json::Value = client
        .get(format!("{base}/api/auth/me"))
        .bearer_auth(&admin)
        .header(local::OS_USER_HEADER, "anna")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["username"], "admin");
    drop(file);
    assert!(!path.exists());
    assert!(local::running_service(dir.path()).is_none());
    stop.send(()).unwrap();
    handle.await.unwrap();
}
