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

/// One group of a scope select: its label, the kind its values name, and (id, text) pairs.
pub(super) type ScopeGroup<'a> = (&'a str, &'a str, &'a [(String, String)]);

/// Who a budget or a rate limit may be set on, for the create forms' scope select: every team,
/// key and user the actor may see, by name (values `kind:id`).
pub(super) struct ScopeChoices {
    pub teams: Vec<(String, String)>,
    pub keys: Vec<(String, String)>,
    pub users: Vec<(String, String)>,
}

impl ScopeChoices {
    pub(super) async fn load(s: &Services, actor: &Actor) -> Result<ScopeChoices, ServiceError> {
        let all = || PageParams {
            after: None,
            limit: Some(PageParams::MAX_LIMIT),
        };
        let keys =
            crate::service::keys::list(s, actor, all(), crate::service::keys::KeyFilter::default())
                .await?
                .data
                .into_iter()
                .map(|k| (k.id, format!("{} ({}…)", k.name, k.prefix)))
                .collect();
        let users = crate::service::users::list(s, actor, all())
            .await?
            .data
            .into_iter()
            .map(|u| (u.id, u.email))
            .collect();
        Ok(ScopeChoices {
            teams: team_names(s, actor).await?,
            keys,
            users,
        })
    }

    /// The scope select (`name="scope"`), grouped by kind; `extra` adds a group of its own
    /// (environments for budgets, model aliases for rate limits).
    pub(super) fn select(&self, id: &str, extra: ScopeGroup<'_>) -> Markup {
        let groups: [ScopeGroup<'_>; 4] = [
            ("Teams", "team", &self.teams),
            ("Keys", "key", &self.keys),
            ("Users", "user", &self.users),
            extra,
        ];
        html! {
            select id=(id) name="scope" required {
                @for (label, kind, items) in groups {
                    @if !items.is_empty() {
                        optgroup label=(label) {
                            @for (value, text) in items {
                                option value={ (kind) ":" (value) } { (text) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A scope select's value, `kind:id`, split.
pub(super) fn scope_value(v: &str) -> Option<(&str, &str)> {
    v.split_once(':').filter(|(_, id)| !id.is_empty())
}

/// A dollar amount as typed (`12`, `12.5`, `0.000001`) in micro-USD, exactly (no float): at
/// most six decimals, not negative.
pub(super) fn usd_micros(v: &str) -> Option<i64> {
    let v = v.trim().trim_start_matches('$');
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    if whole.is_empty() && frac.is_empty()
        || frac.len() > 6
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    whole.checked_mul(1_000_000)?.checked_add(frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_as_typed_become_exact_micros() {
        for (typed, micros) in [
            ("12", Some(12_000_000)),
            ("12.5", Some(12_500_000)),
            ("$0.000001", Some(1)),
            (".25", Some(250_000)),
            ("5.", Some(5_000_000)),
            ("1.0000001", None),
            ("-1", None),
            ("1e3", None),
            ("", None),
            (".", None),
            ("99999999999999", None),
        ] {
            assert_eq!(usd_micros(typed), micros, "{typed}");
        }
    }

    #[test]
    fn a_scope_value_names_its_kind_and_id() {
        assert_eq!(scope_value("team:t1"), Some(("team", "t1")));
        assert_eq!(scope_value("team:"), None);
        assert_eq!(scope_value("t1"), None);
    }
}
