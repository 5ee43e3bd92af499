//! `Idempotency-Key` on creates: the first successful response to a (token, key) pair is stored
//! — sealed, since a created key's secret is in it — and a retry with the same key and body gets
//! that response again (`idempotent-replayed: true`) instead of a second resource. The same key
//! with another body or route is refused (422). Records are honoured for 24 hours.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use sea_orm::{ActiveValue::Set, EntityTrait};

use super::AdminError;
use crate::crypto;
use crate::service::authz::Actor;
use crate::service::Services;
use crate::store::idempotency;

const HEADER: &str = "idempotency-key";
const MAX_BODY: usize = 1024 * 1024;
const RETENTION_HOURS: i64 = 24;

pub async fn layer(State(s): State<Services>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req
        .headers()
        .get(HEADER)
        .map(|v| v.to_str().map(str::to_owned))
    else {
        return next.run(req).await;
    };
    let Ok(key) = key else {
        return invalid("must be printable text");
    };
    if key.is_empty() || key.len() > 255 {
        return invalid("must be 1 to 255 characters");
    }
    let Some(actor) = req.extensions().get::<Actor>().cloned() else {
        return AdminError::Unauthorized.into_response();
    };
    let route = format!("POST {}", req.uri().path());
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return AdminError::Invalid {
            param: None,
            message: "the request body is too large".into(),
        }
        .into_response();
    };
    let request_hash = modelgate_shared::keys::sha256_hex_bytes(&bytes);

    match idempotency::Entity::find_by_id((actor.id.clone(), key.clone()))
        .one(&s.db)
        .await
    {
        Ok(Some(found))
            if found.created_at > Utc::now() - chrono::Duration::hours(RETENTION_HOURS) =>
        {
            if found.route != route || found.request_hash != request_hash {
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    axum::Json(serde_json::json!({"error": {
                        "type": "idempotency_key_reused",
                        "message": "this Idempotency-Key was used with a different request",
                        "param": "Idempotency-Key"}})),
                )
                    .into_response();
            }
            return replay(&s, &found);
        }
        Ok(_) => {}
        Err(e) => return AdminError::from(crate::service::ServiceError::from(e)).into_response(),
    }

    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if !resp.status().is_success() {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(body) = to_bytes(body, usize::MAX).await else {
        return AdminError::Internal.into_response();
    };
    let response = s
        .sealer
        .seal_bound(&body, &crypto::idempotency_response(&actor.id, &key));
    let row = idempotency::ActiveModel {
        actor_id: Set(actor.id),
        key: Set(key),
        route: Set(route),
        request_hash: Set(request_hash),
        status: Set(i32::from(parts.status.as_u16())),
        response: Set(response),
        created_at: Set(Utc::now()),
    };
    let stored = idempotency::Entity::insert(row)
        .on_conflict(
            sea_orm::sea_query::OnConflict::columns([
                idempotency::Column::ActorId,
                idempotency::Column::Key,
            ])
            .update_columns([
                idempotency::Column::Route,
                idempotency::Column::RequestHash,
                idempotency::Column::Status,
                idempotency::Column::Response,
                idempotency::Column::CreatedAt,
            ])
            .to_owned(),
        )
        .exec_without_returning(&s.db)
        .await;
    if let Err(e) = stored {
        tracing::warn!(error = %e, "could not store an idempotency record");
    }
    Response::from_parts(parts, Body::from(body))
}

fn replay(s: &Services, found: &idempotency::Model) -> Response {
    let binding = crypto::idempotency_response(&found.actor_id, &found.key);
    let Ok(body) = s.sealer.open_bound(&found.response, &binding) else {
        return AdminError::Internal.into_response();
    };
    let status = u16::try_from(found.status)
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    resp
}

fn invalid(message: &str) -> Response {
    AdminError::Invalid {
        param: Some("Idempotency-Key".into()),
        message: message.into(),
    }
    .into_response()
}
