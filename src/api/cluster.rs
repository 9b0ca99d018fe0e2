//! Routes the cluster's workers call with the cluster token: the registered
//! model versions they fetch (see `crate::training::shipping`) and their
//! heartbeats (see [`crate::status::ClusterStatus`]).

use super::ApiState;
use super::error::ApiError;
use super::request::{Reply, Req};
use crate::training::shipping::{self, Manifest};
use warp::http::StatusCode;

/// The registered version named in the path (404 for an unknown org or version).
fn version_dir(st: &ApiState, req: &Req) -> Result<(String, String, std::path::PathBuf), ApiError> {
    let (org, version) = (req.path(0), req.path(1));
    if !st.svc.orgs.contains(org) {
        return Err(ApiError::not_found("no such organization"));
    }
    let rec = st.svc.registry.version(org, version)?;
    Ok((org.to_string(), version.to_string(), rec.dir))
}

fn manifest_of(org: &str, version: &str, dir: &std::path::Path) -> Result<Manifest, ApiError> {
    shipping::manifest_of(dir, org, version)
        .map_err(|e| ApiError::internal(format!("model {org}/{version} in {}: {e}", dir.display())))
}

/// `GET /api/cluster/models/{org}/{version}`.
pub fn manifest(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let (org, version, dir) = version_dir(st, req)?;
    Ok(Reply::ok(&manifest_of(&org, &version, &dir)?))
}

/// `GET /api/cluster/models/{org}/{version}/files/{name}`: only a file the
/// manifest would list (a plain file of the version's folder).
pub fn file(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let (_, _, dir) = version_dir(st, req)?;
    let name = req.path(2);
    let path = dir.join(name);
    if !shipping::plain_name(name) || !path.is_file() {
        return Err(ApiError::not_found("no such file in this version"));
    }
    let body =
        std::fs::read(&path).map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    Ok(Reply {
        status: StatusCode::OK,
        content_type: "application/octet-stream",
        body,
    })
}

/// `POST /api/cluster/heartbeat`: keep the worker's report for the health
/// routes and audit the model loads it has not reported before.
pub fn heartbeat(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let Some(cluster) = &st.svc.cluster else {
        return Err(ApiError::not_found(
            "this process runs its own pipeline: no cluster",
        ));
    };
    let report: crate::status::WorkerReport = req.json()?;
    if report.processes == 0 || report.process >= report.processes || report.processes > 4096 {
        return Err(ApiError::field(
            "process",
            format!(
                "must be below processes (1..=4096), got {} of {}",
                report.process, report.processes
            ),
        ));
    }
    let process = report.process;
    let loads = cluster.receive(report, req.now_ms);
    let source = format!("worker-{process}");
    crate::auth::audit::record_model_loads(&st.svc.audit, &loads, &source);
    Ok(Reply::ok(&serde_json::json!({
        "receivedAt": prognos_dataflows::time::format_rfc3339_ms(req.now_ms),
        "loadsAudited": loads.len(),
    })))
}
