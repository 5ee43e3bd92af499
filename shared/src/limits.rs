//! Rate limits: requests per minute, tokens per minute and concurrent requests per key,
//! team, user or model alias, held across the fleet by leases. Pure; the clock is an
//! input.
//!
//! Minutes are calendar minutes (fixed windows starting at :00 UTC), so every node and the
//! control plane agree on which window a request falls in without talking to each other.

use crate::key_view::KeyView;

/// The length of a rate window.
pub const WINDOW_SECS: i64 = 60;

/// What a rate limit is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitScope {
    Key,
    Team,
    User,
    /// Every request for one model alias, whoever makes it.
    Model,
}

/// One of the three things a rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Measure {
    /// Requests admitted per minute.
    Requests,
    /// Input plus output tokens per minute.
    Tokens,
    /// Requests in flight at once.
    Concurrent,
}

/// What a node does when its lease runs out and the control plane cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitFallback {
    /// Enforce the whole limit on this node alone: the fleet may admit up to the node count
    /// times the limit until the control plane is back.
    FailOpen,
    /// Admit nothing beyond the node's last grant.
    FailClosed,
}

names!(LimitScope { Key => "key", Team => "team", User => "user", Model => "model" });
names!(Measure { Requests => "requests", Tokens => "tokens", Concurrent => "concurrent" });
names!(LimitFallback { FailOpen => "fail_open", FailClosed => "fail_closed" });

impl Measure {
    pub const ALL: [Measure; 3] = [Measure::Requests, Measure::Tokens, Measure::Concurrent];

    /// The name a 429 gives this measure.
    pub fn limit_name(self) -> &'static str {
        match self {
            Measure::Requests => "rpm",
            Measure::Tokens => "tpm",
            Measure::Concurrent => "max_concurrent",
        }
    }

    /// Whether counts start afresh every minute (concurrency slots do not).
    pub fn windowed(self) -> bool {
        self != Measure::Concurrent
    }
}

/// The limit a request ran into, for the 429 that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub limit_id: String,
    pub measure: Measure,
    pub amount: u64,
    pub scope: LimitScope,
    pub scope_id: String,
    pub model: Option<String>,
    pub retry_after_secs: u64,
}

/// A rate limit as the snapshot carries it. A zero measure is not limited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub id: String,
    pub scope: LimitScope,
    pub scope_id: String,
    /// With a key, team or user scope: only requests for this alias count.
    pub model: Option<String>,
    pub rpm: u64,
    pub tpm: u64,
    pub max_concurrent: u32,
    pub when_unreachable: LimitFallback,
}

impl RateLimit {
    /// Whether a request made with `key` for `alias` counts against this limit.
    pub fn applies_to<K: KeyView + ?Sized>(&self, key: &K, alias: &str) -> bool {
        let id = match self.scope {
            LimitScope::Key => key.id(),
            LimitScope::Team => key.team_id(),
            LimitScope::User => key.owner_user_id(),
            LimitScope::Model => alias,
        };
        !id.is_empty() && id == self.scope_id && self.model.as_deref().is_none_or(|m| m == alias)
    }

    /// The limit on `measure` (0: not limited).
    pub fn amount(&self, measure: Measure) -> u64 {
        match measure {
            Measure::Requests => self.rpm,
            Measure::Tokens => self.tpm,
            Measure::Concurrent => u64::from(self.max_concurrent),
        }
    }

    /// The measures this limit actually limits.
    pub fn measures(&self) -> impl Iterator<Item = Measure> + '_ {
        Measure::ALL.into_iter().filter(|m| self.amount(*m) > 0)
    }
}

/// The start (unix seconds) of the minute containing `unix_secs`; 0 for a measure that is not
/// windowed.
pub fn window_start(measure: Measure, unix_secs: i64) -> i64 {
    if measure.windowed() {
        unix_secs - unix_secs.rem_euclid(WINDOW_SECS)
    } else {
        0
    }
}

/// Whole seconds until the window containing `unix_secs` ends (at least 1): what a 429 on a
/// per-minute limit puts in `retry-after`.
pub fn retry_after_secs(measure: Measure, unix_secs: i64) -> u64 {
    if measure.windowed() {
        u64::try_from(WINDOW_SECS - unix_secs.rem_euclid(WINDOW_SECS))
            .unwrap_or(1)
            .max(1)
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::ApiKey;

    fn key() -> ApiKey {
        ApiKey {
            id: "k1".into(),
            name: String::new(),
            key_hash: [0; 32],
            prefix: String::new(),
            team_id: "t1".into(),
            environment: crate::snapshot::Environment::Prod,
            allowed_models: vec![],
            revoked: false,
            expires_at: None,
            disabled: false,
            previous: None,
            owner_user_id: "u1".into(),
            application: String::new(),
            data_class: String::new(),
            endpoint_families: vec![],
            traffic_class: crate::routing::TrafficClass::Interactive,
            allowed_traffic_classes: vec![],
            cache: Default::default(),
        }
    }

    fn limit(scope: LimitScope, id: &str, model: Option<&str>) -> RateLimit {
        RateLimit {
            id: "l".into(),
            scope,
            scope_id: id.into(),
            model: model.map(str::to_owned),
            rpm: 10,
            tpm: 0,
            max_concurrent: 2,
            when_unreachable: LimitFallback::FailOpen,
        }
    }

    #[test]
    fn a_limit_applies_by_scope_and_optional_alias() {
        let k = key();
        assert!(limit(LimitScope::Key, "k1", None).applies_to(&k, "gpt"));
        assert!(limit(LimitScope::Team, "t1", None).applies_to(&k, "gpt"));
        assert!(limit(LimitScope::User, "u1", None).applies_to(&k, "gpt"));
        assert!(limit(LimitScope::Model, "gpt", None).applies_to(&k, "gpt"));
        assert!(!limit(LimitScope::Model, "gpt", None).applies_to(&k, "claude"));
        assert!(limit(LimitScope::Key, "k1", Some("gpt")).applies_to(&k, "gpt"));
        assert!(!limit(LimitScope::Key, "k1", Some("gpt")).applies_to(&k, "claude"));
        assert!(!limit(LimitScope::Team, "t2", None).applies_to(&k, "gpt"));
        let ownerless = ApiKey {
            owner_user_id: String::new(),
            ..key()
        };
        assert!(!limit(LimitScope::User, "", None).applies_to(&ownerless, "gpt"));
    }

    #[test]
    fn only_nonzero_measures_are_limited() {
        let l = limit(LimitScope::Key, "k1", None);
        assert_eq!(
            l.measures().collect::<Vec<_>>(),
            vec![Measure::Requests, Measure::Concurrent]
        );
    }

    #[test]
    fn windows_are_calendar_minutes() {
        let minute = 1_800_000_000; // a multiple of 60
        assert_eq!(window_start(Measure::Requests, minute + 59), minute);
        assert_eq!(window_start(Measure::Tokens, minute + 60), minute + 60);
        assert_eq!(window_start(Measure::Concurrent, minute + 59), 0);
        assert_eq!(retry_after_secs(Measure::Requests, minute + 59), 1);
        assert_eq!(retry_after_secs(Measure::Requests, minute), 60);
        assert_eq!(retry_after_secs(Measure::Concurrent, minute), 1);
    }
}
