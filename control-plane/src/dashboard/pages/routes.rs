//! Routes (model aliases) with their deployments, each with its live health across the fleet
//! (`service::fleet`, the reports connected data planes send every few seconds).

use axum::extract::State;
use maud::html;

use super::super::{layout, page, Ctx, Dash, PageResult};
use crate::service::{fleet, providers, routes, PageParams};

fn all() -> PageParams {
    PageParams {
        after: None,
        limit: Some(PageParams::MAX_LIMIT),
    }
}

pub async fn show(State(dash): State<Dash>, ctx: Ctx) -> PageResult {
    let s = &dash.services;
    let list = routes::list(s, &ctx.actor, all()).await?.data;
    let provs = providers::list(s, &ctx.actor, all()).await?.data;
    let health = fleet::deployments(s, &ctx.actor)?;
    let provider_name = |id: &str| -> String {
        provs
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| id.to_owned())
    };
    let body = html! {
        @if list.is_empty() { (layout::empty("routes")) }
        @for r in &list {
            section.card aria-labelledby={ "route-" (r.id) } {
                h2 id={ "route-" (r.id) } { code { (r.alias) } }
                p.meta {
                    "Load balancing: " (r.policy.lb.as_deref().unwrap_or("weighted"))
                    " · retries: " (r.policy.max_retries.unwrap_or(1))
                    " · missing price: " (r.policy.missing_price.as_deref().unwrap_or("reject"))
                    @if !r.fallbacks.is_empty() { " · fallbacks: " (r.fallbacks.join(" → ")) }
                }
                div.scroll { table {
                    caption.sr-only { "Deployments of " (r.alias) }
                    thead { tr {
                        th scope="col" { "Provider" } th scope="col" { "Model" } th scope="col" { "Tier" } th scope="col" { "Weight" }
                        th scope="col" { "Health" } th scope="col" { "Nodes reporting" } th scope="col" { "Ejected" } th scope="col" { "Rate limited" }
                        th scope="col" { "In flight" } th scope="col" { "TTFB (avg)" }
                    } }
                    tbody {
                        @for d in &r.deployments {
                            @let id = format!("{}/{}", d.provider_id, d.model);
                            @let h = health.iter().find(|h| h.deployment_id == id);
                            tr {
                                th scope="row" { (provider_name(&d.provider_id)) }
                                td { code { (d.model) } }
                                td { (d.tier) }
                                td { (d.weight) }
                                td {
                                    @match h {
                                        None => span.badge.unknown { "not yet used" },
                                        Some(h) if !h.available_somewhere() => span.badge.revoked { "down" },
                                        Some(h) if h.nodes_ejected + h.nodes_rate_limited > 0 => span.badge.disabled { "degraded" },
                                        Some(_) => span.badge.active { "healthy" },
                                    }
                                }
                                td { (h.map(|h| h.nodes_reporting).unwrap_or(0)) }
                                td { (h.map(|h| h.nodes_ejected).unwrap_or(0)) }
                                td { (h.map(|h| h.nodes_rate_limited).unwrap_or(0)) }
                                td { (h.map(|h| h.in_flight).unwrap_or(0)) }
                                td { @match h.and_then(|h| h.ttfb_ewma_ms) { Some(ms) => { (format!("{ms:.1} ms")) }, None => "—" } }
                            }
                        }
                    }
                } }
            }
        }
    };
    Ok(page(&ctx, "/routes", "Routes", body))
}
