//! The admin REST API under `/admin/v1`: thin axum handlers over the service layer. A bearer
//! admin token is resolved to an [`Actor`] (role + optional team scope) once per request; the
//! service layer decides what that actor may do. Creates honour `Idempotency-Key`
//! ([`idempotency`]); key updates honour `If-Match`.

mod billing;
mod error;
mod idempotency;
mod json;
mod metrics;

pub use metrics::router as metrics_router;

use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::AdminError;
use error::ErrorBody;
use json::{ApiJson, ApiQuery};

use crate::service::audit::{self as audit_service, AuditFilter};
use crate::service::authz::Actor;
use crate::service::bootstrap::Authentication;
use crate::service::{
    bootstrap, budgets, explain, fleet, keys, limits, models, nodes, providers, revocations,
    rollouts, routes, teams, tokens, usage, users, PageParams, Services,
};

/// The OpenAPI document's frame; the paths come from the handlers' annotations as they are
/// routed, so the document cannot drift from the router.
#[derive(OpenApi)]
#[openapi(
    info(title = "ModelGate admin API", version = "1"),
    servers((url = "/admin/v1")),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// The admin routes with their OpenAPI document.
fn routes() -> (Router<Services>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_team, list_teams))
        .routes(routes!(get_team))
        .routes(routes!(billing::get_balance))
        .routes(routes!(billing::adjust_balance))
        .routes(routes!(billing::get_statement))
        .routes(routes!(create_budget, list_budgets))
        .routes(routes!(get_budget, update_budget, delete_budget))
        .routes(routes!(create_rate_limit, list_rate_limits))
        .routes(routes!(get_rate_limit, delete_rate_limit))
        .routes(routes!(add_member, list_members))
        .routes(routes!(create_user, list_users))
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, update_key))
        .routes(routes!(revoke_key))
        .routes(routes!(disable_key))
        .routes(routes!(enable_key))
        .routes(routes!(rotate_key))
        .routes(routes!(create_provider, list_providers))
        .routes(routes!(replace_provider_credential))
        .routes(routes!(upsert_model, list_models))
        .routes(routes!(import_models))
        .routes(routes!(model_versions))
        .routes(routes!(price_version))
        .routes(routes!(create_route, list_routes))
        .routes(routes!(replace_route))
        .routes(routes!(list_nodes))
        .routes(routes!(revoke_node))
        .routes(routes!(
            get_rollout_policy,
            set_rollout_policy,
            clear_rollout_policy
        ))
        .routes(routes!(list_rollouts))
        .routes(routes!(get_rollout))
        .routes(routes!(rollout_diff))
        .routes(routes!(promote_rollout))
        .routes(routes!(pause_rollout))
        .routes(routes!(resume_rollout))
        .routes(routes!(rollback_rollout))
        .routes(routes!(deployment_health))
        .routes(routes!(explain_request))
        .routes(routes!(list_audit))
        .routes(routes!(list_requests))
        .routes(routes!(get_request))
        .routes(routes!(list_usage))
        .routes(routes!(usage_daily))
        .routes(routes!(list_quarantine))
        .routes(routes!(create_sink, list_sinks))
        .routes(routes!(get_sink, delete_sink))
        .routes(routes!(rewind_sink))
        .split_for_parts()
}

/// The OpenAPI 3 document of the admin API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

pub fn router(services: Services) -> Router {
    let (api, doc) = routes();
    let templates = metrics::Templates::new(
        "/admin/v1",
        doc.paths.paths.keys(),
        &["/admin/v1/openapi.json", "/healthz"],
    );
    let doc = Arc::new(doc);
    let api = api
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(
            services.clone(),
            idempotency::layer,
        ))
        .route_layer(middleware::from_fn_with_state(
            services.clone(),
            require_admin,
        ))
        .with_state(services.clone());
    Router::new()
        // The document describes the API's shape only; it is served without a token.
        .route(
            "/admin/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .nest("/admin/v1", api)
        .route("/healthz", get(|| async { "ok" }))
        .layer(middleware::from_fn_with_state(
            (services, Arc::new(templates)),
            metrics::count,
        ))
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
            Ok(Authentication::Actor(actor)) => {
                req.extensions_mut().insert(actor);
                next.run(req).await
            }
            Ok(Authentication::Unknown) => AdminError::Unauthorized.into_response(),
            Ok(Authentication::Expired(at)) => AdminError::TokenExpired(at).into_response(),
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

#[utoipa::path(
    post,
    path = "/budgets",
    tag = "budgets",
    request_body = budgets::CreateBudget,
    responses((status = 201, body = budgets::Budget), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn create_budget(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<budgets::CreateBudget>,
) -> Result<Response> {
    Ok(created(budgets::create(&s, &a, body).await?))
}

#[utoipa::path(
    post,
    path = "/rate-limits",
    tag = "rate-limits",
    request_body = limits::CreateRateLimit,
    responses((status = 201, body = limits::RateLimit), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn create_rate_limit(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<limits::CreateRateLimit>,
) -> Result<Response> {
    Ok(created(limits::create(&s, &a, body).await?))
}

#[utoipa::path(
    get,
    path = "/rate-limits",
    tag = "rate-limits",
    params(PageParams),
    responses((status = 200, description = "a page of rate limits with their current windows: {data, next_cursor}", body = Object), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_rate_limits(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(ok(limits::list(&s, &a, q).await?))
}

#[utoipa::path(
    get,
    path = "/rate-limits/{id}",
    tag = "rate-limits",
    params(("id" = String, Path)),
    responses((status = 200, description = "the limit with each measure's current window: granted, consumed, per-node allocations", body = limits::RateLimit), (status = 404, body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn get_rate_limit(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(ok(limits::get(&s, &a, &id).await?))
}

#[utoipa::path(
    delete,
    path = "/rate-limits/{id}",
    tag = "rate-limits",
    params(("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn delete_rate_limit(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    limits::delete(&s, &a, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get,
    path = "/budgets",
    tag = "budgets",
    params(budgets::ListBudgets),
    responses((status = 200, description = "a page of budgets with their current period's figures: {data, next_cursor}", body = Object), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_budgets(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<budgets::ListBudgets>,
) -> Result<Response> {
    Ok(ok(budgets::list(&s, &a, q).await?))
}

#[utoipa::path(
    patch,
    path = "/budgets/{id}",
    tag = "budgets",
    request_body = budgets::UpdateBudget,
    params(("id" = String, Path)),
    responses((status = 200, body = budgets::Budget), (status = 404, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn update_budget(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<budgets::UpdateBudget>,
) -> Result<Response> {
    Ok(ok(budgets::update(&s, &a, &id, body).await?))
}

#[utoipa::path(
    delete,
    path = "/budgets/{id}",
    tag = "budgets",
    params(("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn delete_budget(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    budgets::delete(&s, &a, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get,
    path = "/budgets/{id}",
    tag = "budgets",
    params(("id" = String, Path)),
    responses((status = 200, description = "the budget with spent, reserved, remaining, period and per-node allocations", body = budgets::Budget), (status = 404, body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn get_budget(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(ok(budgets::get(&s, &a, &id).await?))
}

#[utoipa::path(
    post,
    path = "/teams",
    tag = "teams",
    request_body = teams::CreateTeam,
    responses((status = 201, body = teams::Team), (status = 409, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn create_team(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<teams::CreateTeam>,
) -> Result<Response> {
    Ok(created(teams::create(&s, &a, body).await?))
}

#[utoipa::path(
    get,
    path = "/teams",
    tag = "teams",
    params(PageParams),
    responses((status = 200, description = "a page of teams: {data, next_cursor}", body = Object), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_teams(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(ok(teams::list(&s, &a, q).await?))
}

#[utoipa::path(
    get,
    path = "/teams/{id}",
    tag = "teams",
    params(("id" = String, Path)),
    responses((status = 200, body = teams::Team), (status = 404, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn get_team(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(ok(teams::get(&s, &a, &id).await?))
}

#[utoipa::path(
    post,
    path = "/teams/{id}/members",
    tag = "users",
    request_body = users::AddMember,
    params(("id" = String, Path)),
    responses((status = 201, body = users::Member), (status = 404, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn add_member(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<users::AddMember>,
) -> Result<Response> {
    Ok(created(users::add_member(&s, &a, &id, body).await?))
}

#[utoipa::path(
    get,
    path = "/teams/{id}/members",
    tag = "users",
    params(("id" = String, Path)),
    responses((status = 200, description = "{data: [member]}", body = Object), (status = 404, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_members(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(ok(
        serde_json::json!({ "data": users::members(&s, &a, &id).await? }),
    ))
}

#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    request_body = users::CreateUser,
    responses((status = 201, body = users::User), (status = 409, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn create_user(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<users::CreateUser>,
) -> Result<Response> {
    Ok(created(users::create(&s, &a, body).await?))
}

#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    params(PageParams),
    responses((status = 200, description = "a page of users", body = Object), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_users(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(ok(users::list(&s, &a, q).await?))
}

#[utoipa::path(
    post,
    path = "/tokens",
    tag = "tokens",
    request_body = tokens::CreateToken,
    responses((status = 201, body = tokens::CreatedToken), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn create_token(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<tokens::CreateToken>,
) -> Result<Response> {
    Ok(created(tokens::create(&s, &a, body).await?))
}

#[utoipa::path(
    get,
    path = "/tokens",
    tag = "tokens",
    params(PageParams),
    responses((status = 200, description = "a page of admin tokens", body = Object), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_tokens(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(ok(tokens::list(&s, &a, q).await?))
}

#[utoipa::path(
    post,
    path = "/tokens/{id}/revoke",
    tag = "tokens",
    params(("id" = String, Path)),
    responses((status = 200, body = tokens::Token), (status = 404, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn revoke_token(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(ok(tokens::revoke(&s, &a, &id).await?))
}

#[utoipa::path(
    post,
    path = "/keys",
    tag = "keys",
    request_body = keys::CreateKey,
    responses((status = 201, body = keys::CreatedKey), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn create_key(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<keys::CreateKey>,
) -> Result<Response> {
    let k = keys::create(&s, &a, body).await?;
    Ok(key_response(StatusCode::CREATED, &k.key, &k))
}

#[utoipa::path(
    get,
    path = "/keys",
    tag = "keys",
    params(PageParams, keys::KeyFilter),
    responses((status = 200, description = "a page of keys", body = Object), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_keys(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
    ApiQuery(filter): ApiQuery<keys::KeyFilter>,
) -> Result<Response> {
    Ok(ok(keys::list(&s, &a, q, filter).await?))
}

#[utoipa::path(
    get,
    path = "/keys/{id}",
    tag = "keys",
    params(("id" = String, Path)),
    responses((status = 200, body = keys::Key), (status = 404, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn get_key(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    let k = keys::get(&s, &a, &id).await?;
    Ok(key_response(StatusCode::OK, &k, &k))
}

#[utoipa::path(
    patch,
    path = "/keys/{id}",
    tag = "keys",
    request_body = keys::UpdateKey,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "the version read, e.g. \"3\"")),
    responses((status = 200, body = keys::Key), (status = 404, body = ErrorBody), (status = 412, description = "If-Match names a stale version", body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
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

#[utoipa::path(
    post,
    path = "/keys/{id}/revoke",
    tag = "keys",
    params(("id" = String, Path)),
    responses((status = 200, body = keys::Key), (status = 404, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn revoke_key(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    let k = keys::revoke(&s, &a, &id).await?;
    Ok(key_response(StatusCode::OK, &k, &k))
}

#[utoipa::path(
    post,
    path = "/keys/{id}/disable",
    tag = "keys",
    params(("id" = String, Path)),
    responses((status = 200, body = keys::Key), (status = 404, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn disable_key(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    let k = keys::disable(&s, &a, &id).await?;
    Ok(key_response(StatusCode::OK, &k, &k))
}

#[utoipa::path(
    post,
    path = "/keys/{id}/enable",
    tag = "keys",
    params(("id" = String, Path)),
    responses((status = 200, body = keys::Key), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn enable_key(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    let k = keys::enable(&s, &a, &id).await?;
    Ok(key_response(StatusCode::OK, &k, &k))
}

#[utoipa::path(
    post,
    path = "/keys/{id}/rotate",
    tag = "keys",
    request_body(content = Option<keys::Rotate>, description = "optional"),
    params(("id" = String, Path)),
    responses((status = 200, body = keys::CreatedKey), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
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

#[utoipa::path(
    post,
    path = "/providers",
    tag = "catalog",
    request_body = providers::CreateProvider,
    responses((status = 201, body = providers::Provider), (status = 409, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn create_provider(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<providers::CreateProvider>,
) -> Result<Response> {
    Ok(created(providers::create(&s, &a, body).await?))
}

#[utoipa::path(
    put,
    path = "/providers/{id}/credential",
    tag = "catalog",
    params(("id" = String, Path, description = "the provider account's id")),
    request_body = providers::ReplaceCredential,
    responses((status = 200, description = "the credential is replaced (a security change: every node, at once, also during a staged rollout); only its last 4 characters are returned", body = providers::Provider), (status = 404, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn replace_provider_credential(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<providers::ReplaceCredential>,
) -> Result<Response> {
    Ok(ok(providers::replace_credential(&s, &a, &id, body).await?))
}

#[utoipa::path(
    get,
    path = "/providers",
    tag = "catalog",
    params(PageParams),
    responses((status = 200, description = "a page of providers", body = Object), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_providers(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(ok(providers::list(&s, &a, q).await?))
}

#[utoipa::path(
    post,
    path = "/models",
    tag = "catalog",
    request_body = models::UpsertModel,
    responses((status = 201, body = models::ModelPrice), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn upsert_model(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<models::UpsertModel>,
) -> Result<Response> {
    Ok(created(models::upsert(&s, &a, body).await?))
}

#[utoipa::path(
    get,
    path = "/models",
    tag = "catalog",
    params(PageParams),
    responses((status = 200, description = "a page of model prices", body = Object), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_models(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(ok(models::list(&s, &a, q).await?))
}

/// A whole LiteLLM price map is a few MB, over the 2 MiB other bodies are held to.
const IMPORT_MAX_BODY: usize = 32 * 1024 * 1024;

#[utoipa::path(
    post,
    path = "/models/import",
    tag = "catalog",
    request_body = models::ImportRequest,
    responses((status = 200, description = "what the import changed (or, on a dry run, would change)", body = models::ImportDiff), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn import_models(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    body: axum::body::Body,
) -> Result<Response> {
    let bytes = axum::body::to_bytes(body, IMPORT_MAX_BODY)
        .await
        .map_err(|_| AdminError::Invalid {
            param: None,
            message: format!(
                "could not read the request body (at most {} MiB)",
                IMPORT_MAX_BODY >> 20
            ),
        })?;
    let request: models::ImportRequest = json::parse(&bytes)?;
    Ok(ok(models::import_catalog(&s, &a, request).await?))
}

#[utoipa::path(
    get,
    path = "/models/{id}/versions",
    tag = "catalog",
    params(("id" = String, Path)),
    responses((status = 200, description = "every price version of the row, oldest first (`data`)", body = Object), (status = 404, body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn model_versions(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    let data = models::versions(&s, &a, &id).await?;
    Ok(ok(crate::service::Page {
        data,
        next_cursor: None,
    }))
}

#[utoipa::path(
    get,
    path = "/price-versions/{version}",
    tag = "catalog",
    params(("version" = i64, Path, description = "a catalog-wide price version, as usage rows record it")),
    responses((status = 200, body = models::PriceVersion), (status = 404, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn price_version(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(version): Path<String>,
) -> Result<Response> {
    let version: i64 = version
        .parse()
        .map_err(|_| crate::service::ServiceError::invalid("version", "must be a whole number"))?;
    Ok(ok(models::version(&s, &a, version).await?))
}

#[utoipa::path(
    post,
    path = "/routes",
    tag = "catalog",
    request_body = routes::CreateRoute,
    responses((status = 201, body = routes::Route), (status = 409, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn create_route(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<routes::CreateRoute>,
) -> Result<Response> {
    Ok(created(routes::create(&s, &a, body).await?))
}

#[utoipa::path(
    put,
    path = "/routes/{alias}",
    tag = "catalog",
    params(("alias" = String, Path, description = "the route's alias")),
    request_body = routes::CreateRoute,
    responses((status = 200, description = "the route with its new deployments, fallbacks and policy", body = routes::Route), (status = 404, description = "no route with this alias", body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn replace_route(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(alias): Path<String>,
    ApiJson(body): ApiJson<routes::CreateRoute>,
) -> Result<Response> {
    Ok(ok(routes::replace(&s, &a, &alias, body).await?))
}

#[utoipa::path(
    get,
    path = "/routes",
    tag = "catalog",
    params(PageParams),
    responses((status = 200, description = "a page of routes", body = Object), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_routes(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(ok(routes::list(&s, &a, q).await?))
}

#[utoipa::path(
    get,
    path = "/nodes",
    tag = "fleet",
    params(PageParams),
    responses((status = 200, description = "a page of data-plane nodes", body = Object), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_nodes(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(ok(nodes::list(&s, &a, q).await?))
}

#[utoipa::path(
    post,
    path = "/nodes/{id}/revoke",
    tag = "fleet",
    params(("id" = String, Path, description = "the node id its certificate names")),
    responses((status = 200, description = "the node is revoked: its streams are closed and it is refused from now on", body = revocations::NodeRevocation), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn revoke_node(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(ok(revocations::revoke(&s, &a, &id).await?))
}

#[utoipa::path(
    get,
    path = "/health/deployments",
    tag = "fleet",
    responses((status = 200, description = "every deployment's health across the connected data planes", body = [fleet::DeploymentFleetHealth]), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn deployment_health(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
) -> Result<Response> {
    Ok(ok(
        serde_json::json!({ "data": fleet::deployments(&s, &a)? }),
    ))
}

#[utoipa::path(
    post,
    path = "/explain",
    tag = "fleet",
    request_body = explain::ExplainRequest,
    responses((status = 200, description = "what the data plane would do with the request: allowed or why not, the ordered candidates with health and price", body = explain::Explanation), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody), (status = 404, description = "no such key", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn explain_request(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<explain::ExplainRequest>,
) -> Result<Response> {
    Ok(ok(explain::explain(&s, &a, body).await?))
}

#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    params(PageParams, AuditFilter),
    responses((status = 200, description = "a page of audit entries", body = Object), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_audit(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
    ApiQuery(filter): ApiQuery<AuditFilter>,
) -> Result<Response> {
    Ok(ok(audit_service::list(&s, &a, q, filter).await?))
}

#[utoipa::path(
    get,
    path = "/requests",
    tag = "usage",
    params(PageParams, usage::requests::RequestFilter),
    responses((status = 200, description = "a page of the request log, newest first: {data: [request], next_cursor}; pass next_cursor back as `after`", body = Object), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_requests(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
    ApiQuery(filter): ApiQuery<usage::requests::RequestFilter>,
) -> Result<Response> {
    Ok(ok(usage::requests::list(&s, &a, q, filter).await?))
}

#[utoipa::path(
    get,
    path = "/requests/{request_id}",
    tag = "usage",
    params(("request_id" = String, Path, description = "the `x-request-id` the gateway's answer carried")),
    responses((status = 200, description = "the request's usage row with every upstream attempt", body = usage::UsageRow), (status = 404, description = "no such request (or another team's)", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn get_request(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(request_id): Path<String>,
) -> Result<Response> {
    Ok(ok(usage::requests::get(&s, &a, &request_id).await?))
}

#[utoipa::path(
    get,
    path = "/usage/events",
    tag = "usage",
    params(PageParams, usage::UsageFilter),
    responses((status = 200, description = "a page of usage events in ingest order", body = Object), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_usage(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
    ApiQuery(filter): ApiQuery<usage::UsageFilter>,
) -> Result<Response> {
    Ok(ok(usage::list(&s, &a, q, filter).await?))
}

#[utoipa::path(
    get,
    path = "/usage/daily",
    tag = "usage",
    params(usage::DailyFilter),
    responses((status = 200, description = "{data: [daily aggregate]}", body = Object), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn usage_daily(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(filter): ApiQuery<usage::DailyFilter>,
) -> Result<Response> {
    Ok(ok(
        serde_json::json!({ "data": usage::daily(&s, &a, filter).await? }),
    ))
}

#[utoipa::path(
    get,
    path = "/usage/quarantine",
    tag = "usage",
    params(PageParams),
    responses((status = 200, description = "a page of usage events ingest refused to count, oldest first, each with the reporting node and the reason", body = Object), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "only an owner, admin or billing token without a team scope may read this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_quarantine(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(ok(usage::quarantine::list(&s, &a, q).await?))
}

#[utoipa::path(
    post,
    path = "/usage/sinks",
    tag = "usage",
    request_body = usage::sinks::CreateSink,
    responses((status = 201, body = usage::sinks::CreatedSink), (status = 409, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn create_sink(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<usage::sinks::CreateSink>,
) -> Result<Response> {
    Ok(created(usage::sinks::create(&s, &a, body).await?))
}

#[utoipa::path(
    get,
    path = "/usage/sinks",
    tag = "usage",
    responses((status = 200, description = "{data: [sink]}", body = Object), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_sinks(State(s): State<Services>, Extension(a): Extension<Actor>) -> Result<Response> {
    Ok(ok(
        serde_json::json!({ "data": usage::sinks::list(&s, &a).await? }),
    ))
}

#[utoipa::path(
    get,
    path = "/usage/sinks/{id}",
    tag = "usage",
    params(("id" = String, Path)),
    responses((status = 200, body = usage::sinks::Sink), (status = 404, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn get_sink(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(ok(usage::sinks::get(&s, &a, &id).await?))
}

#[utoipa::path(
    delete,
    path = "/usage/sinks/{id}",
    tag = "usage",
    params(("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn delete_sink(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    usage::sinks::delete(&s, &a, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    post,
    path = "/usage/sinks/{id}/rewind",
    tag = "usage",
    request_body = usage::sinks::Rewind,
    params(("id" = String, Path)),
    responses((status = 200, body = usage::sinks::Sink), (status = 404, body = ErrorBody), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn rewind_sink(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<usage::sinks::Rewind>,
) -> Result<Response> {
    Ok(ok(usage::sinks::rewind(&s, &a, &id, body).await?))
}

#[utoipa::path(
    get,
    path = "/rollouts/policy",
    tag = "rollouts",
    responses((status = 200, description = "the rollout policy in effect (`plan` null: every change goes to every node at once)", body = rollouts::PolicyView), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn get_rollout_policy(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
) -> Result<Response> {
    Ok(ok(rollouts::get_policy(&s, &a).await?))
}

#[utoipa::path(
    put,
    path = "/rollouts/policy",
    tag = "rollouts",
    request_body(content = Object, description = "a plan: `{\"waves\": [{\"selector\": \"canary=true\", \"bake_s\": 300}, …], \"gates\": {\"max_nacks\": 0, \"max_error_rate_increase\": 0.05, \"max_p99_ratio\": 1.5, \"p99_slack_ms\": 100, \"min_requests\": 50, \"window_s\": 300}, \"on_failure\": \"rollback\" | \"pause\"}` (gates and on_failure optional, defaults shown)"),
    responses((status = 200, description = "the policy is in effect for the next policy change", body = rollouts::PolicyView), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn set_rollout_policy(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response> {
    Ok(ok(rollouts::set_policy(&s, &a, body).await?))
}

#[utoipa::path(
    delete,
    path = "/rollouts/policy",
    tag = "rollouts",
    responses((status = 200, description = "no policy: every change goes to every node at once", body = rollouts::PolicyView), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody), (status = 409, description = "a rollout is in progress", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn clear_rollout_policy(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
) -> Result<Response> {
    Ok(ok(rollouts::clear_policy(&s, &a).await?))
}

#[utoipa::path(
    get,
    path = "/rollouts",
    tag = "rollouts",
    responses((status = 200, description = "the latest rollouts, newest first: {data}", body = Object), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_rollouts(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
) -> Result<Response> {
    Ok(ok(
        serde_json::json!({ "data": rollouts::list(&s, &a).await? }),
    ))
}

#[utoipa::path(
    get,
    path = "/rollouts/{id}",
    tag = "rollouts",
    params(("id" = String, Path, description = "the rollout's id")),
    responses((status = 200, description = "the rollout: waves, their nodes, the gates' last reading", body = rollouts::RolloutView), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody), (status = 404, description = "no such rollout", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn get_rollout(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(ok(rollouts::get(&s, &a, &id).await?))
}

#[utoipa::path(
    get,
    path = "/rollouts/{id}/diff",
    tag = "rollouts",
    params(("id" = String, Path, description = "the rollout's id")),
    responses((status = 200, description = "the policy resources its new version adds, changes or removes", body = rollouts::DiffView), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody), (status = 404, description = "no such rollout", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn rollout_diff(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(ok(rollouts::diff(&s, &a, &id).await?))
}

macro_rules! rollout_action {
    ($name:ident, $path:literal, $action:expr, $what:literal) => {
        #[utoipa::path(
            post,
            path = $path,
            tag = "rollouts",
            params(("id" = String, Path, description = "the rollout's id")),
            responses((status = 200, description = $what, body = rollouts::RolloutView), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody), (status = 404, description = "no such rollout", body = ErrorBody), (status = 409, description = "the rollout is not in progress", body = ErrorBody)),
            security(("bearer" = []))
        )]
        async fn $name(
            State(s): State<Services>,
            Extension(a): Extension<Actor>,
            Path(id): Path<String>,
        ) -> Result<Response> {
            Ok(ok(rollouts::act(&s, &a, &id, $action).await?))
        }
    };
}

rollout_action!(
    promote_rollout,
    "/rollouts/{id}/promote",
    crate::rollout::Action::Promote,
    "the next wave started now (the rollout completed after its last)"
);
rollout_action!(
    pause_rollout,
    "/rollouts/{id}/pause",
    crate::rollout::Action::Pause,
    "paused: no wave moves until resumed (security changes still reach every node)"
);
rollout_action!(
    resume_rollout,
    "/rollouts/{id}/resume",
    crate::rollout::Action::Resume,
    "running again; the current wave's bake time starts afresh"
);
rollout_action!(
    rollback_rollout,
    "/rollouts/{id}/rollback",
    crate::rollout::Action::Rollback,
    "every node back on the old content, under a new version"
);
