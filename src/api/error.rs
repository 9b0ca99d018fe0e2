//! The one error body of the API: `{"error": {"code", "message", "fields"?}}`.

use serde::Serialize;
use std::collections::BTreeMap;
use warp::http::StatusCode;

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (`unauthorized`, `not_found`, `invalid_request`, ...).
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// Field-level reasons (`invalid_request` only): field or parameter → why.
    pub fields: BTreeMap<String, String>,
    /// `Retry-After` seconds (`rate_limited`).
    pub retry_after_s: Option<u64>,
    /// `Allow` methods (`method_not_allowed`).
    pub allow: Option<String>,
}

/// The JSON of an error.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// The error.
    pub error: ErrorInner<'a>,
}

/// Inside [`ErrorBody`].
#[derive(Debug, Serialize)]
pub struct ErrorInner<'a> {
    /// See [`ApiError::code`].
    pub code: &'a str,
    /// See [`ApiError::message`].
    pub message: &'a str,
    /// See [`ApiError::fields`].
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: &'a BTreeMap<String, String>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: BTreeMap::new(),
            retry_after_s: None,
            allow: None,
        }
    }

    /// 401: no token, or not a valid one (never says which).
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    /// 403: the caller's role may not do this within its own org.
    pub fn forbidden() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "your role may not do this",
        )
    }

    /// 404: no such thing — also for anything of another org.
    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// 400 with field-level reasons.
    pub fn invalid(fields: BTreeMap<String, String>) -> ApiError {
        let message = match fields.len() {
            1 => format!("invalid field: {}", fields.keys().next().expect("one")),
            n => format!("{n} invalid fields"),
        };
        ApiError {
            fields,
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
    }

    /// 400 for one field.
    pub fn field(name: &str, why: impl Into<String>) -> ApiError {
        ApiError::invalid(BTreeMap::from([(name.to_string(), why.into())]))
    }

    /// 409: the resource's state does not allow it.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 500, logged; the body says nothing about the cause.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "API request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (logged)",
        )
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(ErrorBody {
            error: ErrorInner {
                code: self.code,
                message: &self.message,
                fields: &self.fields,
            },
        })
        .expect("error bodies serialize")
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        use crate::store::StoreError;
        match e {
            StoreError::NotFound { .. } => ApiError::not_found("no such alert"),
            e @ StoreError::InvalidTransition { .. } => ApiError::conflict(e.to_string()),
            e => ApiError::internal(e),
        }
    }
}

impl From<crate::training::registry::RegistryError> for ApiError {
    fn from(e: crate::training::registry::RegistryError) -> ApiError {
        use crate::training::registry::RegistryError;
        match e {
            RegistryError::NoSuchVersion { version, .. } => {
                ApiError::not_found(format!("no model version `{version}`"))
            }
            e @ RegistryError::NothingToRollBack { .. } => ApiError::conflict(e.to_string()),
            e => ApiError::internal(e),
        }
    }
}

impl From<crate::auth::UsersError> for ApiError {
    fn from(e: crate::auth::UsersError) -> ApiError {
        ApiError::internal(e)
    }
}

impl From<crate::auth::audit::AuditError> for ApiError {
    fn from(e: crate::auth::audit::AuditError) -> ApiError {
        ApiError::internal(e)
    }
}
