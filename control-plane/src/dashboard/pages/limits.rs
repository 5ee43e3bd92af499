//! Rate limits with their fleet usage now: per measure, the current window's limit, what data
//! planes were granted and what they report taken, and each node's share.

use axum::extract::State;
use maud::html;

use super::super::{format, layout, page, Ctx, Dash, PageResult};
use super::team_label;
use crate::service::{limits, PageParams};

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
    let body = html! {
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
