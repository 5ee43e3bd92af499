//! The admin REST API under `/admin/v1`: thin axum handlers over the service layer, behind a
//! bearer admin token.

mod error;
mod json;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

pub use error::AdminError;
use json::{ApiJson, ApiQuery};

use crate::service::{
    bootstrap, keys, models, nodes, providers, routes, teams, usage, PageParams, Services,
};

pub fn router(services: Services) -> Router {
    let api = Router::new()
        .route("/teams", post(create_team).get(list_teams))
        .route("/keys", post(create_key).get(list_keys))
        .route("/keys/{id}/revoke", post(revoke_key))
        .route("/providers", post(create_provider).get(list_providers))
        .route("/models", post(upsert_model).get(list_models))
        .route("/routes", post(create_route).get(list_routes))
        .route("/nodes", get(list_nodes))
        .route("/usage/events", get(list_usage))
        .route("/usage/daily", get(usage_daily))
        .route("/usage/sinks", post(create_sink).get(list_sinks))
        .route("/usage/sinks/{id}", get(get_sink).delete(delete_sink))
        .route("/usage/sinks/{id}/rewind", post(rewind_sink))
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(
            services.clone(),
            require_admin,
        ))
        .with_state(services);
    Router::new()
        .nest("/admin/v1", api)
        .route("/healthz", get(|| async { "ok" }))
}

async fn require_admin(State(s): State<Services>, req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return AdminError::Unauthorized.into_response();
    };
    match bootstrap::admin_token_valid(&s, token).await {
        Ok(true) => next.run(req).await,
        Ok(false) => AdminError::Unauthorized.into_response(),
        Err(e) => AdminError::from(e).into_response(),
    }
}

async fn not_found() -> AdminError {
    AdminError::NotFound("admin endpoint".into())
}

type Result<T> = std::result::Result<T, AdminError>;

fn created<T: serde::Serialize>(value: T) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

async fn create_team(
    State(s): State<Services>,
    ApiJson(body): ApiJson<teams::CreateTeam>,
) -> Result<Response> {
    Ok(created(teams::create(&s, body).await?))
}

async fn list_teams(
    State(s): State<Services>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(Json(teams::list(&s, q).await?).into_response())
}

async fn create_key(
    State(s): State<Services>,
    ApiJson(body): ApiJson<keys::CreateKey>,
) -> Result<Response> {
    Ok(created(keys::create(&s, body).await?))
}

async fn list_keys(
    State(s): State<Services>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(Json(keys::list(&s, q).await?).into_response())
}

async fn revoke_key(State(s): State<Services>, Path(id): Path<String>) -> Result<Response> {
    Ok(Json(keys::revoke(&s, &id).await?).into_response())
}

async fn create_provider(
    State(s): State<Services>,
    ApiJson(body): ApiJson<providers::CreateProvider>,
) -> Result<Response> {
    Ok(created(providers::create(&s, body).await?))
}

async fn list_providers(
    State(s): State<Services>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(Json(providers::list(&s, q).await?).into_response())
}

async fn upsert_model(
    State(s): State<Services>,
    ApiJson(body): ApiJson<models::UpsertModel>,
) -> Result<Response> {
    Ok(created(models::upsert(&s, body).await?))
}

async fn list_models(
    State(s): State<Services>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(Json(models::list(&s, q).await?).into_response())
}

async fn create_route(
    State(s): State<Services>,
    ApiJson(body): ApiJson<routes::CreateRoute>,
) -> Result<Response> {
    Ok(created(routes::create(&s, body).await?))
}

async fn list_routes(
    State(s): State<Services>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(Json(routes::list(&s, q).await?).into_response())
}

async fn list_nodes(
    State(s): State<Services>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Response> {
    Ok(Json(nodes::list(&s, q).await?).into_response())
}

async fn list_usage(
    State(s): State<Services>,
    ApiQuery(q): ApiQuery<PageParams>,
    ApiQuery(filter): ApiQuery<usage::UsageFilter>,
) -> Result<Response> {
    Ok(Json(usage::list(&s, q, filter).await?).into_response())
}

async fn usage_daily(
    State(s): State<Services>,
    ApiQuery(filter): ApiQuery<usage::DailyFilter>,
) -> Result<Response> {
    Ok(Json(serde_json::json!({ "data": usage::daily(&s, filter).await? })).into_response())
}

async fn create_sink(
    State(s): State<Services>,
    ApiJson(body): ApiJson<usage::sinks::CreateSink>,
) -> Result<Response> {
    Ok(created(usage::sinks::create(&s, body).await?))
}

async fn list_sinks(State(s): State<Services>) -> Result<Response> {
    Ok(Json(serde_json::json!({ "data": usage::sinks::list(&s).await? })).into_response())
}

async fn get_sink(State(s): State<Services>, Path(id): Path<String>) -> Result<Response> {
    Ok(Json(usage::sinks::get(&s, &id).await?).into_response())
}

async fn delete_sink(State(s): State<Services>, Path(id): Path<String>) -> Result<Response> {
    usage::sinks::delete(&s, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn rewind_sink(
    State(s): State<Services>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<usage::sinks::Rewind>,
) -> Result<Response> {
    Ok(Json(usage::sinks::rewind(&s, &id, body).await?).into_response())
}
