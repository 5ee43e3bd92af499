//! Sign in with an admin token, sign out.
//!
//! The sign-in form has no session yet, so its CSRF token lives in its own short-lived cookie
//! (`mg_login`, path `/login`) and in the form; `guard::check_post` compares the two. A token
//! that is unknown, revoked or expired gets the same answer.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::super::layout;
use super::super::session::{self, COOKIE, LOGIN_COOKIE};
use super::super::Dash;
use crate::service::bootstrap::{self, Authentication};

/// How long a sign-in form stays usable.
const LOGIN_FORM_SECONDS: u64 = 600;

fn form_page(csrf: &str, error: Option<&str>) -> Markup {
    layout::bare(
        "Sign in",
        html! {
            @if let Some(e) = error {
                div.flash.error role="alert" { p { (e) } }
            }
            form.card method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                label for="token" { "Admin token" }
                input #token type="password" name="token" required autocomplete="off" autofocus spellcheck="false";
                p.hint { "The token stays on the server; this browser keeps only a session id." }
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// A fresh sign-in form with its CSRF cookie.
fn fresh_form(dash: &Dash, status: StatusCode, error: Option<&str>) -> Response {
    let csrf = session::random_token();
    let mut resp = (status, form_page(&csrf, error)).into_response();
    let cookie = session::set_cookie(
        LOGIN_COOKIE,
        &csrf,
        "/login",
        dash.secure,
        Some(LOGIN_FORM_SECONDS),
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

pub async fn form(State(dash): State<Dash>, headers: HeaderMap) -> Response {
    // Already signed in: straight to the overview.
    if let Some(id) = session::cookie(&headers, COOKIE) {
        if matches!(dash.sessions.current(id).await, Ok(Some(_))) {
            return Redirect::to("/").into_response();
        }
    }
    fresh_form(&dash, StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct SignIn {
    token: String,
    #[allow(dead_code)]
    csrf: String,
}

pub async fn sign_in(State(dash): State<Dash>, Form(input): Form<SignIn>) -> Response {
    let token = SecretString::from(input.token.trim().to_owned());
    let request_id = modelgate_shared::new_id().to_string();
    match bootstrap::authenticate(&dash.services, token.expose_secret(), &request_id).await {
        Ok(Authentication::Actor(_)) => {
            let id = match dash
                .sessions
                .open(modelgate_shared::keys::sha256_hex(token.expose_secret()))
                .await
            {
                Ok(id) => id,
                Err(e) => return super::super::Failure::from(e).into_response(),
            };
            let mut resp = Redirect::to("/").into_response();
            let h = resp.headers_mut();
            for c in [
                session::set_cookie(COOKIE, &id, "/", dash.secure, None),
                session::set_cookie(LOGIN_COOKIE, "", "/login", dash.secure, Some(0)),
            ] {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    h.append(header::SET_COOKIE, v);
                }
            }
            resp
        }
        Ok(Authentication::Unknown | Authentication::Expired(_)) => fresh_form(
            &dash,
            StatusCode::UNAUTHORIZED,
            Some("That token is not a live admin token."),
        ),
        Err(e) => super::super::Failure::from(e).into_response(),
    }
}

pub async fn sign_out(State(dash): State<Dash>, headers: HeaderMap) -> Response {
    if let Some(id) = session::cookie(&headers, COOKIE) {
        if let Err(e) = dash.sessions.close(id).await {
            return super::super::Failure::from(e).into_response();
        }
    }
    let mut resp = Redirect::to("/login").into_response();
    if let Ok(v) =
        HeaderValue::from_str(&session::set_cookie(COOKIE, "", "/", dash.secure, Some(0)))
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}
