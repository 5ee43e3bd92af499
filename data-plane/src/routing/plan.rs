//! The ordered list of deployments a request may try: the group's tiers in order, weighted
//! random order within a tier, then — if the traffic class allows — each approved backup group
//! the same way. Deployments that are ejected or rate-limited are skipped, as are backup
//! deployments costing more than the group's cost guardrail allows; every skip is recorded with
//! its reason.

use std::sync::Arc;

use modelgate_shared::pricing::Price;
use modelgate_shared::snapshot::{Deployment, LbStrategy, ProviderAccount, RoutingGroup};
use rand::Rng;

use super::health::{Availability, DeploymentHealth, HealthTable};
use super::TrafficClass;
use crate::config::Runtime;

pub struct Candidate<'r> {
    pub group: &'r RoutingGroup,
    pub deployment: &'r Deployment,
    pub deployment_id: String,
    pub provider: &'r ProviderAccount,
    pub price: Option<Price>,
    pub health: Arc<DeploymentHealth>,
    /// Served by an approved backup group, not the requested one.
    pub backup: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub deployment_id: String,
    /// ejected, rate_limited, cost_guardrail, data_class, unknown_provider or
    /// class_forbids_model_change.
    pub reason: &'static str,
}

pub struct Plan<'r> {
    pub candidates: Vec<Candidate<'r>>,
    pub skipped: Vec<Skipped>,
}

/// Deployments of one tier in weighted random order (each draw proportional to weight among
/// those left).
fn weighted_order<'a, R: Rng>(mut tier: Vec<&'a Deployment>, rng: &mut R) -> Vec<&'a Deployment> {
    let mut out = Vec::with_capacity(tier.len());
    while !tier.is_empty() {
        let total: u64 = tier.iter().map(|d| u64::from(d.weight.max(1))).sum();
        let mut ticket = rng.gen_range(0..total);
        let mut pick = tier.len() - 1;
        for (i, d) in tier.iter().enumerate() {
            let w = u64::from(d.weight.max(1));
            if ticket < w {
                pick = i;
                break;
            }
            ticket -= w;
        }
        out.push(tier.swap_remove(pick));
    }
    out
}

/// Orders one tier by the group's strategy.
fn order_tier<'a, R: Rng>(
    tier: Vec<&'a Deployment>,
    strategy: LbStrategy,
    runtime: &Runtime,
    health: &HealthTable,
    rng: &mut R,
) -> Vec<&'a Deployment> {
    match strategy {
        LbStrategy::Weighted => weighted_order(tier, rng),
        LbStrategy::LeastInFlight => {
            // Power of two choices for the first pick, then the rest by load.
            let mut rest = weighted_order(tier, rng);
            if rest.len() >= 2 {
                let (a, b) = (
                    health.get(&rest[0].id()).in_flight(),
                    health.get(&rest[1].id()).in_flight(),
                );
                if b < a {
                    rest.swap(0, 1);
                }
                let mut tail: Vec<_> = rest.split_off(1);
                tail.sort_by_key(|d| health.get(&d.id()).in_flight());
                rest.extend(tail);
            }
            rest
        }
        LbStrategy::LowestLatency => {
            // Unmeasured deployments first, so every one gets measured.
            let mut v = weighted_order(tier, rng);
            v.sort_by_key(|d| health.get(&d.id()).ewma_ttfb_us());
            v
        }
        LbStrategy::LowestCost => {
            let mut v = weighted_order(tier, rng);
            v.sort_by_key(|d| runtime.prices.get(&d.model).map_or(i64::MAX, blended));
            v
        }
    }
}

/// A group's deployments: tiers ascending, each ordered by the group's strategy.
fn ordered<'a, R: Rng>(
    group: &'a RoutingGroup,
    runtime: &Runtime,
    health: &HealthTable,
    rng: &mut R,
) -> Vec<&'a Deployment> {
    let mut tiers: Vec<u32> = group.deployments.iter().map(|d| d.tier).collect();
    tiers.sort_unstable();
    tiers.dedup();
    let mut out = Vec::with_capacity(group.deployments.len());
    for t in tiers {
        let tier: Vec<&Deployment> = group.deployments.iter().filter(|d| d.tier == t).collect();
        out.extend(order_tier(tier, group.policy.lb, runtime, health, rng));
    }
    out
}

fn blended(p: &Price) -> i64 {
    p.input_micros_per_mtok
        .saturating_add(p.output_micros_per_mtok)
}

/// Who is asking, as routing needs it.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub class: TrafficClass,
    /// Rank of the key's data class.
    pub data_class: usize,
}

pub fn plan<'r, R: Rng>(
    runtime: &'r Runtime,
    group: &'r RoutingGroup,
    request: Request,
    health: &HealthTable,
    now_ms: i64,
    rng: &mut R,
) -> Plan<'r> {
    let class = request.class;
    let mut plan = Plan {
        candidates: Vec::new(),
        skipped: Vec::new(),
    };
    let primary = ordered(group, runtime, health, rng);
    // The model identity an `eval` request is pinned to: the first choice's.
    let pinned_model = primary.first().map(|d| d.model.as_str());
    let primary_price = primary
        .first()
        .and_then(|d| runtime.prices.get(&d.model))
        .map(blended);

    let add = |g: &'r RoutingGroup, d: &'r Deployment, backup: bool, plan: &mut Plan<'r>| {
        let deployment_id = d.id();
        if class == TrafficClass::Eval && Some(d.model.as_str()) != pinned_model {
            plan.skipped.push(Skipped {
                deployment_id,
                reason: "class_forbids_model_change",
            });
            return;
        }
        let Some(provider) = runtime.providers.get(&d.provider_id) else {
            plan.skipped.push(Skipped {
                deployment_id,
                reason: "unknown_provider",
            });
            return;
        };
        let price = runtime.prices.get(&d.model).copied();
        if backup {
            let factor = i64::from(group.policy.cost_factor_milli);
            if let (Some(primary), Some(p)) = (primary_price, price.as_ref()) {
                if blended(p).saturating_mul(1000) > primary.saturating_mul(factor) {
                    plan.skipped.push(Skipped {
                        deployment_id,
                        reason: "cost_guardrail",
                    });
                    return;
                }
            }
        }
        let h = health.get(&deployment_id);
        match h.check(now_ms) {
            Availability::Healthy | Availability::Probe => plan.candidates.push(Candidate {
                group: g,
                deployment: d,
                deployment_id,
                provider,
                price,
                health: h,
                backup,
            }),
            Availability::Ejected => plan.skipped.push(Skipped {
                deployment_id,
                reason: "ejected",
            }),
            Availability::RateLimited => plan.skipped.push(Skipped {
                deployment_id,
                reason: "rate_limited",
            }),
        }
    };
    for d in primary {
        add(group, d, false, &mut plan);
    }
    if class.may_use_backup_groups() {
        for alias in &group.fallbacks {
            let Some(backup) = runtime.groups.get(alias) else {
                continue;
            };
            if request.data_class > backup.policy.max_data_class {
                for d in &backup.deployments {
                    plan.skipped.push(Skipped {
                        deployment_id: d.id(),
                        reason: "data_class",
                    });
                }
                continue;
            }
            for d in ordered(backup, runtime, health, rng) {
                add(backup, d, true, &mut plan);
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn dep(provider: &str, weight: u32, tier: u32) -> Deployment {
        Deployment {
            provider_id: provider.into(),
            model: "m".into(),
            weight,
            tier,
        }
    }

    #[test]
    fn weights_are_respected_within_a_tier_and_tiers_are_ordered() {
        let group = RoutingGroup {
            id: "g".into(),
            alias: "a".into(),
            deployments: vec![dep("backup", 1, 1), dep("heavy", 3, 0), dep("light", 1, 0)],
            fallbacks: vec![],
            policy: Default::default(),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let runtime = Runtime::default();
        let health = HealthTable::default();
        let mut heavy_first = 0;
        let n = 20_000;
        for _ in 0..n {
            let order = ordered(&group, &runtime, &health, &mut rng);
            assert_eq!(order[2].provider_id, "backup", "tier 1 comes last");
            if order[0].provider_id == "heavy" {
                heavy_first += 1;
            }
        }
        let share = f64::from(heavy_first) / f64::from(n);
        assert!(
            (share - 0.75).abs() < 0.02,
            "heavy first {share} of the time, want 0.75"
        );
    }
}
