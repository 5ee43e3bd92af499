//! Routing rules both planes apply: traffic classes and the cost guardrail. The data plane uses
//! them to build a request's plan; the control plane's explain endpoint uses the same functions
//! to answer "what would happen to this request", so the two cannot disagree.

use crate::pricing::Price;

/// How a request may be routed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TrafficClass {
    /// Approved equivalents only: tiers and backup groups.
    #[default]
    Interactive,
    /// May use backup groups (cheaper routes are the operator's ordering).
    Batch,
    /// No hidden fallback: the model identity stays stable (retries on the same model only).
    Eval,
    /// Fails closed: no fallback to another group.
    Media,
}

impl TrafficClass {
    /// The class of a request that asked for `requested` (by header) on a key whose class is
    /// `default` and which allows `allowed` (empty: any), if the key allows it; a request that
    /// asked for nothing gets the key's class. One rule for every form of key.
    pub fn for_request(
        default: TrafficClass,
        allowed: &[TrafficClass],
        requested: Option<TrafficClass>,
    ) -> Option<TrafficClass> {
        match requested {
            None => Some(default),
            Some(c) if c == default || allowed.is_empty() || allowed.contains(&c) => Some(c),
            Some(_) => None,
        }
    }

    pub const ALL: [TrafficClass; 4] = [Self::Interactive, Self::Batch, Self::Eval, Self::Media];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interactive => "interactive",
            Self::Batch => "batch",
            Self::Eval => "eval",
            Self::Media => "media",
        }
    }

    /// May this class leave its group for a backup group?
    pub fn may_use_backup_groups(self) -> bool {
        matches!(self, Self::Interactive | Self::Batch)
    }

    /// May this class be served by a model other than the first choice's?
    pub fn may_change_model(self) -> bool {
        self != Self::Eval
    }
}

/// The price used to compare deployments: input plus output per 1M tokens.
pub fn blended(p: &Price) -> i64 {
    p.input_micros_per_mtok
        .saturating_add(p.output_micros_per_mtok)
}

/// The cost guardrail: may a backup deployment priced `backup` serve a request whose
/// primary is priced `primary`, under a factor in thousandths? Unknown prices are not compared.
pub fn within_cost_guardrail(
    primary: Option<i64>,
    backup: Option<&Price>,
    factor_milli: u32,
) -> bool {
    match (primary, backup) {
        (Some(primary), Some(p)) => {
            blended(p).saturating_mul(1000) <= primary.saturating_mul(i64::from(factor_milli))
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(input: i64, output: i64) -> Price {
        Price {
            input_micros_per_mtok: input,
            output_micros_per_mtok: output,
            version: 1,
            ..Default::default()
        }
    }

    #[test]
    fn guardrail_allows_up_to_the_factor_and_no_further() {
        let primary = Some(blended(&price(1_000, 1_000)));
        assert!(within_cost_guardrail(
            primary,
            Some(&price(1_000, 1_000)),
            1000
        ));
        assert!(!within_cost_guardrail(
            primary,
            Some(&price(1_000, 1_001)),
            1000
        ));
        assert!(within_cost_guardrail(
            primary,
            Some(&price(1_500, 1_500)),
            1500
        ));
        assert!(within_cost_guardrail(None, Some(&price(9, 9)), 1000));
        assert!(within_cost_guardrail(primary, None, 1000));
    }

    #[test]
    fn traffic_classes_round_trip_by_name() {
        for c in TrafficClass::ALL {
            assert_eq!(TrafficClass::parse(c.as_str()), Some(c));
        }
        assert_eq!(TrafficClass::parse("bulk"), None);
    }
}
