//! The admin API's one error type, mapped once to status and body:
//! `{"error":{"type":…,"message":…,"param":…}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::service::ServiceError;

/// The error body every admin endpoint answers with (for the OpenAPI document).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    /// invalid_request, unauthorized, permission_denied, not_found, conflict,
    /// precondition_failed, idempotency_key_reused, request_timeout or internal.
    #[serde(rename = "type")]
    kind: String,
    message: String,
    /// The offending field, for invalid_request.
    param: Option<String>,
}

#[derive(Debug)]
pub enum AdminError {
    Unauthorized,
    /// The admin token was valid until this instant.
    TokenExpired(chrono::DateTime<chrono::Utc>),
    Invalid {
        param: Option<String>,
        message: String,
    },
    NotFound(String),
    Conflict(String),
    Forbidden(String),
    PreconditionFailed(String),
    /// The request body did not arrive within the listener's body timeout.
    RequestTimeout,
    Internal,
}

impl From<ServiceError> for AdminError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid { param, message } => AdminError::Invalid {
                param: Some(param),
                message,
            },
            ServiceError::NotFound(what) => AdminError::NotFound(what),
            ServiceError::Conflict(what) => AdminError::Conflict(what),
            ServiceError::Forbidden(why) => AdminError::Forbidden(why),
            ServiceError::VersionMismatch { current } => AdminError::PreconditionFailed(format!(
                "the resource changed (its version is now {current}); read it again and retry"
            )),
            ServiceError::Db(err) => {
                tracing::error!(error = %err, "admin request failed in the database");
                AdminError::Internal
            }
            ServiceError::Crypto(err) => {
                tracing::error!(error = %err, "admin request failed to open a sealed secret");
                AdminError::Internal
            }
            ServiceError::Unavailable(why) => {
                tracing::warn!(%why, "admin request answered as unavailable");
                AdminError::Internal
            }
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, kind, message, param) = match self {
            AdminError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid admin token is required (Authorization: Bearer mgadm-…)".to_owned(),
                None,
            ),
            AdminError::TokenExpired(at) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!(
                    "this admin token expired at {}; use a token that has not expired",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                None,
            ),
            AdminError::Invalid { param, message } => {
                (StatusCode::BAD_REQUEST, "invalid_request", message, param)
            }
            AdminError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
                None,
            ),
            AdminError::Conflict(what) => (StatusCode::CONFLICT, "conflict", what, None),
            AdminError::Forbidden(why) => (StatusCode::FORBIDDEN, "permission_denied", why, None),
            AdminError::PreconditionFailed(why) => (
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                why,
                None,
            ),
            AdminError::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time".to_owned(),
                None,
            ),
            AdminError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error".to_owned(),
                None,
            ),
        };
        let body = json!({"error": {"type": kind, "message": message, "param": param}});
        (status, Json(body)).into_response()
    }
}
