//! Proxy errors: typed classification (status, error class, OpenAI-style kind and code). Each
//! client surface renders them in its own format (see `crate::surfaces`).
//!
//! The refusal type sits below every module that refuses (auth, surfaces, translate, the
//! pipeline's stages): it imports nothing of the crate.

use std::borrow::Cow;

use axum::http::StatusCode;
use modelgate_shared::usage::ErrorClass;

/// A request the gateway answers itself, without (or after failing to reach) upstream.
#[derive(Debug)]
pub struct ProxyError {
    pub status: StatusCode,
    pub class: ErrorClass,
    /// OpenAI `error.type`.
    pub kind: &'static str,
    /// OpenAI `error.code`.
    pub code: &'static str,
    pub param: Option<Cow<'static, str>>,
    pub message: String,
    /// Sent as `retry-after` (seconds) when set.
    pub retry_after_secs: Option<u64>,
}

impl ProxyError {
    fn new(
        status: StatusCode,
        class: ErrorClass,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ProxyError {
            status,
            class,
            kind,
            code,
            param: None,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn missing_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorClass::Auth,
            "invalid_request_error",
            "missing_api_key",
            "You didn't provide an API key. Send it as `Authorization: Bearer <gateway key>` or `x-api-key: <gateway key>`.",
        )
    }
    pub fn invalid_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorClass::Auth,
            "invalid_request_error",
            "invalid_api_key",
            "Incorrect API key provided.",
        )
    }
    pub fn revoked_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorClass::Auth,
            "invalid_request_error",
            "invalid_api_key",
            "This API key has been revoked.",
        )
    }
    pub fn disabled_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorClass::Auth,
            "invalid_request_error",
            "invalid_api_key",
            "This API key is disabled.",
        )
    }
    pub fn endpoint_not_allowed(family: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorClass::Permission,
            "permission_error",
            "endpoint_not_allowed",
            format!("This API key may not call the `{family}` endpoints."),
        )
    }
    pub fn expired_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorClass::Auth,
            "invalid_request_error",
            "invalid_api_key",
            "This API key has expired.",
        )
    }
    pub fn model_not_allowed(model: &str) -> Self {
        let mut e = Self::new(
            StatusCode::FORBIDDEN,
            ErrorClass::Permission,
            "permission_error",
            "model_not_allowed",
            format!("This API key is not allowed to use the model `{model}`."),
        );
        e.param = Some(Cow::Borrowed("model"));
        e
    }
    pub fn model_not_found(model: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            ErrorClass::NotFound,
            "invalid_request_error",
            "model_not_found",
            format!("The model `{model}` does not exist or you do not have access to it."),
        );
        e.param = Some(Cow::Borrowed("model"));
        e
    }
    pub fn invalid_json(detail: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorClass::BadRequest,
            "invalid_request_error",
            "invalid_json",
            format!("The request body is not valid JSON: {detail}"),
        )
    }
    pub fn invalid_param(param: &'static str, message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            ErrorClass::BadRequest,
            "invalid_request_error",
            "invalid_value",
            message,
        );
        e.param = Some(Cow::Borrowed(param));
        e
    }
    pub fn invalid_param_owned(param: String, message: impl Into<String>) -> Self {
        let mut e = Self::invalid_param("body", message);
        e.param = Some(Cow::Owned(param));
        e
    }
    /// A parameter the target provider's wire format cannot carry (and the route's policy does
    /// not allow dropping).
    pub fn unsupported_param(param: String, message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            ErrorClass::BadRequest,
            "invalid_request_error",
            "unsupported_parameter",
            message,
        );
        e.param = Some(Cow::Owned(param));
        e
    }
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorClass::PayloadTooLarge,
            "invalid_request_error",
            "request_too_large",
            format!("The request body exceeds the gateway's limit of {limit} bytes."),
        )
    }
    /// The body did not arrive within the listener's body timeout.
    pub fn body_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorClass::BadRequest,
            "invalid_request_error",
            "request_timeout",
            "The request body did not arrive in time.",
        )
    }
    pub fn not_found_route(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorClass::NotFound,
            "invalid_request_error",
            "unknown_url",
            format!("Unknown request URL: {path}."),
        )
    }
    /// A path the proxy serves, asked with another method (`allow` names the one it takes).
    pub fn method_not_allowed(method: &http::Method, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorClass::BadRequest,
            "invalid_request_error",
            "method_not_allowed",
            format!("{path} does not take {method}."),
        )
    }
    /// A hard budget would be crossed by this request's worst-case cost.
    pub fn budget_exceeded(budget_id: &str, retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorClass::BudgetExceeded,
            "insufficient_quota",
            "budget_exceeded",
            format!(
                "Budget `{budget_id}` has not enough left for this request's worst-case cost; \
                 it was not forwarded."
            ),
        );
        e.retry_after_secs = Some(retry_after_secs);
        e
    }
    /// The key's team pays from a prepaid balance that cannot cover this request's worst-case
    /// cost. Payment required: waiting does not help, a top-up does.
    pub fn insufficient_balance(team_id: &str) -> Self {
        Self::new(
            StatusCode::PAYMENT_REQUIRED,
            ErrorClass::InsufficientBalance,
            "insufficient_quota",
            "insufficient_balance",
            format!(
                "The prepaid balance of team `{team_id}` does not cover this request's \
                 worst-case cost; it was not forwarded. Top up the balance to continue."
            ),
        )
    }
    /// A rate limit of the key, its team, its user or the model is reached.
    pub fn rate_limit_exceeded(hit: &modelgate_shared::limits::Limited) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorClass::RateLimited,
            "rate_limit_error",
            "rate_limit_exceeded",
            format!(
                "Rate limit reached: {} = {} on {} `{}`{} (limit `{}`); retry after {} s.",
                hit.measure.limit_name(),
                hit.amount,
                hit.scope.as_str(),
                hit.scope_id,
                hit.model
                    .as_deref()
                    .map(|m| format!(" for model `{m}`"))
                    .unwrap_or_default(),
                hit.limit_id,
                hit.retry_after_secs,
            ),
        );
        e.param = Some(hit.measure.limit_name().into());
        e.retry_after_secs = Some(hit.retry_after_secs);
        e
    }
    /// The group's policy rejects a request it cannot price (a deployment has no catalog
    /// price). 403, not 429 or 5xx: nothing about the request or time will change the answer
    /// until an operator prices the model, and SDKs retry 429 and 5xx on their own — a retry
    /// storm against a policy refusal. `model_price_missing` names the cause; `param` = model.
    pub fn price_missing(model: &str) -> Self {
        let mut e = Self::new(
            StatusCode::FORBIDDEN,
            ErrorClass::Permission,
            "permission_error",
            "model_price_missing",
            format!(
                "The model `{model}` has no price in the gateway's catalog and its routing \
                 policy rejects unpriced requests; it was not forwarded."
            ),
        );
        e.param = Some(Cow::Borrowed("model"));
        e
    }
    /// The key has a hard budget but this request's cost cannot be bounded (and the group's
    /// policy rejects). A 400, not a 429: the same request would be refused again however long
    /// the client waited (SDKs retry a 429), and the client can fix it by bounding the output.
    pub fn cost_not_estimable(why: &str) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            ErrorClass::BadRequest,
            "invalid_request_error",
            "cost_not_estimable",
            format!(
                "This key has a hard budget and the request's cost cannot be bounded ({why}); \
                 it was not forwarded. Set `max_tokens` (`maxOutputTokens` on Gemini) to bound it."
            ),
        );
        e.param = Some(Cow::Borrowed("max_tokens"));
        e
    }
    /// Too many failed authentications from the caller's address: refused before its key is
    /// read.
    pub fn auth_throttled(retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorClass::RateLimited,
            "rate_limit_error",
            "too_many_auth_failures",
            format!(
                "Too many failed authentications from this address; retry after \
                 {retry_after_secs} s."
            ),
        );
        e.retry_after_secs = Some(retry_after_secs);
        e
    }
    pub fn no_config() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Internal,
            "server_error",
            "no_config",
            "The gateway has not received its configuration yet.",
        )
    }
    pub fn metering_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Internal,
            "server_error",
            "metering_unavailable",
            "The gateway cannot record usage right now (its usage spool is full); \
             retry later.",
        )
    }
    /// An upload could not be read on the blocking pool (the task failed, or the reader
    /// waited on input it already had).
    pub fn upload_unreadable() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorClass::Internal,
            "server_error",
            "upload_unreadable",
            "The gateway could not read the upload.",
        )
    }
    pub fn data_class_not_allowed(alias: &str, class: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorClass::Permission,
            "permission_error",
            "data_class_not_allowed",
            format!("`{alias}` may not receive data of this key's class ({class})."),
        )
    }
    pub fn traffic_class_not_allowed(class: modelgate_shared::routing::TrafficClass) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorClass::Permission,
            "permission_error",
            "traffic_class_not_allowed",
            format!(
                "This key may not send `{}` traffic (x-modelgate-traffic-class).",
                class.as_str()
            ),
        )
    }
    pub fn no_deployment(alias: &str, skipped: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::ProviderError,
            "server_error",
            "no_healthy_deployment",
            format!("No deployment of `{alias}` can take the request now: {skipped}."),
        )
    }
    pub fn video_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorClass::NotFound,
            "invalid_request_error",
            "video_not_found",
            format!("No video job `{id}` is known to this gateway."),
        )
    }
    pub fn upstream(message: impl Into<String>, timeout: bool) -> Self {
        if timeout {
            Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorClass::Timeout,
                "server_error",
                "upstream_timeout",
                message,
            )
        } else {
            Self::new(
                StatusCode::BAD_GATEWAY,
                ErrorClass::ProviderError,
                "server_error",
                "upstream_unavailable",
                message,
            )
        }
    }
}
