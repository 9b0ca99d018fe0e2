//! The route table: every route the API serves, with what the OpenAPI document
//! says about it. [`find`] dispatches from it and [`super::openapi`] documents
//! from it, so a route cannot be served without being documented or the reverse.

use super::error::ApiError;
use super::request::{Reply, Req};
use super::{ApiState, alerts, cluster, failures, health, login, ml, orgs};
use crate::auth::Role;
use warp::http::Method;

/// The methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
}

impl Verb {
    /// Upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
        }
    }

    /// OpenAPI's lower-case name.
    pub fn lower(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Put => "put",
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Access {
    /// Anyone, no token.
    Public,
    /// A valid token of one of these roles (checked after the org boundary).
    Roles(&'static [Role]),
    /// The cluster token (env `PROGNOS_CLUSTER_TOKEN`): the workers. Without
    /// one configured the route answers 404.
    Cluster,
}

/// Every role.
pub const ANY_ROLE: Access = Access::Roles(&[Role::Operator, Role::Admin, Role::SuperAdmin]);
/// Admins of the org and super admins.
pub const ADMINS: Access = Access::Roles(&[Role::Admin, Role::SuperAdmin]);
/// Super admins only.
pub const SUPER_ADMINS: Access = Access::Roles(&[Role::SuperAdmin]);

/// A handler.
pub type HandlerFn = fn(&ApiState, &Req) -> Result<Reply, ApiError>;

/// How a route is served.
#[derive(Clone, Copy)]
pub enum Handler {
    /// A JSON (or text) handler on the blocking pool.
    Json(HandlerFn),
    /// The WebSocket upgrade (`/ws`), served by its own filter.
    WebSocket,
}

/// What a query parameter holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// RFC 3339 or epoch milliseconds.
    Time,
    /// An integer in a range.
    Int {
        /// Smallest.
        min: i64,
        /// Largest.
        max: i64,
    },
    /// A store sequence number.
    Seq,
    /// Text of bounded length.
    Text {
        /// Longest, in bytes.
        max_len: usize,
    },
    /// One of these.
    OneOf(&'static [&'static str]),
    /// A page cursor (`"<ts>:<id>"`).
    Cursor,
}

/// A query parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Name.
    pub name: &'static str,
    /// What it holds.
    pub kind: Kind,
    /// Whether it must be given.
    pub required: bool,
    /// What it means.
    pub doc: &'static str,
}

/// A response a route documents.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    /// JSON of a schema in `components.schemas`.
    Json(&'static str),
    /// Text (Prometheus exposition).
    Text,
    /// Bytes (`application/octet-stream`).
    Bytes,
    /// A PNG picture (`image/png`).
    Png,
    /// An upgrade (`101`).
    Upgrade,
}

/// A request body a route takes.
#[derive(Debug, Clone, Copy)]
pub struct RequestBody {
    /// Schema in `components.schemas`.
    pub schema: &'static str,
    /// Whether it must be given (an absent optional body reads as `{}`).
    pub required: bool,
}

/// One route.
pub struct Route {
    /// GET or POST.
    pub method: Verb,
    /// Path template with `{param}` segments.
    pub path: &'static str,
    /// OpenAPI operationId.
    pub operation_id: &'static str,
    /// One line.
    pub summary: &'static str,
    /// OpenAPI tag.
    pub tag: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Query parameters (anything else is refused).
    pub query: &'static [Param],
    /// The body it reads.
    pub body: Option<RequestBody>,
    /// Success status and body.
    pub ok: (u16, Body),
    /// Errors it may answer besides the common ones.
    pub errors: &'static [u16],
    /// Argon2 work: bounded concurrency.
    pub cpu_heavy: bool,
    /// The handler.
    pub handler: Handler,
}

const fn p(name: &'static str, kind: Kind, doc: &'static str) -> Param {
    Param {
        name,
        kind,
        required: false,
        doc,
    }
}

const ORG: Param = p(
    "org",
    Kind::Text { max_len: 128 },
    "Organization (super admins; others may only name their own).",
);
const FROM: Param = p(
    "from",
    Kind::Time,
    "Event time from (inclusive), RFC 3339 or epoch ms.",
);
const TO: Param = p(
    "to",
    Kind::Time,
    "Event time to (exclusive), RFC 3339 or epoch ms.",
);
const TYPE: Param = p(
    "type",
    Kind::OneOf(&["CRITICAL", "WARNING", "PREDICTIVE"]),
    "Alert type.",
);
const STATUS: Param = p(
    "status",
    Kind::OneOf(&["ACTIVE", "ACKNOWLEDGED", "RESOLVED"]),
    "Alert status now.",
);
const COMPONENT: Param = p("component", Kind::Text { max_len: 256 }, "Component.");
const LIMIT: Param = p(
    "limit",
    Kind::Int { min: 1, max: 500 },
    "Page size (default 50).",
);
const CURSOR: Param = p("cursor", Kind::Cursor, "The `next` of the previous page.");

const BASE: Route = Route {
    method: Verb::Get,
    path: "",
    operation_id: "",
    summary: "",
    tag: "",
    access: ANY_ROLE,
    query: &[],
    body: None,
    ok: (200, Body::Json("")),
    errors: &[],
    cpu_heavy: false,
    handler: Handler::WebSocket,
};

/// Every route.
pub static ROUTES: &[Route] = &[
    Route {
        path: "/healthz",
        operation_id: "healthz",
        summary: "Liveness.",
        tag: "health",
        access: Access::Public,
        ok: (200, Body::Json("Health")),
        handler: Handler::Json(login::healthz),
        ..BASE
    },
    Route {
        path: "/readyz",
        operation_id: "readyz",
        summary: "Readiness: 503 until the pipeline runs.",
        tag: "health",
        access: Access::Public,
        ok: (200, Body::Json("Ready")),
        errors: &[503],
        handler: Handler::Json(login::readyz),
        ..BASE
    },
    Route {
        path: "/metrics",
        operation_id: "metrics",
        summary: "Prometheus metrics (text exposition format).",
        tag: "health",
        access: Access::Public,
        ok: (200, Body::Text),
        handler: Handler::Json(login::metrics),
        ..BASE
    },
    Route {
        path: "/api/health/prediction-service",
        operation_id: "healthPredictionService",
        summary: "Per org: the active model version and whether rows are scored by it or by the rules alone (fallback).",
        tag: "health",
        query: &[ORG],
        ok: (200, Body::Json("PredictionServiceHealth")),
        handler: Handler::Json(health::prediction_service),
        ..BASE
    },
    Route {
        path: "/api/health/training-service",
        operation_id: "healthTrainingService",
        summary: "The training queue; per org its queued and running jobs and its latest training run with its outcome.",
        tag: "health",
        query: &[ORG],
        ok: (200, Body::Json("TrainingServiceHealth")),
        handler: Handler::Json(health::training_service),
        ..BASE
    },
    Route {
        path: "/api/health/model-cache",
        operation_id: "healthModelCache",
        summary: "Per org: versions held by the model caches and versions that failed their load check; process-wide counters for a super admin without ?org=.",
        tag: "health",
        query: &[ORG],
        ok: (200, Body::Json("ModelCacheHealth")),
        handler: Handler::Json(health::model_cache),
        ..BASE
    },
    Route {
        path: "/api/health/background-monitor",
        operation_id: "healthBackgroundMonitor",
        summary: "The pipeline: running, and per org its row counts, the event time reached and the seconds since it last made progress.",
        tag: "health",
        query: &[ORG],
        ok: (200, Body::Json("BackgroundMonitorHealth")),
        handler: Handler::Json(health::background_monitor),
        ..BASE
    },
    Route {
        path: "/api/openapi.json",
        operation_id: "openapi",
        summary: "This document.",
        tag: "health",
        access: Access::Public,
        ok: (200, Body::Json("OpenApiDocument")),
        handler: Handler::Json(super::openapi::serve),
        ..BASE
    },
    Route {
        method: Verb::Post,
        path: "/api/auth/login",
        operation_id: "login",
        summary: "Exchange a username and password for a bearer token (JWT, HS256).",
        tag: "auth",
        access: Access::Public,
        body: Some(RequestBody {
            schema: "LoginRequest",
            required: true,
        }),
        ok: (200, Body::Json("LoginResponse")),
        errors: &[429],
        cpu_heavy: true,
        handler: Handler::Json(login::login),
        ..BASE
    },
    Route {
        path: "/api/auth/me",
        operation_id: "me",
        summary: "The caller: username, role, organization.",
        tag: "auth",
        ok: (200, Body::Json("Me")),
        handler: Handler::Json(login::me),
        ..BASE
    },
    Route {
        path: "/api/predictive-alerts",
        operation_id: "listAlerts",
        summary: "A page of the org's alerts, newest first (by event time), with the total count.",
        tag: "alerts",
        query: &[ORG, FROM, TO, COMPONENT, TYPE, STATUS, LIMIT, CURSOR],
        ok: (200, Body::Json("AlertPage")),
        handler: Handler::Json(alerts::list),
        ..BASE
    },
    Route {
        path: "/api/predictive-alerts/statistics",
        operation_id: "alertStatistics",
        summary: "Counts by type, component, status and severity; acknowledgement, feedback accuracy, mean times.",
        tag: "alerts",
        query: &[ORG, FROM, TO],
        ok: (200, Body::Json("AlertStatistics")),
        handler: Handler::Json(alerts::statistics),
        ..BASE
    },
    Route {
        path: "/api/predictive-alerts/trends/summary",
        operation_id: "alertTrends",
        summary: "Alerts per UTC day by type, with feedback accuracy.",
        tag: "alerts",
        query: &[ORG, FROM, TO],
        ok: (200, Body::Json("AlertTrends")),
        handler: Handler::Json(alerts::trends),
        ..BASE
    },
    Route {
        path: "/api/predictive-alerts/component/{component}",
        operation_id: "listAlertsByComponent",
        summary: "A page of the org's alerts of one component.",
        tag: "alerts",
        query: &[ORG, FROM, TO, TYPE, STATUS, LIMIT, CURSOR],
        ok: (200, Body::Json("AlertPage")),
        handler: Handler::Json(alerts::by_component),
        ..BASE
    },
    Route {
        path: "/api/predictive-alerts/{id}",
        operation_id: "getAlert",
        summary: "One alert.",
        tag: "alerts",
        query: &[ORG],
        ok: (200, Body::Json("Alert")),
        handler: Handler::Json(alerts::get),
        ..BASE
    },
    Route {
        method: Verb::Post,
        path: "/api/predictive-alerts/{id}/feedback",
        operation_id: "alertFeedback",
        summary: "Say whether the alert was right (latest feedback wins); it trains the next model.",
        tag: "alerts",
        query: &[ORG],
        body: Some(RequestBody {
            schema: "FeedbackRequest",
            required: true,
        }),
        ok: (200, Body::Json("Alert")),
        handler: Handler::Json(alerts::feedback),
        ..BASE
    },
    Route {
        method: Verb::Post,
        path: "/api/predictive-alerts/{id}/acknowledge",
        operation_id: "acknowledgeAlert",
        summary: "ACTIVE → ACKNOWLEDGED (409 in any other state).",
        tag: "alerts",
        query: &[ORG],
        ok: (200, Body::Json("Alert")),
        errors: &[409],
        handler: Handler::Json(alerts::acknowledge),
        ..BASE
    },
    Route {
        method: Verb::Post,
        path: "/api/predictive-alerts/{id}/resolve",
        operation_id: "resolveAlert",
        summary: "ACTIVE or ACKNOWLEDGED → RESOLVED (409 when already resolved).",
        tag: "alerts",
        query: &[ORG],
        ok: (200, Body::Json("Alert")),
        errors: &[409],
        handler: Handler::Json(alerts::resolve),
        ..BASE
    },
    Route {
        path: "/api/ml/status",
        operation_id: "mlStatus",
        summary: "Active version, recent activations, training runs and queued or running API trainings.",
        tag: "models",
        access: ADMINS,
        query: &[ORG],
        ok: (200, Body::Json("MlStatus")),
        handler: Handler::Json(ml::status),
        ..BASE
    },
    Route {
        path: "/api/ml/versions",
        operation_id: "mlVersions",
        summary: "Registered versions with their validation metrics, oldest first.",
        tag: "models",
        access: ADMINS,
        query: &[ORG],
        ok: (200, Body::Json("ModelVersions")),
        handler: Handler::Json(ml::versions),
        ..BASE
    },
    Route {
        path: "/api/ml/versions/{version}/report",
        operation_id: "mlVersionReport",
        summary: "A version's training report picture (PNG): its validation curves and, below, its operating-point curve. 404 for a version trained without one.",
        tag: "models",
        access: ADMINS,
        query: &[ORG],
        ok: (200, Body::Png),
        handler: Handler::Json(ml::report),
        ..BASE
    },
    Route {
        path: "/api/ml/metrics",
        operation_id: "mlMetrics",
        summary: "The active version's validation metrics and the operators' feedback accuracy.",
        tag: "models",
        access: ADMINS,
        query: &[ORG],
        ok: (200, Body::Json("MlMetrics")),
        handler: Handler::Json(ml::metrics),
        ..BASE
    },
    Route {
        method: Verb::Post,
        path: "/api/ml/deploy",
        operation_id: "mlDeploy",
        summary: "Activate a registered version from now on (event time).",
        tag: "models",
        access: ADMINS,
        query: &[ORG],
        body: Some(RequestBody {
            schema: "DeployRequest",
            required: true,
        }),
        ok: (200, Body::Json("Activation")),
        handler: Handler::Json(ml::deploy),
        ..BASE
    },
    Route {
        method: Verb::Post,
        path: "/api/ml/rollback",
        operation_id: "mlRollback",
        summary: "Re-activate the version that was active before the current one.",
        tag: "models",
        access: ADMINS,
        query: &[ORG],
        ok: (200, Body::Json("Activation")),
        errors: &[409],
        handler: Handler::Json(ml::rollback),
        ..BASE
    },
    Route {
        method: Verb::Post,
        path: "/api/ml/train",
        operation_id: "mlTrain",
        summary: "Queue a training run; its progress is in /api/ml/status.",
        tag: "models",
        access: ADMINS,
        query: &[ORG],
        body: Some(RequestBody {
            schema: "TrainRequest",
            required: false,
        }),
        ok: (202, Body::Json("TrainJob")),
        errors: &[409, 503],
        handler: Handler::Json(ml::train),
        ..BASE
    },
    Route {
        path: "/api/audit",
        operation_id: "audit",
        summary: "Audit log entries (who, org, what, when), newest first.",
        tag: "audit",
        access: ADMINS,
        query: &[ORG, LIMIT, CURSOR],
        ok: (200, Body::Json("AuditPage")),
        handler: Handler::Json(ml::audit_log),
        ..BASE
    },
    Route {
        path: "/api/orgs",
        operation_id: "listOrgs",
        summary: "Organizations with where their configuration comes from (file or API) and whether the pipeline runs them.",
        tag: "orgs",
        access: SUPER_ADMINS,
        ok: (200, Body::Json("OrgList")),
        errors: &[503],
        handler: Handler::Json(orgs::list),
        ..BASE
    },
    Route {
        method: Verb::Post,
        path: "/api/orgs",
        operation_id: "createOrg",
        summary: "Create an organization from an [orgs.<id>] table as JSON, validated like the file; stored and processed from the next start.",
        tag: "orgs",
        access: SUPER_ADMINS,
        body: Some(RequestBody {
            schema: "CreateOrgRequest",
            required: true,
        }),
        ok: (201, Body::Json("OrgChange")),
        errors: &[409, 503],
        handler: Handler::Json(orgs::create),
        ..BASE
    },
    Route {
        path: "/api/orgs/{org}",
        operation_id: "getOrg",
        summary: "One organization's configuration.",
        tag: "orgs",
        access: SUPER_ADMINS,
        ok: (200, Body::Json("OrgDetail")),
        errors: &[503],
        handler: Handler::Json(orgs::get),
        ..BASE
    },
    Route {
        method: Verb::Put,
        path: "/api/orgs/{org}",
        operation_id: "updateOrg",
        summary: "Replace an organization's configuration (validated like the file). The failure threshold, for_s, immediate threshold and confidence threshold of a running org apply at once in event time (appliedLive); every other change is stored and applied at the next start (restartKeys).",
        tag: "orgs",
        access: SUPER_ADMINS,
        body: Some(RequestBody {
            schema: "OrgConfig",
            required: true,
        }),
        ok: (200, Body::Json("OrgChange")),
        errors: &[503],
        handler: Handler::Json(orgs::update),
        ..BASE
    },
    Route {
        path: "/api/cluster/models/{org}/{version}",
        operation_id: "clusterModelManifest",
        summary: "A registered model version's files with their sizes and SHA-256 (workers fetch versions with it).",
        tag: "cluster",
        access: Access::Cluster,
        ok: (200, Body::Json("ModelManifest")),
        handler: Handler::Json(cluster::manifest),
        ..BASE
    },
    Route {
        path: "/api/cluster/models/{org}/{version}/files/{name}",
        operation_id: "clusterModelFile",
        summary: "One file of a registered model version (check it against the manifest's SHA-256).",
        tag: "cluster",
        access: Access::Cluster,
        ok: (200, Body::Bytes),
        handler: Handler::Json(cluster::file),
        ..BASE
    },
    Route {
        method: Verb::Post,
        path: "/api/cluster/heartbeat",
        operation_id: "clusterHeartbeat",
        summary: "A worker process's report (every 2 s): its state, its rows per org and its model cache, and the model loads since its last report (audited as ml.model.load). The health routes aggregate the reports and name stale and missing workers.",
        tag: "cluster",
        access: Access::Cluster,
        body: Some(RequestBody {
            schema: "WorkerHeartbeat",
            required: true,
        }),
        ok: (200, Body::Json("HeartbeatAck")),
        handler: Handler::Json(cluster::heartbeat),
        ..BASE
    },
    Route {
        method: Verb::Post,
        path: "/api/orgs/{org}/failures",
        operation_id: "addFailure",
        summary: "Record a work order (a failure of a machine's component, with its start, end and a note): a training label. 201 with the stored record; 200 with the one already stored for the same machine, component and start. Audited.",
        tag: "orgs",
        access: ADMINS,
        body: Some(RequestBody {
            schema: "NewWorkOrder",
            required: true,
        }),
        ok: (201, Body::Json("WorkOrder")),
        errors: &[503],
        handler: Handler::Json(failures::add),
        ..BASE
    },
    Route {
        path: "/api/orgs/{org}/failures",
        operation_id: "listFailures",
        summary: "The org's work orders, newest start first (`from`/`to` filter on the start).",
        tag: "orgs",
        query: &[FROM, TO],
        ok: (200, Body::Json("WorkOrderList")),
        errors: &[503],
        handler: Handler::Json(failures::list),
        ..BASE
    },
    Route {
        path: "/ws",
        operation_id: "alertsWebSocket",
        summary: "WebSocket push of alert.created / alert.updated / alert.resolved for the caller's org; `since` replays changes after a store sequence number first; `predictions=true` adds the org's live predictions (`prediction`, optionally of one `machine`). Messages are WsEvent JSON.",
        tag: "alerts",
        query: &[
            p(
                "token",
                Kind::Text { max_len: 4096 },
                "Bearer token (browsers cannot set headers on a WebSocket).",
            ),
            p(
                "since",
                Kind::Seq,
                "Replay changes after this store sequence number (the `seq` of the last event seen).",
            ),
            p(
                "predictions",
                Kind::OneOf(&["true", "false"]),
                "`true`: also push the org's live predictions (`prediction` messages, not replayed). 503 where no pipeline runs in the process.",
            ),
            p(
                "machine",
                Kind::Text { max_len: 256 },
                "With `predictions=true`: only this machine's predictions (alerts are not filtered).",
            ),
            ORG,
        ],
        ok: (101, Body::Upgrade),
        errors: &[426, 503],
        handler: Handler::WebSocket,
        ..BASE
    },
];

/// What [`find`] found.
pub enum Found {
    /// The route and its path parameters.
    Route(&'static Route, Vec<String>),
    /// The path exists with other methods (the `Allow` value).
    WrongMethod(String),
    /// No such path.
    None,
}

/// Path parameters when `path` fits `template`, and how many literal segments matched.
fn fit(template: &str, path: &str) -> Option<(Vec<String>, usize)> {
    let mut t = template.split('/');
    let mut p = path.split('/');
    let mut params = Vec::new();
    let mut literal = 0;
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some((params, literal)),
            (Some(ts), Some(ps)) => {
                if ts.starts_with('{') {
                    let v = percent_encoding::percent_decode_str(ps)
                        .decode_utf8()
                        .ok()?
                        .into_owned();
                    if v.is_empty() || v.len() > 256 || v.contains('\0') {
                        return None;
                    }
                    params.push(v);
                } else if ts == ps {
                    literal += 1;
                } else {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// The route for `method` and `path`: the fitting template with the most literal
/// segments, the first in the table on a tie.
pub fn find(method: &Method, path: &str) -> Found {
    let mut best: Option<(&'static Route, Vec<String>, usize)> = None;
    let mut allow: Vec<&str> = Vec::new();
    for r in ROUTES {
        let Some((params, literal)) = fit(r.path, path) else {
            continue;
        };
        if r.method.as_str() != method.as_str() {
            if !allow.contains(&r.method.as_str()) {
                allow.push(r.method.as_str());
            }
            continue;
        }
        if best.as_ref().is_none_or(|(_, _, l)| literal > *l) {
            best = Some((r, params, literal));
        }
    }
    match best {
        Some((r, params, _)) => Found::Route(r, params),
        None if !allow.is_empty() => Found::WrongMethod(allow.join(", ")),
        None => Found::None,
    }
}

/// The table entry of `/ws`.
pub fn ws_route() -> &'static Route {
    ROUTES
        .iter()
        .find(|r| matches!(r.handler, Handler::WebSocket))
        .expect("the table has /ws")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_segments_win_and_methods_are_told() {
        let get = |p: &str| match find(&Method::GET, p) {
            Found::Route(r, params) => (r.operation_id, params),
            Found::WrongMethod(a) => ("405", vec![a]),
            Found::None => ("404", vec![]),
        };
        assert_eq!(
            get("/api/predictive-alerts/statistics").0,
            "alertStatistics"
        );
        assert_eq!(
            get("/api/predictive-alerts/abc"),
            ("getAlert", vec!["abc".into()])
        );
        assert_eq!(
            get("/api/predictive-alerts/component/General%20Equipment"),
            ("listAlertsByComponent", vec!["General Equipment".into()])
        );
        assert_eq!(
            get("/api/predictive-alerts/abc/feedback"),
            ("405", vec!["POST".into()])
        );
        assert_eq!(get("/api/nope").0, "404");
        assert_eq!(get("/api/predictive-alerts/").0, "404");
    }

    #[test]
    fn the_table_is_consistent() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ROUTES {
            assert!(seen.insert((r.method.as_str(), r.path)), "{} twice", r.path);
            assert!(!r.operation_id.is_empty() && !r.summary.is_empty() && !r.tag.is_empty());
            let scoped = matches!(r.access, Access::Roles(_));
            // The caller's own identity, the org configurations and an org's
            // work orders (the org in the path) are the protected routes without ?org=.
            let own_org_free = r.path == "/api/auth/me" || r.path.starts_with("/api/orgs");
            assert_eq!(
                r.query.iter().any(|q| q.name == "org"),
                scoped && !own_org_free,
                "{}: protected routes take ?org=",
                r.path
            );
        }
    }
}
