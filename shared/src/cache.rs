//! The response cache's policy, as the config states it: a routing group's `policy.cache`
//! (enabled, time to live, what partitions it, whether non-deterministic requests may be
//! cached, what a hit costs) and a key's override. Both planes read these types: the control
//! plane validates and publishes them, the data plane's `cache/` applies them per request.
//!
//! A hit costs `original_cost × hit_cost_ppm / 1_000_000` micro-USD, rounded down (0 by
//! default: a cached answer is served without an upstream call, so it is not upstream spend).

/// Whose requests may share a cached answer. The cache key includes the identity this names,
/// so a request never receives an answer cached for another team (or key, or user).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum CachePartition {
    /// One team's keys share answers; another team never sees them (the default).
    #[default]
    Team,
    /// Each key has its own answers.
    Key,
    /// Each key owner (user) has their own; a key without an owner is its own partition.
    User,
    /// The whole organisation shares answers (only for routes whose prompts carry nothing
    /// private, e.g. a public FAQ bot or an eval set).
    None,
}

impl CachePartition {
    pub const ALL: [CachePartition; 4] = [Self::Team, Self::Key, Self::User, Self::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Team => "team",
            Self::Key => "key",
            Self::User => "user",
            Self::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// A routing group's response cache (off unless `enabled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    pub enabled: bool,
    /// Seconds a stored answer is served.
    pub ttl_s: u32,
    pub partition: CachePartition,
    /// Cache answers to requests that are not deterministic (neither `temperature` 0 nor a
    /// `seed`). Off by default: providers default temperature to 1, so replaying one sampled
    /// answer changes what the client would have received.
    pub allow_non_deterministic: bool,
    /// A hit costs this many millionths of the original answer's cost.
    pub hit_cost_ppm: u32,
}

impl CachePolicy {
    /// The default time to live when a policy names none: one hour.
    pub const DEFAULT_TTL_S: u32 = 3600;
    /// The longest time to live accepted: 30 days.
    pub const MAX_TTL_S: u32 = 30 * 86_400;
    /// `hit_cost_ppm` of a hit that costs what the original did.
    pub const FULL_COST_PPM: u32 = 1_000_000;

    /// What a hit costs, in micro-USD, for an answer that originally cost `original`.
    pub fn hit_cost(self, original: i64) -> i64 {
        let scaled = i128::from(original) * i128::from(self.hit_cost_ppm) / 1_000_000;
        i64::try_from(scaled).unwrap_or(if scaled < 0 { i64::MIN } else { i64::MAX })
    }
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            enabled: false,
            ttl_s: Self::DEFAULT_TTL_S,
            partition: CachePartition::Team,
            allow_non_deterministic: false,
            hit_cost_ppm: 0,
        }
    }
}

/// A key's override of its routes' cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum KeyCacheMode {
    /// Follow the route's policy (the default).
    #[default]
    Route,
    /// Never looked up nor stored: the key opts out (e.g. a key whose traffic must always see
    /// the model's fresh answer).
    Off,
    /// Never answered from the cache, but fresh answers are stored for others (e.g. a key that
    /// warms the cache).
    Refresh,
}

impl KeyCacheMode {
    pub const ALL: [KeyCacheMode; 3] = [Self::Route, Self::Off, Self::Refresh];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Route => "route",
            Self::Off => "off",
            Self::Refresh => "refresh",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_costs_its_fraction_of_the_original_rounded_down() {
        let p = |ppm| CachePolicy {
            hit_cost_ppm: ppm,
            ..CachePolicy::default()
        };
        assert_eq!(p(0).hit_cost(1_234), 0);
        assert_eq!(p(100_000).hit_cost(1_234), 123);
        assert_eq!(p(CachePolicy::FULL_COST_PPM).hit_cost(1_234), 1_234);
        assert_eq!(p(u32::MAX).hit_cost(i64::MAX), i64::MAX);
    }

    #[test]
    fn partitions_and_key_modes_round_trip_their_names() {
        for p in CachePartition::ALL {
            assert_eq!(CachePartition::parse(p.as_str()), Some(p));
        }
        for m in KeyCacheMode::ALL {
            assert_eq!(KeyCacheMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(CachePartition::parse("org"), None);
    }
}
