//! The admin REST API under `/admin/v1`: thin axum handlers over the service layer. A bearer
//! admin token is resolved to an [`Actor`] (role + optional team scope) once per request; the
//! service layer decides what that actor may do. Creates honour `Idempotency-Key`
//! ([`idempotency`]); key updates honour `If-Match`.

mod error;
mod idempotency;
mod json;

use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

pub use error::AdminError;
use json::{ApiJson, ApiQuery};

use crate::service::audit::{self as audit_service, AuditFilter};
use crate::service::authz::Actor;
use crate::service::{
    bootstrap, keys, models, nodes, providers, routes, teams, tokens, usage, users, PageParams,
    Services,
};

pub fn router(services: Services) -> Router {
    let api = Router::new()
        .route("/teams", post(create_team).get(list_teams))
        .route("/teams/{id}", get(get_team))
        .route("/teams/{id}/members", post(add_member).get(list_members))
        .route("/users", post(create_user).get(list_users))
        .route("/tokens", post(create_token).get(list_tokens))
        .route("/tokens/{id}/revoke", post(revoke_token))
        .route("/keys", post(create_key).get(list_keys))
        .route("/keys/{id}", get(get_key).patch(update_key))
        .route("/keys/{id}/revoke", post(revoke_key))
        .route("/keys/{id}/disable", post(disable_key))
        .route("/keys/{id}/enable", post(enable_key))
        .route("/keys/{id}/rotate", post(rotate_key))
        .route("/providers", post(create_provider).get(list_providers))
        .route("/models", post(upsert_model).get(list_models))
        .route("/routes", post(create_route).get(list_routes))
        .route("/nodes", get(list_nodes))
        .route("/audit", get(list_audit))
        .route("/usage/events", get(list_usage))
        .route("/usage/daily", get(usage_daily))
        .route("/usage/sinks", post(create_sink).get(list_sinks))
        .route("/usage/sinks/{id}", get(get_sink).delete(delete_sink))
        .route("/usage/sinks/{id}/rewind", post(rewind_sink))
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(
            services.clone(),
            idempotency::layer,
        ))
        .route_layer(middleware::from_fn_with_state(
            services.clone(),
            require_admin,
        ))
        .with_state(services);
    Router::new()
        .nest("/admin/v1", api)
        .route("/healthz", get(|| async { "ok" }))
}

/// Resolves the bearer token to an [`Actor`] and tags the request (and its audit rows) with a
/// request id, echoed as `x-request-id`.
async fn require_admin(State(s): State<Services>, mut req: Request, next: Next) -> Response {
    let request_id = modelgate_shared::new_id().to_string();
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let mut resp = match token {
        None => AdminError::Unauthorized.into_response(),
        Some(token) => match bootstrap::authenticate(&s, token, &request_id).await {
            Ok(Some(actor)) => {
                req.extensions_mut().insert(actor);
                next.run(req).await
            }
            Ok(None) => AdminError::Unauthorized.into_response(),
            Err(e) => AdminError::from(e).into_response(),
        },
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

async fn not_found() -> AdminError {
    AdminError::NotFound("admin endpoint".into())
}

type Result<T> = std::result::Result<T, AdminError>;

fn created<T: serde::Serialize>(value: T) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

fn ok<T: serde::Serialize>(value: T) -> Response {
    Json(value).into_response()
}

/// `If-Match: "3"` (or `3`) → `Some(3)`; a malformed value is a validation error.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>> {
    let Some(v) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|s| s.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| AdminError::Invalid {
            param: Some("If-Match".into()),
            message: "must be the resource's version, e.g. \"3\"".into(),
        })
}

/// A key with its version as the `ETag`.
fn key_response(status: StatusCode, key: &keys::Key, body: impl serde::Serialize) -> Response {
    let mut resp = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", key.version)) {
        resp.headers_mut().insert(axum::http::header::ETAG, v);
    }
    resp
}

async fn create_team(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<teams::CreateTeam>,
) -> Result<Response> {
    Ok(created(teams::create(&s, &a, body).await?))
}

async fn list_teams(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(ok(teams::list(&s, &a, q).await?))
}

async fn get_team(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(ok(teams::get(&s, &a, &id).await?))
}

async fn add_member(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<users::AddMember>,
) -> Result<Response> {
    Ok(created(users::add_member(&s, &a, &id, body).await?))
}

async fn list_members(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(ok(
        serde_json::json!({ "data": users::members(&s, &a, &id).await? }),
    ))
}

async fn create_user(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<users::CreateUser>,
) -> Result<Response> {
    Ok(created(users::create(&s, &a, body).await?))
}

async fn list_users(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(ok(users::list(&s, &a, q).await?))
}

async fn create_token(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<tokens::CreateToken>,
) -> Result<Response> {
    Ok(created(tokens::create(&s, &a, body).await?))
}

async fn list_tokens(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(ok(tokens::list(&s, &a, q).await?))
}

async fn revoke_token(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(ok(tokens::revoke(&s, &a, &id).await?))
}

async fn create_key(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<keys::CreateKey>,
) -> Result<Response> {
    let k = keys::create(&s, &a, body).await?;
    Ok(key_response(StatusCode::CREATED, &k.key, &k))
}

async fn list_keys(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
    ApiQuery(filter): ApiQuery<keys::KeyFilter>,
) -> Result<Response> {
    Ok(ok(keys::list(&s, &a, q, filter).await?))
}

async fn get_key(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    let k = keys::get(&s, &a, &id).await?;
    Ok(key_response(StatusCode::OK, &k, &k))
}

async fn update_key(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<keys::UpdateKey>,
) -> Result<Response> {
    let k = keys::update(&s, &a, &id, if_match(&headers)?, body).await?;
    Ok(key_response(StatusCode::OK, &k, &k))
}

async fn revoke_key(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    let k = keys::revoke(&s, &a, &id).await?;
    Ok(key_response(StatusCode::OK, &k, &k))
}

async fn disable_key(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    let k = keys::disable(&s, &a, &id).await?;
    Ok(key_response(StatusCode::OK, &k, &k))
}

async fn enable_key(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    let k = keys::enable(&s, &a, &id).await?;
    Ok(key_response(StatusCode::OK, &k, &k))
}

async fn rotate_key(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    // The body is optional: no body means the default grace period.
    let input = if body.iter().all(u8::is_ascii_whitespace) {
        keys::Rotate::default()
    } else {
        json::parse(&body)?
    };
    let k = keys::rotate(&s, &a, &id, input).await?;
    Ok(key_response(StatusCode::OK, &k.key, &k))
}

async fn create_provider(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<providers::CreateProvider>,
) -> Result<Response> {
    Ok(created(providers::create(&s, &a, body).await?))
}

async fn list_providers(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(ok(providers::list(&s, &a, q).await?))
}

async fn upsert_model(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<models::UpsertModel>,
) -> Result<Response> {
    Ok(created(models::upsert(&s, &a, body).await?))
}

async fn list_models(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(ok(models::list(&s, &a, q).await?))
}

async fn create_route(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<routes::CreateRoute>,
) -> Result<Response> {
    Ok(created(routes::create(&s, &a, body).await?))
}

async fn list_routes(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(ok(routes::list(&s, &a, q).await?))
}

async fn list_nodes(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(ok(nodes::list(&s, &a, q).await?))
}

async fn list_audit(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
    ApiQuery(filter): ApiQuery<AuditFilter>,
) -> Result<Response> {
    Ok(ok(audit_service::list(&s, &a, q, filter).await?))
}

async fn list_usage(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
    ApiQuery(filter): ApiQuery<usage::UsageFilter>,
) -> Result<Response> {
    Ok(ok(usage::list(&s, &a, q, filter).await?))
}

async fn usage_daily(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(filter): ApiQuery<usage::DailyFilter>,
) -> Result<Response> {
    Ok(ok(
        serde_json::json!({ "data": usage::daily(&s, &a, filter).await? }),
    ))
}

async fn create_sink(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<usage::sinks::CreateSink>,
) -> Result<Response> {
    Ok(created(usage::sinks::create(&s, &a, body).await?))
}

async fn list_sinks(State(s): State<Services>, Extension(a): Extension<Actor>) -> Result<Response> {
    Ok(ok(
        serde_json::json!({ "data": usage::sinks::list(&s, &a).await? }),
    ))
}

async fn get_sink(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(ok(usage::sinks::get(&s, &a, &id).await?))
}

async fn delete_sink(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    usage::sinks::delete(&s, &a, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn rewind_sink(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<usage::sinks::Rewind>,
) -> Result<Response> {
    Ok(ok(usage::sinks::rewind(&s, &a, &id, body).await?))
}
