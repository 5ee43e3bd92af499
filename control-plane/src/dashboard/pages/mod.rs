//! One module per screen. Each handler takes the signed-in [`Ctx`](super::Ctx), calls the
//! service functions the admin API calls with its actor, and renders.

pub mod budgets;
pub mod fleet;
pub mod keys;
pub mod limits;
pub mod login;
pub mod overview;
pub mod providers;
pub mod requests;
pub mod routes;
pub mod teams;

use maud::{html, Markup};

use crate::service::authz::Actor;
use crate::service::{teams as team_service, PageParams, ServiceError, Services};

/// Team ids and names the actor may see (a scoped actor: its own), for labels and selects.
pub(super) async fn team_names(
    s: &Services,
    actor: &Actor,
) -> Result<Vec<(String, String)>, ServiceError> {
    let page = team_service::list(
        s,
        actor,
        PageParams {
            after: None,
            limit: Some(PageParams::MAX_LIMIT),
        },
    )
    .await?;
    Ok(page.data.into_iter().map(|t| (t.id, t.name)).collect())
}

/// The name of team `id` among `teams`, else the id itself.
pub(super) fn team_label<'a>(teams: &'a [(String, String)], id: &'a str) -> &'a str {
    teams
        .iter()
        .find(|(t, _)| t == id)
        .map(|(_, n)| n.as_str())
        .unwrap_or(id)
}

/// A "next page" link when the list continues.
pub(super) fn pager(path: &str, next: Option<&str>) -> Markup {
    html! {
        @if let Some(cursor) = next {
            nav.pager aria-label="Pages" {
                a href={ (path) "?" (query(&[("after", cursor)])) } { "Next page →" }
            }
        }
    }
}

/// A URL query string, each value percent-encoded.
pub(super) fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}
