//! The web dashboard, served at `/` on the admin listener: server-rendered HTML (`maud`, which
//! escapes every interpolated value), small embedded CSS and JS, charts as inline SVG drawn
//! here. Each screen calls the same `service/` functions the admin API calls with the actor of
//! the signed-in admin token, so roles and team scope apply exactly as they do over REST;
//! links and forms an actor may not use are left out, but the service layer is what refuses.
//!
//! - `session`: sign-in sessions in the database, shared by every replica (random id in an
//!   `HttpOnly`, `SameSite=Strict` cookie; the server keeps hashes of the id and of the token,
//!   and re-checks the token on every request), per-session CSRF tokens and flash messages.
//! - `guard`: the security headers of every response (a strict Content-Security-Policy with no
//!   inline script or style, `frame-ancestors 'none'`, `nosniff`, `no-store`) and the check of
//!   every POST: its `Origin` (when sent) must be this host, and its form's `csrf` field the
//!   session's token (the sign-in form: its own cookie's), else 403 before any handler runs.
//! - `layout`, `format`, `chart`: the page frame, value formatting, SVG charts.
//! - `pages/`: one module per screen.

mod chart;
mod format;
mod guard;
mod layout;
mod pages;
mod session;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::service::authz::Actor;
use crate::service::bootstrap::{self, Authentication};
use crate::service::{ServiceError, Services};
pub use session::Sessions;
use session::{Flash, COOKIE};

/// What every dashboard handler shares.
#[derive(Clone)]
pub struct Dash {
    pub services: Services,
    pub sessions: Arc<Sessions>,
    /// Served over TLS: cookies are marked `Secure`.
    pub secure: bool,
}

/// The dashboard's routes (merged beside `/admin/v1` on the admin listener).
pub fn router(services: Services, secure: bool) -> Router {
    let dash = Dash {
        services: services.clone(),
        sessions: Arc::new(Sessions::new(services.clone())),
        secure,
    };
    Router::new()
        .route("/", get(pages::overview::show))
        .route(
            "/login",
            get(pages::login::form).post(pages::login::sign_in),
        )
        .route("/logout", post(pages::login::sign_out))
        .route("/keys", get(pages::keys::show).post(pages::keys::create))
        .route("/keys/{id}/{action}", post(pages::keys::act))
        .route(
            "/teams",
            get(pages::teams::show).post(pages::teams::create_team),
        )
        .route("/users", post(pages::teams::create_user))
        .route("/teams/{id}/members", post(pages::teams::add_member))
        .route(
            "/providers",
            get(pages::providers::show).post(pages::providers::create),
        )
        .route("/routes", get(pages::routes::show))
        .route(
            "/budgets",
            get(pages::budgets::show).post(pages::budgets::create),
        )
        .route(
            "/rate-limits",
            get(pages::limits::show).post(pages::limits::create),
        )
        .route("/requests", get(pages::requests::show))
        .route("/requests/{id}", get(pages::requests::detail))
        .route("/fleet", get(pages::fleet::show))
        .route("/assets/{file}", get(asset))
        .layer(middleware::from_fn_with_state(
            dash.clone(),
            guard::check_post,
        ))
        .layer(middleware::from_fn_with_state(dash.clone(), guard::headers))
        .with_state(dash)
}

const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "dashboard.css" => (CSS, "text/css; charset=utf-8"),
        "dashboard.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    resp
}

/// The signed-in caller of a dashboard request: the actor its session's token stands for now.
pub struct Ctx {
    pub actor: Actor,
    pub csrf: String,
    pub flash: Option<Flash>,
    session_id: String,
}

impl Ctx {
    /// Leaves a message for the next page (post/redirect/get).
    async fn flash(
        &self,
        dash: &Dash,
        ok: bool,
        message: impl Into<String>,
        secret: Option<String>,
    ) {
        let flash = Flash {
            ok,
            message: message.into(),
            secret,
        };
        if let Err(e) = dash.sessions.flash(&self.session_id, flash).await {
            tracing::warn!(error = %e, "could not leave a message for the session's next page");
        }
    }
}

impl FromRequestParts<Dash> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, dash: &Dash) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/login").into_response();
        let Some(id) = session::cookie(&parts.headers, COOKIE).map(str::to_owned) else {
            return Err(to_login());
        };
        let current = match dash.sessions.current(&id).await {
            Ok(Some(current)) => current,
            Ok(None) => return Err(to_login()),
            Err(e) => return Err(Failure::from(e).into_response()),
        };
        let request_id = modelgate_shared::new_id().to_string();
        match bootstrap::authenticate_hash(&dash.services, &current.token_hash, &request_id).await {
            Ok(Authentication::Actor(actor)) => Ok(Ctx {
                actor,
                csrf: current.csrf,
                flash: current.flash,
                session_id: id,
            }),
            Ok(Authentication::Unknown | Authentication::Expired(_)) => {
                // The token was revoked or expired since sign-in: the session ends with it.
                if let Err(e) = dash.sessions.close(&id).await {
                    return Err(Failure::from(e).into_response());
                }
                Err(to_login())
            }
            Err(e) => Err(Failure::from(e).into_response()),
        }
    }
}

/// A page that could not be shown: its status and a message for the reader.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    message: String,
}

impl From<ServiceError> for Failure {
    fn from(e: ServiceError) -> Self {
        let (status, message) = match e {
            ServiceError::Invalid { param, message } => {
                (StatusCode::BAD_REQUEST, format!("{param}: {message}"))
            }
            ServiceError::NotFound(what) => (StatusCode::NOT_FOUND, format!("{what} not found")),
            ServiceError::Conflict(why) => (StatusCode::CONFLICT, why),
            ServiceError::Forbidden(why) => (StatusCode::FORBIDDEN, format!("Not allowed: {why}.")),
            ServiceError::VersionMismatch { current } => (
                StatusCode::CONFLICT,
                format!("it changed meanwhile (now version {current}); reload and retry"),
            ),
            ServiceError::Db(err) => {
                tracing::error!(error = %err, "dashboard request failed in the database");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
            }
            ServiceError::Crypto(err) => {
                tracing::error!(error = %err, "dashboard request failed to open a sealed secret");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
            }
            ServiceError::Unavailable(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
        };
        Failure { status, message }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.status, layout::failure(self.status, &self.message)).into_response()
    }
}

type PageResult = Result<Response, Failure>;

/// After a change: back to `to` with the outcome as a flash. A refusal by role or scope, a
/// missing resource and an internal error answer with their status instead (a forged or stale
/// form learns its status, not a cheerful redirect).
async fn after_change(
    dash: &Dash,
    ctx: &Ctx,
    to: &str,
    outcome: Result<(String, Option<String>), ServiceError>,
) -> Response {
    match outcome {
        Ok((message, secret)) => {
            ctx.flash(dash, true, message, secret).await;
            Redirect::to(to).into_response()
        }
        Err(e @ (ServiceError::Invalid { .. } | ServiceError::Conflict(_))) => {
            ctx.flash(dash, false, Failure::from(e).message, None).await;
            Redirect::to(to).into_response()
        }
        Err(e) => Failure::from(e).into_response(),
    }
}

/// Renders a page for the signed-in actor.
fn page(ctx: &Ctx, current: &str, title: &str, body: maud::Markup) -> Response {
    layout::page(ctx, current, title, body).into_response()
}
