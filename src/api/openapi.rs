//! The OpenAPI 3.0 document, generated from the route table and the schemas.

use super::ApiState;
use super::error::ApiError;
use super::request::{Reply, Req};
use super::routes::{Access, Body, Kind, ROUTES, Route};
use serde_json::{Map, Value, json};
use std::sync::OnceLock;

fn param_schema(k: Kind) -> Value {
    match k {
        Kind::Time => {
            json!({"type": "string", "description": "RFC 3339 (e.g. 2024-03-10T00:00:00Z) or epoch milliseconds"})
        }
        Kind::Int { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        Kind::Seq => json!({"type": "integer", "format": "int64", "minimum": 0}),
        Kind::Text { max_len } => json!({"type": "string", "minLength": 1, "maxLength": max_len}),
        Kind::OneOf(v) => json!({"type": "string", "enum": v}),
        Kind::Cursor => json!({"type": "string", "pattern": "^-?[0-9]+:.+$"}),
    }
}

fn error_response(description: &str) -> Value {
    json!({"description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn describe(status: u16) -> &'static str {
    match status {
        400 => "Invalid parameters or body (`fields` says which and why).",
        401 => "No valid bearer token.",
        403 => "Your role may not do this in your organization.",
        404 => "No such resource in your organization (also anything of another organization).",
        405 => "Method not allowed.",
        409 => "The resource's state does not allow it.",
        413 => "Body too large.",
        415 => "Body is not JSON.",
        426 => "Not a WebSocket upgrade.",
        429 => "Too many failed logins: wait `Retry-After` seconds.",
        503 => "Not available now.",
        _ => "Internal error (logged).",
    }
}

fn operation(r: &Route) -> Value {
    let mut params: Vec<Value> = r
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            json!({"name": name, "in": "path", "required": true,
                "schema": {"type": "string", "minLength": 1, "maxLength": 256}})
        })
        .collect();
    params.extend(r.query.iter().map(|p| {
        json!({"name": p.name, "in": "query", "required": p.required,
            "description": p.doc, "schema": param_schema(p.kind)})
    }));
    let ok = match r.ok.1 {
        Body::Json(schema) => json!({"description": "OK",
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}),
        Body::Text => json!({"description": "OK",
            "content": {"text/plain": {"schema": {"type": "string"}}}}),
        Body::Bytes => json!({"description": "OK",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}),
        Body::Png => json!({"description": "OK",
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}),
        Body::Upgrade => json!({"description":
            "Switching Protocols. Server messages are `WsEvent` JSON text frames."}),
    };
    let mut responses = Map::new();
    responses.insert(r.ok.0.to_string(), ok);
    let mut errors: Vec<u16> = vec![400];
    match r.access {
        Access::Roles(_) => errors.extend([401, 403, 404]),
        Access::Cluster => errors.extend([401, 404]),
        Access::Public => {}
    }
    if r.body.is_some() {
        errors.extend([413, 415]);
    }
    errors.extend(r.errors);
    errors.push(500);
    errors.sort_unstable();
    errors.dedup();
    for e in errors {
        responses.insert(e.to_string(), error_response(describe(e)));
    }
    let (security, roles) = match r.access {
        Access::Public => (json!([]), String::from("Public.")),
        Access::Cluster => (
            json!([{"clusterToken": []}]),
            String::from(
                "The cluster token (`PROGNOS_CLUSTER_TOKEN`, shared by the controller and its workers) as a bearer token; 404 when the controller has none.",
            ),
        ),
        Access::Roles(roles) => {
            let names: Vec<&str> = roles.iter().map(|x| x.as_str()).collect();
            let security = if r.path == "/ws" {
                json!([{"bearer": []}, {"queryToken": []}])
            } else {
                json!([{"bearer": []}])
            };
            (security, format!("Roles: {}.", names.join(", ")))
        }
    };
    let mut op = json!({
        "operationId": r.operation_id,
        "summary": r.summary,
        "description": roles,
        "tags": [r.tag],
        "parameters": params,
        "responses": responses,
        "security": security,
    });
    if let Some(b) = r.body {
        op["requestBody"] = json!({"required": b.required,
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", b.schema)}}}});
    }
    op
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let entry = paths.entry(r.path).or_insert_with(|| json!({}));
        entry[r.method.lower()] = operation(r);
    }
    let schemas: Map<String, Value> = super::schemas::all()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "prognos",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Multi-tenant streaming predictive maintenance: alerts, models, audit log and the /ws alert push. Log in with POST /api/auth/login and send `Authorization: Bearer <token>`. Operators and admins only ever see their own organization: anything of another organization is 404.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "queryToken": {"type": "apiKey", "in": "query", "name": "token"},
                "clusterToken": {"type": "http", "scheme": "bearer",
                    "description": "The cluster token (`PROGNOS_CLUSTER_TOKEN`)."},
            },
        },
    })
}

/// `GET /api/openapi.json`.
pub fn serve(_: &ApiState, _: &Req) -> Result<Reply, ApiError> {
    static DOC: OnceLock<Value> = OnceLock::new();
    Ok(Reply::ok(DOC.get_or_init(document)))
}
