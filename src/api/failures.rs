//! `/api/orgs/{org}/failures`: an org's work orders (failures people report),
//! the labels training uses with the org's failure-signal rising edges. Kept in
//! the history folder (`training::failures`), so the CLI adds to the same file
//! while the service runs. The org in the path is checked like `?org=`
//! elsewhere: another org is 404 whatever the role, then the role is checked.

use super::ApiState;
use super::error::ApiError;
use super::ml::audit;
use super::request::{Reply, Req};
use crate::training::failures::{FailuresError, NewWorkOrder, Source, WorkOrders};
use serde_json::json;
use warp::http::StatusCode;

fn store(st: &ApiState, org: &str) -> Result<WorkOrders, ApiError> {
    let root = st.svc.history_root.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_history",
            "this service has no history folder to keep work orders in",
        )
    })?;
    Ok(WorkOrders::new(root, org))
}

/// `POST /api/orgs/{org}/failures`: 201 with the stored record, 200 with the
/// one already stored for the same (machine, component, start).
pub fn add(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let org = req.org()?.to_string();
    let body: NewWorkOrder = req.json()?;
    let by = req.caller()?.username.clone();
    match store(st, &org)?.add(body, Source::Api, &by, req.now_ms) {
        Ok((w, added)) => {
            audit(
                st,
                req,
                &org,
                "failures.add",
                "ok",
                json!({"id": w.id, "machineId": w.machine_id, "component": w.component,
                    "start": prognos_dataflows::time::format_rfc3339_ms(w.start),
                    "stored": if added { "new" } else { "existing" }}),
            )?;
            tracing::info!(org = %org, id = %w.id, by = %by, added, "work order");
            let status = if added {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(Reply::json(status, &w))
        }
        Err(FailuresError::Invalid { field, reason }) => {
            let e = ApiError::field(field, reason);
            audit(
                st,
                req,
                &org,
                "failures.add",
                "refused",
                json!({"fields": e.fields}),
            )?;
            Err(e)
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// `GET /api/orgs/{org}/failures`: newest start first, `from`/`to` on the start.
pub fn list(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let org = req.org()?.to_string();
    let all = store(st, &org)?
        .newest_first(req.int("from"), req.int("to"))
        .map_err(ApiError::internal)?;
    Ok(Reply::ok(&json!({"failures": all})))
}
