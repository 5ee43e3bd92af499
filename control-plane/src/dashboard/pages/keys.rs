//! Gateway keys: the list (by page), create (the secret shown once), rotate (the new secret shown
//! once; the old one keeps working for the default grace), disable, enable, revoke.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::super::{after_change, format, layout, page, Ctx, Dash, PageResult};
use super::{pager, team_label, team_names};
use crate::service::authz::Action;
use crate::service::keys::{self, CreateKey, KeyFilter, Rotate};
use crate::service::{PageParams, ServiceError};

#[derive(Deserialize, Default)]
pub struct ListQuery {
    after: Option<String>,
}

pub async fn show(State(dash): State<Dash>, ctx: Ctx, Query(q): Query<ListQuery>) -> PageResult {
    let s = &dash.services;
    let list = keys::list(
        s,
        &ctx.actor,
        PageParams {
            after: q.after.clone(),
            limit: Some(100),
        },
        KeyFilter::default(),
    )
    .await?;
    let teams = team_names(s, &ctx.actor).await?;
    let manage = ctx.actor.may(Action::ManageKeys);
    let body = html! {
        @if manage {
            section aria-labelledby="create-key" {
                h2 #create-key { "Create a key" }
                form.grid method="post" action="/keys" {
                    (layout::csrf(&ctx))
                    div {
                        label for="key-team" { "Team" }
                        select #key-team name="team_id" required {
                            @for (id, name) in &teams {
                                option value=(id) { (name) }
                            }
                        }
                    }
                    div {
                        label for="key-name" { "Name" }
                        input #key-name name="name" required maxlength="200";
                    }
                    div {
                        label for="key-env" { "Environment" }
                        select #key-env name="environment" {
                            option value="dev" { "dev" }
                            option value="staging" { "staging" }
                            option value="prod" { "prod" }
                        }
                    }
                    div {
                        label for="key-models" { "Allowed models" }
                        input #key-models name="allowed_models" placeholder="alias, alias (empty: every model)" aria-describedby="key-models-hint";
                        small #key-models-hint { "Comma-separated model aliases." }
                    }
                    div.actions { button type="submit" { "Create key" } }
                }
            }
        }
        section aria-labelledby="key-list" {
            h2 #key-list { "Keys" }
            @if list.data.is_empty() {
                (layout::empty("keys"))
            } @else {
                div.scroll {
                    table {
                        thead { tr {
                            th scope="col" { "Name" } th scope="col" { "Prefix" } th scope="col" { "Team" }
                            th scope="col" { "Env" } th scope="col" { "Status" } th scope="col" { "Models" }
                            th scope="col" { "Created" }
                            @if manage { th scope="col" { "Actions" } }
                        } }
                        tbody {
                            @for k in &list.data {
                                tr data-key=(k.id) {
                                    th scope="row" { (k.name) }
                                    td { code { (k.prefix) "…" } }
                                    td { (team_label(&teams, &k.team_id)) }
                                    td { (k.environment) }
                                    td { span class={ "badge " (k.status) } { (k.status) } }
                                    td { @if k.allowed_models.is_empty() { "all" } @else { (k.allowed_models.join(", ")) } }
                                    td { (format::when(&k.created_at)) }
                                    @if manage {
                                        td.row-actions {
                                            @if k.revoked_at.is_none() {
                                                (action(&ctx, &k.id, &k.name, "rotate", "Rotate", None))
                                                @if k.disabled_at.is_none() {
                                                    (action(&ctx, &k.id, &k.name, "disable", "Disable", None))
                                                } @else {
                                                    (action(&ctx, &k.id, &k.name, "enable", "Enable", None))
                                                }
                                                (action(&ctx, &k.id, &k.name, "revoke", "Revoke", Some("Revoke this key for good? Every data plane refuses it within a second.")))
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                (pager("/keys", list.next_cursor.as_deref()))
            }
        }
    };
    Ok(page(&ctx, "/keys", "Keys", body))
}

fn action(
    ctx: &Ctx,
    id: &str,
    name: &str,
    verb: &str,
    label: &str,
    confirm: Option<&str>,
) -> maud::Markup {
    html! {
        form.inline method="post" action={ "/keys/" (id) "/" (verb) } data-confirm=[confirm] {
            (layout::csrf(ctx))
            button type="submit" class=(if verb == "revoke" { "danger" } else { "secondary" }) aria-label={ (label) " key " (name) } { (label) }
        }
    }
}

#[derive(Deserialize)]
pub struct CreateForm {
    team_id: String,
    name: String,
    environment: String,
    #[serde(default)]
    allowed_models: String,
}

pub async fn create(State(dash): State<Dash>, ctx: Ctx, Form(f): Form<CreateForm>) -> Response {
    let input = CreateKey {
        team_id: f.team_id,
        name: f.name,
        environment: Some(f.environment),
        allowed_models: f
            .allowed_models
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
        expires_at: None,
        owner_user_id: None,
        application: None,
        data_class: None,
        endpoint_families: Vec::new(),
        metadata: None,
        cache: None,
        traffic_class: None,
        allowed_traffic_classes: Vec::new(),
    };
    let outcome = keys::create(&dash.services, &ctx.actor, input)
        .await
        .map(|c| {
            (
                format!(
                    "Key “{}” created. Its secret is shown below once.",
                    c.key.name
                ),
                Some(c.key_secret),
            )
        });
    after_change(&dash, &ctx, "/keys", outcome).await
}

pub async fn act(
    State(dash): State<Dash>,
    ctx: Ctx,
    Path((id, verb)): Path<(String, String)>,
) -> Response {
    let s = &dash.services;
    let a = &ctx.actor;
    let outcome = match verb.as_str() {
        "rotate" => keys::rotate(
            s,
            a,
            &id,
            Rotate {
                grace_seconds: None,
            },
        )
        .await
        .map(|c| {
            (
                format!(
                    "Key “{}” rotated. The new secret is shown below once; the old one works \
                         until {}.",
                    c.key.name,
                    c.key
                        .previous_secret_expires_at
                        .as_ref()
                        .map(format::when)
                        .unwrap_or_default()
                ),
                Some(c.key_secret),
            )
        }),
        "disable" => keys::disable(s, a, &id)
            .await
            .map(|k| (format!("Key “{}” disabled.", k.name), None)),
        "enable" => keys::enable(s, a, &id)
            .await
            .map(|k| (format!("Key “{}” enabled.", k.name), None)),
        "revoke" => keys::revoke(s, a, &id)
            .await
            .map(|k| (format!("Key “{}” revoked.", k.name), None)),
        _ => Err(ServiceError::NotFound(format!("key action `{verb}`"))),
    };
    after_change(&dash, &ctx, "/keys", outcome).await
}
