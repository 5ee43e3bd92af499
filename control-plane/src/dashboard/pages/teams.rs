//! Teams with their members, and users: create a team or a user (organisation admins), add a
//! member to a team (team admins).

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::super::{after_change, format, layout, page, Ctx, Dash, PageResult};
use crate::service::authz::Action;
use crate::service::{teams, users, PageParams};

fn all() -> PageParams {
    PageParams {
        after: None,
        limit: Some(PageParams::MAX_LIMIT),
    }
}

pub async fn show(State(dash): State<Dash>, ctx: Ctx) -> PageResult {
    let s = &dash.services;
    let a = &ctx.actor;
    let team_list = teams::list(s, a, all()).await?.data;
    let user_list = users::list(s, a, all()).await?.data;
    let mut members = Vec::with_capacity(team_list.len());
    for t in &team_list {
        members.push(users::members(s, a, &t.id).await?);
    }
    let manage_org = a.may(Action::ManageOrg);
    let manage_team = a.may(Action::ManageTeam);
    let user_label = |id: &str| -> String {
        user_list
            .iter()
            .find(|u| u.id == id)
            .map(|u| u.email.clone())
            .unwrap_or_else(|| id.to_owned())
    };
    let body = html! {
        @if manage_org {
            div.columns {
                section aria-labelledby="new-team" {
                    h2 #new-team { "Create a team" }
                    form.grid method="post" action="/teams" {
                        (layout::csrf(&ctx))
                        div { label for="team-name" { "Name" } input #team-name name="name" required maxlength="200"; }
                        div.actions { button type="submit" { "Create team" } }
                    }
                }
                section aria-labelledby="new-user" {
                    h2 #new-user { "Create a user" }
                    form.grid method="post" action="/users" {
                        (layout::csrf(&ctx))
                        div { label for="user-email" { "Email" } input #user-email type="email" name="email" required; }
                        div { label for="user-name" { "Name" } input #user-name name="name"; }
                        div.actions { button type="submit" { "Create user" } }
                    }
                }
            }
        }
        section aria-labelledby="team-list" {
            h2 #team-list { "Teams" }
            @if team_list.is_empty() { (layout::empty("teams")) } @else {
                div.scroll { table {
                    thead { tr { th scope="col" { "Team" } th scope="col" { "Id" } th scope="col" { "Members" } th scope="col" { "Created" } } }
                    tbody {
                        @for (t, ms) in team_list.iter().zip(&members) {
                            tr {
                                th scope="row" { (t.name) }
                                td { code { (t.id) } }
                                td {
                                    @if ms.is_empty() { "—" } @else {
                                        ul.plain { @for m in ms { li { (user_label(&m.user_id)) " (" (m.role) ")" } } }
                                    }
                                    @if manage_team && !user_list.is_empty() {
                                        form.inline method="post" action={ "/teams/" (t.id) "/members" } {
                                            (layout::csrf(&ctx))
                                            label for={ "add-" (t.id) } { "Add member" }
                                            select id={ "add-" (t.id) } name="user_id" {
                                                @for u in &user_list { option value=(u.id) { (u.email) } }
                                            }
                                            label.sr-only for={ "role-" (t.id) } { "Role" }
                                            select id={ "role-" (t.id) } name="role" {
                                                option value="member" { "member" }
                                                option value="admin" { "admin" }
                                                option value="viewer" { "viewer" }
                                            }
                                            button.secondary type="submit" { "Add" }
                                        }
                                    }
                                }
                                td { (format::when(&t.created_at)) }
                            }
                        }
                    }
                } }
            }
        }
        section aria-labelledby="user-list" {
            h2 #user-list { "Users" }
            @if user_list.is_empty() { (layout::empty("users")) } @else {
                div.scroll { table {
                    thead { tr { th scope="col" { "Email" } th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Created" } } }
                    tbody {
                        @for u in &user_list {
                            tr { th scope="row" { (u.email) } td { (u.name) } td { code { (u.id) } } td { (format::when(&u.created_at)) } }
                        }
                    }
                } }
            }
        }
    };
    Ok(page(&ctx, "/teams", "Teams & users", body))
}

#[derive(Deserialize)]
pub struct TeamForm {
    name: String,
}

pub async fn create_team(State(dash): State<Dash>, ctx: Ctx, Form(f): Form<TeamForm>) -> Response {
    let outcome = teams::create(
        &dash.services,
        &ctx.actor,
        teams::CreateTeam { name: f.name },
    )
    .await
    .map(|t| (format!("Team “{}” created.", t.name), None));
    after_change(&dash, &ctx, "/teams", outcome).await
}

#[derive(Deserialize)]
pub struct UserForm {
    email: String,
    #[serde(default)]
    name: String,
}

pub async fn create_user(State(dash): State<Dash>, ctx: Ctx, Form(f): Form<UserForm>) -> Response {
    let input = users::CreateUser {
        email: f.email,
        name: (!f.name.trim().is_empty()).then_some(f.name),
    };
    let outcome = users::create(&dash.services, &ctx.actor, input)
        .await
        .map(|u| (format!("User {} created.", u.email), None));
    after_change(&dash, &ctx, "/teams", outcome).await
}

#[derive(Deserialize)]
pub struct MemberForm {
    user_id: String,
    role: String,
}

pub async fn add_member(
    State(dash): State<Dash>,
    ctx: Ctx,
    Path(team_id): Path<String>,
    Form(f): Form<MemberForm>,
) -> Response {
    let input = users::AddMember {
        user_id: f.user_id,
        role: f.role,
    };
    let outcome = users::add_member(&dash.services, &ctx.actor, &team_id, input)
        .await
        .map(|m| (format!("Added as {} of the team.", m.role), None));
    after_change(&dash, &ctx, "/teams", outcome).await
}
