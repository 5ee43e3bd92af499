//! Provider accounts: the list (whether a credential is stored, never any of it) and create (the
//! credential typed into a password field, sealed at rest by the service).

use axum::extract::State;
use axum::response::Response;
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::super::{after_change, format, layout, page, Ctx, Dash, PageResult};
use crate::service::authz::Action;
use crate::service::{providers, PageParams};

const KINDS: &[&str] = &[
    "openai",
    "openai-compatible",
    "azure-openai",
    "anthropic",
    "gemini",
    "mock",
];

pub async fn show(State(dash): State<Dash>, ctx: Ctx) -> PageResult {
    let list = providers::list(
        &dash.services,
        &ctx.actor,
        PageParams {
            after: None,
            limit: Some(PageParams::MAX_LIMIT),
        },
    )
    .await?
    .data;
    let body = html! {
        @if ctx.actor.may(Action::ManageOrg) {
            section aria-labelledby="new-provider" {
                h2 #new-provider { "Add a provider account" }
                form.grid method="post" action="/providers" {
                    (layout::csrf(&ctx))
                    div { label for="p-name" { "Name" } input #p-name name="name" required maxlength="200"; }
                    div {
                        label for="p-kind" { "Kind" }
                        select #p-kind name="kind" { @for k in KINDS { option value=(k) { (k) } } }
                    }
                    div { label for="p-url" { "Base URL" } input #p-url type="url" name="base_url" placeholder="default for the kind"; }
                    div {
                        label for="p-cred" { "Credential" }
                        input #p-cred type="password" name="credential" autocomplete="off" aria-describedby="p-cred-hint";
                        small #p-cred-hint { "Sealed at rest; never shown again." }
                    }
                    div.actions { button type="submit" { "Add provider" } }
                }
            }
        }
        section aria-labelledby="provider-list" {
            h2 #provider-list { "Providers" }
            @if list.is_empty() { (layout::empty("providers")) } @else {
                div.scroll { table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Base URL" } th scope="col" { "Credential" } th scope="col" { "Id" } th scope="col" { "Created" } } }
                    tbody {
                        @for p in &list {
                            tr {
                                th scope="row" { (p.name) }
                                td { (p.kind) }
                                td { code { (p.base_url) } }
                                td { @if p.credential_last4.is_empty() { "none" } @else { "stored (sealed)" } }
                                td { code { (p.id) } }
                                td { (format::when(&p.created_at)) }
                            }
                        }
                    }
                } }
            }
        }
    };
    Ok(page(&ctx, "/providers", "Providers", body))
}

#[derive(Deserialize)]
pub struct ProviderForm {
    name: String,
    kind: String,
    #[serde(default)]
    base_url: String,
    #[serde(default)]
    credential: String,
}

pub async fn create(State(dash): State<Dash>, ctx: Ctx, Form(f): Form<ProviderForm>) -> Response {
    let input = providers::CreateProvider {
        name: f.name,
        kind: f.kind,
        base_url: (!f.base_url.trim().is_empty()).then(|| f.base_url.trim().to_owned()),
        credential: (!f.credential.is_empty()).then_some(f.credential),
    };
    let outcome = providers::create(&dash.services, &ctx.actor, input)
        .await
        .map(|p| (format!("Provider “{}” added.", p.name), None));
    after_change(&dash, &ctx, "/providers", outcome).await
}
