//! The HTTP and WebSocket API: health (liveness, readiness and the
//! `/api/health/*` service checks), Prometheus metrics, login, the seed's
//! predictive-alert and model routes, organization configurations, the audit
//! log, the `/ws` alert (and, on request, prediction) push, and the OpenAPI document — all served from one route table ([`routes::ROUTES`])
//! that both dispatches requests and generates the document, so the two cannot
//! drift.
//!
//! # Request handling
//! 1. The table picks the route (most literal segments wins; 405 with `Allow`
//!    for a known path with another method; 404 otherwise).
//! 2. Query parameters are checked against the route's declared parameters
//!    (unknown ones are refused): every problem is a field of one 400 answer.
//! 3. Protected routes need `Authorization: Bearer <jwt>` (`/ws` also takes
//!    `?token=`): 401 otherwise. The user is looked up again on every request.
//! 4. The org: operators and admins are pinned to theirs — naming another org
//!    (`?org=`), or an id of another org's alert, is 404. A super admin names one
//!    with `?org=`. Only then the role: 403 when it may not use the route.
//! 5. Bodies: JSON only (415 otherwise), at most `max_body_bytes` (413), unknown
//!    fields refused, field-level reasons.
//! 6. The handler runs on the blocking pool (sled, argon2, the registry).
//!
//! Every answer carries security headers; every error is
//! `{"error": {"code", "message", "fields"?}}`.

mod alerts;
mod cluster;
pub mod console;
pub mod error;
mod failures;
mod health;
pub mod local;
mod login;
pub mod metrics;
pub mod ml;
pub mod openapi;
mod orgs;
mod request;
pub mod routes;
pub mod schemas;
mod ws;

pub use crate::training::jobs::{HistoryTrainer, TrainRequest, Trainer};
pub use error::ApiError;
pub use request::{Caller, Scope};

use crate::auth::{AuditLog, LoginLimiter, Role, TokenKeys, UserStore};
use crate::metrics::Metrics;
use crate::outputs::LivePrediction;
use crate::status::PipelineStatus;
use crate::store::{AlertStore, Change};
use crate::training::jobs::{Jobs, QueueSettings};
use crate::training::registry::Registry;
use prognos_dataflows::models::activations::Activations;
use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::net::TcpListener;
use warp::Filter;

/// Tunables of the API (defaults for production; tests shorten the timers).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// JWT signing secret (env `PROGNOS_JWT_SECRET`); else `<data-dir>/jwt_secret`.
    pub jwt_secret: Option<String>,
    /// Username of the super admin created at first start (env `PROGNOS_ADMIN_USER`).
    pub admin_username: String,
    /// Its password (env `PROGNOS_ADMIN_PASSWORD`); generated and logged once when absent.
    pub admin_password: Option<String>,
    /// Token lifetime.
    pub token_ttl_s: u64,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Largest page (`limit`).
    pub max_page: i64,
    /// Failed logins per username in `login_window_s` before 429 (per client
    /// address: four times as many).
    pub login_max_failures: u32,
    /// The login rate-limit window.
    pub login_window_s: u64,
    /// Logins verified at once (argon2 costs ~20 MB and tens of ms each).
    pub login_concurrency: usize,
    /// WebSocket ping interval; a client silent for two intervals is closed.
    pub ws_ping_interval_ms: u64,
    /// A WebSocket send that does not complete in this time closes the client.
    pub ws_send_timeout_ms: u64,
    /// Changes replayed per `changes_since` read for `/ws?since=`.
    pub ws_replay_batch: usize,
    /// The cluster token workers present to fetch model versions (env
    /// `PROGNOS_CLUSTER_TOKEN`); `None`: the `/api/cluster` routes answer 404.
    pub cluster_token: Option<String>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            jwt_secret: None,
            admin_username: "admin".into(),
            admin_password: None,
            token_ttl_s: 12 * 3600,
            max_body_bytes: 64 * 1024,
            max_page: 500,
            login_max_failures: 5,
            login_window_s: 300,
            login_concurrency: 2,
            ws_ping_interval_ms: 30_000,
            ws_send_timeout_ms: 10_000,
            ws_replay_batch: 500,
            cluster_token: None,
        }
    }
}

impl ApiSettings {
    /// Defaults with `PROGNOS_JWT_SECRET`, `PROGNOS_ADMIN_USER` and `PROGNOS_ADMIN_PASSWORD`.
    pub fn from_env() -> ApiSettings {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let d = ApiSettings::default();
        ApiSettings {
            jwt_secret: var("PROGNOS_JWT_SECRET"),
            admin_username: var("PROGNOS_ADMIN_USER").unwrap_or(d.admin_username.clone()),
            admin_password: var("PROGNOS_ADMIN_PASSWORD"),
            cluster_token: var("PROGNOS_CLUSTER_TOKEN"),
            ..d
        }
    }
}

/// What the API serves from (built by `prognos run`).
pub struct ApiDeps {
    /// Process metrics (the API registers its own into the same registry).
    pub metrics: Metrics,
    /// Set once the pipeline runs.
    pub ready: Arc<AtomicBool>,
    /// The model registry; its sled also holds users and the audit log.
    pub registry: Arc<Registry>,
    /// The alert store.
    pub store: AlertStore,
    /// Every store change (the WebSocket bridge subscribes; operator actions publish).
    pub changes: tokio::sync::broadcast::Sender<Change>,
    /// Live predictions of a local pipeline (`/ws?predictions=true` subscribes);
    /// `None` where no pipeline runs in the process: asking for them answers 503.
    pub predictions: Option<tokio::sync::broadcast::Sender<Arc<LivePrediction>>>,
    /// The live activation log (deploy and rollback go through it).
    pub live: Arc<Activations>,
    /// Whether a dataflow follows `live`'s threshold changes without a restart
    /// (a local pipeline, or workers through the control topic).
    pub thresholds_live: bool,
    /// Configured organizations.
    pub orgs: BTreeSet<String>,
    /// The data dir (the JWT secret file).
    pub data_dir: PathBuf,
    /// Trains a version for `POST /api/ml/train`; `None` answers 503.
    pub trainer: Option<Arc<dyn Trainer>>,
    /// What the running pipeline reports (the health routes read it).
    pub pipeline: Arc<PipelineStatus>,
    /// A cluster's workers as their heartbeats report them (the controller);
    /// when set, the health routes read the pipeline from here and
    /// `POST /api/cluster/heartbeat` feeds it. `None` in a single process.
    pub cluster: Option<Arc<crate::status::ClusterStatus>>,
    /// The configuration in force (stored org configurations laid over the
    /// file's); `None`: `/api/orgs` answers 503.
    pub config: Option<prognos_dataflows::config::Config>,
    /// Tunables.
    pub settings: ApiSettings,
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiInitError {
    /// The users tree.
    #[error("user store")]
    Users(#[from] crate::auth::UsersError),
    /// The audit trees.
    #[error("audit log")]
    Audit(#[from] crate::auth::audit::AuditError),
    /// The JWT secret.
    #[error("JWT secret")]
    Secret(#[from] crate::auth::token::SecretError),
    /// Metrics already registered in this registry.
    #[error("API metrics")]
    Metrics(#[from] prometheus::Error),
    /// The org configuration tree.
    #[error("organization configurations")]
    Orgs(#[from] crate::orgs::OrgStoreError),
}

/// Shared by every request.
pub(crate) struct Services {
    pub registry: Arc<Registry>,
    pub store: AlertStore,
    pub changes: tokio::sync::broadcast::Sender<Change>,
    pub predictions: Option<tokio::sync::broadcast::Sender<Arc<LivePrediction>>>,
    pub live: Arc<Activations>,
    pub thresholds_live: bool,
    pub orgs: BTreeSet<String>,
    pub settings: ApiSettings,
    pub users: UserStore,
    pub audit: AuditLog,
    pub keys: TokenKeys,
    pub limiter: LoginLimiter,
    pub login_slots: tokio::sync::Semaphore,
    pub jobs: Arc<Jobs>,
    pub pipeline: Arc<PipelineStatus>,
    pub cluster: Option<Arc<crate::status::ClusterStatus>>,
    pub config: Option<std::sync::Mutex<prognos_dataflows::config::Config>>,
    pub org_store: crate::orgs::OrgStore,
    /// The secret of `<data-dir>/service.json` (see [`local`]).
    pub local_token: String,
    /// The history root (work orders live beside the rows); `None` without a configuration.
    pub history_root: Option<std::path::PathBuf>,
    pub m: metrics::ApiMetrics,
}

/// What the routes read. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// Process metrics.
    pub metrics: Metrics,
    /// Set once the pipeline is running; `/readyz` answers 503 until then.
    pub ready: Arc<AtomicBool>,
    pub(crate) svc: Arc<Services>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl ApiState {
    /// Open users and audit log in the registry's sled, load (or create) the JWT
    /// secret, create the first super admin when there is no user (its password
    /// from the settings, else generated and logged once), start the training queue.
    pub fn open(deps: ApiDeps) -> Result<ApiState, ApiInitError> {
        let db = deps.registry.db();
        let users = UserStore::open(&db)?;
        let audit = AuditLog::open(&db)?;
        let s = deps.settings;
        let secret = crate::auth::token::load_secret(&deps.data_dir, s.jwt_secret.as_deref())?;
        if users.is_empty() {
            let (password, generated) = match &s.admin_password {
                Some(p) => (p.clone(), false),
                None => (crate::auth::generate_password(20), true),
            };
            let u = users.add(
                &s.admin_username,
                Role::SuperAdmin,
                None,
                &password,
                now_ms(),
            )?;
            audit.record(
                now_ms(),
                "system",
                "system",
                None,
                "users.bootstrap",
                "ok",
                serde_json::json!({"username": u.username, "role": u.role}),
            )?;
            if generated {
                tracing::warn!(
                    username = %u.username,
                    "first start: created super admin `{}` with password `{password}` (shown once; change it with `prognos users passwd {}` while the service is stopped)",
                    u.username, u.username
                );
            } else {
                tracing::info!(username = %u.username, "first start: created super admin from PROGNOS_ADMIN_PASSWORD");
            }
        }
        let m = metrics::ApiMetrics::register(&deps.metrics.registry)?;
        let queue = deps
            .config
            .as_ref()
            .map(|c| QueueSettings::from_config(&c.training))
            .unwrap_or_default();
        let jobs = Jobs::start_with(deps.trainer, audit.clone(), m.training_runs.clone(), queue);
        let svc = Services {
            registry: deps.registry,
            store: deps.store,
            changes: deps.changes,
            predictions: deps.predictions,
            live: deps.live,
            thresholds_live: deps.thresholds_live,
            orgs: deps.orgs,
            keys: TokenKeys::new(&secret, s.token_ttl_s),
            limiter: LoginLimiter::new(Duration::from_secs(s.login_window_s)),
            login_slots: tokio::sync::Semaphore::new(s.login_concurrency.max(1)),
            settings: s,
            users,
            audit,
            jobs,
            pipeline: deps.pipeline,
            cluster: deps.cluster,
            history_root: deps
                .config
                .as_ref()
                .map(|c| crate::training::history::local_dir_for(c, &deps.data_dir)),
            config: deps.config.map(std::sync::Mutex::new),
            org_store: crate::orgs::OrgStore::open(&db)?.with_snapshot(&deps.data_dir)?,
            local_token: local::new_token(),
            m,
        };
        Ok(ApiState {
            metrics: deps.metrics,
            ready: deps.ready,
            svc: Arc::new(svc),
        })
    }

    /// The users (tests and tools add users through it).
    pub fn users(&self) -> &UserStore {
        &self.svc.users
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.svc.audit
    }

    /// Tell commands on this host where the API is (`<data-dir>/service.json`,
    /// removed when the guard drops): `prognos train` hands its run to the service.
    pub fn publish_local(
        &self,
        data_dir: &std::path::Path,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<local::ServiceFile> {
        local::ServiceFile::write(data_dir, addr, &self.svc.local_token)
    }

    /// The training job queue (the scheduler queues into it).
    pub fn jobs(&self) -> Arc<Jobs> {
        self.svc.jobs.clone()
    }

    /// The training-runs counter (`prognos_training_runs_total{trigger, outcome}`),
    /// for trainers outside the API.
    pub fn training_runs(&self) -> prometheus::IntCounterVec {
        self.svc.m.training_runs.clone()
    }
}

fn security_headers() -> warp::http::HeaderMap {
    let mut h = warp::http::HeaderMap::new();
    for (k, v) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
        ("cache-control", "no-store"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        h.insert(k, warp::http::HeaderValue::from_static(v));
    }
    h
}

fn raw_query() -> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// The routes.
pub fn routes(
    state: ApiState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let st = state.clone();
    let ws = warp::path("ws")
        .and(warp::path::end())
        .and(warp::ws())
        .and(raw_query())
        .and(warp::header::headers_cloned())
        .and(warp::any().map(move || st.clone()))
        .and_then(|ws, q: String, h, st: ApiState| async move {
            Ok::<_, warp::Rejection>(ws::upgrade(st, ws, &q, &h))
        });
    let st = state;
    let rest = warp::method()
        .and(warp::path::full())
        .and(raw_query())
        .and(warp::header::headers_cloned())
        .and(warp::addr::remote())
        .and(warp::body::stream())
        .and(warp::any().map(move || st.clone()))
        .and_then(|m, p, q, h, r, b, st: ApiState| async move {
            Ok::<_, warp::Rejection>(request::dispatch(st, m, p, q, h, r, b).await)
        });
    let api = ws
        .or(rest)
        .unify()
        .recover(|_: warp::Rejection| async {
            Ok::<_, std::convert::Infallible>(request::error_response(&ApiError::not_found(
                "no such route",
            )))
        })
        .unify()
        .with(warp::reply::with::headers(security_headers()));
    // The console's files first (with their own headers); everything else is the API.
    console::routes()
        .map(warp::Reply::into_response)
        .or(api.map(warp::Reply::into_response))
        .unify()
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
