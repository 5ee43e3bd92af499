//! The frame of every page: skip link, header with the navigation the actor may use, who is
//! signed in and the sign-out form, the flash of the previous change (with a secret shown once),
//! and the main content.

use axum::http::StatusCode;
use maud::{html, Markup, DOCTYPE};

use super::Ctx;
use crate::service::authz::{Action, Actor};

/// The screens, in navigation order: path, label, what the actor must be allowed to see it.
const NAV: &[(&str, &str, Action)] = &[
    ("/", "Overview", Action::ReadUsage),
    ("/requests", "Requests", Action::ReadUsage),
    ("/keys", "Keys", Action::ReadConfig),
    ("/teams", "Teams & users", Action::ReadConfig),
    ("/providers", "Providers", Action::ReadConfig),
    ("/routes", "Routes", Action::ReadConfig),
    ("/budgets", "Budgets", Action::ReadConfig),
    ("/rate-limits", "Rate limits", Action::ReadConfig),
    ("/fleet", "Fleet", Action::ReadConfig),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="same-origin";
            title { (title) " · ModelGate" }
            link rel="stylesheet" href="/assets/dashboard.css";
            script src="/assets/dashboard.js" defer {}
        }
    }
}

fn who(actor: &Actor) -> String {
    match actor.scope() {
        Some(team) => format!("{} · team {team}", actor.role.as_str()),
        None => actor.role.as_str().to_owned(),
    }
}

/// A whole page for the signed-in actor; `current` is the path of the screen shown.
pub fn page(ctx: &Ctx, current: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "ModelGate" }
                    nav aria-label="Screens" {
                        ul {
                            @for (path, label, need) in NAV {
                                @if ctx.actor.may(*need) {
                                    li {
                                        a href=(path) aria-current=[(*path == current).then_some("page")] { (label) }
                                    }
                                }
                            }
                        }
                    }
                    div.who {
                        span { "Signed in: " strong { (who(&ctx.actor)) } }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(ctx.csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    @if let Some(f) = &ctx.flash {
                        div class=(if f.ok { "flash ok" } else { "flash error" }) role=(if f.ok { "status" } else { "alert" }) {
                            p { (f.message) }
                            @if let Some(secret) = &f.secret {
                                div.secret {
                                    label for="secret" { "Secret (shown once: copy it now)" }
                                    input #secret type="text" readonly value=(secret) data-secret;
                                    button type="button" data-copy="secret" { "Copy" }
                                }
                            }
                        }
                    }
                    (body)
                }
            }
        }
    }
}

/// A page without the navigation: the sign-in form and refusals.
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                main #main {
                    p.brand { "ModelGate" }
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// What a refused or failed request shows.
pub fn failure(status: StatusCode, message: &str) -> Markup {
    let title = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_REQUEST => "Not accepted",
        StatusCode::CONFLICT => "Conflict",
        _ => "Something went wrong",
    };
    bare(
        title,
        html! {
            p role="alert" { (message) }
            p { a href="/" { "Back to the dashboard" } }
        },
    )
}

/// A hidden CSRF field for a form of this session.
pub fn csrf(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

/// Shown where a list is empty.
pub fn empty(what: &str) -> Markup {
    html! { p.empty { "No " (what) " yet." } }
}
