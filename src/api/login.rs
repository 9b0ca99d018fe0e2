//! Health, metrics, login and the caller's identity.

use super::ApiState;
use super::error::ApiError;
use super::request::{Caller, Reply, Req};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::time::Instant;
use warp::http::StatusCode;

/// `GET /healthz`.
pub fn healthz(_: &ApiState, _: &Req) -> Result<Reply, ApiError> {
    Ok(Reply::ok(&serde_json::json!({"status": "ok"})))
}

/// `GET /readyz`.
pub fn readyz(st: &ApiState, _: &Req) -> Result<Reply, ApiError> {
    let ready = st.ready.load(Ordering::Acquire);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(Reply::json(status, &serde_json::json!({"ready": ready})))
}

/// `GET /metrics`.
pub fn metrics(st: &ApiState, _: &Req) -> Result<Reply, ApiError> {
    Ok(Reply {
        status: StatusCode::OK,
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        body: st.metrics.render().into_bytes(),
    })
}

/// Body of `POST /api/auth/login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
}

/// Who is calling.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    /// Username.
    pub username: String,
    /// `operator`, `admin` or `super_admin`.
    pub role: crate::auth::Role,
    /// The caller's organization (`null` for a super admin without one).
    pub organization_id: Option<String>,
}

impl From<&Caller> for Me {
    fn from(c: &Caller) -> Me {
        Me {
            username: c.username.clone(),
            role: c.role,
            organization_id: c.org.clone(),
        }
    }
}

/// `POST /api/auth/login`: rate limited per username and per client address.
pub fn login(st: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    let body: LoginRequest = req.json()?;
    let svc = &st.svc;
    let s = &svc.settings;
    if body.username.len() > 64 || body.password.len() > crate::auth::users::MAX_PASSWORD_BYTES {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong username or password",
        ));
    }
    let user_key = format!("user:{}", body.username);
    let ip_key = format!(
        "ip:{}",
        req.remote
            .map_or_else(|| "unknown".into(), |ip| ip.to_string())
    );
    let now = Instant::now();
    let limited = svc
        .limiter
        .check(&user_key, s.login_max_failures, now)
        .and_then(|()| {
            svc.limiter
                .check(&ip_key, s.login_max_failures.saturating_mul(4), now)
        });
    if let Err(wait) = limited {
        svc.m.logins.with_label_values(&["rate_limited"]).inc();
        return Err(ApiError {
            retry_after_s: Some(wait),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many failed logins; retry in {wait} s"),
            )
        });
    }
    let Some(user) = svc.users.verify(&body.username, &body.password)? else {
        svc.limiter.fail(&user_key, now);
        svc.limiter.fail(&ip_key, now);
        svc.m.logins.with_label_values(&["failed"]).inc();
        tracing::info!(username = %body.username, remote = ?req.remote, "failed login");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong username or password",
        ));
    };
    svc.limiter.clear(&user_key);
    svc.m.logins.with_label_values(&["ok"]).inc();
    let now_s = (req.now_ms / 1000) as u64;
    let (token, exp) = svc.keys.issue(&user, now_s);
    tracing::info!(username = %user.username, role = %user.role, "login");
    Ok(Reply::ok(&serde_json::json!({
        "token": token,
        "tokenType": "Bearer",
        "expiresAt": prognos_dataflows::time::format_rfc3339_ms(exp as i64 * 1000),
        "expiresIn": exp - now_s,
        "user": Me {
            username: user.username,
            role: user.role,
            organization_id: user.org,
        },
    })))
}

/// `GET /api/auth/me`.
pub fn me(_: &ApiState, req: &Req) -> Result<Reply, ApiError> {
    Ok(Reply::ok(&Me::from(req.caller()?)))
}
