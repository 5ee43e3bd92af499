//! The fleet: every data-plane node that has connected, with its software version, the config
//! version it applied against the latest published one, its status, the control-plane replica
//! it is connected to (every replica shows the whole fleet) and when it was last seen;
//! then each deployment's health as the connected nodes report it.

use axum::extract::State;
use maud::html;

use super::super::{format, layout, page, Ctx, Dash, PageResult};
use crate::service::{fleet, nodes, PageParams};

pub async fn show(State(dash): State<Dash>, ctx: Ctx) -> PageResult {
    let s = &dash.services;
    let list = nodes::list(
        s,
        &ctx.actor,
        PageParams {
            after: None,
            limit: Some(PageParams::MAX_LIMIT),
        },
    )
    .await?
    .data;
    let health = fleet::deployments(s, &ctx.actor)?;
    let latest = s.publisher.latest().map(|p| p.snapshot.version as i64);
    let connected = list.iter().filter(|n| n.connected).count();
    let body = html! {
        p.meta {
            "Latest published config version: " strong { (latest.map(|v| v.to_string()).unwrap_or_else(|| "none".into())) }
            " · nodes connected: " strong { (connected) } " of " (list.len())
        }
        section aria-labelledby="node-list" {
            h2 #node-list { "Nodes" }
            @if list.is_empty() { (layout::empty("nodes")) } @else {
                div.scroll { table {
                    thead { tr {
                        th scope="col" { "Node" } th scope="col" { "Labels" } th scope="col" { "Version" }
                        th scope="col" { "Config applied" } th scope="col" { "Status" } th scope="col" { "Connected" }
                        th scope="col" { "Control plane" } th scope="col" { "Last seen" } th scope="col" { "Last error" }
                    } }
                    tbody {
                        @for n in &list {
                            @let behind = latest.is_some_and(|v| n.applied_version < v);
                            tr {
                                th scope="row" { code { (n.node_id) } }
                                td { @for (k, v) in &n.labels { span.tag { (k) "=" (v) } " " } }
                                td { (n.software_version) }
                                td {
                                    (n.applied_version)
                                    @if behind { " " span.badge.disabled { "behind" } }
                                }
                                td { span class={ "badge " (if n.status == "acked" || n.status == "connected" { "active" } else { "disabled" }) } { (n.status) } }
                                td { @if n.connected { span.badge.active { "yes" } } @else { span.badge.unknown { "no" } } }
                                td { @match &n.replica { Some(r) => code { (r) }, None => "—" } }
                                td { (format::when(&n.last_seen)) }
                                td { (n.last_error.as_deref().unwrap_or("—")) }
                            }
                        }
                    }
                } }
            }
        }
        section aria-labelledby="deployment-health" {
            h2 #deployment-health { "Deployment health" }
            @if health.is_empty() { p.empty { "No node has reported a deployment yet." } } @else {
                div.scroll { table {
                    thead { tr { th scope="col" { "Deployment" } th scope="col" { "Nodes reporting" } th scope="col" { "Ejected on" } th scope="col" { "Rate limited on" } th scope="col" { "In flight" } th scope="col" { "Worst failure streak" } th scope="col" { "TTFB (avg)" } } }
                    tbody {
                        @for h in &health {
                            tr {
                                th scope="row" { code { (h.deployment_id) } }
                                td { (h.nodes_reporting) }
                                td { (h.nodes_ejected) }
                                td { (h.nodes_rate_limited) }
                                td { (h.in_flight) }
                                td { (h.max_consecutive_failures) }
                                td { @match h.ttfb_ewma_ms { Some(ms) => { (format!("{ms:.1} ms")) }, None => "—" } }
                            }
                        }
                    }
                } }
            }
        }
    };
    Ok(page(&ctx, "/fleet", "Fleet", body))
}
