//! The API against a running server on 127.0.0.1:0 with a real HTTP client
//! (reqwest) and a real WebSocket client (tokio-tungstenite), over a real sled
//! store: the role × org × route isolation matrix, tokens (tampered, expired,
//! revoked), login rate limiting, pagination, alert actions, validation, the
//! WebSocket push (org isolation, `since` replay, slow clients, live predictions
//! on request), the model
//! routes with the audit log, and the OpenAPI document — which every JSON
//! answer of these tests is also checked against.

use futures_util::StreamExt;
use prognos::api::routes::{Access, ROUTES, Verb};
use prognos::api::{ApiDeps, ApiSettings, ApiState, TrainRequest, Trainer};
use prognos::auth::Role;
use prognos::commands::train::TrainOutcome;
use prognos::metrics::Metrics;
use prognos::outputs::PredictionFeed;
use prognos::status::PipelineStatus;
use prognos::store::{AlertStore, Change};
use prognos::training::registry::Registry;
use prognos_dataflows::config::Severity;
use prognos_dataflows::models::activations::Activations;
use prognos_dataflows::operators::inference::ScoredRow;
use prognos_dataflows::records::{
    Alert, AlertStatus, AlertType, FeatureRow, ModelHealth, SourcePosition,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio_tungstenite::tungstenite;

const A: &str = "org-a";
const B: &str = "org-b";
const PW: &str = "a long test password";
const SECRET: &str = "test secret of at least thirty-two bytes";
const T0: i64 = 1_710_028_800_000;

/// A trainer that registers a version with made-up metrics (the real one runs
/// Python for minutes; the API's part is the queue, status and audit).
struct FakeTrainer {
    root: PathBuf,
    registry: Arc<Registry>,
    live: Arc<Activations>,
}

fn version_dir(root: &Path, org: &str, v: &str) -> PathBuf {
    let d = root.join("models").join(org).join(v);
    std::fs::create_dir_all(&d).unwrap();
    // A training report picture (any bytes: the route serves the file as it is).
    std::fs::write(d.join("report.png"), b"\x89PNG\r\n\x1a\n report").unwrap();
    std::fs::write(
        d.join("metadata.json"),
        json!({"organizationId": org, "version": v, "featureNames": ["a", "b"],
            "metrics": {"eventRecall": 0.8, "falseAlarmsPerMachineDay": 0.5, "auc": 0.9}})
        .to_string(),
    )
    .unwrap();
    d
}

impl Trainer for FakeTrainer {
    fn train(&self, org: &str, req: &TrainRequest) -> anyhow::Result<TrainOutcome> {
        anyhow::ensure!(req.seed != Some(666), "asked to fail");
        let v = format!("v{}", self.registry.versions(org)?.len() + 1);
        let dir = version_dir(&self.root, org, &v);
        let rec = self
            .registry
            .register(&dir, chrono::Utc::now().timestamp_millis())?;
        if req.force {
            self.registry.activate(
                org,
                Some(&v),
                chrono::Utc::now().timestamp_millis(),
                &self.live,
            )?;
        }
        Ok(TrainOutcome {
            organization_id: org.into(),
            version: v,
            deployed: req.force,
            dir,
            metrics: rec.metrics,
            status: if req.force { "COMPLETED" } else { "REJECTED" }.into(),
            reason: None,
            training_rows: 0,
        })
    }
}

struct Server {
    base: String,
    ws: String,
    state: ApiState,
    store: AlertStore,
    registry: Arc<Registry>,
    changes: tokio::sync::broadcast::Sender<Change>,
    /// What `prognos run` feeds from the dataflow's scored rows.
    predictions: PredictionFeed,
    pipeline: Arc<PipelineStatus>,
    live: Arc<Activations>,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    doc: Value,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn server_with(capacity: usize, settings: ApiSettings) -> Server {
    server_opts(capacity, settings, true).await
}

/// `pipeline_runs`: whether a dataflow follows the process's activation log —
/// live predictions and live thresholds, as in `prognos run` (the controller's
/// workers follow its thresholds too, but it has no predictions); false: a
/// service no dataflow follows.
async fn server_opts(capacity: usize, settings: ApiSettings, pipeline_runs: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::open(&dir.path().join("store")).unwrap());
    let store = AlertStore::open(&registry.db()).unwrap();
    let live: Arc<Activations> = Arc::default();
    let changes = tokio::sync::broadcast::channel(capacity).0;
    let predictions = PredictionFeed {
        tx: tokio::sync::broadcast::channel(capacity).0,
        names: Arc::new(
            test_config()
                .orgs
                .iter()
                .map(|(id, o)| (id.clone(), o.feature_names()))
                .collect(),
        ),
    };
    let pipeline: Arc<PipelineStatus> = Arc::default();
    let state = ApiState::open(ApiDeps {
        metrics: Metrics::new(),
        ready: Arc::new(AtomicBool::new(true)),
        registry: registry.clone(),
        store: store.clone(),
        changes: changes.clone(),
        predictions: pipeline_runs.then(|| predictions.tx.clone()),
        live: live.clone(),
        thresholds_live: pipeline_runs,
        orgs: BTreeSet::from([A.to_string(), B.to_string()]),
        data_dir: dir.path().to_path_buf(),
        trainer: Some(Arc::new(FakeTrainer {
            root: dir.path().to_path_buf(),
            registry: registry.clone(),
            live: live.clone(),
        })),
        pipeline: pipeline.clone(),
        cluster: None,
        config: Some(test_config()),
        settings: ApiSettings {
            jwt_secret: Some(SECRET.into()),
            admin_username: "root".into(),
            admin_password: Some(PW.into()),
            ..settings
        },
    })
    .unwrap();
    for (u, role, org) in [
        ("op-a", Role::Operator, Some(A)),
        ("ad-a", Role::Admin, Some(A)),
        ("op-b", Role::Operator, Some(B)),
        ("ad-b", Role::Admin, Some(B)),
    ] {
        state.users().add(u, role, org, PW, 0).unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(prognos::api::run(listener, state.clone(), async {
        let _ = rx.await;
    }));
    Server {
        base: format!("http://{addr}"),
        ws: format!("ws://{addr}/ws"),
        state,
        store,
        registry,
        changes,
        predictions,
        pipeline,
        live,
        dir,
        http: reqwest::Client::new(),
        doc: prognos::api::openapi::document(),
        stop: Some(stop),
    }
}

/// The example configuration with its first two orgs as org A and org B.
fn test_config() -> prognos_dataflows::config::Config {
    let mut c = prognos_dataflows::config::Config::from_toml_str(prognos::settings::EXAMPLE_CONFIG)
        .unwrap();
    let a = c.orgs.remove("acme-heat").unwrap();
    let b = c.orgs.remove("borealis-forge").unwrap();
    c.orgs = BTreeMap::from([(A.to_string(), a), (B.to_string(), b)]);
    c.validate().unwrap();
    c
}

/// Org A's configuration as the API reads and writes it.
fn org_a_json() -> Value {
    serde_json::to_value(&test_config().orgs[A]).unwrap()
}

async fn server() -> Server {
    server_with(1024, ApiSettings::default()).await
}

fn notif(org: &str, machine: &str, component: &str, t: AlertType, id: &str, ts: i64) -> Alert {
    Alert {
        id: id.into(),
        organization_id: org.into(),
        machine_id: machine.into(),
        alert_type: t,
        severity: if t == AlertType::Warning {
            Severity::Warning
        } else {
            Severity::Critical
        },
        component: component.into(),
        probability: 0.9,
        confidence: 0.8,
        time_to_failure: 5.0,
        model_version: "v1".into(),
        rule: None,
        message: format!("{component} on {machine}"),
        ts,
        created_at: ts + 1_000,
        resolved_at: None,
        status: AlertStatus::Active,
        suppressed_count: 0,
        top_features: vec![],
        is_accurate: None,
        feedback_at: None,
        feedback_by: None,
    }
}

impl Server {
    /// Apply a record as the alert sink does: store, then broadcast.
    fn deliver(&self, a: &Alert) -> Option<Change> {
        let c = self.store.apply(a).unwrap();
        if let Some(c) = &c {
            let _ = self.changes.send(c.clone());
        }
        c
    }

    /// `n` alerts of `org` on distinct machines, one minute apart; their ids.
    fn seed(&self, org: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                let id = format!("{org}-alert-{i}");
                let t = [
                    AlertType::Predictive,
                    AlertType::Critical,
                    AlertType::Warning,
                ][i % 3];
                let comp = if i % 2 == 0 {
                    "Heater"
                } else {
                    "General Equipment"
                };
                self.deliver(&notif(
                    org,
                    &format!("m{i}"),
                    comp,
                    t,
                    &id,
                    T0 + i as i64 * 60_000,
                ));
                id
            })
            .collect()
    }

    async fn login(&self, user: &str) -> String {
        let r = self
            .http
            .post(format!("{}/api/auth/login", self.base))
            .json(&json!({"username": user, "password": PW}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "login {user}");
        let v: Value = r.json().await.unwrap();
        check_schema(&self.doc, "LoginResponse", &v);
        v["token"].as_str().unwrap().to_string()
    }

    /// A request; the answer's JSON is checked against the documented schema
    /// of its status (the success schema, or Error).
    async fn call(
        &self,
        method: Verb,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut rq = match method {
            Verb::Get => self.http.get(url),
            Verb::Post => self.http.post(url),
            Verb::Put => self.http.put(url),
        };
        if let Some(t) = token {
            rq = rq.bearer_auth(t);
        }
        if let Some(b) = body {
            rq = rq.json(&b);
        }
        let r = rq.send().await.unwrap();
        let status = r.status().as_u16();
        for h in [
            "x-content-type-options",
            "x-frame-options",
            "content-security-policy",
            "cache-control",
        ] {
            assert!(r.headers().contains_key(h), "{path}: no {h}");
        }
        let text = r.text().await.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status >= 400 {
            check_schema(&self.doc, "Error", &v);
        } else if let Some(schema) = self.success_schema(method, path) {
            check_schema(&self.doc, &schema, &v);
        }
        (status, v)
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(Verb::Get, path, Some(token), None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(Verb::Post, path, Some(token), Some(body)).await
    }

    fn success_schema(&self, method: Verb, path: &str) -> Option<String> {
        let path = path.split('?').next().unwrap();
        let route = ROUTES
            .iter()
            .filter(|r| r.method == method && fits(r.path, path))
            .max_by_key(|r| r.path.split('/').filter(|s| !s.starts_with('{')).count())?;
        let op = &self.doc["paths"][route.path][method.lower()];
        let (_, resp) = op["responses"]
            .as_object()?
            .iter()
            .find(|(k, _)| k.starts_with('2'))?;
        let r = resp["content"]["application/json"]["schema"]["$ref"].as_str()?;
        Some(r.rsplit('/').next().unwrap().to_string())
    }
}

fn fits(template: &str, path: &str) -> bool {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t.starts_with('{') || t == p)
}

/// A small validator for the OpenAPI 3.0 schema subset `schemas.rs` uses.
fn validate(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        let s = &doc["components"]["schemas"][name];
        assert!(!s.is_null(), "dangling $ref {r}");
        return validate(doc, s, v, at);
    }
    if v.is_null() {
        return if schema.get("type").is_none() || schema["nullable"] == true {
            Ok(())
        } else {
            Err(format!("{at}: null where {schema} is not nullable"))
        };
    }
    if let Some(e) = schema["enum"].as_array()
        && !e.contains(v)
    {
        return Err(format!("{at}: {v} not in {e:?}"));
    }
    match schema["type"].as_str() {
        None => Ok(()),
        Some("string") if v.is_string() => Ok(()),
        Some("integer") if v.is_i64() || v.is_u64() => Ok(()),
        Some("number") if v.is_number() => Ok(()),
        Some("boolean") if v.is_boolean() => Ok(()),
        Some("array") => {
            let items = v.as_array().ok_or(format!("{at}: not an array"))?;
            items
                .iter()
                .enumerate()
                .try_for_each(|(i, x)| validate(doc, &schema["items"], x, &format!("{at}[{i}]")))
        }
        Some("object") => {
            let o = v.as_object().ok_or(format!("{at}: not an object"))?;
            if let Some(req) = schema["required"].as_array() {
                for k in req {
                    let k = k.as_str().unwrap();
                    if !o.contains_key(k) {
                        return Err(format!("{at}: missing {k}"));
                    }
                }
            }
            for (k, x) in o {
                match schema["properties"].get(k) {
                    Some(s) => validate(doc, s, x, &format!("{at}.{k}"))?,
                    None => match &schema["additionalProperties"] {
                        Value::Bool(false) => return Err(format!("{at}: undocumented field {k}")),
                        Value::Object(s) => {
                            validate(doc, &Value::Object(s.clone()), x, &format!("{at}.{k}"))?
                        }
                        _ => {}
                    },
                }
            }
            Ok(())
        }
        Some(t) => Err(format!("{at}: {v} is not {t}")),
    }
}

fn check_schema(doc: &Value, name: &str, v: &Value) {
    let s = json!({"$ref": format!("#/components/schemas/{name}")});
    if let Err(e) = validate(doc, &s, v, name) {
        panic!("answer does not match its documented schema: {e}\n{v:#}");
    }
}

/// A concrete path for a route template, with `id` for `{id}`, `Heater` for
/// `{component}` and the org the alert id belongs to for `{org}`.
fn concrete(template: &str, id: &str) -> String {
    let org = if id.starts_with(B) { B } else { A };
    template
        .replace("{id}", id)
        .replace("{component}", "Heater")
        .replace("{version}", "v1")
        .replace("{org}", org)
}

fn body_for(route: &prognos::api::routes::Route) -> Option<Value> {
    let schema = route.body?.schema;
    Some(match schema {
        "FeedbackRequest" => json!({"isAccurate": true}),
        "DeployRequest" => json!({"version": "v1"}),
        "LoginRequest" => json!({"username": "nobody", "password": "nothing"}),
        "OrgConfig" => org_a_json(),
        "CreateOrgRequest" => json!({"id": "org-new", "config": org_a_json()}),
        "NewWorkOrder" => {
            json!({"machineId": "furnace-1", "component": "Heater", "start": "2024-03-10T00:00:00Z"})
        }
        _ => json!({}),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_org_route_isolation_matrix() {
    let s = server().await;
    let a_ids = s.seed(A, 4);
    let b_ids = s.seed(B, 4);
    for org in [A, B] {
        s.registry
            .register(&version_dir(s.dir.path(), org, "v1"), 1)
            .unwrap();
    }
    let users = ["op-a", "ad-a", "op-b", "ad-b", "root"];
    let mut tokens = BTreeMap::new();
    for u in users {
        tokens.insert(u, s.login(u).await);
    }
    let protected: Vec<_> = ROUTES
        .iter()
        .filter(|r| matches!(r.access, Access::Roles(_)) && r.path != "/ws")
        .collect();
    assert_eq!(protected.len(), 27);

    for r in &protected {
        let path = concrete(r.path, &a_ids[0]);
        // No token, a garbage token: 401 everywhere.
        let (st, v) = s.call(r.method, &path, None, body_for(r)).await;
        assert_eq!(st, 401, "{} {path}: {v}", r.method.as_str());
        let (st, _) = s
            .call(r.method, &path, Some("not.a.token"), body_for(r))
            .await;
        assert_eq!(st, 401, "{} {path}", r.method.as_str());

        for (user, own, other) in [
            ("op-a", A, B),
            ("ad-a", A, B),
            ("op-b", B, A),
            ("ad-b", B, A),
        ] {
            let t = &tokens[user];
            let admin = user.starts_with("ad");
            let allowed = match r.access {
                Access::Roles(roles) => {
                    roles.contains(&if admin { Role::Admin } else { Role::Operator })
                }
                Access::Public | Access::Cluster => true,
            };
            let (own_ids, other_ids) = if own == A {
                (&a_ids, &b_ids)
            } else {
                (&b_ids, &a_ids)
            };
            // Another org named with ?org=: 404 whatever the role (never 403).
            if r.query.iter().any(|q| q.name == "org") {
                let p = format!("{}?org={other}", concrete(r.path, &own_ids[1]));
                let (st, v) = s.call(r.method, &p, Some(t), body_for(r)).await;
                assert_eq!(st, 404, "{user} {} {p}: {v}", r.method.as_str());
                let p = format!("{}?org=no-such-org", concrete(r.path, &own_ids[1]));
                let (st, _) = s.call(r.method, &p, Some(t), body_for(r)).await;
                assert_eq!(st, 404, "{user} {p}");
            }
            // Another org's alert by id: 404, also for a role that may not act.
            if r.path.contains("{id}") {
                let p = concrete(r.path, &other_ids[1]);
                let (st, v) = s.call(r.method, &p, Some(t), body_for(r)).await;
                assert_eq!(st, 404, "{user} {} {p}: {v}", r.method.as_str());
            }
            // Its own org: 403 when the role may not, else not an auth error.
            if r.method == Verb::Post && r.path.contains("resolve") {
                continue; // resolving is checked in the round trip (it changes state)
            }
            let p = concrete(r.path, &own_ids[1]);
            let (st, v) = s.call(r.method, &p, Some(t), body_for(r)).await;
            if allowed {
                assert!(
                    !matches!(st, 401 | 403 | 404),
                    "{user} {} {p}: {st} {v}",
                    r.method.as_str()
                );
            } else {
                assert_eq!(st, 403, "{user} {} {p}: {v}", r.method.as_str());
            }
        }
        // The super admin reaches both orgs.
        for (org, ids) in [(A, &a_ids), (B, &b_ids)] {
            if r.method == Verb::Post && (r.path.contains("resolve") || r.path.contains("train")) {
                continue;
            }
            let p = if r.query.iter().any(|q| q.name == "org") {
                format!("{}?org={org}", concrete(r.path, &ids[2]))
            } else {
                concrete(r.path, &ids[2])
            };
            let (st, v) = s
                .call(r.method, &p, Some(&tokens["root"]), body_for(r))
                .await;
            assert!(
                !matches!(st, 401 | 403 | 404),
                "root {} {p}: {st} {v}",
                r.method.as_str()
            );
        }
    }

    // Lists, statistics and trends of org A never show or count org B.
    for user in ["op-a", "ad-a"] {
        let t = &tokens[user];
        let (_, page) = s.get("/api/predictive-alerts?limit=500", t).await;
        assert_eq!(page["total"], 4);
        assert!(
            page["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["organizationId"] == A)
        );
        let (_, stats) = s.get("/api/predictive-alerts/statistics", t).await;
        assert_eq!(stats["total"], 4);
        let (_, comp) = s.get("/api/predictive-alerts/component/Heater", t).await;
        assert!(
            comp["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["organizationId"] == A)
        );
        let (_, tr) = s.get("/api/predictive-alerts/trends/summary", t).await;
        let n: u64 = tr["days"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["total"].as_u64().unwrap())
            .sum();
        assert_eq!(n, 4);
    }
    // A super admin without ?org= must name one for lists, but finds an alert by id.
    let (st, v) = s.get("/api/predictive-alerts", &tokens["root"]).await;
    assert_eq!((st, v["error"]["fields"]["org"].is_string()), (400, true));
    let (st, v) = s
        .get(
            &format!("/api/predictive-alerts/{}", b_ids[3]),
            &tokens["root"],
        )
        .await;
    assert_eq!((st, v["organizationId"].as_str()), (200, Some(B)));
    let (st, me) = s.get("/api/auth/me", &tokens["op-b"]).await;
    assert_eq!(
        (st, me["role"].as_str(), me["organizationId"].as_str()),
        (200, Some("operator"), Some(B))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_orders_are_stored_once_kept_to_their_org_and_audited() {
    let s = server().await;
    let (ad_a, op_a, ad_b, root) = (
        s.login("ad-a").await,
        s.login("op-a").await,
        s.login("ad-b").await,
        s.login("root").await,
    );
    let path = format!("/api/orgs/{A}/failures");
    let wo = |start: &str| {
        json!({"machineId": "furnace-1", "component": "Heater", "start": start,
            "end": "2024-03-10T02:00:00Z", "note": "element burnt out"})
    };
    let (st, first) = s.post(&path, &ad_a, wo("2024-03-10T01:00:00Z")).await;
    assert_eq!(st, 201, "{first}");
    assert_eq!(first["organizationId"], A);
    assert_eq!(first["source"], "api");
    assert_eq!(first["createdBy"], "ad-a");
    assert_eq!(first["start"], "2024-03-10T01:00:00.000Z");
    // The same failure again (epoch ms this time, another note): the stored one, 200.
    let mut again = wo("x");
    again["start"] = json!(1_710_032_400_000_i64);
    again["note"] = json!("entered twice");
    let (st, second) = s.post(&path, &root, again).await;
    assert_eq!((st, &second), (200, &first));
    let (st, _) = s.post(&path, &root, wo("2024-03-09T01:00:00Z")).await;
    assert_eq!(st, 201);
    // Bad bodies: the field named.
    let (st, v) = s.post(&path, &ad_a, wo("2024-03-11T00:00:00Z")).await;
    assert_eq!(
        (st, v["error"]["fields"]["end"].is_string()),
        (400, true),
        "{v}"
    );
    let mut no_machine = wo("2024-03-09T00:00:00Z");
    no_machine["machineId"] = json!("");
    let (st, v) = s.post(&path, &ad_a, no_machine).await;
    assert_eq!(
        (st, v["error"]["fields"]["machineId"].is_string()),
        (400, true),
        "{v}"
    );
    // Roles and orgs: an operator reads but may not add; another org is 404.
    assert_eq!(
        s.post(&path, &op_a, wo("2024-03-08T00:00:00Z")).await.0,
        403
    );
    assert_eq!(
        s.post(&path, &ad_b, wo("2024-03-08T00:00:00Z")).await.0,
        404
    );
    assert_eq!(s.get(&path, &ad_b).await.0, 404);
    let other = format!("/api/orgs/{B}/failures");
    assert_eq!(s.get(&other, &op_a).await.0, 404);
    assert_eq!(
        s.post(&other, &op_a, wo("2024-03-08T00:00:00Z")).await.0,
        404
    );
    assert_eq!(s.get("/api/orgs/no-such-org/failures", &root).await.0, 404);
    let (st, list) = s.get(&path, &op_a).await;
    assert_eq!(st, 200);
    let starts: Vec<&str> = list["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["start"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        ["2024-03-10T01:00:00.000Z", "2024-03-09T01:00:00.000Z"]
    );
    let (_, since) = s
        .get(&format!("{path}?from=2024-03-10T00:00:00Z"), &op_a)
        .await;
    assert_eq!(since["failures"].as_array().unwrap().len(), 1);
    let (_, b_list) = s.get(&other, &ad_b).await;
    assert_eq!(b_list["failures"], json!([]));
    // Stored beside the org's history, where the CLI and training read them.
    let file = s.dir.path().join(format!("history/org={A}/failures.jsonl"));
    assert_eq!(std::fs::read_to_string(file).unwrap().lines().count(), 2);
    // Audited: who added what, and what was refused.
    let (_, log) = s.get("/api/audit?limit=500", &ad_a).await;
    let adds: Vec<(&str, &str, &str)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "failures.add")
        .map(|e| {
            (
                e["actor"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
                e["detail"]["stored"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        adds,
        [
            ("ad-a", "refused", "-"),
            ("ad-a", "refused", "-"),
            ("root", "ok", "new"),
            ("root", "ok", "existing"),
            ("ad-a", "ok", "new"),
        ],
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_tampered_expired_or_revoked_are_401() {
    let s = server().await;
    let t = s.login("op-a").await;
    let me = "/api/auth/me";
    assert_eq!(s.get(me, &t).await.0, 200);

    let parts: Vec<&str> = t.split('.').collect();
    // A payload that claims super_admin, with the old signature.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["role"] = "super_admin".into();
    claims["org"] = Value::Null;
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    assert_eq!(s.get(me, &forged).await.0, 401);
    // alg none.
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    assert_eq!(s.get(me, &none).await.0, 401);
    // Signed with another secret.
    let now = jsonwebtoken::get_current_timestamp();
    let sign = |c: &Value, secret: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            c,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let good = json!({"sub": "op-a", "role": "operator", "org": A, "epoch": 0, "iat": now, "exp": now + 60});
    assert_eq!(
        s.get(me, &sign(&good, SECRET)).await.0,
        200,
        "the test signs like the server"
    );
    assert_eq!(
        s.get(me, &sign(&good, "another secret of thirty-two bytes!!"))
            .await
            .0,
        401
    );
    // Expired.
    let mut old = good.clone();
    old["iat"] = (now - 7200).into();
    old["exp"] = (now - 3600).into();
    assert_eq!(s.get(me, &sign(&old, SECRET)).await.0, 401);
    // A user that does not exist.
    let mut ghost = good.clone();
    ghost["sub"] = "ghost".into();
    assert_eq!(s.get(me, &sign(&ghost, SECRET)).await.0, 401);
    // A new password revokes older tokens; removing the user revokes everything.
    s.state
        .users()
        .set_password("op-a", "another long password", 1)
        .unwrap();
    assert_eq!(s.get(me, &t).await.0, 401);
    let t2 = {
        let r = s
            .http
            .post(format!("{}/api/auth/login", s.base))
            .json(&json!({"username": "op-a", "password": "another long password"}))
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(s.get(me, &t2).await.0, 200);
    s.state.users().remove("op-a").unwrap();
    assert_eq!(s.get(me, &t2).await.0, 401);
    // Not a bearer scheme.
    let r = s
        .http
        .get(format!("{}{me}", s.base))
        .header("authorization", format!("Basic {t2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_is_rate_limited_and_validated() {
    let s = server_with(
        16,
        ApiSettings {
            login_max_failures: 3,
            ..ApiSettings::default()
        },
    )
    .await;
    let login = |u: &str, p: &str| {
        s.call(
            Verb::Post,
            "/api/auth/login",
            None,
            Some(json!({"username": u, "password": p})),
        )
    };
    assert_eq!(login("op-a", "wrong").await.0, 401);
    assert_eq!(
        login("nobody", "wrong").await.0,
        401,
        "unknown users look the same"
    );
    assert_eq!(login("op-a", "wrong").await.0, 401);
    assert_eq!(login("op-a", "wrong").await.0, 401);
    let (st, v) = login("op-a", PW).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{v}"
    );
    assert_eq!(
        login("ad-a", PW).await.0,
        200,
        "other users are not locked out"
    );
    let (st, v) = s
        .call(
            Verb::Post,
            "/api/auth/login",
            None,
            Some(json!({"username": "x"})),
        )
        .await;
    assert_eq!(
        (st, v["error"]["fields"]["password"].as_str()),
        (400, Some("is required"))
    );
    let r = s
        .http
        .post(format!("{}/api/auth/login", s.base))
        .body("username=x")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_walks_every_alert_once() {
    let s = server().await;
    let ids: BTreeSet<String> = s.seed(A, 23).into_iter().collect();
    s.seed(B, 5);
    let t = s.login("op-a").await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut p = "/api/predictive-alerts?limit=5".to_string();
        if let Some(c) = &cursor {
            p.push_str(&format!(
                "&cursor={}",
                percent_encoding::utf8_percent_encode(c, percent_encoding::NON_ALPHANUMERIC)
            ));
        }
        let (st, page) = s.get(&p, &t).await;
        assert_eq!(st, 200, "{page}");
        assert_eq!(page["total"], 23);
        pages += 1;
        for a in page["alerts"].as_array().unwrap() {
            seen.push(a["id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 23);
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), ids);
    // Newest first.
    assert_eq!(seen[0], "org-a-alert-22");
    // Filters and time ranges.
    let (_, p) = s
        .get("/api/predictive-alerts?type=PREDICTIVE&limit=500", &t)
        .await;
    assert_eq!(p["total"], 8);
    let from = prognos_dataflows::time::format_rfc3339_ms(T0 + 10 * 60_000);
    let (_, p) = s
        .get(
            &format!("/api/predictive-alerts?from={from}&to={}", T0 + 15 * 60_000),
            &t,
        )
        .await;
    assert_eq!(p["total"], 5);
    let (_, p) = s
        .get(
            "/api/predictive-alerts/component/General%20Equipment?limit=2",
            &t,
        )
        .await;
    assert_eq!(
        (p["total"].as_u64(), p["alerts"].as_array().unwrap().len()),
        (Some(11), 2)
    );
    // Bad parameters: one 400 naming each.
    let (st, v) = s
        .get(
            "/api/predictive-alerts?limit=0&status=OPEN&cursor=nope&x=1",
            &t,
        )
        .await;
    assert_eq!(st, 400);
    let fields: Vec<&String> = v["error"]["fields"].as_object().unwrap().keys().collect();
    assert_eq!(fields, vec!["cursor", "limit", "status", "x"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_acknowledge_resolve_round_trips() {
    let s = server().await;
    let ids = s.seed(A, 3);
    let t = s.login("op-a").await;
    let base = format!("/api/predictive-alerts/{}", ids[0]);

    let (st, a) = s
        .post(
            &format!("{base}/feedback"),
            &t,
            json!({"isAccurate": false, "comment": "door opened"}),
        )
        .await;
    assert_eq!(st, 200, "{a}");
    assert_eq!(
        (a["isAccurate"].as_bool(), a["feedbackBy"].as_str()),
        (Some(false), Some("op-a"))
    );
    let (_, a) = s
        .post(&format!("{base}/feedback"), &t, json!({"isAccurate": true}))
        .await;
    assert_eq!(a["isAccurate"], true, "the latest feedback wins");

    let (st, a) = s.post(&format!("{base}/acknowledge"), &t, json!({})).await;
    assert_eq!(
        (st, a["status"].as_str(), a["acknowledgedBy"].as_str()),
        (200, Some("ACKNOWLEDGED"), Some("op-a"))
    );
    let (st, v) = s.post(&format!("{base}/acknowledge"), &t, json!({})).await;
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("conflict")));
    let (st, a) = s.post(&format!("{base}/resolve"), &t, json!({})).await;
    assert_eq!(
        (st, a["status"].as_str(), a["resolvedBy"].as_str()),
        (200, Some("RESOLVED"), Some("op-a"))
    );
    assert_eq!(
        s.post(&format!("{base}/resolve"), &t, json!({})).await.0,
        409
    );

    let (_, a) = s.get(&base, &t).await;
    assert_eq!(
        (a["status"].as_str(), a["isAccurate"].as_bool()),
        (Some("RESOLVED"), Some(true))
    );
    let (_, stats) = s.get("/api/predictive-alerts/statistics", &t).await;
    assert_eq!(
        (
            stats["withFeedback"].as_u64(),
            stats["accurate"].as_u64(),
            stats["acknowledged"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    let (_, p) = s.get("/api/predictive-alerts?status=RESOLVED", &t).await;
    assert_eq!(p["total"], 1);

    // Validation: field-level errors, unknown fields, size and type limits.
    let fb = format!("/api/predictive-alerts/{}/feedback", ids[1]);
    let (st, v) = s.post(&fb, &t, json!({"isAccurate": "yes"})).await;
    assert_eq!(st, 400);
    assert!(v["error"]["fields"]["isAccurate"].is_string(), "{v}");
    let (st, v) = s
        .post(&fb, &t, json!({"isAccurate": true, "stars": 5}))
        .await;
    assert_eq!(
        (st, v["error"]["fields"]["stars"].as_str()),
        (400, Some("unknown field"))
    );
    let (st, v) = s.post(&fb, &t, json!({})).await;
    assert_eq!(
        (st, v["error"]["fields"]["isAccurate"].as_str()),
        (400, Some("is required"))
    );
    let (st, v) = s
        .post(
            &fb,
            &t,
            json!({"isAccurate": true, "comment": "x".repeat(2001)}),
        )
        .await;
    assert_eq!(
        (st, v["error"]["fields"]["comment"].is_string()),
        (400, true)
    );
    let (st, _) = s
        .post(
            &fb,
            &t,
            json!({"isAccurate": true, "comment": "x".repeat(70_000)}),
        )
        .await;
    assert_eq!(st, 413);
    let r = s
        .http
        .post(format!("{}{fb}", s.base))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        s.post(
            "/api/predictive-alerts/no-such-id/acknowledge",
            &t,
            json!({})
        )
        .await
        .0,
        404
    );
}

async fn ws_connect(
    s: &Server,
    query: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (ws, resp) = tokio_tungstenite::connect_async(format!("{}?{query}", s.ws))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON event (pings skipped), or None on close or after `wait`.
async fn next_event(ws: &mut Ws, wait: Duration, doc: &Value) -> Option<Value> {
    loop {
        let m = tokio::time::timeout(wait, ws.next()).await.ok()??.ok()?;
        match m {
            tungstenite::Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                check_schema(doc, "WsEvent", &v);
                return Some(v);
            }
            tungstenite::Message::Close(_) => return None,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_pushes_own_org_only_and_replays_since() {
    let s = server().await;
    let (ta, tb, root) = (
        s.login("op-a").await,
        s.login("op-b").await,
        s.login("root").await,
    );
    let wait = Duration::from_secs(5);

    // Refused before the upgrade: no token, a bad token, another org.
    for q in [
        "".to_string(),
        "token=bad".into(),
        format!("token={ta}&org={B}"),
        format!("token={ta}&since=-1"),
    ] {
        match tokio_tungstenite::connect_async(format!("{}?{q}", s.ws)).await {
            Err(tungstenite::Error::Http(r)) => assert!(
                matches!(r.status().as_u16(), 400 | 401 | 404),
                "{q}: {}",
                r.status()
            ),
            other => panic!("{q}: upgraded: {:?}", other.map(|x| x.1.status())),
        }
    }
    // Plain GET: 426 after the auth checks.
    let r = s
        .http
        .get(s.ws.replace("ws://", "http://"))
        .bearer_auth(&ta)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 426);

    let mut wa = ws_connect(&s, &format!("token={ta}")).await;
    let mut wb = ws_connect(&s, &format!("token={tb}")).await;
    let mut wroot = ws_connect(&s, &format!("token={root}&org={A}")).await;
    for w in [&mut wa, &mut wb, &mut wroot] {
        let hello = next_event(w, wait, &s.doc).await.unwrap();
        assert_eq!(hello["type"], "hello");
    }
    s.deliver(&notif(B, "m1", "Heater", AlertType::Critical, "b1", T0));
    s.deliver(&notif(A, "m1", "Heater", AlertType::Critical, "a1", T0));
    s.deliver(&notif(
        A,
        "m1",
        "Heater",
        AlertType::Critical,
        "a2",
        T0 + 60_000,
    ));
    let mut res = notif(A, "m1", "Heater", AlertType::Critical, "a3", T0 + 900_000);
    res.status = AlertStatus::Resolved;
    res.resolved_at = Some(T0 + 900_000);
    s.deliver(&res);

    let mut got = Vec::new();
    for _ in 0..3 {
        let e = next_event(&mut wa, wait, &s.doc).await.unwrap();
        assert_eq!(e["alert"]["organizationId"], A, "{e}");
        got.push((
            e["type"].as_str().unwrap().to_string(),
            e["seq"].as_u64().unwrap(),
        ));
    }
    assert_eq!(
        got.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        vec!["alert.created", "alert.updated", "alert.resolved"]
    );
    let e = next_event(&mut wroot, wait, &s.doc).await.unwrap();
    assert_eq!(e["alert"]["organizationId"], A);
    let e = next_event(&mut wb, wait, &s.doc).await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["alert"]["id"].as_str()),
        (Some("alert.created"), Some("b1"))
    );
    // An operator action reaches the org's clients and no other.
    let (st, _) = s
        .post("/api/predictive-alerts/b1/acknowledge", &tb, json!({}))
        .await;
    assert_eq!(st, 200);
    let e = next_event(&mut wb, wait, &s.doc).await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["alert"]["status"].as_str()),
        (Some("alert.updated"), Some("ACKNOWLEDGED"))
    );
    assert!(
        next_event(&mut wa, Duration::from_millis(300), &s.doc)
            .await
            .is_none(),
        "org A saw org B's change"
    );

    // Reconnect after the first change: the replay holds A's later state only.
    let first_seq = got[0].1;
    let mut again = ws_connect(&s, &format!("token={ta}&since={first_seq}")).await;
    assert_eq!(
        next_event(&mut again, wait, &s.doc).await.unwrap()["type"],
        "hello"
    );
    let e = next_event(&mut again, wait, &s.doc).await.unwrap();
    assert_eq!(
        (
            e["type"].as_str(),
            e["replay"].as_bool(),
            e["alert"]["id"].as_str()
        ),
        (Some("alert.resolved"), Some(true), Some("a1"))
    );
    let done = next_event(&mut again, wait, &s.doc).await.unwrap();
    assert_eq!(
        (done["type"].as_str(), done["seq"].as_u64()),
        (Some("replay.done"), Some(got[2].1))
    );
    // From 0: everything of A, nothing of B.
    let mut all = ws_connect(&s, &format!("token={ta}&since=0")).await;
    next_event(&mut all, wait, &s.doc).await.unwrap();
    let e = next_event(&mut all, wait, &s.doc).await.unwrap();
    assert_eq!(e["alert"]["organizationId"], A);
    assert_eq!(
        next_event(&mut all, wait, &s.doc).await.unwrap()["type"],
        "replay.done"
    );
    // Live after replay, without duplicates.
    s.deliver(&notif(
        A,
        "m2",
        "Heater",
        AlertType::Warning,
        "a4",
        T0 + 1_000_000,
    ));
    let e = next_event(&mut all, wait, &s.doc).await.unwrap();
    assert_eq!(
        (
            e["type"].as_str(),
            e["alert"]["id"].as_str(),
            e.get("replay")
        ),
        (Some("alert.created"), Some("a4"), None)
    );
    wa.close(None).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_lagging_websocket_client_is_closed_and_never_blocks_the_pipeline() {
    let s = server_with(8, ApiSettings::default()).await;
    let t = s.login("op-a").await;
    let mut ws = ws_connect(&s, &format!("token={t}")).await;
    assert_eq!(
        next_event(&mut ws, Duration::from_secs(5), &s.doc)
            .await
            .unwrap()["type"],
        "hello"
    );
    // 100 changes without yielding: the broadcast never waits for the client (this
    // loop would hang otherwise); the connection task then finds itself lagged.
    for i in 0..100 {
        s.deliver(&notif(
            A,
            &format!("m{i}"),
            "Heater",
            AlertType::Critical,
            &format!("x{i}"),
            T0 + i,
        ));
    }
    let mut close = None;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        if let Ok(tungstenite::Message::Close(Some(f))) = m {
            close = Some(f);
            break;
        }
    }
    let f = close.expect("closed with a frame");
    assert_eq!(u16::from(f.code), 1013);
    assert!(f.reason.contains("since="), "{}", f.reason);
    assert_one_lagged_disconnect(&s).await;
}

/// Wait (1 s at most) for `/metrics` to count exactly one lagged WebSocket disconnect.
async fn assert_one_lagged_disconnect(s: &Server) {
    let mut text = String::new();
    for _ in 0..50 {
        text = s
            .http
            .get(format!("{}/metrics", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(r#"prognos_ws_disconnects_total{reason="lagged"} 1"#) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no lagged disconnect counted: {text}");
}

/// A row of `org`'s `machine` scored by its model `v1` (the first feature undefined).
fn scored(org: &str, machine: &str, ts: i64) -> ScoredRow {
    let n = test_config().orgs[org].feature_names().len();
    let mut features = vec![1.5; n];
    features[0] = f64::NAN;
    ScoredRow {
        row: FeatureRow {
            organization_id: org.into(),
            machine_id: machine.into(),
            ts,
            pos: SourcePosition {
                partition: 0,
                offset: 0,
            },
            features,
            values: vec![],
        },
        probability: 0.75,
        confidence: 0.6,
        component: "Heater".into(),
        time_to_failure: 42.0,
        model_version: Some("v1".into()),
        health: ModelHealth::Healthy,
        fallback: false,
        fallback_reason: None,
        processing_ms: 0.1,
        load_ms: 0.0,
        importance: None,
    }
}

/// The (org, machine) of the next `n` events, which must be predictions, and
/// then nothing more for a moment (a slow machine can only hide an extra one).
async fn predictions_seen(ws: &mut Ws, n: usize, doc: &Value) -> Vec<(String, String)> {
    let mut got = Vec::new();
    for _ in 0..n {
        let e = next_event(ws, Duration::from_secs(5), doc)
            .await
            .expect("a prediction");
        assert_eq!(e["type"], "prediction", "{e}");
        let p = &e["prediction"];
        got.push((
            p["organizationId"].as_str().unwrap().to_string(),
            p["machineId"].as_str().unwrap().to_string(),
        ));
    }
    if let Some(e) = next_event(ws, Duration::from_millis(300), doc).await {
        panic!("unexpected after {got:?}: {e}");
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_pushes_live_predictions_on_request_of_own_org_only() {
    let s = server().await;
    let (ta, tb, root) = (
        s.login("op-a").await,
        s.login("op-b").await,
        s.login("root").await,
    );
    let wait = Duration::from_secs(5);
    let quiet = Duration::from_millis(300);

    // Refused before the upgrade: a bad value, `machine` alone, another org.
    for (q, status) in [
        (format!("token={ta}&predictions=yes"), 400),
        (format!("token={ta}&machine=m1"), 400),
        (format!("token={ta}&predictions=false&machine=m1"), 400),
        (format!("token={ta}&predictions=true&org={B}"), 404),
    ] {
        match tokio_tungstenite::connect_async(format!("{}?{q}", s.ws)).await {
            Err(tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), status, "{q}"),
            other => panic!("{q}: upgraded: {:?}", other.map(|x| x.1.status())),
        }
    }

    // A client that did not ask costs the pipeline nothing: no receiver at all.
    let mut plain = ws_connect(&s, &format!("token={ta}")).await;
    let hello = next_event(&mut plain, wait, &s.doc).await.unwrap();
    assert_eq!(
        (&hello["type"], &hello["predictions"]),
        (&json!("hello"), &json!(false))
    );
    assert_eq!(s.predictions.tx.receiver_count(), 0);
    // With nobody listening, a batch is dropped at the door (later clients never see it).
    s.predictions.deliver(&[scored(A, "m0", T0)]);

    let mut wa = ws_connect(&s, &format!("token={ta}&predictions=true")).await;
    let mut wm = ws_connect(&s, &format!("token={ta}&predictions=true&machine=m2")).await;
    let mut wb = ws_connect(&s, &format!("token={tb}&predictions=true")).await;
    let mut wroot = ws_connect(&s, &format!("token={root}&org={A}&predictions=true")).await;
    let mut wall = ws_connect(&s, &format!("token={root}&predictions=true")).await;
    for w in [&mut wa, &mut wm, &mut wb, &mut wroot, &mut wall] {
        let hello = next_event(w, wait, &s.doc).await.unwrap();
        assert_eq!(
            (&hello["type"], &hello["predictions"]),
            (&json!("hello"), &json!(true))
        );
    }
    assert_eq!(s.predictions.tx.receiver_count(), 5);

    s.predictions.deliver(&[
        scored(B, "m1", T0),
        scored(A, "m1", T0),
        scored(A, "m2", T0 + 60_000),
    ]);
    let pair = |o: &str, m: &str| (o.to_string(), m.to_string());
    let a_only = vec![pair(A, "m1"), pair(A, "m2")];
    assert_eq!(predictions_seen(&mut wa, 2, &s.doc).await, a_only);
    assert_eq!(predictions_seen(&mut wroot, 2, &s.doc).await, a_only);
    assert_eq!(
        predictions_seen(&mut wm, 1, &s.doc).await,
        vec![pair(A, "m2")]
    );
    assert_eq!(
        predictions_seen(&mut wb, 1, &s.doc).await,
        vec![pair(B, "m1")]
    );
    assert_eq!(
        predictions_seen(&mut wall, 3, &s.doc).await,
        vec![pair(B, "m1"), pair(A, "m1"), pair(A, "m2")]
    );
    assert!(
        next_event(&mut plain, quiet, &s.doc).await.is_none(),
        "a client that did not ask got a prediction"
    );

    // The message: the seed's PredictionResult with the machine and event time.
    s.predictions.deliver(&[scored(A, "m2", T0 + 120_000)]);
    let e = next_event(&mut wm, wait, &s.doc).await.unwrap();
    let p = &e["prediction"];
    assert_eq!(e.get("seq"), None, "{e}");
    assert_eq!(
        (
            p["ts"].as_str(),
            p["probability"].as_f64(),
            p["predictedComponent"].as_str(),
            p["modelVersion"].as_str(),
            p["metadata"]["modelHealth"].as_str(),
            p["metadata"]["fallbackUsed"].as_bool(),
        ),
        (
            Some(prognos_dataflows::time::format_rfc3339_ms(T0 + 120_000).as_str()),
            Some(0.75),
            Some("Heater"),
            Some("v1"),
            Some("healthy"),
            Some(false),
        )
    );
    let names = test_config().orgs[A].feature_names();
    let features = p["features"].as_object().unwrap();
    assert_eq!(features.len(), names.len());
    assert!(features[&names[0]].is_null(), "undefined feature: {p}");
    assert_eq!(features[&names[1]], 1.5);

    // Alerts keep flowing to a client that asked for predictions too.
    assert_eq!(
        next_event(&mut wa, wait, &s.doc).await.unwrap()["prediction"]["machineId"],
        "m2"
    );
    s.deliver(&notif(A, "m1", "Heater", AlertType::Critical, "a1", T0));
    let e = next_event(&mut wa, wait, &s.doc).await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["alert"]["id"].as_str()),
        (Some("alert.created"), Some("a1"))
    );
    let e = next_event(&mut plain, wait, &s.doc).await.unwrap();
    assert_eq!(e["type"], "alert.created");
    assert!(
        next_event(&mut wb, quiet, &s.doc).await.is_none(),
        "org B saw org A's alert or prediction"
    );

    // Clients that leave stop costing: back to no receiver.
    for w in [plain, wa, wm, wb, wroot, wall] {
        drop(w);
    }
    for _ in 0..100 {
        if s.predictions.tx.receiver_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{} prediction receivers left after every client went away",
        s.predictions.tx.receiver_count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_are_refused_where_no_pipeline_runs() {
    let s = server_opts(1024, ApiSettings::default(), false).await;
    let t = s.login("op-a").await;
    match tokio_tungstenite::connect_async(format!("{}?token={t}&predictions=true", s.ws)).await {
        Err(tungstenite::Error::Http(r)) => {
            assert_eq!(r.status().as_u16(), 503);
            let body: Value = serde_json::from_slice(r.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "no_pipeline", "{body}");
        }
        other => panic!("upgraded: {:?}", other.map(|x| x.1.status())),
    }
    // The alert push itself works there.
    let mut ws = ws_connect(&s, &format!("token={t}")).await;
    assert_eq!(
        next_event(&mut ws, Duration::from_secs(5), &s.doc)
            .await
            .unwrap()["predictions"],
        false
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_lagging_prediction_subscriber_is_closed_and_never_blocks_the_pipeline() {
    let s = server_with(8, ApiSettings::default()).await;
    let t = s.login("op-a").await;
    let mut slow = ws_connect(&s, &format!("token={t}&predictions=true")).await;
    let mut alerts_only = ws_connect(&s, &format!("token={t}")).await;
    for w in [&mut slow, &mut alerts_only] {
        assert_eq!(
            next_event(w, Duration::from_secs(5), &s.doc).await.unwrap()["type"],
            "hello"
        );
    }
    // 100 predictions in one batch without yielding: the broadcast never waits
    // for the client (this would hang otherwise); its connection finds itself lagged.
    let batch: Vec<ScoredRow> = (0..100)
        .map(|i| scored(A, &format!("m{i}"), T0 + i))
        .collect();
    s.predictions.deliver(&batch);
    let mut close = None;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), slow.next()).await {
        if let Ok(tungstenite::Message::Close(Some(f))) = m {
            close = Some(f);
            break;
        }
    }
    let f = close.expect("closed with a frame");
    assert_eq!(u16::from(f.code), 1013);
    assert!(f.reason.contains("since="), "{}", f.reason);
    // A client that only watches alerts is not affected.
    s.deliver(&notif(A, "m1", "Heater", AlertType::Critical, "a1", T0));
    assert_eq!(
        next_event(&mut alerts_only, Duration::from_secs(5), &s.doc)
            .await
            .unwrap()["type"],
        "alert.created"
    );
    assert_one_lagged_disconnect(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_routes_deploy_rollback_train_and_audit() {
    let s = server().await;
    let (ad_a, op_a, ad_b, root) = (
        s.login("ad-a").await,
        s.login("op-a").await,
        s.login("ad-b").await,
        s.login("root").await,
    );
    for v in ["v1", "v2"] {
        s.registry
            .register(
                &version_dir(s.dir.path(), A, v),
                if v == "v1" { 1 } else { 2 },
            )
            .unwrap();
    }
    assert_eq!(s.get("/api/ml/status", &op_a).await.0, 403);
    assert_eq!(
        s.get(&format!("/api/ml/status?org={A}"), &ad_b).await.0,
        404
    );

    let (_, v) = s.get("/api/ml/versions", &ad_a).await;
    assert_eq!(v["versions"].as_array().unwrap().len(), 2);
    assert!(v["activeVersion"].is_null());
    assert_eq!(s.post("/api/ml/rollback", &ad_a, json!({})).await.0, 409);
    let (st, v) = s
        .post("/api/ml/deploy", &ad_a, json!({"version": "v9"}))
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("not_found")));
    let (st, a) = s
        .post("/api/ml/deploy", &ad_a, json!({"version": "v1"}))
        .await;
    assert_eq!((st, a["version"].as_str()), (200, Some("v1")));
    let (_, a) = s
        .post("/api/ml/deploy", &ad_a, json!({"version": "v2"}))
        .await;
    assert_eq!(a["version"], "v2");
    let (st, a) = s.post("/api/ml/rollback", &ad_a, json!({})).await;
    assert_eq!((st, a["version"].as_str()), (200, Some("v1")));
    let (_, st_) = s.get("/api/ml/status", &ad_a).await;
    assert_eq!(st_["activeVersion"], "v1");
    assert_eq!(st_["activations"].as_array().unwrap().len(), 3);
    let (_, m) = s.get("/api/ml/metrics", &ad_a).await;
    assert_eq!(m["validation"]["auc"], 0.9);
    // Org B sees none of it.
    let (_, vb) = s.get("/api/ml/versions", &ad_b).await;
    assert_eq!(vb["versions"].as_array().unwrap().len(), 0);

    // Training: queued, then done; one at a time per org; bad fields refused.
    let (st, v) = s
        .post("/api/ml/train", &ad_a, json!({"days": 5000, "trials": 0}))
        .await;
    assert_eq!(st, 400);
    assert!(v["error"]["fields"]["days"].is_string() && v["error"]["fields"]["trials"].is_string());
    let (st, job) = s
        .post("/api/ml/train", &ad_a, json!({"force": true, "days": 1}))
        .await;
    assert_eq!(st, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let mut status = Value::Null;
    for _ in 0..100 {
        let (_, st_) = s.get("/api/ml/status", &ad_a).await;
        status = st_["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["id"] == id.as_str())
            .unwrap()
            .clone();
        if status["status"] == "COMPLETED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (status["status"].as_str(), status["version"].as_str()),
        (Some("COMPLETED"), Some("v3")),
        "{status}"
    );
    assert_eq!(
        s.get("/api/ml/status", &ad_a).await.1["activeVersion"],
        "v3"
    );
    let (st, job) = s
        .post(
            &format!("/api/ml/train?org={B}"),
            &root,
            json!({"seed": 666}),
        )
        .await;
    assert_eq!(st, 202);
    let bid = job["id"].as_str().unwrap().to_string();
    let mut failed = false;
    for _ in 0..100 {
        let (_, st_) = s.get(&format!("/api/ml/status?org={B}"), &root).await;
        if st_["jobs"][0]["status"] == "FAILED" {
            assert!(
                st_["jobs"][0]["error"]
                    .as_str()
                    .unwrap()
                    .contains("asked to fail")
            );
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failed);

    // The audit log: who, org, what; admins see their org only.
    let mut log = Value::Null;
    for _ in 0..100 {
        log = s.get("/api/audit?limit=500", &ad_a).await.1;
        if log.to_string().contains("ml.train.done") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let actions: Vec<(&str, &str, &str)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["organizationId"] == A)
    );
    for want in [
        ("ml.rollback", "ad-a", "error"),
        ("ml.deploy", "ad-a", "error"),
        ("ml.deploy", "ad-a", "ok"),
        ("ml.rollback", "ad-a", "ok"),
        ("ml.train", "ad-a", "accepted"),
        ("ml.train.done", "ad-a", "ok"),
    ] {
        assert!(actions.contains(&want), "{want:?} not in {actions:?}");
    }
    assert!(
        !log.to_string().contains(&bid),
        "org B's job is in org A's log"
    );
    assert_eq!(s.get("/api/audit", &op_a).await.0, 403);
    let (_, all) = s.get("/api/audit?limit=2", &root).await;
    assert_eq!(all["entries"].as_array().unwrap().len(), 2);
    let next = all["next"].as_str().unwrap();
    let (st, page2) = s
        .get(&format!("/api/audit?limit=2&cursor={next}"), &root)
        .await;
    assert_eq!(st, 200);
    assert_ne!(page2["entries"][0]["id"], all["entries"][0]["id"]);
    let (_, b_log) = s.get(&format!("/api/audit?org={B}"), &root).await;
    assert!(
        b_log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["organizationId"] == B)
    );
}

/// A `/api/health/*` answer for `user` (its schema is checked by `call`).
async fn health(s: &Server, route: &str, token: &str) -> Value {
    let (st, v) = s.get(&format!("/api/health/{route}"), token).await;
    assert_eq!(st, 200, "{route}: {v}");
    v
}

fn org_ids(v: &Value) -> Vec<&str> {
    v["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["organizationId"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_routes_report_the_pipeline_per_org_without_leaks() {
    use prognos_dataflows::models::CacheStats;
    let s = server().await;
    let (op_a, op_b, root) = (
        s.login("op-a").await,
        s.login("op-b").await,
        s.login("root").await,
    );
    // Before the pipeline starts: every pipeline-backed check is unhealthy.
    for route in ["prediction-service", "model-cache", "background-monitor"] {
        let v = health(&s, route, &op_a).await;
        assert_eq!(v["status"], "unhealthy", "{route}: {v}");
        assert_eq!(org_ids(&v), vec![A], "{route}");
    }

    // Org A runs on its model v1; org B has no model (rules only) and its rows
    // stopped two minutes ago; one worker's cache holds A's v1 and refused a B version.
    s.registry
        .register(&version_dir(s.dir.path(), A, "v1"), 1)
        .unwrap();
    s.registry
        .activate(A, Some("v1"), 2, &Activations::default())
        .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let rows = |v: &[(&str, &str, u64)]| -> BTreeMap<(String, String), u64> {
        v.iter()
            .map(|(o, k, n)| ((o.to_string(), k.to_string()), *n))
            .collect()
    };
    let caches = BTreeMap::from([(
        0,
        CacheStats {
            hits: 7,
            misses: 1,
            bytes: 4096,
            models: 1,
            loaded: vec![(A.into(), "v1".into())],
            failed: vec![(B.into(), "v9".into(), "feature names differ".into())],
            ..CacheStats::default()
        },
    )]);
    let orgs = [A.to_string(), B.to_string()];
    s.pipeline.start(now - 120_000, &orgs);
    let event_time = BTreeMap::from([(A.to_string(), T0), (B.to_string(), T0)]);
    s.pipeline.update(
        now - 120_000,
        &rows(&[(A, "featured", 5), (B, "featured", 5), (B, "fallback", 5)]),
        &event_time,
        &caches,
    );
    s.pipeline.update(
        now,
        &rows(&[
            (A, "featured", 10),
            (A, "scored", 10),
            (B, "featured", 5),
            (B, "fallback", 5),
        ]),
        &event_time,
        &caches,
    );
    s.state.metrics.publish_cache(&caches);

    // Prediction service: A scores with v1; B is on rules; each sees only itself.
    let v = health(&s, "prediction-service", &op_a).await;
    assert_eq!(
        (&v["status"], org_ids(&v)),
        (&json!("healthy"), vec![A]),
        "{v}"
    );
    let a = &v["organizations"][0];
    assert_eq!(
        (&a["activeVersion"], &a["mode"], &a["rowsScored"]),
        (&json!("v1"), &json!("model"), &json!(10))
    );
    let v = health(&s, "prediction-service", &op_b).await;
    assert_eq!(v["status"], "degraded");
    assert_eq!(v["fallbackOrganizations"], json!([B]));
    assert_eq!(v["organizations"][0]["rowsFallback"], 5);
    let v = health(&s, "prediction-service", &root).await;
    assert_eq!(
        (&v["status"], org_ids(&v)),
        (&json!("degraded"), vec![A, B])
    );
    let (_, v) = s
        .get(&format!("/api/health/prediction-service?org={A}"), &root)
        .await;
    assert_eq!((&v["status"], org_ids(&v)), (&json!("healthy"), vec![A]));

    // Model cache: per-org residency; process totals only for a super admin over all orgs.
    let v = health(&s, "model-cache", &op_a).await;
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["organizations"][0]["loaded"], json!(["v1"]));
    assert_eq!(v["organizations"][0]["activeLoaded"], true);
    assert_eq!(v["organizations"][0]["failed"], json!([]));
    assert!(v.get("totals").is_none(), "{v}");
    let v = health(&s, "model-cache", &op_b).await;
    assert_eq!(v["organizations"][0]["loaded"], json!([]));
    assert_eq!(v["organizations"][0]["failed"][0]["version"], "v9");
    let v = health(&s, "model-cache", &root).await;
    assert_eq!(
        (
            &v["totals"]["hits"],
            &v["totals"]["misses"],
            &v["totals"]["bytes"]
        ),
        (&json!(7), &json!(1), &json!(4096))
    );
    assert_eq!(v["totals"]["hitRatio"], json!(7.0 / 8.0));

    // Background monitor: A moves, B stalled two minutes ago.
    let v = health(&s, "background-monitor", &op_a).await;
    assert_eq!(v["status"], "healthy", "{v}");
    assert_eq!(v["pipeline"]["running"], true);
    let a = &v["organizations"][0];
    assert_eq!(
        (&a["rowsFeatured"], &a["stalled"]),
        (&json!(10), &json!(false))
    );
    assert!(a["secondsSinceProgress"].as_f64().unwrap() < 60.0, "{a}");
    assert!(a["rows"].get("fallback").is_none(), "no org-B counts: {a}");
    let v = health(&s, "background-monitor", &op_b).await;
    assert_eq!(v["status"], "unhealthy", "its only org is stalled: {v}");
    assert!(
        v["organizations"][0]["secondsSinceProgress"]
            .as_f64()
            .unwrap()
            >= 120.0
    );
    let v = health(&s, "background-monitor", &root).await;
    assert_eq!(v["status"], "degraded", "{v}");

    // Training service: a failed run of A degrades A's view, never B's.
    let v = health(&s, "training-service", &op_a).await;
    assert_eq!(
        (&v["status"], &v["trainerAvailable"], &v["queued"]),
        (&json!("healthy"), &json!(true), &json!(0))
    );
    let ad_a = s.login("ad-a").await;
    let (st, job) = s.post("/api/ml/train", &ad_a, json!({"seed": 666})).await;
    assert_eq!(st, 202, "{job}");
    let mut v = Value::Null;
    for _ in 0..100 {
        v = health(&s, "training-service", &op_a).await;
        if v["organizations"][0]["lastJob"]["status"] == "FAILED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(v["status"], "degraded", "{v}");
    assert_eq!(v["organizations"][0]["lastJob"]["id"], job["id"]);
    assert_eq!(v["organizations"][0]["lastJob"]["error"], "asked to fail");
    let text = s.state.metrics.render();
    assert!(
        text.contains(r#"prognos_training_runs_total{outcome="failed",trigger="api"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"prognos_training_runs_total{outcome="completed",trigger="first_model"} 0"#
        )
    );
    let v = health(&s, "training-service", &op_b).await;
    assert_eq!((&v["status"], org_ids(&v)), (&json!("healthy"), vec![B]));
    assert!(v["organizations"][0]["lastJob"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_config_routes_validate_store_audit_and_apply_thresholds_live() {
    let s = server().await;
    let root = s.login("root").await;
    let ad_a = s.login("ad-a").await;
    let org_a = format!("/api/orgs/{A}");

    let (st, v) = s.get("/api/orgs", &root).await;
    assert_eq!(st, 200, "{v}");
    let ids: Vec<&str> = v["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![A, B]);
    assert_eq!(v["organizations"][0]["source"], "file");
    assert_eq!(v["organizations"][0]["running"], true);
    // Only super admins, even for their own org.
    assert_eq!(s.get(&org_a, &ad_a).await.0, 403);
    let (st, _) = s
        .call(Verb::Put, &org_a, Some(&ad_a), Some(org_a_json()))
        .await;
    assert_eq!(st, 403);
    let (st, v) = s.get(&org_a, &root).await;
    assert_eq!((st, &v["config"]), (200, &org_a_json()));
    assert_eq!(s.get("/api/orgs/no-such-org", &root).await.0, 404);

    // Refused with the key that is wrong; nothing stored, each refusal audited.
    let put = |body: Value| s.call(Verb::Put, &org_a, Some(&root), Some(body));
    let mut bad = org_a_json();
    bad["prediction"]["failure_threshold"] = json!(1.5);
    let (st, v) = put(bad).await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["fields"]["prediction.failure_threshold"].is_string(),
        "{v}"
    );
    let mut bad = org_a_json();
    bad["prediction"]["failure_threshold"] = json!("high");
    let (st, v) = put(bad).await;
    assert_eq!(st, 400);
    assert!(
        v["error"]["fields"]["prediction.failure_threshold"].is_string(),
        "{v}"
    );
    let mut bad = org_a_json();
    bad["prediction"]["nope"] = json!(1);
    let (st, v) = put(bad).await;
    assert_eq!(
        (st, v["error"]["fields"]["nope"].is_string()),
        (400, true),
        "{v}"
    );
    assert!(
        prognos::orgs::OrgStore::open(&s.registry.db())
            .unwrap()
            .list()
            .unwrap()
            .is_empty()
    );
    let mut seen = 0;
    assert!(s.live.thresholds_if_changed(&mut seen).is_none());

    // Thresholds of a running org: applied at once, in event time.
    let mut cfg = org_a_json();
    cfg["prediction"]["failure_threshold"] = json!(0.6);
    cfg["prediction"]["confidence_threshold"] = json!(0.9);
    cfg["prediction"]["immediate_threshold"] = json!(0.97);
    let before = chrono::Utc::now().timestamp_millis();
    let (st, v) = put(cfg.clone()).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["restartKeys"], json!([]));
    assert_eq!(v["pendingRestart"], false);
    assert_eq!(v["appliedLive"]["thresholds"]["failureThreshold"], 0.6);
    assert_eq!(v["appliedLive"]["thresholds"]["immediateThreshold"], 0.97);
    let eff = v["appliedLive"]["effectiveTs"].as_i64().unwrap();
    assert!(eff >= before, "never before the request");
    let log = s.live.thresholds_if_changed(&mut seen).expect("changed");
    let t = prognos_dataflows::models::activations::thresholds_at(&log, A, eff).unwrap();
    assert_eq!((t.failure_threshold, t.confidence_threshold), (0.6, 0.9));
    assert_eq!(t.immediate_threshold, Some(0.97));
    // Before the change: the thresholds it replaced, recorded with it, so a
    // restart (whose configuration holds the new ones) scores those rows alike.
    let old = org_a_json();
    let t = prognos_dataflows::models::activations::thresholds_at(&log, A, eff - 1).unwrap();
    assert_eq!(
        (t.failure_threshold, t.confidence_threshold),
        (
            old["prediction"]["failure_threshold"].as_f64().unwrap(),
            old["prediction"]["confidence_threshold"].as_f64().unwrap()
        )
    );
    assert_eq!(
        t.immediate_threshold,
        old["prediction"]["immediate_threshold"].as_f64()
    );
    assert_eq!(
        s.registry.threshold_log().unwrap(),
        s.live.threshold_log(),
        "persisted"
    );
    assert!(prognos_dataflows::models::activations::thresholds_at(&log, B, eff).is_none());

    // A schema change is stored and waits for the next start.
    cfg["time_column"] = json!("event_time");
    let (st, v) = put(cfg.clone()).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["restartKeys"], json!(["time_column"]));
    assert_eq!(v["pendingRestart"], true);
    assert!(v["appliedLive"].is_null());
    assert!(s.live.thresholds_if_changed(&mut seen).is_none());
    let (_, v) = s.get(&org_a, &root).await;
    assert_eq!(
        (&v["source"], &v["updatedBy"], &v["config"]["time_column"]),
        (&json!("api"), &json!("root"), &json!("event_time"))
    );

    // A new org: validated (its id too), stored, processed from the next start.
    let post = |body: Value| s.call(Verb::Post, "/api/orgs", Some(&root), Some(body));
    let (st, v) = post(json!({"id": "Bad Id", "config": org_a_json()})).await;
    assert_eq!(
        (st, v["error"]["fields"]["id"].is_string()),
        (400, true),
        "{v}"
    );
    let mut bad = org_a_json();
    bad["signals"] = json!([]);
    let (st, v) = post(json!({"id": "org-c", "config": bad})).await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["fields"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| k.starts_with("config.")),
        "{v}"
    );
    let (st, v) = post(json!({"id": "org-c", "config": org_a_json()})).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (&v["pendingRestart"], &v["organization"]["running"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(
        post(json!({"id": "org-c", "config": org_a_json()})).await.0,
        409
    );
    let (_, v) = s.get("/api/orgs", &root).await;
    assert_eq!(v["organizations"].as_array().unwrap().len(), 3);

    // What the next start lays over the file.
    let stored = prognos::orgs::OrgStore::open(&s.registry.db())
        .unwrap()
        .list()
        .unwrap();
    let next = prognos::orgs::overlay(test_config(), &stored).unwrap();
    assert_eq!(next.orgs[A].time_column, "event_time");
    assert_eq!(next.orgs[A].prediction.failure_threshold, 0.6);
    assert!(next.orgs.contains_key("org-c"));

    // Every change and refusal is in the audit log, with who and which org.
    let (entries, _) = s.state.audit().list(None, 100, None).unwrap();
    let org_ops: Vec<(&str, &str, Option<&str>)> = entries
        .iter()
        .filter(|e| e.action.starts_with("orgs."))
        .map(|e| {
            (
                e.action.as_str(),
                e.outcome.as_str(),
                e.organization_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        org_ops,
        vec![
            ("orgs.create", "ok", Some("org-c")),
            ("orgs.create", "refused", Some("org-c")),
            ("orgs.create", "refused", Some("Bad Id")),
            ("orgs.update", "ok", Some(A)),
            ("orgs.update", "ok", Some(A)),
            ("orgs.update", "refused", Some(A)),
        ],
        "newest first; the serde-level refusals (bad type, unknown field) never reach validation"
    );
    assert!(
        entries
            .iter()
            .all(|e| e.actor == "root" || !e.action.starts_with("orgs."))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_valid_and_every_route_is_live() {
    let s = server().await;
    let r = s
        .http
        .get(format!("{}/api/openapi.json", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let doc: openapiv3::OpenAPI = serde_json::from_str(&text).expect("a valid OpenAPI 3 document");
    assert!(doc.openapi.starts_with("3.0"));
    let live: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(live, s.doc);

    // Document ⇄ table: the same operations.
    let mut documented = BTreeSet::new();
    for (path, item) in doc.paths.paths.iter() {
        let item = item.as_item().unwrap();
        for (m, op) in item.iter() {
            documented.insert((m.to_uppercase(), path.clone()));
            assert!(
                op.operation_id.is_some() && !op.responses.responses.is_empty(),
                "{m} {path}"
            );
        }
    }
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.as_str().to_string(), r.path.to_string()))
        .collect();
    assert_eq!(documented, table);
    // Every $ref resolves.
    let refs: Vec<&str> = text
        .match_indices("#/components/schemas/")
        .map(|(i, _)| &text[i..])
        .collect();
    for r in refs {
        let name: String = r["#/components/schemas/".len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric())
            .collect();
        assert!(
            live["components"]["schemas"][&name].is_object(),
            "dangling {name}"
        );
    }

    // Table ⇄ live server: every documented operation is served (an anonymous
    // call is answered by the route — 401 when protected — never "no such route").
    let ids = s.seed(A, 1);
    for r in ROUTES {
        let path = concrete(r.path, &ids[0]);
        let (st, v) = s.call(r.method, &path, None, body_for(r)).await;
        match r.access {
            Access::Roles(_) => assert_eq!(st, 401, "{} {path}: {v}", r.method.as_str()),
            Access::Public => assert!(st != 404 && st != 405, "{} {path}: {st}", r.method.as_str()),
            // This server has no cluster token: the workers' routes are off.
            Access::Cluster => assert_eq!(st, 404, "{} {path}: {v}", r.method.as_str()),
        }
    }
    // And nothing undocumented is.
    for p in [
        "/api/predictive-alerts/x/delete",
        "/api/users",
        "/api/ml/orgs",
        "/api",
    ] {
        let (st, v) = s.call(Verb::Get, p, None, None).await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{p}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exposition_parses() {
    let s = server().await;
    s.login("op-a").await;
    let text = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Every sample line is `name{labels} value` with a HELP and TYPE before its family.
    let mut typed = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        assert!(typed.contains(name) || typed.contains(family), "{line}");
        assert!(
            name.starts_with("prognos_") || name.starts_with("process_"),
            "{line}"
        );
    }
    assert!(
        text.contains(r#"prognos_login_attempts_total{outcome="ok"} 1"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_wait_for_a_restart_where_no_dataflow_follows() {
    // A service no dataflow follows: nothing can apply live.
    let s = server_opts(1024, ApiSettings::default(), false).await;
    let root = s.login("root").await;
    let mut cfg = org_a_json();
    cfg["prediction"]["failure_threshold"] = json!(0.77);
    let (st, v) = s
        .call(Verb::Put, &format!("/api/orgs/{A}"), Some(&root), Some(cfg))
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["appliedLive"].is_null(), "{v}");
    assert_eq!(v["restartKeys"], json!(["prediction.failure_threshold"]));
    assert_eq!(v["pendingRestart"], true);
    let mut seen = 0;
    assert!(s.live.thresholds_if_changed(&mut seen).is_none());
}

/// A version's operating point (the threshold curve training swept, and the
/// point chosen for the org's false-alarm budget) goes into force when the
/// version is deployed or rolled back to, and `/api/ml/metrics` shows it with
/// the thresholds in force; a version without one brings the configured
/// thresholds back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_version_brings_its_operating_point() {
    let s = server().await;
    let (root, ad_a) = (s.login("root").await, s.login("ad-a").await);
    // Org A gets a false-alarm budget.
    let mut cfg = org_a_json();
    cfg["prediction"]["max_false_alarms_per_day"] = json!(0.5);
    let (st, v) = s
        .call(Verb::Put, &format!("/api/orgs/{A}"), Some(&root), Some(cfg))
        .await;
    assert_eq!(st, 200, "{v}");
    let configured = test_config().orgs[A].prediction.clone();
    // v1 with a swept curve whose chosen point is 0.4 / 60 s; v2 without one.
    let point = |t: f64, f: u64, recall: f64, fa: f64| {
        json!({"failureThreshold": t, "forS": f, "failures": 5, "detected": (recall * 5.0) as u64,
            "eventRecall": recall, "medianLeadMinutes": 8.0, "p10LeadMinutes": 5.0,
            "episodes": 7, "falseAlarms": 2, "machineDays": 4.0, "falseAlarmsPerMachineDay": fa})
    };
    let d1 = version_dir(s.dir.path(), A, "v1");
    let mut meta: Value =
        serde_json::from_str(&std::fs::read_to_string(d1.join("metadata.json")).unwrap()).unwrap();
    meta["operatingPoint"] = json!({
        "budget": 0.5, "chosen": 1, "adds": true, "pinned": false,
        "points": [point(0.2, 60, 1.0, 2.0), point(0.4, 60, 0.8, 0.5), point(0.8, 60, 0.4, 0.0)],
        "rulesAndForecasts": {"failureThreshold": null, "forS": null, "failures": 5, "detected": 3,
            "eventRecall": 0.6, "medianLeadMinutes": 6.0, "p10LeadMinutes": 4.0, "episodes": 5,
            "falseAlarms": 1, "machineDays": 4.0, "falseAlarmsPerMachineDay": 0.25},
    });
    std::fs::write(d1.join("metadata.json"), meta.to_string()).unwrap();
    s.registry.register(&d1, 1).unwrap();
    s.registry
        .register(&version_dir(s.dir.path(), A, "v2"), 2)
        .unwrap();

    let (_, m) = s.get("/api/ml/metrics", &ad_a).await;
    assert_eq!(
        m["thresholds"]["failureThreshold"], configured.failure_threshold,
        "{m}"
    );
    assert!(m["operatingPoint"].is_null(), "{m}");
    let (st, _) = s
        .post("/api/ml/deploy", &ad_a, json!({"version": "v1"}))
        .await;
    assert_eq!(st, 200);
    let (_, m) = s.get("/api/ml/metrics", &ad_a).await;
    assert_eq!(m["thresholds"]["failureThreshold"], 0.4, "{m}");
    assert_eq!(m["thresholds"]["forS"], 60, "{m}");
    assert_eq!(
        m["operatingPoint"]["chosen"]["failureThreshold"], 0.4,
        "{m}"
    );
    assert_eq!(
        m["operatingPoint"]["curve"].as_array().unwrap().len(),
        3,
        "{m}"
    );
    assert_eq!(
        m["operatingPoint"]["rulesAndForecasts"]["eventRecall"], 0.6,
        "{m}"
    );
    // The live log the dataflow reads has it too.
    let now = prognos_dataflows::models::activations::thresholds_at(
        &s.live.threshold_snapshot(),
        A,
        i64::MAX,
    )
    .unwrap();
    assert_eq!((now.failure_threshold, now.for_s), (0.4, 60));

    // v2 has no curve: the configured thresholds come back; a rollback to v1
    // brings its point again.
    s.post("/api/ml/deploy", &ad_a, json!({"version": "v2"}))
        .await;
    let (_, m) = s.get("/api/ml/metrics", &ad_a).await;
    assert_eq!(
        m["thresholds"]["failureThreshold"], configured.failure_threshold,
        "{m}"
    );
    assert_eq!(m["thresholds"]["forS"], configured.for_s, "{m}");
    let (st, a) = s.post("/api/ml/rollback", &ad_a, json!({})).await;
    assert_eq!((st, a["version"].as_str()), (200, Some("v1")));
    let (_, m) = s.get("/api/ml/metrics", &ad_a).await;
    assert_eq!(m["thresholds"]["failureThreshold"], 0.4, "{m}");
    // Every change is in the registry's log, for a restart or a replay (the
    // first activation is effective from the beginning of time, and so is the
    // point it brought).
    let log = s.registry.threshold_log().unwrap();
    let values: Vec<f64> = log
        .iter()
        .filter(|c| c.organization_id == A)
        .map(|c| c.thresholds.failure_threshold)
        .collect();
    assert_eq!(
        values,
        vec![0.4, configured.failure_threshold, 0.4],
        "{log:?}"
    );
}
