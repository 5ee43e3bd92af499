//! The request log: `usage::requests::list` (the admin API's `GET /requests`, newest first,
//! cursor pages) with its filters as a form, and one request with every upstream attempt
//! (`usage::requests::get`).

use axum::extract::{Path, Query, State};
use maud::{html, Markup};
use serde::Deserialize;

use super::super::{format, page, Ctx, Dash, PageResult};
use super::{query, team_label};
use crate::service::authz::Action;
use crate::service::usage::requests::{self, RequestFilter, RequestSummary};
use crate::service::{keys, providers, PageParams};

/// The form's fields, as typed (empty: not filtered).
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct LogQuery {
    from: String,
    to: String,
    key_id: String,
    team_id: String,
    user_id: String,
    application: String,
    environment: String,
    model: String,
    provider_id: String,
    status: String,
    error_class: String,
    fallback_used: String,
    streamed: String,
    min_latency_ms: String,
    min_cost_micros: String,
    check_traffic: String,
    after: Option<String>,
}

fn some(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

/// A `datetime-local` value (`2026-12-06T05:00`, no zone) read as UTC in RFC 3339; anything
/// else is passed on for the service to judge (and name, if it is not a time).
fn instant(v: &str) -> Option<String> {
    let v = some(v)?;
    if v.len() == 16 && v.as_bytes().get(10) == Some(&b'T') {
        return Some(format!("{v}:00Z"));
    }
    Some(v)
}

impl LogQuery {
    fn filter(&self) -> RequestFilter {
        RequestFilter {
            from: instant(&self.from),
            to: instant(&self.to),
            key_id: some(&self.key_id),
            team_id: some(&self.team_id),
            user_id: some(&self.user_id),
            application: some(&self.application),
            environment: some(&self.environment),
            model: some(&self.model),
            provider_id: some(&self.provider_id),
            status: some(&self.status),
            error_class: some(&self.error_class),
            fallback_used: some(&self.fallback_used),
            streamed: some(&self.streamed),
            min_latency_ms: some(&self.min_latency_ms),
            min_cost_micros: some(&self.min_cost_micros),
            check_traffic: some(&self.check_traffic),
        }
    }

    /// The query string of this filter continuing after `cursor`.
    fn next(&self, cursor: &str) -> String {
        query(&[
            ("from", &self.from),
            ("to", &self.to),
            ("key_id", &self.key_id),
            ("team_id", &self.team_id),
            ("user_id", &self.user_id),
            ("application", &self.application),
            ("environment", &self.environment),
            ("model", &self.model),
            ("provider_id", &self.provider_id),
            ("status", &self.status),
            ("error_class", &self.error_class),
            ("fallback_used", &self.fallback_used),
            ("streamed", &self.streamed),
            ("min_latency_ms", &self.min_latency_ms),
            ("min_cost_micros", &self.min_cost_micros),
            ("check_traffic", &self.check_traffic),
            ("after", cursor),
        ])
    }
}

fn choice(id: &str, label: &str, name: &str, current: &str, options: &[(&str, &str)]) -> Markup {
    html! {
        div {
            label for=(id) { (label) }
            select id=(id) name=(name) {
                @for (value, text) in options {
                    option value=(value) selected[*value == current] { (text) }
                }
            }
        }
    }
}

fn text_field(id: &str, label: &str, name: &str, value: &str, kind: &str) -> Markup {
    html! {
        div { label for=(id) { (label) } input id=(id) name=(name) type=(kind) value=(value); }
    }
}

pub async fn show(State(dash): State<Dash>, ctx: Ctx, Query(q): Query<LogQuery>) -> PageResult {
    let s = &dash.services;
    let a = &ctx.actor;
    let list = requests::list(
        s,
        a,
        PageParams {
            after: q.after.clone(),
            limit: Some(50),
        },
        q.filter(),
    )
    .await?;
    let (teams, provs) = if a.may(Action::ReadConfig) {
        let all = PageParams {
            after: None,
            limit: Some(PageParams::MAX_LIMIT),
        };
        let provs: Vec<(String, String)> = providers::list(s, a, all)
            .await?
            .data
            .into_iter()
            .map(|p| (p.id, p.name))
            .collect();
        (super::team_names(s, a).await?, provs)
    } else {
        (Vec::new(), Vec::new())
    };
    let mut team_options: Vec<(&str, &str)> = vec![("", "any")];
    team_options.extend(teams.iter().map(|(id, n)| (id.as_str(), n.as_str())));
    let mut provider_options: Vec<(&str, &str)> = vec![("", "any")];
    provider_options.extend(provs.iter().map(|(id, n)| (id.as_str(), n.as_str())));
    let mut class_options: Vec<(&str, &str)> = vec![
        ("", "any"),
        ("none", "none (success)"),
        ("any", "any failure"),
    ];
    class_options.extend(
        modelgate_shared::usage::ErrorClass::ALL
            .iter()
            .map(|c| (c.as_str(), c.as_str())),
    );
    let yes_no = [("", "any"), ("true", "yes"), ("false", "no")];
    let body = html! {
        form.filters method="get" action="/requests" role="search" aria-label="Filter requests" {
            (text_field("f-from", "From (UTC)", "from", &q.from, "datetime-local"))
            (text_field("f-to", "To (UTC)", "to", &q.to, "datetime-local"))
            @if teams.is_empty() {
                (text_field("f-team", "Team id", "team_id", &q.team_id, "text"))
            } @else {
                (choice("f-team", "Team", "team_id", &q.team_id, &team_options))
            }
            (text_field("f-key", "Key id", "key_id", &q.key_id, "text"))
            (text_field("f-user", "User id", "user_id", &q.user_id, "text"))
            (text_field("f-app", "Application", "application", &q.application, "text"))
            (choice("f-env", "Environment", "environment", &q.environment, &[("", "any"), ("dev", "dev"), ("staging", "staging"), ("prod", "prod")]))
            (text_field("f-model", "Model alias", "model", &q.model, "text"))
            @if provs.is_empty() {
                (text_field("f-provider", "Provider id", "provider_id", &q.provider_id, "text"))
            } @else {
                (choice("f-provider", "Provider", "provider_id", &q.provider_id, &provider_options))
            }
            (text_field("f-status", "Status (e.g. 429, 5xx)", "status", &q.status, "text"))
            (choice("f-class", "Error class", "error_class", &q.error_class, &class_options))
            (choice("f-fallback", "Fallback used", "fallback_used", &q.fallback_used, &yes_no))
            (choice("f-streamed", "Streamed", "streamed", &q.streamed, &yes_no))
            (text_field("f-latency", "Min latency (ms)", "min_latency_ms", &q.min_latency_ms, "number"))
            (text_field("f-cost", "Min cost (µ$)", "min_cost_micros", &q.min_cost_micros, "number"))
            (choice("f-check", "Check traffic", "check_traffic", &q.check_traffic, &[("", "shown"), ("false", "hidden"), ("true", "only")]))
            div.actions { button type="submit" { "Filter" } a href="/requests" { "Clear" } }
        }
        @if list.data.is_empty() { p.empty { "No request matches." } } @else {
            div.scroll { table.log {
                thead { tr {
                    th scope="col" { "Started" } th scope="col" { "Request" } th scope="col" { "Team" }
                    th scope="col" { "Model" } th scope="col" { "Provider" } th scope="col" { "Status" }
                    th scope="col" { "Latency" } th scope="col" { "Tokens in/out" } th scope="col" { "Cost" }
                    th scope="col" { "Attempts" }
                } }
                tbody {
                    @for r in &list.data { (row(r, &teams, &provs)) }
                }
            } }
            @if let Some(c) = &list.next_cursor {
                nav.pager aria-label="Pages" { a href={ "/requests?" (q.next(c)) } { "Older requests →" } }
            }
        }
    };
    Ok(page(&ctx, "/requests", "Requests", body))
}

fn status(code: i32, class: Option<&str>) -> Markup {
    html! {
        span class={ "badge " (if code < 400 { "active" } else if code < 500 { "disabled" } else { "revoked" }) } { (code) }
        @if let Some(c) = class { " " small.inline { (c) } }
    }
}

fn row(r: &RequestSummary, teams: &[(String, String)], provs: &[(String, String)]) -> Markup {
    html! {
        tr {
            td { (format::when_ms(r.started_at_ms)) }
            th scope="row" { a href={ "/requests/" (r.request_id) } { code { (r.request_id) } } }
            td { (team_label(teams, &r.team_id)) }
            td { (r.model) @if !r.served_model.is_empty() && r.served_model != r.model { " → " (r.served_model) } }
            td { (team_label(provs, &r.provider_id)) }
            td { (status(r.status, r.error_class.as_deref())) }
            td { (format::ms(r.latency_us)) }
            td { (format::count(r.input_tokens)) " / " (format::count(r.output_tokens)) }
            td { (format::usd(r.cost_micros)) }
            td { (r.attempts) @if r.fallback_used { " (fallback)" } }
        }
    }
}

/// What the request detail names by name: keys, teams and providers the actor may see.
struct Names {
    key: Option<String>,
    teams: Vec<(String, String)>,
    providers: Vec<(String, String)>,
}

impl Names {
    /// A deployment (`{provider id}/{model}`) as `provider name · model`.
    fn deployment(&self, id: &str) -> Option<String> {
        let (provider, model) = id.split_once('/')?;
        let name = self.providers.iter().find(|(p, _)| p == provider)?;
        Some(format!("{} · {model}", name.1))
    }
}

/// A name with its id beside it (the id alone when the name is unknown).
fn named(name: Option<&str>, id: &str) -> Markup {
    html! {
        @if id.is_empty() { "—" }
        @else if let Some(n) = name.filter(|n| *n != id) { (n) " " small.inline { code { (id) } } }
        @else { code { (id) } }
    }
}

pub async fn detail(State(dash): State<Dash>, ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let s = &dash.services;
    let r = requests::get(s, &ctx.actor, &id).await?;
    let names = if ctx.actor.may(Action::ReadConfig) {
        let all = PageParams {
            after: None,
            limit: Some(PageParams::MAX_LIMIT),
        };
        // A key the actor cannot read (or one gone) is shown by its id.
        let key = keys::get(s, &ctx.actor, &r.key_id)
            .await
            .ok()
            .map(|k| format!("{} ({}…)", k.name, k.prefix));
        Names {
            key,
            teams: super::team_names(s, &ctx.actor).await?,
            providers: providers::list(s, &ctx.actor, all)
                .await?
                .data
                .into_iter()
                .map(|p| (p.id, p.name))
                .collect(),
        }
    } else {
        Names {
            key: None,
            teams: Vec::new(),
            providers: Vec::new(),
        }
    };
    let team = names
        .teams
        .iter()
        .find(|(t, _)| *t == r.team_id)
        .map(|(_, n)| n.as_str());
    let provider = names
        .providers
        .iter()
        .find(|(p, _)| *p == r.provider_id)
        .map(|(_, n)| n.as_str());
    let body = html! {
        dl.facts {
            dt { "Request id" } dd { code { (r.request_id) } }
            dt { "Started" } dd { (format::when_ms(r.started_at_ms)) }
            dt { "Status" } dd { (status(r.status, r.error_class.as_deref())) @if !r.error_message.is_empty() { " — " (r.error_message) } }
            dt { "Endpoint" } dd { (r.endpoint) @if r.streamed { " (streamed)" } }
            dt { "Route alias" } dd.route { @if r.requested_model.is_empty() { "—" } @else { a href="/routes" { (r.requested_model) } } }
            dt { "Served model" } dd { @if r.served_model.is_empty() { "—" } @else { (r.served_model) } }
            dt { "Deployment" } dd.deployment { (named(names.deployment(&r.deployment_id).as_deref(), &r.deployment_id)) }
            dt { "Provider" } dd.provider { (named(provider, &r.provider_id)) }
            dt { "Key" } dd.key { (named(names.key.as_deref(), &r.key_id)) }
            dt { "Team" } dd.team { (named(team, &r.team_id)) }
            dt { "Application / environment" } dd { (r.application) " / " (r.environment) }
            dt { "Latency (first byte)" } dd { (format::ms(r.latency_us)) " (" (format::ms(r.ttfb_us)) ")" }
            dt { "Tokens" } dd { (format::count(r.input_tokens)) " in, " (format::count(r.output_tokens)) " out" @if r.estimated { " (estimated)" } }
            dt { "Cost" } dd { (format::usd(r.cost_micros)) @if !r.cost_flag.is_empty() { " (" (r.cost_flag) ")" } }
            dt { "Node" } dd { code { (r.node_id) } }
            @if !r.trace_id.is_empty() { dt { "Trace id" } dd.trace { code { (r.trace_id) } } }
        }
        section aria-labelledby="attempts" {
            h2 #attempts { "Attempts" }
            @if r.attempts.is_empty() { p.empty { "No upstream attempt: the gateway answered itself." } } @else {
                div.scroll { table.attempts {
                    thead { tr { th scope="col" { "#" } th scope="col" { "Started (after request)" } th scope="col" { "Deployment" } th scope="col" { "Model" } th scope="col" { "Upstream status" } th scope="col" { "Error" } th scope="col" { "Latency" } } }
                    tbody {
                        @for (i, a) in r.attempts.iter().enumerate() {
                            tr {
                                th scope="row" { (i + 1) }
                                td { @if a.started_at_ms == 0 { "—" } @else { "+" (format::ms((a.started_at_ms - r.started_at_ms).max(0) * 1000)) } }
                                td { (named(names.deployment(&a.deployment_id).as_deref(), &a.deployment_id)) }
                                td { (a.model) }
                                td { @if a.status == 0 { "none" } @else { (a.status) } }
                                td {
                                    (a.error_class.map(|c| c.as_str()).unwrap_or("—"))
                                    @if !a.error_message.is_empty() { ": " (a.error_message) }
                                }
                                td { (format::ms(i64::try_from(a.latency_us).unwrap_or(i64::MAX))) }
                            }
                        }
                    }
                } }
            }
        }
        p { a href="/requests" { "← All requests" } }
    };
    Ok(page(&ctx, "/requests", "Request", body))
}
