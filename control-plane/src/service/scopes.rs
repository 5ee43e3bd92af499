//! Who may see a budget or a rate limit: the one authorisation rule for both, from the owner
//! of the scope it names (`modelgate_shared::scope`). An organisation-wide actor sees every
//! one; a team-scoped actor sees only those scoped to its team or to a key of its team. A user,
//! environment or model-alias scope counts spend across teams, so it is the organisation's:
//! a team-scoped actor gets "not found" for it, as for another team's.

use modelgate_shared::scope::{ScopeKindOwner, ScopeOwner};
use sea_orm::sea_query::{Condition, Query};
use sea_orm::{ColumnTrait, EntityTrait};

use super::authz::Actor;
use super::{ServiceError, Services};
use crate::store::api_key;

/// The stored name of the key and team scope kinds (the same for budgets and rate limits).
const KEY: &str = "key";
const TEAM: &str = "team";

/// The owner of a stored scope (`scope_kind`, `scope_id`); a kind this build does not know is
/// the organisation's, so it stays hidden from team-scoped actors.
pub(crate) fn owner_of<'a, K>(kind: &str, id: &'a str) -> ScopeOwner<'a>
where
    K: ScopeKindOwner + std::str::FromStr,
{
    kind.parse::<K>()
        .map_or(ScopeOwner::Organisation, |k| k.owner(id))
}

/// Fails with not-found (`what`) unless `actor` may see a resource whose scope has `owner`.
pub(crate) async fn require_visible(
    s: &Services,
    actor: &Actor,
    owner: ScopeOwner<'_>,
    what: &str,
) -> Result<(), ServiceError> {
    let Some(own) = actor.scope() else {
        return Ok(());
    };
    let team = match owner {
        ScopeOwner::Team(team) => Some(team.to_owned()),
        ScopeOwner::Key(key) => api_key::Entity::find_by_id(key)
            .one(&s.db)
            .await?
            .map(|k| k.team_id),
        ScopeOwner::Organisation => None,
    };
    if team.as_deref() == Some(own) {
        Ok(())
    } else {
        Err(ServiceError::NotFound(what.to_owned()))
    }
}

/// The rows of a list a team-scoped actor may see (the same rule as [`require_visible`]):
/// scoped to `team`, or to a key of `team`.
pub(crate) fn visible_to_team<C: ColumnTrait>(kind: C, id: C, team: &str) -> Condition {
    let team_keys = Query::select()
        .column(api_key::Column::Id)
        .from(api_key::Entity)
        .and_where(api_key::Column::TeamId.eq(team))
        .to_owned();
    Condition::any()
        .add(Condition::all().add(kind.eq(TEAM)).add(id.eq(team)))
        .add(
            Condition::all()
                .add(kind.eq(KEY))
                .add(id.in_subquery(team_keys)),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelgate_shared::limits::LimitScope;
    use modelgate_shared::quota::ScopeKind;

    #[test]
    fn budgets_and_limits_store_key_and_team_scopes_under_the_same_names() {
        assert_eq!(ScopeKind::Key.as_str(), KEY);
        assert_eq!(LimitScope::Key.as_str(), KEY);
        assert_eq!(ScopeKind::Team.as_str(), TEAM);
        assert_eq!(LimitScope::Team.as_str(), TEAM);
    }

    #[test]
    fn an_unknown_stored_kind_belongs_to_the_organisation() {
        assert_eq!(
            owner_of::<ScopeKind>("galaxy", "x"),
            ScopeOwner::Organisation
        );
        assert_eq!(owner_of::<LimitScope>("key", "k"), ScopeOwner::Key("k"));
    }
}
