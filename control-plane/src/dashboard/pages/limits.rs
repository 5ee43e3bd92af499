//! Rate limits with their fleet usage now: per measure, the current window's limit, what data
//! planes were granted and what they report taken, and each node's share; and, for those who
//! manage the organisation, a form to create one (the admin API's `POST /rate-limits`).

use axum::extract::State;
use axum::response::Response;
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::super::{after_change, format, layout, page, Ctx, Dash, PageResult};
use super::{scope_value, team_label, ScopeChoices};
use crate::service::authz::Action;
use crate::service::limits::{CreateRateLimit, LimitScopeSpec};
use crate::service::{limits, routes, PageParams, ServiceError};

/// The create form (shown only to an actor who may create rate limits).
fn create_form(ctx: &Ctx, choices: &ScopeChoices, aliases: &[(String, String)]) -> Markup {
    html! {
        section aria-labelledby="new-limit" {
            h2 #new-limit { "Create a rate limit" }
            form.grid method="post" action="/rate-limits" {
                (layout::csrf(ctx))
                div { label for="l-scope" { "Scope" } (choices.select("l-scope", ("Model aliases", "model", aliases))) }
                div {
                    label for="l-model" { "Only requests for alias (optional)" }
                    select #l-model name="model" {
                        option value="" { "any model" }
                        @for (alias, _) in aliases { option value=(alias) { (alias) } }
                    }
                }
                div { label for="l-rpm" { "Requests per minute" } input #l-rpm type="number" min="0" name="rpm" placeholder="0 = no limit"; }
                div { label for="l-tpm" { "Tokens per minute" } input #l-tpm type="number" min="0" name="tpm" placeholder="0 = no limit"; }
                div { label for="l-conc" { "Concurrent requests" } input #l-conc type="number" min="0" name="max_concurrent" placeholder="0 = no limit"; }
                div {
                    label for="l-unreachable" { "When the control plane is unreachable" }
                    select #l-unreachable name="when_unreachable" {
                        option value="fail_open" { "fail open" } option value="fail_closed" { "fail closed" }
                    }
                }
                div.actions { button type="submit" { "Create rate limit" } }
            }
        }
    }
}

pub async fn show(State(dash): State<Dash>, ctx: Ctx) -> PageResult {
    let s = &dash.services;
    let list = limits::list(
        s,
        &ctx.actor,
        PageParams {
            after: None,
            limit: Some(PageParams::MAX_LIMIT),
        },
    )
    .await?
    .data;
    let teams = super::team_names(s, &ctx.actor).await?;
    let form = if ctx.actor.may(Action::ManageOrg) {
        let aliases: Vec<(String, String)> = routes::list(
            s,
            &ctx.actor,
            PageParams {
                after: None,
                limit: Some(PageParams::MAX_LIMIT),
            },
        )
        .await?
        .data
        .into_iter()
        .map(|r| (r.alias.clone(), r.alias))
        .collect();
        let choices = ScopeChoices::load(s, &ctx.actor).await?;
        Some(create_form(&ctx, &choices, &aliases))
    } else {
        None
    };
    let body = html! {
        @if let Some(f) = form { (f) }
        @if list.is_empty() { (layout::empty("rate limits")) }
        @for l in &list {
            section.card aria-labelledby={ "limit-" (l.id) } {
                h2 id={ "limit-" (l.id) } {
                    @if let Some(k) = &l.scope.key_id { "Key " code { (k) } }
                    @else if let Some(t) = &l.scope.team_id { "Team " (team_label(&teams, t)) }
                    @else if let Some(u) = &l.scope.user_id { "User " code { (u) } }
                    @else if let Some(m) = &l.scope.model { "Model " code { (m) } }
                    @if let Some(m) = &l.model { " · model " code { (m) } }
                }
                p.meta {
                    "rpm " (if l.rpm == 0 { "—".to_owned() } else { format::count(l.rpm as i64) })
                    " · tpm " (if l.tpm == 0 { "—".to_owned() } else { format::count(l.tpm as i64) })
                    " · concurrent " (if l.max_concurrent == 0 { "—".to_owned() } else { l.max_concurrent.to_string() })
                    " · when unreachable: " (l.when_unreachable)
                }
                @if l.state.is_empty() { p { "No traffic in the current window." } } @else {
                    div.scroll { table {
                        caption.sr-only { "Current window" }
                        thead { tr { th scope="col" { "Measure" } th scope="col" { "Used / limit" } th scope="col" { "Granted to nodes" } th scope="col" { "Per node (taken of granted)" } } }
                        tbody {
                            @for m in &l.state {
                                tr {
                                    th scope="row" { (m.measure) }
                                    td {
                                        meter min="0" max=(m.limit.max(1)) value=(m.consumed.max(0)) aria-label={ (m.measure) " used " (m.consumed) " of " (m.limit) } {}
                                        " " (format::count(m.consumed)) " / " (format::count(m.limit as i64))
                                    }
                                    td { (format::count(m.granted)) }
                                    td {
                                        @if m.allocations.is_empty() { "—" } @else {
                                            ul.plain { @for a in &m.allocations {
                                                li { code { (a.node) } ": " (a.consumed) " of " (a.granted) @if !a.lease_live { " (lapsed)" } }
                                            } }
                                        }
                                    }
                                }
                            }
                        }
                    } }
                }
            }
        }
    };
    Ok(page(&ctx, "/rate-limits", "Rate limits", body))
}

#[derive(Deserialize)]
pub struct LimitForm {
    scope: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    rpm: String,
    #[serde(default)]
    tpm: String,
    #[serde(default)]
    max_concurrent: String,
    when_unreachable: String,
}

/// A number field: empty is 0 (no limit).
fn number<T: std::str::FromStr + Default>(field: &'static str, v: &str) -> Result<T, ServiceError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(T::default());
    }
    v.parse()
        .map_err(|_| ServiceError::invalid(field, "a whole number, 0 or more"))
}

/// The form's scope as the service's: one of key, team, user or model alias.
fn scope(v: &str) -> Result<LimitScopeSpec, ServiceError> {
    let bad = || ServiceError::invalid("scope", "choose a team, key, user or model alias");
    let (kind, id) = scope_value(v).ok_or_else(bad)?;
    let id = Some(id.to_owned());
    Ok(match kind {
        "team" => LimitScopeSpec {
            team_id: id,
            ..LimitScopeSpec::default()
        },
        "key" => LimitScopeSpec {
            key_id: id,
            ..LimitScopeSpec::default()
        },
        "user" => LimitScopeSpec {
            user_id: id,
            ..LimitScopeSpec::default()
        },
        "model" => LimitScopeSpec {
            model: id,
            ..LimitScopeSpec::default()
        },
        _ => return Err(bad()),
    })
}

pub async fn create(State(dash): State<Dash>, ctx: Ctx, Form(f): Form<LimitForm>) -> Response {
    let outcome = async {
        let input = CreateRateLimit {
            scope: scope(&f.scope)?,
            model: Some(f.model),
            rpm: number("rpm", &f.rpm)?,
            tpm: number("tpm", &f.tpm)?,
            max_concurrent: number("max_concurrent", &f.max_concurrent)?,
            when_unreachable: Some(f.when_unreachable),
        };
        limits::create(&dash.services, &ctx.actor, input).await?;
        Ok(("Rate limit created.".to_owned(), None))
    }
    .await;
    after_change(&dash, &ctx, "/rate-limits", outcome).await
}
