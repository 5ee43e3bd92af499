//! Who may do what. Every service function that reads or changes state takes the [`Actor`] the
//! admin API authenticated and asks it first; handlers never decide.
//!
//! | action        | owner | admin | member | viewer | billing |
//! |---------------|-------|-------|--------|--------|---------|
//! | `ReadConfig`  | yes   | yes   | yes    | yes    | no      |
//! | `ManageKeys`  | yes   | yes   | yes    | no     | no      |
//! | `ManageTeam`  | yes   | yes   | no     | no     | no      |
//! | `ManageOrg`   | yes¹  | yes¹  | no     | no     | no      |
//! | `ReadUsage`   | yes   | yes   | yes    | yes    | yes     |
//! | `ReadAudit`   | yes   | yes   | no     | no     | no      |
//! | `ReadQuarantine` | yes¹ | yes¹ | no    | no     | yes¹    |
//! | `ReadBilling` | yes   | yes   | no     | no     | yes     |
//! | `ManageBilling` | yes¹ | yes¹  | no     | no     | yes¹    |
//!
//! ¹ only without a team scope; also the only actors who read export sinks (their URLs may
//! name a billing system's credentials). A team-scoped actor sees and changes only its own
//! team's resources; anything of another team is reported as not found, so existence does not
//! leak. A budget or rate limit is its team's when it names the team or one of its keys, the
//! organisation's otherwise (`super::scopes`). Nobody grants, or revokes, a role above their own.

use std::str::FromStr;

use serde::Serialize;

use super::ServiceError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
    Billing,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Owner,
        Role::Admin,
        Role::Member,
        Role::Viewer,
        Role::Billing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
            Role::Billing => "billing",
        }
    }

    /// Rank for "may not grant more than you have": owner > admin > member > viewer, billing.
    fn rank(self) -> u8 {
        match self {
            Role::Owner => 4,
            Role::Admin => 3,
            Role::Member => 2,
            Role::Viewer | Role::Billing => 1,
        }
    }
}

impl FromStr for Role {
    type Err = ServiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                ServiceError::invalid(
                    "role",
                    "must be one of owner, admin, member, viewer, billing",
                )
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Teams, keys, providers, models, routes, nodes, budgets, rate limits: read.
    ReadConfig,
    /// Create, update, rotate, disable, revoke gateway keys.
    ManageKeys,
    /// Team membership and team-scoped admin tokens.
    ManageTeam,
    /// Organisation-wide resources: teams, users, providers, models, routes, sinks, tokens.
    ManageOrg,
    /// Usage events and aggregates.
    ReadUsage,
    ReadAudit,
    /// Usage events ingest quarantined: they name keys and teams of the whole organisation.
    ReadQuarantine,
    /// A team's prepaid balance, its history and its monthly statements.
    ReadBilling,
    /// Top-ups and adjustments of a team's prepaid balance.
    ManageBilling,
}

/// The authenticated caller of a service function.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `token` or `system`.
    pub kind: &'static str,
    pub id: String,
    pub role: Role,
    /// Set: the actor acts only within this team.
    pub team_id: Option<String>,
    /// The admin request's id, recorded in the audit log.
    pub request_id: String,
}

impl Actor {
    /// The control plane itself (bootstrap, the `up` demo seed, CLI maintenance).
    pub fn system() -> Actor {
        Actor {
            kind: "system",
            id: "system".into(),
            role: Role::Owner,
            team_id: None,
            request_id: String::new(),
        }
    }

    pub fn may(&self, action: Action) -> bool {
        use Role::*;
        match action {
            Action::ReadConfig => self.role != Billing,
            Action::ManageKeys => matches!(self.role, Owner | Admin | Member),
            Action::ManageTeam | Action::ReadAudit => matches!(self.role, Owner | Admin),
            Action::ManageOrg => matches!(self.role, Owner | Admin) && self.team_id.is_none(),
            Action::ReadUsage => true,
            Action::ReadQuarantine | Action::ManageBilling => {
                matches!(self.role, Owner | Admin | Billing) && self.team_id.is_none()
            }
            Action::ReadBilling => matches!(self.role, Owner | Admin | Billing),
        }
    }

    pub fn require(&self, action: Action) -> Result<(), ServiceError> {
        if self.may(action) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(format!(
                "a {} token{} may not do this",
                self.role.as_str(),
                if self.team_id.is_some() {
                    " scoped to a team"
                } else {
                    ""
                }
            )))
        }
    }

    /// Fails with not-found when the actor is scoped to another team than `team_id`.
    pub fn require_team(&self, team_id: &str, what: &str) -> Result<(), ServiceError> {
        match &self.team_id {
            Some(own) if own != team_id => Err(ServiceError::NotFound(what.to_owned())),
            _ => Ok(()),
        }
    }

    /// The team a scoped actor is limited to.
    pub fn scope(&self) -> Option<&str> {
        self.team_id.as_deref()
    }

    /// May this actor hand `role` to someone else (or take a token of that role away)?
    pub fn may_grant(&self, role: Role) -> bool {
        role.rank() <= self.role.rank()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(role: Role, team: Option<&str>) -> Actor {
        Actor {
            kind: "token",
            id: "t".into(),
            role,
            team_id: team.map(str::to_owned),
            request_id: String::new(),
        }
    }

    #[test]
    fn a_team_scope_hides_other_teams_and_forbids_org_changes() {
        let scoped = actor(Role::Owner, Some("team-a"));
        assert!(scoped.require_team("team-a", "key").is_ok());
        assert!(matches!(
            scoped.require_team("team-b", "key"),
            Err(ServiceError::NotFound(_))
        ));
        assert!(!scoped.may(Action::ManageOrg));
        assert!(scoped.may(Action::ManageTeam));
        assert!(actor(Role::Owner, None).may(Action::ManageOrg));
    }

    #[test]
    fn billing_reads_usage_only_and_viewers_change_nothing() {
        let billing = actor(Role::Billing, None);
        assert!(billing.may(Action::ReadUsage));
        assert!(!billing.may(Action::ReadConfig));
        let viewer = actor(Role::Viewer, None);
        for a in [
            Action::ManageKeys,
            Action::ManageTeam,
            Action::ManageOrg,
            Action::ReadAudit,
        ] {
            assert!(!viewer.may(a), "{a:?}");
        }
    }

    #[test]
    fn billing_reads_balances_and_statements_and_only_org_wide_billing_and_admins_credit() {
        for (role, team, read, credit) in [
            (Role::Owner, None, true, true),
            (Role::Admin, Some("team-a"), true, false),
            (Role::Billing, None, true, true),
            (Role::Billing, Some("team-a"), true, false),
            (Role::Member, None, false, false),
            (Role::Viewer, Some("team-a"), false, false),
        ] {
            let a = actor(role, team);
            assert_eq!(a.may(Action::ReadBilling), read, "{role:?} {team:?}");
            assert_eq!(a.may(Action::ManageBilling), credit, "{role:?} {team:?}");
        }
    }

    #[test]
    fn only_org_wide_admins_and_billing_read_the_usage_quarantine() {
        for (role, team, may) in [
            (Role::Owner, None, true),
            (Role::Admin, None, true),
            (Role::Billing, None, true),
            (Role::Member, None, false),
            (Role::Viewer, None, false),
            (Role::Owner, Some("team-a"), false),
            (Role::Billing, Some("team-a"), false),
        ] {
            assert_eq!(
                actor(role, team).may(Action::ReadQuarantine),
                may,
                "{role:?} {team:?}"
            );
        }
    }
}
