//! From an HTTP request to a handler call: route lookup, query validation,
//! the caller and its org scope, the body, and the answer (see the module
//! header of [`crate::api`] for the order of the checks).

use super::error::ApiError;
use super::routes::{self, Access, Handler, Kind, Route};
use super::{ApiState, Services};
use crate::auth::Role;
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use warp::Buf;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::path::FullPath;

/// The authenticated user of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// Username.
    pub username: String,
    /// Current role (from the store, not the token).
    pub role: Role,
    /// Current org.
    pub org: Option<String>,
}

/// Which orgs a request may see.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    /// One org.
    Org(String),
    /// Every org (a super admin without `?org=`).
    All,
}

/// A checked query parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text, enum, cursor, token.
    Text(String),
    /// Integer, time (ms), sequence number.
    Int(i64),
}

/// A request that passed the route's checks.
pub struct Req {
    /// The route.
    pub route: &'static Route,
    /// Path parameters in template order (percent-decoded).
    pub path: Vec<String>,
    /// Query parameters that were given.
    pub query: BTreeMap<&'static str, Value>,
    /// The body (routes with a body only).
    pub body: Option<Vec<u8>>,
    /// The user (protected routes).
    pub caller: Option<Caller>,
    /// Its org scope (protected routes).
    pub scope: Option<Scope>,
    /// Client address.
    pub remote: Option<IpAddr>,
    /// Request time (ms).
    pub now_ms: i64,
}

impl Req {
    /// The authenticated user (protected routes always have one).
    pub fn caller(&self) -> Result<&Caller, ApiError> {
        self.caller.as_ref().ok_or_else(ApiError::unauthorized)
    }

    /// The one org the request is about; a super admin must name it.
    pub fn org(&self) -> Result<&str, ApiError> {
        match &self.scope {
            Some(Scope::Org(o)) => Ok(o),
            Some(Scope::All) => Err(ApiError::field(
                "org",
                "required for a super admin on this route",
            )),
            None => Err(ApiError::unauthorized()),
        }
    }

    /// Path parameter `i`.
    pub fn path(&self, i: usize) -> &str {
        &self.path[i]
    }

    /// A text parameter.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.query.get(name) {
            Some(Value::Text(s)) => Some(s),
            _ => None,
        }
    }

    /// An integer (or time) parameter.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.query.get(name) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// The body as `T` (an empty body reads as `{}`), with field-level errors.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let body = self.body.as_deref().unwrap_or_default();
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}".as_slice()
        } else {
            body
        };
        let de = &mut serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            let field = |m: &str, prefix: &str| {
                m.strip_prefix(prefix)
                    .and_then(|r| r.split('`').next())
                    .map(str::to_string)
            };
            if inner.is_syntax() || inner.is_eof() {
                ApiError::field("body", format!("not valid JSON: {msg}"))
            } else if let Some(f) = field(&msg, "missing field `") {
                ApiError::field(&f, "is required")
            } else if let Some(f) = field(&msg, "unknown field `") {
                ApiError::field(&f, "unknown field")
            } else if path == "." {
                ApiError::field("body", msg)
            } else {
                ApiError::field(&path, msg)
            }
        })
    }
}

/// A handler's answer.
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    /// JSON with a status.
    pub fn json<T: serde::Serialize + ?Sized>(status: StatusCode, v: &T) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(v).expect("API answers serialize"),
        }
    }

    /// 200 JSON.
    pub fn ok<T: serde::Serialize + ?Sized>(v: &T) -> Reply {
        Reply::json(StatusCode::OK, v)
    }

    fn into_response(self) -> warp::reply::Response {
        use warp::Reply as _;
        warp::reply::with_status(
            warp::reply::with_header(self.body, "content-type", self.content_type),
            self.status,
        )
        .into_response()
    }
}

/// The JSON answer of an error.
pub fn error_response(e: &ApiError) -> warp::reply::Response {
    let mut r = Reply::json(e.status, &e.body()).into_response();
    let h = r.headers_mut();
    if let Some(s) = e.retry_after_s {
        h.insert("retry-after", s.into());
    }
    // The refused body is not read: the connection cannot carry another request
    // (a client that reused it would write into a closed socket).
    if e.status == StatusCode::PAYLOAD_TOO_LARGE {
        h.insert("connection", warp::http::HeaderValue::from_static("close"));
    }
    if let Some(a) = &e.allow
        && let Ok(v) = a.parse()
    {
        h.insert("allow", v);
    }
    r
}

fn parse_time(s: &str) -> Option<i64> {
    s.parse::<i64>()
        .ok()
        .or_else(|| prognos_dataflows::time::parse_rfc3339_ms(s))
}

/// Check the query string against the route's parameters.
pub fn parse_query(
    route: &Route,
    raw: &str,
    max_page: i64,
) -> Result<BTreeMap<&'static str, Value>, ApiError> {
    let mut out = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        let Some(p) = route.query.iter().find(|p| p.name == k) else {
            errors.insert(k.into_owned(), "unknown parameter".to_string());
            continue;
        };
        if out.contains_key(p.name) {
            errors.insert(p.name.to_string(), "given more than once".into());
            continue;
        }
        let v = v.into_owned();
        let parsed = match p.kind {
            Kind::Time => parse_time(&v)
                .map(Value::Int)
                .ok_or("not an RFC 3339 time or epoch milliseconds".to_string()),
            Kind::Int { min, max } => {
                let max = if p.name == "limit" {
                    max.min(max_page)
                } else {
                    max
                };
                match v.parse::<i64>() {
                    Ok(i) if (min..=max).contains(&i) => Ok(Value::Int(i)),
                    _ => Err(format!("must be an integer from {min} to {max}")),
                }
            }
            Kind::Seq => v
                .parse::<u64>()
                .ok()
                .and_then(|s| i64::try_from(s).ok())
                .map(Value::Int)
                .ok_or("must be a store sequence number (integer ≥ 0)".to_string()),
            Kind::Text { max_len } => {
                if v.is_empty() || v.len() > max_len || v.contains('\0') {
                    Err(format!("must be 1 to {max_len} bytes without NUL"))
                } else {
                    Ok(Value::Text(v))
                }
            }
            Kind::OneOf(options) => {
                if options.contains(&v.as_str()) {
                    Ok(Value::Text(v))
                } else {
                    Err(format!("must be one of {}", options.join(", ")))
                }
            }
            Kind::Cursor => {
                let ok = v.len() <= 512
                    && v.split_once(':').is_some_and(|(ts, id)| {
                        ts.parse::<i64>().is_ok() && !id.is_empty() && !id.contains('\0')
                    });
                if ok {
                    Ok(Value::Text(v))
                } else {
                    Err("not a cursor from a previous page".into())
                }
            }
        };
        match parsed {
            Ok(x) => {
                out.insert(p.name, x);
            }
            Err(e) => {
                errors.insert(p.name.to_string(), e);
            }
        }
    }
    for p in route.query.iter().filter(|p| p.required) {
        if !out.contains_key(p.name) && !errors.contains_key(p.name) {
            errors.insert(p.name.to_string(), "is required".into());
        }
    }
    if let (Some(Value::Int(from)), Some(Value::Int(to))) = (out.get("from"), out.get("to"))
        && from > to
    {
        errors.insert("to".into(), "must not be before `from`".into());
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::invalid(errors))
    }
}

/// The bearer token of a request.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl Services {
    /// The current user behind a token (401 for anything wrong).
    pub fn authenticate(&self, token: &str) -> Result<Caller, ApiError> {
        if let Some(local) = token.strip_prefix(super::local::TOKEN_PREFIX) {
            return if same_secret(local, &self.local_token) {
                Ok(super::local::caller())
            } else {
                Err(ApiError::unauthorized())
            };
        }
        let claims = self
            .keys
            .verify(token)
            .map_err(|_| ApiError::unauthorized())?;
        let user = self
            .users
            .get(&claims.sub)?
            .ok_or_else(ApiError::unauthorized)?;
        if user.token_epoch != claims.epoch {
            return Err(ApiError::unauthorized());
        }
        Ok(Caller {
            username: user.username,
            role: user.role,
            org: user.org,
        })
    }

    /// The org scope of `caller` asking for `asked` on `route`: another org is
    /// 404 (checked first), then a role the route does not allow is 403.
    pub fn scope(
        &self,
        caller: &Caller,
        asked: Option<&str>,
        route: &Route,
    ) -> Result<Scope, ApiError> {
        let unknown = || ApiError::not_found("no such organization");
        let scope = match (caller.role, asked) {
            (Role::SuperAdmin, Some(o)) if self.orgs.contains(o) => Scope::Org(o.into()),
            (Role::SuperAdmin, Some(_)) => return Err(unknown()),
            (Role::SuperAdmin, None) => Scope::All,
            (_, asked) => {
                let own = caller.org.as_deref().ok_or_else(ApiError::forbidden)?;
                if asked.is_some_and(|a| a != own) {
                    return Err(unknown());
                }
                Scope::Org(own.into())
            }
        };
        match route.access {
            Access::Roles(roles) if roles.contains(&caller.role) => Ok(scope),
            Access::Roles(_) | Access::Cluster => Err(ApiError::forbidden()),
            Access::Public => Ok(scope),
        }
    }
}

async fn read_body<S, B>(headers: &HeaderMap, body: S, max: usize) -> Result<Vec<u8>, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body may be at most {max} bytes"),
        )
    };
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| ApiError::field("body", "could not be read"))?;
        if out.len() + chunk.remaining() > max {
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let c = chunk.chunk();
            out.extend_from_slice(c);
            let n = c.len();
            chunk.advance(n);
        }
    }
    if !out.iter().all(u8::is_ascii_whitespace) {
        let json = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "bodies are JSON: send content-type: application/json",
            ));
        }
    }
    Ok(out)
}

/// The largest body the cluster token's routes take (a heartbeat of a worker
/// serving a few thousand orgs).
const CLUSTER_MAX_BODY: usize = 4 << 20;

/// Serve one request that is not a WebSocket upgrade.
pub async fn dispatch<S, B>(
    st: ApiState,
    method: Method,
    path: FullPath,
    query: String,
    headers: HeaderMap,
    remote: Option<SocketAddr>,
    body: S,
) -> warp::reply::Response
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let t0 = Instant::now();
    let (label, result) = match routes::find(&method, path.as_str()) {
        routes::Found::Route(route, params) => (
            route.path,
            handle(&st, route, params, &query, &headers, remote, body).await,
        ),
        routes::Found::WrongMethod(allow) => (
            "unmatched",
            Err(ApiError {
                allow: Some(allow),
                ..ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{method} is not allowed here"),
                )
            }),
        ),
        routes::Found::None => ("unmatched", Err(ApiError::not_found("no such route"))),
    };
    let resp = match result {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    let m = &st.svc.m;
    m.requests
        .with_label_values(&[label, method.as_str(), resp.status().as_str()])
        .inc();
    m.duration
        .with_label_values(&[label])
        .observe(t0.elapsed().as_secs_f64());
    resp
}

/// The org of an org's sub-resource (`/api/orgs/{org}/…`), scoped like
/// `?org=`: another org is 404 before the role is checked.
fn org_in_path<'a>(route: &Route, path: &'a [String]) -> Option<&'a str> {
    route
        .path
        .starts_with("/api/orgs/{org}/")
        .then(|| path.first().map(String::as_str))
        .flatten()
}

/// A request's checked query, caller and scope.
pub struct Admitted {
    /// Query parameters.
    pub query: BTreeMap<&'static str, Value>,
    /// The user (protected routes).
    pub caller: Option<Caller>,
    /// Its org scope (protected routes).
    pub scope: Option<Scope>,
}

/// Whether two secrets are equal, in time independent of where they differ
/// (their SHA-256 digests are compared, byte by byte, without an early exit).
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// Check and authenticate a request for `route` (shared with the WebSocket upgrade).
pub fn admit(
    st: &ApiState,
    route: &'static Route,
    path_org: Option<&str>,
    query: &str,
    headers: &HeaderMap,
) -> Result<Admitted, ApiError> {
    let svc = &st.svc;
    let query = parse_query(route, query, svc.settings.max_page)?;
    if let Access::Cluster = route.access {
        let Some(want) = svc.settings.cluster_token.as_deref() else {
            return Err(ApiError::not_found("no such route"));
        };
        let given = bearer(headers).ok_or_else(ApiError::unauthorized)?;
        if !same_secret(given, want) {
            return Err(ApiError::unauthorized());
        }
        return Ok(Admitted {
            query,
            caller: None,
            scope: None,
        });
    }
    let Access::Roles(_) = route.access else {
        return Ok(Admitted {
            query,
            caller: None,
            scope: None,
        });
    };
    let token = bearer(headers).or(match query.get("token") {
        Some(Value::Text(t)) => Some(t.as_str()),
        _ => None,
    });
    let mut caller = svc.authenticate(token.ok_or_else(ApiError::unauthorized)?)?;
    // A command on the host names the OS user who ran it (audited as `cli:<user>`).
    if caller.username == super::local::CLI_USER
        && let Some(u) = headers
            .get(super::local::OS_USER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(crate::auth::audit::clean_os_user)
            .filter(|u| !u.is_empty())
    {
        caller.username = format!("cli:{u}");
    }
    let asked = match query.get("org") {
        Some(Value::Text(o)) => Some(o.as_str()),
        _ => path_org,
    };
    let scope = svc.scope(&caller, asked, route)?;
    Ok(Admitted {
        query,
        caller: Some(caller),
        scope: Some(scope),
    })
}

async fn handle<S, B>(
    st: &ApiState,
    route: &'static Route,
    path: Vec<String>,
    query: &str,
    headers: &HeaderMap,
    remote: Option<SocketAddr>,
    body: S,
) -> Result<warp::reply::Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let Admitted {
        query,
        caller,
        scope,
    } = admit(st, route, org_in_path(route, &path), query, headers)?;
    // A worker's heartbeat lists every org it serves: the cluster routes may
    // send more than a person's request.
    let max_body = match route.access {
        Access::Cluster => st.svc.settings.max_body_bytes.max(CLUSTER_MAX_BODY),
        _ => st.svc.settings.max_body_bytes,
    };
    let body = match route.body {
        Some(_) => Some(read_body(headers, body, max_body).await?),
        None => None,
    };
    let f = match route.handler {
        Handler::Json(f) => f,
        Handler::WebSocket => {
            return Err(ApiError::new(
                StatusCode::UPGRADE_REQUIRED,
                "upgrade_required",
                "this is a WebSocket endpoint: connect with a WebSocket client",
            ));
        }
    };
    let req = Req {
        route,
        path,
        query,
        body,
        caller,
        scope,
        remote: remote.map(|r| r.ip()),
        now_ms: super::now_ms(),
    };
    let _permit = if route.cpu_heavy {
        Some(
            st.svc
                .login_slots
                .acquire()
                .await
                .map_err(ApiError::internal)?,
        )
    } else {
        None
    };
    let st = st.clone();
    let reply = tokio::task::spawn_blocking(move || f(&st, &req))
        .await
        .map_err(ApiError::internal)??;
    Ok(reply.into_response())
}
