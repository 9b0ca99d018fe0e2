//! `/api/orgs` (super admins): list, read, create and update organization
//! configurations — an `[orgs.<id>]` table of the TOML file, as JSON. A body is
//! checked field by field, then the whole configuration with it is validated by
//! the same code as the file (the failing key is named), stored in the
//! `org_configs` tree and audited.
//!
//! What takes effect when, in `prognos run`:
//! - `prediction.failure_threshold`, `prediction.for_s` and
//!   `prediction.confidence_threshold` of a running org: at once, in event time —
//!   from an effective ts at or after every row already scored (`appliedLive`).
//!   The stage-2 gate is part of each model version (recorded at training): a
//!   failure threshold lowered below it alerts on rows whose component and time
//!   to failure stay at the org's defaults until a version trained with it is active.
//! - everything else (name, `enabled`, the schema mapping — columns and signals —,
//!   features, rules, failure signals, the other prediction settings, training)
//!   and new orgs: stored now, applied at the next start, when `prognos run` lays
//!   the stored configurations over the file's (`restartKeys`). Live schema or
//!   feature changes would need the dataflow to swap mapping and feature state
//!   in event time, which it does not do yet.

use super::ApiState;
use super::error::ApiError;
use super::ml::audit;
use super::request::{Reply, Req};
use crate::orgs::StoredOrg;
use prognos_dataflows::config::{Config, ConfigError, OrgConfig};
use prognos_dataflows::models::activations::Thresholds;
use prognos_dataflows::time::format_rfc3339_ms;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::MutexGuard;
use warp::http::StatusCode;

/// Keys a running org applies without a restart.
pub const LIVE_KEYS: [&str; 3] = [
    "prediction.failure_threshold",
    "prediction.for_s",
    "prediction.confidence_threshold",
];

/// Body of `POST /api/orgs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    /// The new org's id (1–63 of a-z, 0-9, `-`, `_`).
    pub id: String,
    /// Its configuration.
    pub config: OrgConfig,
}

fn config(st: &ApiState) -> Result<MutexGuard<'_, Config>, ApiError> {
    let c = st.svc.config.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_configuration",
            "this service does not manage organization configurations",
        )
    })?;
    Ok(c.lock().unwrap_or_else(|e| e.into_inner()))
}

fn stored(st: &ApiState, id: &str) -> Result<Option<StoredOrg>, ApiError> {
    Ok(st
        .svc
        .org_store
        .list()
        .map_err(ApiError::internal)?
        .into_iter()
        .find(|s| s.id == id))
}

fn detail(st: &ApiState, id: &str, cfg: &OrgConfig, s: Option<&StoredOrg>) -> Value {
    json!({
        "id": id,
        "name": cfg.name,
        "enabled": cfg.enabled,
        "source": if s.is_some() { "api" } else { "file" },
        "updatedAt": s.map(|s| format_rfc3339_ms(s.updated_at)),
        "updatedBy": s.map(|s| s.updated_by.clone()),
        "running": st.svc.orgs.contains(id),
        "config": cfg,
    })
}

/// `key` of a validation error as a field of the body (`prefix` = where the org's
/// table sits in it).
fn field_error(id: &str, e: ConfigError, prefix: &str) -> ApiError {
    let org = format!("orgs.{id}");
    let field = match e.key.strip_prefix(&org) {
        Some("") => "id".to_string(),
        Some(rest) => format!("{prefix}{}", rest.trim_start_matches('.')),
        None => e.key.clone(),
    };
    ApiError::field(&field, e.reason)
}

/// Dotted keys whose values differ (prediction settings one by one).
fn changed_keys(old: &OrgConfig, new: &OrgConfig) -> Vec<String> {
    let (a, b) = (json!(old), json!(new));
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return vec![];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for k in keys {
        if a.get(k) == b.get(k) {
            continue;
        }
        match (
            k.as_str(),
            a.get(k).and_then(Value::as_object),
            b.get(k).and_then(Value::as_object),
        ) {
            ("prediction", Some(pa), Some(pb)) => {
                let mut sub: Vec<&String> = pa.keys().chain(pb.keys()).collect();
                sub.sort();
                sub.dedup();
                out.extend(
                    sub.into_iter()
                        .filter(|s| pa.get(*s) != pb.get(*s))
                        .map(|s| format!("prediction.{s}")),
                );
            }
            _ => out.push(k.clone()),
        }
    }
    out
}

/// `GET /api/orgs`.
pub fn list(st: &ApiState, _: &Req) -> Result<Reply, ApiError> {
    let cfg = config(st)?;
    let stored = st.svc.org_store.list().map_err(ApiError::internal)?;
    let orgs: Vec<Value> = cfg
        .orgs
        .iter()
        .map(|(id, o)| {
            let mut d = detail(st, id, o, stored.iter().find(|s| &s.id == id));
            d.as_object_mut().expect("an object").remove("config");
            d
        })
        .collect();
    Ok(Reply::ok(&json!({"organizations": orgs})))
}

/// `GET /api/orgs/{org}`.
pub fn get(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let id = req.path(0);
    let cfg = config(st)?;
    let o = cfg
        .orgs
        .get(id)
        .ok_or_else(|| ApiError::not_found("no such organization"))?;
    Ok(Reply::ok(&detail(st, id, o, stored(st, id)?.as_ref())))
}

/// `POST /api/orgs`: a new org, processed from the next start.
pub fn create(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let body: CreateOrg = req.json()?;
    let mut cfg = config(st)?;
    if cfg.orgs.contains_key(&body.id) {
        return Err(ApiError::conflict(format!(
            "organization `{}` exists",
            body.id
        )));
    }
    let mut candidate = cfg.clone();
    candidate.orgs.insert(body.id.clone(), body.config.clone());
    if let Err(e) = candidate.validate() {
        let e = field_error(&body.id, e, "config.");
        audit(
            st,
            req,
            &body.id,
            "orgs.create",
            "refused",
            json!({"fields": e.fields}),
        )?;
        return Err(e);
    }
    let s = StoredOrg {
        id: body.id.clone(),
        config: body.config,
        updated_at: req.now_ms,
        updated_by: req.caller()?.username.clone(),
    };
    st.svc.org_store.put(&s).map_err(ApiError::internal)?;
    *cfg = candidate;
    audit(
        st,
        req,
        &s.id,
        "orgs.create",
        "ok",
        json!({"pendingRestart": true}),
    )?;
    tracing::info!(org = %s.id, by = %s.updated_by, "organization created through the API (processed from the next start)");
    Ok(Reply::json(
        StatusCode::CREATED,
        &json!({
            "organization": detail(st, &s.id, &s.config, Some(&s)),
            "appliedLive": null,
            "restartKeys": ["*"],
            "pendingRestart": true,
        }),
    ))
}

/// `PUT /api/orgs/{org}`: replace an org's configuration.
pub fn update(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let id = req.path(0).to_string();
    let body: OrgConfig = req.json()?;
    let mut cfg = config(st)?;
    let old = cfg
        .orgs
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("no such organization"))?;
    let mut candidate = cfg.clone();
    candidate.orgs.insert(id.clone(), body.clone());
    if let Err(e) = candidate.validate() {
        let e = field_error(&id, e, "");
        audit(
            st,
            req,
            &id,
            "orgs.update",
            "refused",
            json!({"fields": e.fields}),
        )?;
        return Err(e);
    }
    let changed = changed_keys(&old, &body);
    // Thresholds apply live only where this process runs the dataflow (the
    // embedded `prognos run`; a local pipeline is what feeds `predictions`). On
    // `prognos controller` the workers run it and read their own configuration.
    let running = st.svc.predictions.is_some() && st.svc.orgs.contains(&id);
    let live_change = running && changed.iter().any(|k| LIVE_KEYS.contains(&k.as_str()));
    let s = StoredOrg {
        id: id.clone(),
        config: body,
        updated_at: req.now_ms,
        updated_by: req.caller()?.username.clone(),
    };
    st.svc.org_store.put(&s).map_err(ApiError::internal)?;
    let applied = live_change.then(|| {
        let p = &s.config.prediction;
        st.svc.live.set_thresholds(
            &id,
            Thresholds {
                failure_threshold: p.failure_threshold,
                for_s: p.for_s,
                confidence_threshold: p.confidence_threshold,
            },
            req.now_ms,
        )
    });
    *cfg = candidate;
    let restart: Vec<&String> = changed
        .iter()
        .filter(|k| !running || !LIVE_KEYS.contains(&k.as_str()))
        .collect();
    audit(
        st,
        req,
        &id,
        "orgs.update",
        "ok",
        json!({"changedKeys": changed, "appliedLive": applied, "restartKeys": restart}),
    )?;
    tracing::info!(org = %id, by = %s.updated_by, changed = ?changed, "organization configuration updated through the API");
    Ok(Reply::ok(&json!({
        "organization": detail(st, &id, &s.config, Some(&s)),
        "appliedLive": applied,
        "restartKeys": restart,
        "pendingRestart": !restart.is_empty(),
    })))
}
