//! The seed's model routes (status, versions, metrics, deploy, rollback, train)
//! and the audit log route. Deploy and rollback go through the live activation
//! log, so they take effect at the dataflow's next frontier (event time);
//! training runs go to the job queue (`crate::training::jobs`), each recorded in
//! the audit log when queued and when done.

use super::ApiState;
use super::error::ApiError;
use super::request::{Reply, Req, Scope};
use crate::training::jobs::{SubmitError, TrainRequest};
use crate::training::operating_point;
use crate::training::pipeline::Trigger;
use prognos_dataflows::models::activations::{Activation, Thresholds, thresholds_at};
use serde::Deserialize;
use warp::http::StatusCode;

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> ApiError {
        match e {
            SubmitError::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "training_unavailable",
                e.to_string(),
            ),
            SubmitError::Busy { .. } => ApiError::conflict(e.to_string()),
            SubmitError::Gone => ApiError::internal(e),
        }
    }
}

/// A train request's fields checked: every problem is a field of one 400 answer.
fn validate(req: &TrainRequest) -> Result<(), ApiError> {
    let mut fields = std::collections::BTreeMap::new();
    if req
        .days
        .is_some_and(|d| !(d.is_finite() && (0.25..=3650.0).contains(&d)))
    {
        fields.insert("days".into(), "must be from 0.25 to 3650".into());
    }
    if req.trials.is_some_and(|t| !(1..=50).contains(&t)) {
        fields.insert("trials".into(), "must be from 1 to 50".into());
    }
    if fields.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(fields))
    }
}

/// An audit-log entry (who, org, what, outcome, when) for the caller's request.
pub(crate) fn audit(
    st: &ApiState,
    req: &Req,
    org: &str,
    action: &str,
    outcome: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    let c = req.caller()?;
    st.svc.audit.record(
        req.now_ms,
        &c.username,
        c.role.as_str(),
        Some(org),
        action,
        outcome,
        detail,
    )?;
    Ok(())
}

/// A version without its server path.
fn version_view(
    r: &crate::training::registry::ModelRecord,
    active: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({
        "organizationId": r.organization_id,
        "version": r.version,
        "createdAt": prognos_dataflows::time::format_rfc3339_ms(r.created_at),
        "active": active == Some(r.version.as_str()),
        "featureCount": r.feature_count,
        "metrics": r.metrics,
        "split": r.split,
    })
}

/// `GET /api/ml/status`.
pub fn status(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let org = req.org()?;
    let reg = &st.svc.registry;
    let active = reg.active(org)?;
    let mut activations: Vec<_> = reg
        .activation_log()?
        .into_iter()
        .filter(|a| a.organization_id == org)
        .collect();
    activations.reverse();
    activations.truncate(10);
    let mut runs = reg.runs(org)?;
    runs.truncate(20);
    Ok(Reply::ok(&serde_json::json!({
        "organizationId": org,
        "activeVersion": active,
        "versionCount": reg.versions(org)?.len(),
        "activations": activations,
        "trainingRuns": runs,
        "jobs": st.svc.jobs.of_org(org),
    })))
}

/// `GET /api/ml/versions`.
pub fn versions(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let org = req.org()?;
    let reg = &st.svc.registry;
    let active = reg.active(org)?;
    let versions: Vec<_> = reg
        .versions(org)?
        .iter()
        .map(|r| version_view(r, active.as_deref()))
        .collect();
    Ok(Reply::ok(&serde_json::json!({
        "organizationId": org,
        "activeVersion": active,
        "versions": versions,
    })))
}

/// `GET /api/ml/versions/{version}/report`: the version's `report.png` (404
/// for an unknown version of the org, or one trained without a report).
pub fn report(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let org = req.org()?;
    let rec = st.svc.registry.version(org, req.path(0))?;
    let path = rec.dir.join("report.png");
    let body = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found("this version has no training report"));
        }
        Err(e) => return Err(ApiError::internal(format!("{}: {e}", path.display()))),
    };
    Ok(Reply {
        status: StatusCode::OK,
        content_type: "image/png",
        body,
    })
}

/// `GET /api/ml/metrics`.
pub fn metrics(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let org = req.org()?;
    let reg = &st.svc.registry;
    let active = reg.active(org)?;
    let (active_metrics, operating_point) = match &active {
        Some(v) => match reg.version(org, v) {
            Ok(r) => (r.metrics, r.operating_point),
            Err(crate::training::registry::RegistryError::NoSuchVersion { .. }) => {
                (serde_json::Value::Null, serde_json::Value::Null)
            }
            Err(e) => return Err(e.into()),
        },
        None => (serde_json::Value::Null, serde_json::Value::Null),
    };
    // The thresholds in force from now on: the latest change, else the
    // configuration's.
    let configured = st.svc.config.as_ref().and_then(|c| {
        c.lock()
            .unwrap_or_else(|e| e.into_inner())
            .orgs
            .get(org)
            .map(|o| Thresholds::of(&o.prediction))
    });
    let thresholds = thresholds_at(&st.svc.live.threshold_snapshot(), org, i64::MAX).or(configured);
    let stats = st.svc.store.stats(org, i64::MIN, i64::MAX)?;
    Ok(Reply::ok(&serde_json::json!({
        "organizationId": org,
        "activeVersion": active,
        "thresholds": thresholds,
        "operatingPoint": expected(&operating_point),
        "validation": active_metrics,
        "feedback": {
            "alerts": stats.total,
            "withFeedback": stats.with_feedback,
            "accurate": stats.accurate,
            "accuracy": stats.feedback_accuracy,
        },
    })))
}

/// The chosen operating point of a version's sweep with what it expects there
/// (recall, lead, false episodes per machine-day on the validation rows), the
/// rules and forecasts alone beside it, and the whole curve.
fn expected(op: &serde_json::Value) -> serde_json::Value {
    if op.is_null() {
        return serde_json::Value::Null;
    }
    let chosen = op["chosen"]
        .as_u64()
        .and_then(|i| op["points"].get(i as usize))
        .cloned()
        .unwrap_or_default();
    serde_json::json!({
        "budget": op["budget"],
        "pinned": op["pinned"],
        "adds": op["adds"],
        "chosen": chosen,
        "rulesAndForecasts": op["rulesAndForecasts"],
        "curve": op["points"],
    })
}

/// Body of `POST /api/ml/deploy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Version to activate.
    pub version: String,
}

/// `POST /api/ml/deploy`.
pub fn deploy(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let body: DeployRequest = req.json()?;
    if body.version.is_empty() || body.version.len() > 64 {
        return Err(ApiError::field("version", "must be 1 to 64 bytes"));
    }
    let org = req.org()?;
    let previous = st.svc.registry.active(org)?;
    match st
        .svc
        .registry
        .activate(org, Some(&body.version), req.now_ms, &st.svc.live)
    {
        Ok(a) => {
            audit(
                st,
                req,
                org,
                "ml.deploy",
                "ok",
                serde_json::json!({
                "version": a.version, "previousVersion": previous, "effectiveTs": a.effective_ts}),
            )?;
            tracing::info!(org, version = %body.version, by = %req.caller()?.username, "deployed through the API");
            bring_thresholds(st, org, &a);
            Ok(Reply::ok(&a))
        }
        Err(e) => {
            audit(
                st,
                req,
                org,
                "ml.deploy",
                "error",
                serde_json::json!({
                "version": body.version, "error": e.to_string()}),
            )?;
            Err(e.into())
        }
    }
}

/// Put the thresholds the version just activated brings in force (its operating
/// point, when the org has a false-alarm budget); a failure is logged (the
/// activation stands).
fn bring_thresholds(st: &ApiState, org: &str, a: &Activation) {
    let (Some(v), Some(c)) = (&a.version, &st.svc.config) else {
        return;
    };
    let Some(p) = c
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .orgs
        .get(org)
        .map(|o| o.prediction.clone())
    else {
        return;
    };
    if let Err(e) =
        operating_point::apply(&st.svc.registry, &p, org, v, a.effective_ts, &st.svc.live)
    {
        tracing::warn!(org, version = %v, error = %e, "the version's operating point could not be put in force");
    }
}

/// `POST /api/ml/rollback`.
pub fn rollback(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let org = req.org()?;
    let previous = st.svc.registry.active(org)?;
    match st.svc.registry.rollback(org, req.now_ms, &st.svc.live) {
        Ok(a) => {
            audit(
                st,
                req,
                org,
                "ml.rollback",
                "ok",
                serde_json::json!({
                "version": a.version, "previousVersion": previous, "effectiveTs": a.effective_ts}),
            )?;
            tracing::info!(org, version = ?a.version, by = %req.caller()?.username, "rolled back through the API");
            bring_thresholds(st, org, &a);
            Ok(Reply::ok(&a))
        }
        Err(e) => {
            audit(
                st,
                req,
                org,
                "ml.rollback",
                "error",
                serde_json::json!({"error": e.to_string()}),
            )?;
            Err(e.into())
        }
    }
}

/// `POST /api/ml/train`.
pub fn train(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let body: TrainRequest = req.json()?;
    validate(&body)?;
    let org = req.org()?;
    let caller = req.caller()?;
    // `prognos train` on the service's host hands its run over with the local token.
    let trigger = if super::local::is_local(caller) {
        Trigger::Cli
    } else {
        Trigger::Api
    };
    let job = st
        .svc
        .jobs
        .submit_as(org, &caller.username, body, trigger, 1)?;
    audit(
        st,
        req,
        org,
        "ml.train",
        "accepted",
        serde_json::json!({
        "jobId": job.id, "request": job.request}),
    )?;
    Ok(Reply::json(StatusCode::ACCEPTED, &job))
}

/// `GET /api/audit`.
pub fn audit_log(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let org = match req.scope.as_ref() {
        Some(Scope::Org(o)) => Some(o.as_str()),
        Some(Scope::All) => None,
        None => return Err(ApiError::unauthorized()),
    };
    let after = match req.text("cursor") {
        Some(c) => Some(
            crate::auth::audit::parse_cursor(c)
                .ok_or_else(|| ApiError::field("cursor", "not a cursor from a previous page"))?,
        ),
        None => None,
    };
    let limit = req.int("limit").unwrap_or(50) as usize;
    let (entries, next) = st.svc.audit.list(org, limit, after)?;
    Ok(Reply::ok(
        &serde_json::json!({"entries": entries, "next": next}),
    ))
}
