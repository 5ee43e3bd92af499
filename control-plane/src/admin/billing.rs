//! Billing: a team's prepaid balance (`/teams/{id}/balance`, its adjustments) and monthly
//! statements (`/statements`, JSON or CSV by `Accept`).

use axum::extract::{Extension, Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::error::ErrorBody;
use super::json::{ApiJson, ApiQuery};
use super::{created, ok, Result};
use crate::service::authz::Actor;
use crate::service::{balances, statements, Services};

#[utoipa::path(
    get,
    path = "/teams/{id}/balance",
    tag = "billing",
    params(("id" = String, Path, description = "team id")),
    responses((status = 200, description = "the team's prepaid balance, its mode and its latest credits", body = balances::Balance), (status = 404, description = "no such team, or it has no prepaid balance", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
pub(super) async fn get_balance(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(ok(balances::get(&s, &a, &id).await?))
}

#[utoipa::path(
    post,
    path = "/teams/{id}/balance/adjustments",
    tag = "billing",
    params(("id" = String, Path, description = "team id")),
    request_body = balances::Adjust,
    responses((status = 201, description = "the balance after the credit (the first one opens it); replayed for a repeated Idempotency-Key", body = balances::Balance), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 404, description = "no such team", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
pub(super) async fn adjust_balance(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<balances::Adjust>,
) -> Result<Response> {
    Ok(created(balances::adjust(&s, &a, &id, body).await?))
}

#[utoipa::path(
    get,
    path = "/statements",
    tag = "billing",
    params(statements::StatementQuery),
    responses((status = 200, description = "the team's statement for the month: JSON, or CSV with `Accept: text/csv`", content((statements::Statement = "application/json"), (String = "text/csv"))), (status = 400, description = "invalid input, naming the field", body = ErrorBody), (status = 404, description = "no such team", body = ErrorBody), (status = 401, description = "no valid admin token", body = ErrorBody), (status = 403, description = "the token's role or scope does not allow this", body = ErrorBody)),
    security(("bearer" = []))
)]
pub(super) async fn get_statement(
    State(s): State<Services>,
    Extension(a): Extension<Actor>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<statements::StatementQuery>,
) -> Result<Response> {
    let st = statements::get(&s, &a, q).await?;
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|m| m.trim().starts_with("text/csv")));
    if !wants_csv {
        return Ok(ok(st));
    }
    let mut resp = statements::to_csv(&st).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"statement-{}-{}.csv\"",
        st.team_id, st.month
    )) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
