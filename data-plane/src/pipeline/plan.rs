//! Plan: the ordered deployments a request may try: the group's tiers in order, each tier ordered by
//! the group's load-balancing strategy, then — if the traffic class and the key's data class
//! allow — each approved backup group the same way. Deployments that are ejected or
//! rate-limited are skipped, as are backup deployments costing more than the group's cost
//! guardrail allows; every skip is recorded with its reason.
//!
//! A plan holds at most [`MAX_CANDIDATES`] deployments: no request makes more attempts than
//! that, so a group of a thousand deployments costs a partial selection per tier, not a sort.
//! Everything per deployment (id, health, price) comes from the runtime's `GroupIndex`; planning
//! allocates only the plan itself.

use std::sync::Arc;

use modelgate_shared::pricing::Price;
use modelgate_shared::routing::{blended, within_cost_guardrail};
use modelgate_shared::snapshot::{Deployment, LbStrategy, ProviderAccount, RoutingGroup};
use rand::Rng;

use crate::config::{GroupIndex, Runtime};
use crate::routing::health::{Availability, DeploymentHealth};
use crate::routing::TrafficClass;

/// The most deployments one request's plan lists.
pub const MAX_CANDIDATES: usize = 16;

pub struct Candidate<'r> {
    pub group: &'r RoutingGroup,
    pub deployment: &'r Deployment,
    pub deployment_id: &'r str,
    pub provider: &'r ProviderAccount,
    pub price: Option<Price>,
    pub health: &'r Arc<DeploymentHealth>,
    /// The upstream client with the group's connect timeout.
    pub client: &'r crate::providers::HttpClient,
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

/// Who is asking, as routing needs it.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub class: TrafficClass,
    /// Rank of the key's data class.
    pub data_class: usize,
}

/// Indices of one tier's deployments in the order the strategy prefers, at most `k` of them.
/// Weighted order uses Efraimidis–Spirakis keys (`-ln(u) / weight`, smallest first): one random
/// draw per deployment gives a weighted random permutation.
fn order_tier<R: Rng>(
    group: &RoutingGroup,
    index: &GroupIndex,
    tier: &[usize],
    k: usize,
    rng: &mut R,
) -> Vec<usize> {
    let mut keyed: Vec<(u64, f64, usize)> = tier
        .iter()
        .map(|&i| {
            let w = f64::from(group.deployments[i].weight.max(1));
            let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            let random = -u.ln() / w;
            let primary = match group.policy.lb {
                LbStrategy::Weighted | LbStrategy::LeastInFlight => 0,
                // Unmeasured (0) first, so every deployment gets measured.
                LbStrategy::LowestLatency => index.health[i].ewma_ttfb_us(),
                LbStrategy::LowestCost => index.prices[i]
                    .as_ref()
                    .map_or(u64::MAX, |p| u64::try_from(blended(p)).unwrap_or(0)),
            };
            (primary, random, i)
        })
        .collect();
    let cmp =
        |a: &(u64, f64, usize), b: &(u64, f64, usize)| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1));
    let k = k.min(keyed.len());
    if k == 0 {
        return Vec::new();
    }
    if k < keyed.len() {
        keyed.select_nth_unstable_by(k - 1, cmp);
        keyed.truncate(k);
    }
    keyed.sort_unstable_by(cmp);
    let mut out: Vec<usize> = keyed.into_iter().map(|(_, _, i)| i).collect();
    if group.policy.lb == LbStrategy::LeastInFlight && out.len() >= 2 {
        // Power of two choices: of two weighted random picks, the less loaded goes first; the
        // rest follow by load.
        if index.health[out[1]].in_flight() < index.health[out[0]].in_flight() {
            out.swap(0, 1);
        }
        out[1..].sort_by_key(|&i| index.health[i].in_flight());
    }
    out
}

/// A group's deployment indices: tiers ascending, each ordered by the strategy, at most `k`.
fn ordered<R: Rng>(group: &RoutingGroup, index: &GroupIndex, k: usize, rng: &mut R) -> Vec<usize> {
    let mut tiers: Vec<u32> = group.deployments.iter().map(|d| d.tier).collect();
    tiers.sort_unstable();
    tiers.dedup();
    let mut out = Vec::with_capacity(k.min(group.deployments.len()));
    let mut members = Vec::new();
    for t in tiers {
        if out.len() >= k {
            break;
        }
        members.clear();
        members.extend((0..group.deployments.len()).filter(|&i| group.deployments[i].tier == t));
        out.extend(order_tier(group, index, &members, k - out.len(), rng));
    }
    out
}

pub fn plan<'r, R: Rng>(
    runtime: &'r Runtime,
    group: &'r RoutingGroup,
    request: Request,
    now_ms: i64,
    rng: &mut R,
) -> Plan<'r> {
    let mut plan = Plan {
        candidates: Vec::new(),
        skipped: Vec::new(),
    };
    let Some(primary_index) = runtime.routes.get(&group.alias) else {
        return plan;
    };
    // Look further than the plan's size so skipped deployments do not starve it.
    let look = MAX_CANDIDATES * 2;
    let primary = ordered(group, primary_index, look, rng);
    // The model identity an `eval` request is pinned to: the first choice's.
    let pinned_model = primary
        .first()
        .map(|&i| group.deployments[i].model.as_str());
    let primary_price = primary
        .first()
        .and_then(|&i| primary_index.prices[i].as_ref())
        .map(blended);

    let add = |g: &'r RoutingGroup,
               index: &'r GroupIndex,
               i: usize,
               backup: bool,
               plan: &mut Plan<'r>| {
        if plan.candidates.len() >= MAX_CANDIDATES {
            return;
        }
        let d = &g.deployments[i];
        let deployment_id = index.ids[i].as_str();
        let skip = |plan: &mut Plan<'r>, reason| {
            plan.skipped.push(Skipped {
                deployment_id: deployment_id.to_owned(),
                reason,
            });
        };
        if !request.class.may_change_model() && Some(d.model.as_str()) != pinned_model {
            return skip(plan, "class_forbids_model_change");
        }
        let Some(provider) = runtime.providers.get(&d.provider_id) else {
            return skip(plan, "unknown_provider");
        };
        let price = index.prices[i];
        if backup
            && !within_cost_guardrail(
                primary_price,
                price.as_ref(),
                group.policy.cost_factor_milli,
            )
        {
            return skip(plan, "cost_guardrail");
        }
        let health = &index.health[i];
        match health.check(now_ms) {
            Availability::Healthy | Availability::Probe => plan.candidates.push(Candidate {
                group: g,
                deployment: d,
                deployment_id,
                provider,
                price,
                health,
                client: &index.client,
                backup,
            }),
            Availability::Ejected => skip(plan, "ejected"),
            Availability::RateLimited => skip(plan, "rate_limited"),
        }
    };
    for i in primary {
        add(group, primary_index, i, false, &mut plan);
    }
    if request.class.may_use_backup_groups() {
        for alias in &group.fallbacks {
            let (Some(backup), Some(index)) =
                (runtime.groups.get(alias), runtime.routes.get(alias))
            else {
                continue;
            };
            if request.data_class > backup.policy.max_data_class {
                for id in &index.ids {
                    plan.skipped.push(Skipped {
                        deployment_id: id.clone(),
                        reason: "data_class",
                    });
                }
                continue;
            }
            for i in ordered(backup, index, look, rng) {
                add(backup, index, i, true, &mut plan);
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
            max_in_flight: 0,
            rpm: 0,
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
        let index = GroupIndex {
            ids: group.deployments.iter().map(Deployment::id).collect(),
            health: (0..3).map(|_| Arc::default()).collect(),
            prices: vec![None; 3],
            output_limits: vec![None; 3],
            unpriced: true,
            client: crate::providers::http_client(std::time::Duration::from_secs(1)),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut heavy_first = 0;
        let n = 20_000;
        for _ in 0..n {
            let order = ordered(&group, &index, 16, &mut rng);
            assert_eq!(
                group.deployments[order[2]].provider_id, "backup",
                "tier 1 comes last"
            );
            if group.deployments[order[0]].provider_id == "heavy" {
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
