//! `/api/orgs` (super admins): list, read, create and update organization
//! configurations — an `[orgs.<id>]` table of the TOML file, as JSON. A body is
//! checked field by field, then the whole configuration with it is validated by
//! the same code as the file (the failing key is named), stored in the
//! `org_configs` tree and audited.
//!
//! What takes effect when, in `prognos run` and in a cluster (`prognos
//! controller` publishes stored configurations and threshold changes on the
//! control topic; workers follow it):
//! - `prediction.failure_threshold`, `prediction.for_s`,
//!   `prediction.immediate_threshold` and `prediction.confidence_threshold` of a
//!   running org: at once, in event time —
//!   from an effective ts at or after every row already scored (`appliedLive`).
//!   The change is persisted with the thresholds it replaced (registry), so a
//!   restart or a replay scores the rows before it with the old ones.
//!   The stage-2 gate is part of each model version (recorded at training): a
//!   failure threshold lowered below it alerts on rows whose component and time
//!   to failure stay at the org's defaults until a version trained with it is active.
//! - everything else (name, `enabled`, the schema mapping — columns and signals —,
//!   features, rules, failure signals, the other prediction settings, training)
//!   and new orgs: stored now, applied at the next start, when `prognos run` (or
//!   a worker, from the control topic) lays the stored configurations over the
//!   file's (`restartKeys`). Live schema or
//!   feature changes would need the dataflow to swap mapping and feature state
//!   in event time, which it does not do yet.

use super::ApiState;
use super::error::ApiError;
use super::ml::audit;
use super::request::{Reply, Req};
use crate::orgs::{LIVE_KEYS, StoredOrg, changed_keys};
use prognos_dataflows::config::{Config, ConfigError, OrgConfig};
use prognos_dataflows::models::activations::Thresholds;
use prognos_dataflows::time::format_rfc3339_ms;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::MutexGuard;
use warp::http::StatusCode;

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
    // Thresholds apply live where a dataflow reads this process's activation
    // log: the embedded `prognos run`'s own pipeline, or the workers of
    // `prognos controller`, which follow it on the control topic.
    let running = st.svc.thresholds_live && st.svc.orgs.contains(&id);
    let live_change = running && changed.iter().any(|k| LIVE_KEYS.contains(&k.as_str()));
    let s = StoredOrg {
        id: id.clone(),
        config: body,
        updated_at: req.now_ms,
        updated_by: req.caller()?.username.clone(),
    };
    st.svc.org_store.put(&s).map_err(ApiError::internal)?;
    let applied = if live_change {
        Some(
            st.svc
                .registry
                .set_thresholds(
                    &id,
                    Thresholds::of(&old.prediction),
                    Thresholds::of(&s.config.prediction),
                    req.now_ms,
                    &st.svc.live,
                )
                .map_err(ApiError::internal)?,
        )
    } else {
        None
    };
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
