//! Budgets: each with its current period's spend against its amount (and what data planes hold
//! reserved), and the per-node allocations.

use axum::extract::State;
use maud::{html, Markup};

use super::super::{format, layout, page, Ctx, Dash, PageResult};
use super::team_label;
use crate::service::budgets::{self, ListBudgets, Scope};

/// A scope as words, a team named by its name.
pub(super) fn scope_label(scope: &Scope, teams: &[(String, String)]) -> Markup {
    html! {
        @if let Some(k) = &scope.key_id { "key " code { (k) } }
        @else if let Some(t) = &scope.team_id { "team " (team_label(teams, t)) }
        @else if let Some(u) = &scope.user_id { "user " code { (u) } }
        @else if let Some(e) = &scope.environment { "environment " (e) }
        @else { "organisation" }
    }
}

pub async fn show(State(dash): State<Dash>, ctx: Ctx) -> PageResult {
    let s = &dash.services;
    let list = budgets::list(
        s,
        &ctx.actor,
        ListBudgets {
            limit: Some(1000),
            ..Default::default()
        },
    )
    .await?
    .data;
    let teams = super::team_names(s, &ctx.actor).await?;
    let body = html! {
        @if list.is_empty() { (layout::empty("budgets")) } @else {
            div.scroll { table {
                thead { tr {
                    th scope="col" { "Scope" } th scope="col" { "Period" } th scope="col" { "Enforcement" }
                    th scope="col" { "Spent / amount" } th scope="col" { "Reserved" } th scope="col" { "Remaining" }
                    th scope="col" { "Nodes holding grants" }
                } }
                tbody {
                    @for b in &list {
                        tr {
                            th scope="row" { (scope_label(&b.scope, &teams)) }
                            td { (b.period) " from " (format::when_ms(b.period_start * 1000)) }
                            td { (b.enforcement) @if b.enforcement == "hard" { " (" (b.when_unreachable) ")" } }
                            td {
                                meter min="0" max=(b.amount_micros.max(1)) high=(b.amount_micros / 10 * 8) value=(b.spent_micros.min(b.amount_micros))
                                    aria-label={ "Spent " (format::usd(b.spent_micros)) " of " (format::usd(b.amount_micros)) } {}
                                " " (format::usd(b.spent_micros)) " / " (format::usd(b.amount_micros))
                                " (" (format::percent(b.spent_micros, b.amount_micros)) ")"
                            }
                            td { (format::usd(b.reserved_micros)) }
                            td { (format::usd(b.remaining_micros)) }
                            td {
                                @if b.allocations.is_empty() { "—" } @else {
                                    ul.plain { @for a in &b.allocations {
                                        li { code { (a.node) } ": " (format::usd(a.consumed_micros)) " of " (format::usd(a.granted_micros)) @if !a.lease_live { " (lapsed)" } }
                                    } }
                                }
                            }
                        }
                    }
                }
            } }
        }
    };
    Ok(page(&ctx, "/budgets", "Budgets", body))
}
