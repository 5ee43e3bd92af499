//! Budgets: each with its current period's spend against its amount (and what data planes hold
//! reserved), and the per-node allocations; and, for those who manage the organisation, a
//! form to create one (the admin API's `POST /budgets`).

use axum::extract::State;
use axum::response::Response;
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::super::{after_change, format, layout, page, Ctx, Dash, PageResult};
use super::{scope_value, team_label, usd_micros, ScopeChoices};
use crate::service::authz::Action;
use crate::service::budgets::{self, CreateBudget, ListBudgets, Scope};
use crate::service::ServiceError;

const ENVIRONMENTS: [&str; 3] = ["dev", "staging", "prod"];

/// The create form (shown only to an actor who may create budgets).
fn create_form(ctx: &Ctx, choices: &ScopeChoices) -> Markup {
    let envs: Vec<(String, String)> = ENVIRONMENTS
        .iter()
        .map(|e| ((*e).to_owned(), format!("environment {e}")))
        .collect();
    html! {
        section aria-labelledby="new-budget" {
            h2 #new-budget { "Create a budget" }
            form.grid method="post" action="/budgets" {
                (layout::csrf(ctx))
                div { label for="b-scope" { "Scope" } (choices.select("b-scope", ("Environments", "environment", &envs))) }
                div {
                    label for="b-amount" { "Amount (USD)" }
                    input #b-amount name="amount" required inputmode="decimal" placeholder="100.00";
                }
                div {
                    label for="b-period" { "Period" }
                    select #b-period name="period" {
                        @for p in ["month", "week", "day", "total"] { option value=(p) { (p) } }
                    }
                }
                div {
                    label for="b-enforcement" { "Enforcement" }
                    select #b-enforcement name="enforcement" aria-describedby="b-enforcement-hint" {
                        option value="hard" { "hard" } option value="soft" { "soft" }
                    }
                    small #b-enforcement-hint { "Hard refuses requests past the amount; soft only alerts." }
                }
                div {
                    label for="b-unreachable" { "When the control plane is unreachable" }
                    select #b-unreachable name="when_unreachable" {
                        option value="fail_closed" { "fail closed" } option value="fail_open" { "fail open" }
                    }
                }
                div {
                    label for="b-webhook" { "Alert webhook (optional)" }
                    input #b-webhook type="url" name="alert_webhook_url" placeholder="https://…";
                }
                div.actions { button type="submit" { "Create budget" } }
            }
        }
    }
}

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
    let form = if ctx.actor.may(Action::ManageOrg) {
        Some(create_form(&ctx, &ScopeChoices::load(s, &ctx.actor).await?))
    } else {
        None
    };
    let body = html! {
        @if let Some(f) = form { (f) }
        h2 #budget-list { "Budgets" }
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

#[derive(Deserialize)]
pub struct BudgetForm {
    scope: String,
    amount: String,
    period: String,
    enforcement: String,
    when_unreachable: String,
    #[serde(default)]
    alert_webhook_url: String,
}

/// The form's scope as the service's: one of key, team, user or environment.
fn scope(v: &str) -> Result<Scope, ServiceError> {
    let bad = || ServiceError::invalid("scope", "choose a team, key, user or environment");
    let (kind, id) = scope_value(v).ok_or_else(bad)?;
    let id = Some(id.to_owned());
    Ok(match kind {
        "team" => Scope {
            team_id: id,
            ..Scope::default()
        },
        "key" => Scope {
            key_id: id,
            ..Scope::default()
        },
        "user" => Scope {
            user_id: id,
            ..Scope::default()
        },
        "environment" => Scope {
            environment: id,
            ..Scope::default()
        },
        _ => return Err(bad()),
    })
}

pub async fn create(State(dash): State<Dash>, ctx: Ctx, Form(f): Form<BudgetForm>) -> Response {
    let outcome = async {
        let amount_micros = usd_micros(&f.amount).ok_or_else(|| {
            ServiceError::invalid("amount", "a dollar amount, at most six decimals")
        })?;
        let input = CreateBudget {
            scope: scope(&f.scope)?,
            amount_micros,
            period: f.period,
            enforcement: f.enforcement,
            when_unreachable: Some(f.when_unreachable),
            fail_open_allowance_micros: 0,
            alert_webhook_url: Some(f.alert_webhook_url),
        };
        let b = budgets::create(&dash.services, &ctx.actor, input).await?;
        Ok((
            format!(
                "Budget of {} per {} created.",
                format::usd(b.amount_micros),
                b.period
            ),
            None,
        ))
    }
    .await;
    after_change(&dash, &ctx, "/budgets", outcome).await
}
