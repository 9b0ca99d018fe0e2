//! The seed's predictive-alert routes over the alert store. Operator actions
//! publish their store change on the broadcast, so WebSocket clients see them.

use super::ApiState;
use super::error::ApiError;
use super::request::{Reply, Req, Scope};
use crate::store::{AlertQuery, Change, PageCursor, StoredAlert};
use prognos_dataflows::records::{AlertStatus, AlertType};
use serde::Deserialize;

/// Longest feedback comment (bytes).
pub const MAX_COMMENT_BYTES: usize = 2000;

fn enum_param<T: for<'de> Deserialize<'de>>(req: &Req, name: &str) -> Option<T> {
    // The route table already checked the value is one of the wire names.
    req.text(name)
        .and_then(|v| serde_json::from_value(serde_json::Value::String(v.into())).ok())
}

fn alert_query(req: &Req, component: Option<String>) -> Result<AlertQuery, ApiError> {
    Ok(AlertQuery {
        from: req.int("from").unwrap_or(i64::MIN),
        to: req.int("to").unwrap_or(i64::MAX),
        component: component.or_else(|| req.text("component").map(str::to_string)),
        alert_type: enum_param::<AlertType>(req, "type"),
        status: enum_param::<AlertStatus>(req, "status"),
        limit: req.int("limit").unwrap_or(50) as usize,
        after: req
            .text("cursor")
            .map(|c| c.parse::<PageCursor>())
            .transpose()
            .map_err(|e| ApiError::field("cursor", e))?,
    })
}

/// `GET /api/predictive-alerts`.
pub fn list(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let org = req.org()?;
    let page = st.svc.store.query(org, &alert_query(req, None)?)?;
    Ok(Reply::ok(&page))
}

/// `GET /api/predictive-alerts/component/{component}`.
pub fn by_component(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let org = req.org()?;
    let q = alert_query(req, Some(req.path(0).to_string()))?;
    Ok(Reply::ok(&st.svc.store.query(org, &q)?))
}

/// `GET /api/predictive-alerts/statistics`.
pub fn statistics(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let org = req.org()?;
    let stats = st.svc.store.stats(
        org,
        req.int("from").unwrap_or(i64::MIN),
        req.int("to").unwrap_or(i64::MAX),
    )?;
    let mut v = serde_json::to_value(&stats).map_err(ApiError::internal)?;
    v["organizationId"] = org.into();
    Ok(Reply::ok(&v))
}

/// `GET /api/predictive-alerts/trends/summary`.
pub fn trends(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let org = req.org()?;
    let days = st.svc.store.daily_trends(
        org,
        req.int("from").unwrap_or(i64::MIN),
        req.int("to").unwrap_or(i64::MAX),
    )?;
    Ok(Reply::ok(
        &serde_json::json!({"organizationId": org, "days": days}),
    ))
}

/// The alert `id` within the request's scope (a super admin without `?org=`
/// finds it in whichever org has it). Another org's alert is 404.
fn find(st: &ApiState, req: &Req, id: &str) -> Result<StoredAlert, ApiError> {
    match req.scope.as_ref() {
        Some(Scope::Org(o)) => Ok(st.svc.store.get(o, id)?),
        Some(Scope::All) => {
            for o in &st.svc.orgs {
                match st.svc.store.get(o, id) {
                    Ok(a) => return Ok(a),
                    Err(crate::store::StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(ApiError::not_found("no such alert"))
        }
        None => Err(ApiError::unauthorized()),
    }
}

/// `GET /api/predictive-alerts/{id}`.
pub fn get(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    Ok(Reply::ok(&find(st, req, req.path(0))?))
}

fn publish(st: &ApiState, change: Change) -> Reply {
    let reply = Reply::ok(&change.alert);
    // Nobody listening is fine: the store keeps the change for `since` replays.
    let _ = st.svc.changes.send(change);
    reply
}

/// Body of `POST /api/predictive-alerts/{id}/feedback`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FeedbackRequest {
    /// Was the alert right?
    pub is_accurate: bool,
    /// Why (optional).
    #[serde(default)]
    pub comment: Option<String>,
}

/// `POST /api/predictive-alerts/{id}/feedback`.
pub fn feedback(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let body: FeedbackRequest = req.json()?;
    if body
        .comment
        .as_ref()
        .is_some_and(|c| c.len() > MAX_COMMENT_BYTES)
    {
        return Err(ApiError::field(
            "comment",
            format!("must be at most {MAX_COMMENT_BYTES} bytes"),
        ));
    }
    let a = find(st, req, req.path(0))?;
    let by = &req.caller()?.username;
    let change = st.svc.store.feedback(
        &a.organization_id,
        &a.id,
        body.is_accurate,
        by,
        req.now_ms,
        body.comment.filter(|c| !c.is_empty()),
    )?;
    Ok(publish(st, change))
}

/// `POST /api/predictive-alerts/{id}/acknowledge`.
pub fn acknowledge(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let a = find(st, req, req.path(0))?;
    let change = st.svc.store.acknowledge(
        &a.organization_id,
        &a.id,
        &req.caller()?.username,
        req.now_ms,
    )?;
    Ok(publish(st, change))
}

/// `POST /api/predictive-alerts/{id}/resolve`.
pub fn resolve(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let a = find(st, req, req.path(0))?;
    let change = st.svc.store.resolve(
        &a.organization_id,
        &a.id,
        &req.caller()?.username,
        req.now_ms,
    )?;
    Ok(publish(st, change))
}
