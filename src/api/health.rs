//! `/api/health/*`: the state of the prediction service, the training service,
//! the model cache and the pipeline (the seed's background monitor), each
//! `{status: healthy | degraded | unhealthy, checkedAt, ...}` from the running
//! process.
//!
//! Any role may ask. Operators and admins see their own org; a super admin sees
//! every org, or one with `?org=`. Process-wide totals (the model cache's
//! counters) are shown to super admins without `?org=` only: they sum over every
//! org, so they would tell an org about the others' traffic. These routes answer
//! 200 whatever the status (the body says it); `/readyz` is the probe.

use super::ApiState;
use super::error::ApiError;
use super::request::{Reply, Req, Scope};
use crate::status::{FALLBACK, OrgProgress, SCORED};
use prognos_dataflows::stats::outcome;
use prognos_dataflows::time::format_rfc3339_ms;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

/// An org whose featured-row count has not grown for this long (wall clock) is stalled.
pub const STALL_MS: i64 = 60_000;
/// A publish loop that has not updated the status for this long is stuck.
pub const STUCK_MS: i64 = 10_000;

const HEALTHY: &str = "healthy";
const DEGRADED: &str = "degraded";
const UNHEALTHY: &str = "unhealthy";

fn orgs_in_scope(st: &ApiState, req: &Req) -> Result<Vec<String>, ApiError> {
    match &req.scope {
        Some(Scope::Org(o)) => Ok(vec![o.clone()]),
        Some(Scope::All) => Ok(st.svc.orgs.iter().cloned().collect()),
        None => Err(ApiError::unauthorized()),
    }
}

fn time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |t| format_rfc3339_ms(t).into())
}

/// Whether the dataflow runs and its publish loop is alive. In a cluster's
/// controller the pipeline is the workers' (their heartbeats merged): it runs
/// while every process of the cluster reports.
fn pipeline_running(st: &ApiState, now_ms: i64) -> (bool, crate::status::Snapshot) {
    let snap = match &st.svc.cluster {
        Some(c) => c.merged(),
        None => st.svc.pipeline.snapshot(),
    };
    let ready = st.ready.load(Ordering::Acquire);
    let alive = snap.updated_ms.is_some_and(|u| now_ms - u <= STUCK_MS);
    (ready && snap.started_ms.is_some() && alive, snap)
}

/// In a cluster's controller: every worker process with its status, and the
/// stale and missing ones named (added to the pipeline routes' bodies).
fn add_workers(st: &ApiState, now_ms: i64, body: &mut Value) {
    let Some(c) = &st.svc.cluster else { return };
    let workers = c.workers(now_ms);
    let named = |status: &str| -> Vec<usize> {
        workers
            .iter()
            .filter(|w| w.status == status)
            .map(|w| w.process)
            .collect()
    };
    body["staleWorkers"] = json!(named("stale"));
    body["missingWorkers"] = json!(named("missing"));
    body["workers"] = workers
        .iter()
        .map(|w| {
            json!({
                "process": w.process,
                "status": w.status,
                "state": w.state,
                "threads": w.threads,
                "lastSeenAt": time(w.last_seen_ms),
                "secondsSinceSeen": w.last_seen_ms.map(|t| (now_ms - t) as f64 / 1000.0),
            })
        })
        .collect();
}

fn progress<'a>(snap: &'a crate::status::Snapshot, org: &str) -> std::borrow::Cow<'a, OrgProgress> {
    snap.orgs
        .get(org)
        .map_or_else(Default::default, std::borrow::Cow::Borrowed)
}

/// `GET /api/health/prediction-service`: per org, the active version and
/// whether its rows are scored by it or by the rules alone.
pub fn prediction_service(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let (running, snap) = pipeline_running(st, req.now_ms);
    let mut orgs = Vec::new();
    let mut on_rules = Vec::new();
    for org in orgs_in_scope(st, req)? {
        let p = progress(&snap, &org);
        let active = st.svc.registry.active(&org)?;
        let model_error = snap
            .cache_failed
            .iter()
            .find(|(o, v, _)| *o == org && Some(v) == active.as_ref())
            .map(|(_, _, e)| e.clone());
        let rules = active.is_none() || model_error.is_some() || p.on_rules();
        if rules {
            on_rules.push(org.clone());
        }
        orgs.push(json!({
            "organizationId": org,
            "activeVersion": active,
            "mode": if rules { "rules" } else { "model" },
            "rowsScored": p.rows.get(SCORED).copied().unwrap_or(0),
            "rowsFallback": p.rows.get(FALLBACK).copied().unwrap_or(0),
            "lastScoredAt": time(p.last_scored_ms),
            "lastFallbackAt": time(p.last_fallback_ms),
            "modelError": model_error,
        }));
    }
    let status = if !running {
        UNHEALTHY
    } else if on_rules.is_empty() {
        HEALTHY
    } else {
        DEGRADED
    };
    let mut body = json!({
        "status": status,
        "checkedAt": format_rfc3339_ms(req.now_ms),
        "pipelineRunning": running,
        "organizations": orgs,
        "fallbackOrganizations": on_rules,
    });
    add_workers(st, req.now_ms, &mut body);
    Ok(Reply::ok(&body))
}

/// `GET /api/health/training-service`: the API's training queue and, per org,
/// its queued and running jobs and its latest training run.
pub fn training_service(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let jobs = &st.svc.jobs;
    let available = jobs.available();
    let mut orgs = Vec::new();
    let (mut queued_total, mut running_total) = (0, 0);
    let mut failing = false;
    for org in orgs_in_scope(st, req)? {
        let of_org = jobs.of_org(&org);
        let queued = of_org.iter().filter(|j| j.status == "QUEUED").count();
        let running = of_org.iter().filter(|j| j.status == "RUNNING").count();
        queued_total += queued;
        running_total += running;
        let last_run = st.svc.registry.runs(&org)?.into_iter().next();
        let last_job = of_org.first();
        failing |= last_run.as_ref().is_some_and(|r| r.status == "FAILED")
            || last_job.is_some_and(|j| j.status == "FAILED");
        orgs.push(json!({
            "organizationId": org,
            "queued": queued,
            "running": running,
            "lastRun": last_run.map(|r| json!({
                "id": r.id,
                "status": r.status,
                "version": r.version,
                "startedAt": format_rfc3339_ms(r.started_at),
                "completedAt": time(r.completed_at),
                "error": r.error_message,
            })),
            "lastJob": last_job.map(|j| json!({
                "id": j.id,
                "status": j.status,
                "queuedAt": format_rfc3339_ms(j.queued_at),
                "completedAt": time(j.completed_at),
                "error": j.error,
            })),
        }));
    }
    let status = if !available {
        UNHEALTHY
    } else if failing {
        DEGRADED
    } else {
        HEALTHY
    };
    Ok(Reply::ok(&json!({
        "status": status,
        "checkedAt": format_rfc3339_ms(req.now_ms),
        "trainerAvailable": available,
        "queued": queued_total,
        "running": running_total,
        "organizations": orgs,
    })))
}

/// `GET /api/health/model-cache`: per org, the versions the caches hold and
/// the ones that failed their load-time check; the process-wide counters
/// (those `/metrics` publishes) for a super admin without `?org=`.
pub fn model_cache(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let (running, snap) = pipeline_running(st, req.now_ms);
    let mut orgs = Vec::new();
    let mut active_failed = false;
    for org in orgs_in_scope(st, req)? {
        let active = st.svc.registry.active(&org)?;
        let loaded: Vec<&str> = snap
            .cache_loaded
            .iter()
            .filter(|(o, _)| *o == org)
            .map(|(_, v)| v.as_str())
            .collect();
        let failed: Vec<Value> = snap
            .cache_failed
            .iter()
            .filter(|(o, _, _)| *o == org)
            .map(|(_, v, e)| {
                active_failed |= Some(v) == active.as_ref();
                json!({"version": v, "error": e})
            })
            .collect();
        orgs.push(json!({
            "organizationId": org,
            "activeVersion": active,
            "activeLoaded": active.as_ref().is_some_and(|a| loaded.contains(&a.as_str())),
            "loaded": loaded,
            "failed": failed,
        }));
    }
    let status = if !running {
        UNHEALTHY
    } else if active_failed {
        DEGRADED
    } else {
        HEALTHY
    };
    let mut body = json!({
        "status": status,
        "checkedAt": format_rfc3339_ms(req.now_ms),
        "pipelineRunning": running,
        "organizations": orgs,
    });
    add_workers(st, req.now_ms, &mut body);
    if req.scope == Some(Scope::All) {
        let m = &st.metrics;
        let (hits, misses) = (m.cache_hits.get(), m.cache_misses.get());
        body["totals"] = json!({
            "hits": hits,
            "misses": misses,
            "evictions": m.cache_evictions.get(),
            "hitRatio": if hits + misses > 0 { Some(hits as f64 / (hits + misses) as f64) } else { None },
            "loadSeconds": m.model_load_seconds.get(),
            "bytes": m.cache_bytes.get(),
            "models": m.cache_models.get(),
        });
    }
    Ok(Reply::ok(&body))
}

/// `GET /api/health/background-monitor`: the pipeline — running, and per org
/// its row counts, the event time reached and how long since it last moved.
pub fn background_monitor(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let now = req.now_ms;
    let (running, snap) = pipeline_running(st, now);
    let mut orgs = Vec::new();
    let mut stalled = 0;
    let scope = orgs_in_scope(st, req)?;
    for org in &scope {
        let p = progress(&snap, org);
        let since = p.last_progress_ms.or(snap.started_ms).map(|t| now - t);
        let is_stalled = since.is_none_or(|s| s > STALL_MS);
        if is_stalled {
            stalled += 1;
        }
        orgs.push(json!({
            "organizationId": org,
            "rows": p.rows,
            "rowsFeatured": p.rows.get(outcome::FEATURED).copied().unwrap_or(0),
            "eventTime": time(p.event_time_ms),
            "lastProgressAt": time(p.last_progress_ms),
            "secondsSinceProgress": since.map(|s| s as f64 / 1000.0),
            "stalled": is_stalled,
        }));
    }
    let status = if !running || (stalled > 0 && stalled == scope.len()) {
        UNHEALTHY
    } else if stalled > 0 {
        DEGRADED
    } else {
        HEALTHY
    };
    let mut body = json!({
        "status": status,
        "checkedAt": format_rfc3339_ms(now),
        "pipeline": {
            "ready": st.ready.load(Ordering::Acquire),
            "running": running,
            "startedAt": time(snap.started_ms),
            "updatedAt": time(snap.updated_ms),
            "secondsSinceUpdate": snap.updated_ms.map(|u| (now - u) as f64 / 1000.0),
        },
        "organizations": orgs,
    });
    add_workers(st, now, &mut body);
    Ok(Reply::ok(&body))
}
