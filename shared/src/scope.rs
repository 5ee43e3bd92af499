//! The scope of a budget or a rate limit as an admin names it, and who owns it. Budgets
//! ([`crate::quota::ScopeKind`]) and rate limits ([`crate::limits::LimitScope`]) both name exactly
//! one of a key, a team, a user, or an organisation-wide target (an environment, a model alias);
//! this module holds the rule for both, so the admin API reads and authorises them alike.

use crate::limits::LimitScope;
use crate::quota::ScopeKind;

/// Who owns what a scope names, for deciding which admin may see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeOwner<'a> {
    /// A key: owned by the key's team.
    Key(&'a str),
    /// A team: owned by that team.
    Team(&'a str),
    /// A user (who may belong to several teams, so the scope counts spend across teams), an
    /// environment or a model alias: the organisation's, never one team's.
    Organisation,
}

/// A scope kind of a budget or a rate limit.
pub trait ScopeKindOwner: Copy {
    /// The owner of the scope `id` of this kind names.
    fn owner(self, id: &str) -> ScopeOwner<'_>;
}

impl ScopeKindOwner for ScopeKind {
    fn owner(self, id: &str) -> ScopeOwner<'_> {
        match self {
            ScopeKind::Key => ScopeOwner::Key(id),
            ScopeKind::Team => ScopeOwner::Team(id),
            ScopeKind::User | ScopeKind::Environment => ScopeOwner::Organisation,
        }
    }
}

impl ScopeKindOwner for LimitScope {
    fn owner(self, id: &str) -> ScopeOwner<'_> {
        match self {
            LimitScope::Key => ScopeOwner::Key(id),
            LimitScope::Team => ScopeOwner::Team(id),
            LimitScope::User | LimitScope::Model => ScopeOwner::Organisation,
        }
    }
}

/// Why a request's scope fields do not name one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeChoice {
    /// No field is set (or the one set is blank).
    None,
    /// More than one field is set.
    Several,
}

/// The one scope a request names among `fields` (kind, value): exactly one must be set and not
/// blank. A create requires one; a list filter takes `Err(ScopeChoice::None)` as "no filter".
pub fn one_named<'a, K: Copy>(
    fields: &[(K, Option<&'a str>)],
) -> Result<(K, &'a str), ScopeChoice> {
    let mut named = fields
        .iter()
        .filter_map(|(kind, value)| value.map(|v| (*kind, v)));
    match (named.next(), named.next()) {
        (Some(_), Some(_)) => Err(ScopeChoice::Several),
        (Some((kind, value)), None) if !value.trim().is_empty() => Ok((kind, value)),
        _ => Err(ScopeChoice::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_non_blank_field_names_the_scope() {
        let f = |k: Option<&'static str>, t: Option<&'static str>| {
            one_named(&[(ScopeKind::Key, k), (ScopeKind::Team, t)])
        };
        assert_eq!(f(Some("k1"), None), Ok((ScopeKind::Key, "k1")));
        assert_eq!(f(None, Some("t1")), Ok((ScopeKind::Team, "t1")));
        assert_eq!(f(None, None), Err(ScopeChoice::None));
        assert_eq!(f(Some(" "), None), Err(ScopeChoice::None));
        assert_eq!(f(Some("k1"), Some("t1")), Err(ScopeChoice::Several));
    }

    #[test]
    fn keys_and_teams_have_a_team_owner_and_the_rest_belong_to_the_organisation() {
        assert_eq!(ScopeKind::Key.owner("k"), ScopeOwner::Key("k"));
        assert_eq!(ScopeKind::Team.owner("t"), ScopeOwner::Team("t"));
        assert_eq!(ScopeKind::User.owner("u"), ScopeOwner::Organisation);
        assert_eq!(
            ScopeKind::Environment.owner("prod"),
            ScopeOwner::Organisation
        );
        assert_eq!(LimitScope::Key.owner("k"), ScopeOwner::Key("k"));
        assert_eq!(LimitScope::Team.owner("t"), ScopeOwner::Team("t"));
        assert_eq!(LimitScope::User.owner("u"), ScopeOwner::Organisation);
        assert_eq!(LimitScope::Model.owner("m"), ScopeOwner::Organisation);
    }
}
