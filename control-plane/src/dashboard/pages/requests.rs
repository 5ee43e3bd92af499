//! The request log: stored usage events with filters, and one request with every upstream
//! attempt.

use axum::extract::{Path, Query, State};
use maud::{html, Markup};
use serde::Deserialize;

use super::super::{format, layout, page, Ctx, Dash, Failure, PageResult};
use super::{pager, query};
use crate::service::usage::{self, UsageFilter, UsageRow};
use crate::service::{PageParams, ServiceError};

#[derive(Deserialize, Default)]
pub struct LogQuery {
    #[serde(default)]
    key_id: String,
    #[serde(default)]
    team_id: String,
    #[serde(default)]
    request_id: String,
    after: Option<String>,
}

fn some(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

pub async fn show(State(dash): State<Dash>, ctx: Ctx, Query(q): Query<LogQuery>) -> PageResult {
    let list = usage::list(
        &dash.services,
        &ctx.actor,
        PageParams {
            after: q.after.clone(),
            limit: Some(50),
        },
        UsageFilter {
            request_id: some(&q.request_id),
            key_id: some(&q.key_id),
            team_id: some(&q.team_id),
        },
    )
    .await?;
    let next = list.next_cursor.as_deref().map(|c| {
        query(&[
            ("key_id", q.key_id.as_str()),
            ("team_id", q.team_id.as_str()),
            ("request_id", q.request_id.as_str()),
            ("after", c),
        ])
    });
    let body = html! {
        form.filters method="get" action="/requests" role="search" aria-label="Filter requests" {
            div { label for="f-key" { "Key id" } input #f-key name="key_id" value=(q.key_id); }
            div { label for="f-team" { "Team id" } input #f-team name="team_id" value=(q.team_id); }
            div { label for="f-req" { "Request id" } input #f-req name="request_id" value=(q.request_id); }
            div.actions { button type="submit" { "Filter" } a href="/requests" { "Clear" } }
        }
        @if list.data.is_empty() { (layout::empty("requests")) } @else {
            div.scroll { table.log {
                thead { tr {
                    th scope="col" { "Started" } th scope="col" { "Request" } th scope="col" { "Model" }
                    th scope="col" { "Provider" } th scope="col" { "Status" } th scope="col" { "Latency" }
                    th scope="col" { "Tokens in/out" } th scope="col" { "Cost" } th scope="col" { "Attempts" }
                } }
                tbody {
                    @for r in &list.data { (row(r)) }
                }
            } }
            @if let Some(n) = next {
                nav.pager aria-label="Pages" { a href={ "/requests?" (n) } { "Next page →" } }
            }
        }
    };
    let _ = pager;
    Ok(page(&ctx, "/requests", "Requests", body))
}

fn status(r: &UsageRow) -> Markup {
    html! {
        span class={ "badge " (if r.status < 400 { "active" } else if r.status < 500 { "disabled" } else { "revoked" }) } { (r.status) }
        @if let Some(c) = &r.error_class { " " small { (c) } }
    }
}

fn row(r: &UsageRow) -> Markup {
    html! {
        tr {
            td { (format::when_ms(r.started_at_ms)) }
            th scope="row" { a href={ "/requests/" (r.request_id) } { code { (r.request_id) } } }
            td { (r.requested_model) @if r.served_model != r.requested_model && !r.served_model.is_empty() { " → " (r.served_model) } }
            td { (r.provider_id) }
            td { (status(r)) }
            td { (format::ms(r.latency_us)) }
            td { (format::count(r.input_tokens)) " / " (format::count(r.output_tokens)) }
            td { (format::usd(r.cost_micros)) }
            td { (r.attempts.len()) @if r.fallback_used { " (fallback)" } }
        }
    }
}

pub async fn detail(State(dash): State<Dash>, ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let found = usage::list(
        &dash.services,
        &ctx.actor,
        PageParams {
            after: None,
            limit: Some(1),
        },
        UsageFilter {
            request_id: Some(id.clone()),
            ..Default::default()
        },
    )
    .await?
    .data
    .into_iter()
    .next()
    .ok_or_else(|| Failure::from(ServiceError::NotFound(format!("request `{id}`"))))?;
    let r = &found;
    let body = html! {
        dl.facts {
            dt { "Request id" } dd { code { (r.request_id) } }
            dt { "Started" } dd { (format::when_ms(r.started_at_ms)) }
            dt { "Status" } dd { (status(r)) @if !r.error_message.is_empty() { " — " (r.error_message) } }
            dt { "Endpoint" } dd { (r.endpoint) @if r.streamed { " (streamed)" } }
            dt { "Model" } dd { (r.requested_model) @if !r.served_model.is_empty() { " → served by " (r.served_model) } }
            dt { "Key" } dd { code { (r.key_id) } }
            dt { "Team" } dd { code { (r.team_id) } }
            dt { "Application / environment" } dd { (r.application) " / " (r.environment) }
            dt { "Latency (first byte)" } dd { (format::ms(r.latency_us)) " (" (format::ms(r.ttfb_us)) ")" }
            dt { "Tokens" } dd { (format::count(r.input_tokens)) " in, " (format::count(r.output_tokens)) " out" @if r.estimated { " (estimated)" } }
            dt { "Cost" } dd { (format::usd(r.cost_micros)) @if !r.cost_flag.is_empty() { " (" (r.cost_flag) ")" } }
            dt { "Node" } dd { code { (r.node_id) } }
        }
        section aria-labelledby="attempts" {
            h2 #attempts { "Attempts" }
            @if r.attempts.is_empty() { p.empty { "No upstream attempt: the gateway answered itself." } } @else {
                div.scroll { table.attempts {
                    thead { tr { th scope="col" { "#" } th scope="col" { "Deployment" } th scope="col" { "Model" } th scope="col" { "Upstream status" } th scope="col" { "Error class" } th scope="col" { "Latency" } } }
                    tbody {
                        @for (i, a) in r.attempts.iter().enumerate() {
                            tr {
                                th scope="row" { (i + 1) }
                                td { code { (a.deployment_id) } }
                                td { (a.model) }
                                td { @if a.status == 0 { "none" } @else { (a.status) } }
                                td { (a.error_class.map(|c| c.as_str()).unwrap_or("—")) }
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
