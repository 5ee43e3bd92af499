//! `POST /explain`: what the data plane would do with a request from a given key, answered from
//! the latest published snapshot and the fleet's health reports, without calling upstream.
//!
//! The checks are the data plane's own admission decision (`modelgate_shared::admission`: key
//! state, endpoint family, model, traffic class, data class, price-and-bound policy), then what
//! the data plane decides from its state — the rate limits and the budget, read here from the
//! fleet's figures — and the first one that fails is the answer. For an allowed request the candidate
//! list is the plan's order with its random parts made deterministic: tiers ascending; within a
//! tier by the group's strategy (weighted and least-in-flight by weight, heaviest first, with
//! each deployment's share of the tier; lowest-latency by the fleet's mean time to first byte,
//! unmeasured first; lowest-cost by price); then each approved backup group the traffic class
//! and data class allow. The same shared rules (`modelgate_shared::routing`) decide the cost
//! guardrail and the traffic class as on the data plane.

use std::collections::BTreeMap;

use chrono::Utc;
use modelgate_shared::admission::{self, Cost, Refusal, RequestedClass, Stage};
use modelgate_shared::pricing::Price;
use modelgate_shared::quota::{any_hard, BudgetKind};
use modelgate_shared::routing::{blended, within_cost_guardrail, TrafficClass};
use modelgate_shared::scope::ScopeOwner;
use modelgate_shared::snapshot::{Config, Deployment, LbStrategy, RoutingGroup};
use serde::{Deserialize, Serialize};

use super::authz::{Action, Actor};
use super::fleet::DeploymentFleetHealth;
use super::keys::ENDPOINT_FAMILIES;
use super::{ServiceError, Services};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    pub key_id: String,
    /// The request body as the application would send it (its `model` is read).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
    /// The endpoint family: chat (default), responses, embeddings, images, messages,
    /// generate_content or video.
    #[serde(default)]
    pub surface: Option<String>,
    /// The model alias, for surfaces that carry it outside the body (Gemini's URL path).
    #[serde(default)]
    pub model: Option<String>,
    /// As if sent with `x-modelgate-traffic-class`.
    #[serde(default)]
    pub traffic_class: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Explanation {
    pub allowed: bool,
    /// Why the request would be refused: the error code the data plane would answer with.
    pub reason: Option<String>,
    /// The refusal's HTTP status and message, as the application would see them.
    pub status: Option<u16>,
    pub message: Option<String>,
    pub snapshot_version: u64,
    pub key: Option<KeyView>,
    pub surface: String,
    pub model: Option<String>,
    pub traffic_class: Option<String>,
    pub group: Option<GroupView>,
    /// The deployments the request may try, in order.
    pub candidates: Vec<CandidateView>,
    /// Deployments left out, and why.
    pub skipped: Vec<SkippedView>,
    /// The budgets that apply to the key (its own, its team's, its owner's, its environment's),
    /// with what is spent, reserved by data planes, and left in the current period.
    pub budgets: Vec<super::budgets::Budget>,
    /// The key's team's prepaid balance, when it has one: the balance check (in `refuse` mode a
    /// request whose worst case the balance cannot cover is refused, 402
    /// `insufficient_balance`).
    pub balance: Option<super::balances::BalanceCheck>,
    /// The rate limits that apply to the request (the key's, its team's, its owner's, the
    /// model's), with what the fleet holds and has taken in the current window.
    pub rate_limits: Vec<super::limits::RateLimit>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub id: String,
    pub team_id: String,
    pub environment: String,
    pub data_class: String,
    pub traffic_class: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupView {
    pub alias: String,
    pub lb: String,
    pub fallbacks: Vec<String>,
    pub max_retries: u32,
    pub cost_factor_milli: u32,
    pub connect_timeout_ms: u32,
    pub first_byte_timeout_ms: u32,
    pub total_timeout_ms: u32,
    /// The policy for a request the gateway cannot price or bound: `reject` or
    /// `allow_and_flag`.
    pub missing_price: String,
    /// Deployments of the group with no catalog price (the policy applies to them).
    pub unpriced_deployments: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CandidateView {
    /// 1-based position in the plan.
    pub position: usize,
    pub group: String,
    /// Served by an approved backup group rather than the requested one.
    pub backup: bool,
    pub deployment_id: String,
    pub provider_id: String,
    pub provider_name: String,
    pub provider_kind: String,
    pub model: String,
    pub tier: u32,
    pub weight: u32,
    /// This deployment's share of its tier's weight, in thousandths (weighted strategies).
    pub weight_share_milli: Option<u32>,
    /// The deployment's own limits per data plane (absent: none).
    pub max_in_flight: Option<u32>,
    pub rpm: Option<u32>,
    pub price: Option<PriceView>,
    pub health: HealthSummary,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PriceView {
    pub input_micros_per_mtok: i64,
    pub output_micros_per_mtok: i64,
    pub price_version: u64,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct HealthSummary {
    /// Nodes that have reported this deployment (0: no node has routed to it yet).
    pub nodes_reporting: u32,
    pub nodes_ejected: u32,
    pub nodes_rate_limited: u32,
    pub in_flight: u32,
    pub ttfb_ewma_ms: Option<f64>,
    /// False when every reporting node has it ejected or parked: requests would skip it.
    pub available: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SkippedView {
    pub group: String,
    pub deployment_id: String,
    /// class_forbids_model_change, unknown_provider, cost_guardrail, data_class or
    /// unknown_group. (An unhealthy deployment stays in the list with `health.available`
    /// false: health is per node, and each node skips it on its own view.)
    pub reason: String,
}

/// The explanation for `actor`. The decision counts every budget and limit that applies to the
/// key; a team-scoped actor is shown only those of its key and team, not the organisation's
/// (user, environment, model-alias scopes: they count other teams' spend), like `GET /budgets`.
pub async fn explain(
    s: &Services,
    actor: &Actor,
    input: ExplainRequest,
) -> Result<Explanation, ServiceError> {
    let mut out = decide(s, actor, input).await?;
    if actor.scope().is_some() {
        out.budgets
            .retain(|b| b.scope.owner() != ScopeOwner::Organisation);
        out.rate_limits
            .retain(|l| l.scope.owner() != ScopeOwner::Organisation);
    }
    Ok(out)
}

async fn decide(
    s: &Services,
    actor: &Actor,
    input: ExplainRequest,
) -> Result<Explanation, ServiceError> {
    actor.require(Action::ReadConfig)?;
    let surface = input.surface.unwrap_or_else(|| "chat".into());
    if !ENDPOINT_FAMILIES.contains(&surface.as_str()) {
        return Err(ServiceError::invalid(
            "surface",
            format!("must be one of {}", ENDPOINT_FAMILIES.join(", ")),
        ));
    }
    let requested_class = input
        .traffic_class
        .as_deref()
        .map(|c| {
            TrafficClass::parse(c).ok_or_else(|| {
                ServiceError::invalid(
                    "traffic_class",
                    "must be one of interactive, batch, eval, media",
                )
            })
        })
        .transpose()?;
    // The output bound the data plane would read, whatever the surface.
    let request_bound = ["max_completion_tokens", "max_tokens", "max_output_tokens"]
        .iter()
        .find_map(|f| input.request.get(*f).and_then(serde_json::Value::as_u64))
        .or_else(|| input.request["generationConfig"]["maxOutputTokens"].as_u64());
    // Text to speak, as the data plane counts it on the audio surface.
    let speech_characters = match (surface.as_str(), input.request.get("input")) {
        ("audio", Some(serde_json::Value::String(text))) => text.chars().count() as u64,
        _ => 0,
    };
    let model = input.model.or_else(|| {
        input
            .request
            .get("model")
            .and_then(|m| m.as_str())
            .map(str::to_owned)
    });
    let published = s
        .publisher
        .latest()
        .ok_or_else(|| ServiceError::NotFound("published snapshot".into()))?;
    let config = &published.snapshot.config;
    let key = config
        .keys
        .iter()
        .find(|k| k.id == input.key_id)
        .ok_or_else(|| ServiceError::NotFound(format!("key {}", input.key_id)))?;
    actor.require_team(&key.team_id, "key")?;

    let mut out = Explanation {
        allowed: false,
        reason: None,
        status: None,
        message: None,
        snapshot_version: published.snapshot.version,
        key: Some(KeyView {
            id: key.id.clone(),
            team_id: key.team_id.clone(),
            environment: key.environment.as_str().to_owned(),
            data_class: key.data_class.clone(),
            traffic_class: key.traffic_class.as_str().to_owned(),
        }),
        surface: surface.clone(),
        model: model.clone(),
        traffic_class: None,
        group: None,
        candidates: Vec::new(),
        skipped: Vec::new(),
        budgets: Vec::new(),
        balance: None,
        rate_limits: Vec::new(),
    };
    let applying: Vec<&str> = config
        .budgets
        .iter()
        .filter(|b| b.applies_to(key) && b.kind == BudgetKind::Spend)
        .map(|b| b.id.as_str())
        .collect();
    out.budgets = super::budgets::views(s, &applying).await?;
    if let Some(b) = config
        .budgets
        .iter()
        .find(|b| b.applies_to(key) && b.kind == BudgetKind::Balance)
    {
        out.balance = super::balances::check(s, &b.id).await?;
    }
    // The admission decision, in the data plane's order (`modelgate_shared::admission`): the
    // key's state and endpoint family first, then — once the request names a model, as the data
    // plane's peek requires — the key's policy for it and the price-and-bound policy.
    let now = Utc::now().timestamp();
    let cleared = match admission::admit_key(key, &surface, now) {
        Ok(c) => c,
        Err(r) => return refused(out, &r),
    };
    let Some(alias) = model.filter(|m| !m.is_empty()) else {
        return refuse(
            out,
            400,
            "invalid_request_error",
            "the request names no model".into(),
        );
    };
    let group = config.groups.iter().find(|g| g.alias == alias);
    let (prices, output_limits): (Vec<Option<Price>>, Vec<Option<u64>>) = group
        .map(|g| {
            g.deployments
                .iter()
                .map(|d| {
                    (
                        price(config, d),
                        output_limit(config, &d.provider_id, &d.model),
                    )
                })
                .unzip()
        })
        .unwrap_or_default();
    let decision = cleared.admit(&admission::Request {
        alias: &alias,
        group: group.map(|group| admission::Group {
            group,
            prices: &prices,
            output_limits: &output_limits,
        }),
        class: requested_class.map_or(RequestedClass::KeyDefault, RequestedClass::Named),
        hard_budget: any_hard(&config.budgets, key),
        prompt_bytes: input.request.to_string().len() as u64,
        max_output_tokens: request_bound,
        // A transcription's duration is read from its file, which explain does not see.
        media_ms: 0,
        characters: speech_characters,
    });
    // What the decision got past is shown, as far as it got.
    let reached = decision.as_ref().err().map(Refusal::stage);
    let past = |stage: Stage| reached.is_none_or(|r| r > stage);
    if let Some(group) = group.filter(|_| past(Stage::Model)) {
        out.group = Some(GroupView {
            alias: group.alias.clone(),
            lb: group.policy.lb.as_str().to_owned(),
            fallbacks: group.fallbacks.clone(),
            max_retries: group.policy.max_retries,
            cost_factor_milli: group.policy.cost_factor_milli,
            connect_timeout_ms: group.policy.connect_timeout_ms,
            first_byte_timeout_ms: group.policy.first_byte_timeout_ms,
            total_timeout_ms: group.policy.total_timeout_ms,
            missing_price: group.policy.missing_price.as_str().to_owned(),
            unpriced_deployments: group
                .deployments
                .iter()
                .zip(&prices)
                .filter(|(_, p)| p.is_none())
                .map(|(d, _)| d.id())
                .collect(),
        });
    }
    if past(Stage::TrafficClass) {
        out.traffic_class = key
            .traffic_class_for(requested_class)
            .map(|c| c.as_str().to_owned());
    }
    if past(Stage::DataClass) {
        let applying: Vec<&str> = config
            .rate_limits
            .iter()
            .filter(|l| l.applies_to(key, &alias))
            .map(|l| l.id.as_str())
            .collect();
        out.rate_limits = super::limits::views(s, &applying).await?;
    }
    let admitted = match decision {
        Ok(a) => a,
        Err(r) => return refused(out, &r),
    };
    let Some(group) = group else {
        return refused(out, &Refusal::ModelNotFound { alias: &alias });
    };
    let (class, data_class) = (admitted.traffic_class, admitted.data_class);
    // What the data plane decides from its state after the decision: the rate limits (the
    // fleet's figures here), then the budget reservation (a hard budget with nothing left).
    if let Some((l, m)) = out.rate_limits.iter().find_map(|l| {
        l.state
            .iter()
            .find(|m| {
                m.measure == "requests" && m.consumed >= i64::try_from(m.limit).unwrap_or(i64::MAX)
            })
            .map(|m| (l, m))
    }) {
        let message = format!(
            "the rate limit `{}` has taken all {} requests of this minute",
            l.id, m.limit
        );
        return refuse(out, 429, "rate_limit_exceeded", message);
    }
    if let Cost::Reserve(worst_case) = admitted.cost {
        if let Some(b) = out
            .budgets
            .iter()
            .find(|b| b.enforcement == "hard" && b.amount_micros <= b.spent_micros)
        {
            let message = format!("the {} budget `{}` has nothing left", b.period, b.id);
            return refuse(out, 429, "budget_exceeded", message);
        }
        // The balance check, after the spend budgets as on the data plane (whose snapshot
        // lists them first): the request's worst case must fit in what is left.
        if let Some(b) = out
            .balance
            .as_ref()
            .filter(|b| b.mode == "refuse" && b.balance_micros < worst_case)
        {
            let message = format!(
                "the prepaid balance of team `{}` ({} µ$) does not cover the request's worst \
                 case ({worst_case} µ$)",
                b.team_id, b.balance_micros
            );
            return refuse(out, 402, "insufficient_balance", message);
        }
    }
    let fleet = s.fleet.view();
    let planner = Planner {
        config,
        fleet: &fleet,
        class,
        data_class,
    };
    planner.plan(group, &mut out);
    if out.candidates.iter().any(|c| c.health.available) {
        out.allowed = true;
    } else {
        return refuse(
            out,
            503,
            "no_healthy_deployment",
            format!("no deployment of `{alias}` is available"),
        );
    }
    Ok(out)
}

/// The explanation refused with `status`, `reason` (the error code the data plane answers with)
/// and `message`.
fn refuse(
    mut out: Explanation,
    status: u16,
    reason: &str,
    message: String,
) -> Result<Explanation, ServiceError> {
    out.status = Some(status);
    out.reason = Some(reason.to_owned());
    out.message = Some(message);
    Ok(out)
}

/// Explain's answer to each refusal of the admission decision: the data plane's status and
/// error code, and a message saying why in the explanation's own words.
fn refused(out: Explanation, r: &Refusal<'_>) -> Result<Explanation, ServiceError> {
    let (status, reason, message) = match r {
        Refusal::KeyRevoked => (401, "invalid_api_key", "the key has been revoked".into()),
        Refusal::KeyDisabled => (401, "invalid_api_key", "the key is disabled".into()),
        Refusal::KeyExpired => (401, "invalid_api_key", "the key has expired".into()),
        Refusal::EndpointNotAllowed { family } => (
            403,
            "endpoint_not_allowed",
            format!("the key may not call the `{family}` endpoints"),
        ),
        Refusal::ModelNotAllowed { alias } => (
            403,
            "model_not_allowed",
            format!("the key may not use `{alias}`"),
        ),
        Refusal::ModelNotFound { alias } => (
            404,
            "model_not_found",
            format!("no routing group is named `{alias}`"),
        ),
        // Explain's input names its class or is refused as invalid before any decision.
        Refusal::TrafficClassInvalid => (
            400,
            "invalid_value",
            "the traffic class must be one of interactive, batch, eval, media".into(),
        ),
        Refusal::TrafficClassNotAllowed { requested } => (
            403,
            "traffic_class_not_allowed",
            format!("the key may not send `{}` traffic", requested.as_str()),
        ),
        Refusal::DataClassNotAllowed { alias, data_class } => (
            403,
            "data_class_not_allowed",
            format!("`{alias}` may not receive data of this key's class ({data_class})"),
        ),
        Refusal::PriceMissing { alias } => (
            403,
            "model_price_missing",
            format!(
                "`{alias}` has deployments without a catalog price and its policy \
                 (missing_price = reject) refuses unpriced requests"
            ),
        ),
        Refusal::CostNotEstimable { model } => (
            400,
            "cost_not_estimable",
            format!(
                "the key has a hard budget and the request's cost cannot be bounded (no \
                 max_tokens, and the catalog has no output limit for `{model}`)"
            ),
        ),
    };
    refuse(out, status, reason, message)
}

/// A deployment's catalog price: its provider kind's row, else the any-provider row.
fn price(config: &Config, d: &Deployment) -> Option<Price> {
    let kind = config
        .providers
        .iter()
        .find(|p| p.id == d.provider_id)
        .map_or("", |p| p.kind.as_str());
    config.price_of(kind, &d.model)
}

/// A deployment's catalog output limit, as the data plane indexes it (the provider kind's row
/// if it has one, else the any-provider row; 0 means unknown).
fn output_limit(config: &Config, provider_id: &str, model: &str) -> Option<u64> {
    let kind = config
        .providers
        .iter()
        .find(|p| p.id == provider_id)
        .map_or("", |p| p.kind.as_str());
    let row = |k: &str| {
        config
            .prices
            .iter()
            .find(|p| p.model == model && p.provider == k)
            .map(|p| p.max_output_tokens)
            .filter(|n| *n > 0)
    };
    row(kind).or_else(|| row(""))
}

struct Planner<'a> {
    config: &'a Config,
    fleet: &'a BTreeMap<String, DeploymentFleetHealth>,
    class: TrafficClass,
    data_class: usize,
}

impl Planner<'_> {
    fn price(&self, d: &Deployment) -> Option<Price> {
        price(self.config, d)
    }

    fn health(&self, id: &str) -> HealthSummary {
        match self.fleet.get(id) {
            None => HealthSummary {
                available: true,
                ..Default::default()
            },
            Some(h) => HealthSummary {
                nodes_reporting: h.nodes_reporting,
                nodes_ejected: h.nodes_ejected,
                nodes_rate_limited: h.nodes_rate_limited,
                in_flight: h.in_flight,
                ttfb_ewma_ms: h.ttfb_ewma_ms,
                available: h.available_somewhere(),
            },
        }
    }

    /// A group's deployments in the order the plan would prefer, with weight shares.
    fn ordered<'g>(&self, group: &'g RoutingGroup) -> Vec<(&'g Deployment, Option<u32>)> {
        let mut tiers: Vec<u32> = group.deployments.iter().map(|d| d.tier).collect();
        tiers.sort_unstable();
        tiers.dedup();
        let mut out = Vec::with_capacity(group.deployments.len());
        for t in tiers {
            let mut members: Vec<&Deployment> =
                group.deployments.iter().filter(|d| d.tier == t).collect();
            let total: u64 = members.iter().map(|d| u64::from(d.weight.max(1))).sum();
            match group.policy.lb {
                LbStrategy::Weighted | LbStrategy::LeastInFlight => {
                    members.sort_by_key(|d| std::cmp::Reverse(d.weight));
                }
                LbStrategy::LowestLatency => members.sort_by_key(|d| {
                    self.fleet
                        .get(&d.id())
                        .and_then(|h| h.ttfb_ewma_ms)
                        .map_or(0, |ms| (ms * 1000.0) as u64)
                }),
                LbStrategy::LowestCost => {
                    members.sort_by_key(|d| self.price(d).map_or(i64::MAX, |p| blended(&p)))
                }
            }
            let weighted = matches!(
                group.policy.lb,
                LbStrategy::Weighted | LbStrategy::LeastInFlight
            );
            for d in members {
                let share = weighted
                    .then(|| u32::try_from(u64::from(d.weight.max(1)) * 1000 / total).ok())
                    .flatten();
                out.push((d, share));
            }
        }
        out
    }

    fn plan(&self, group: &RoutingGroup, out: &mut Explanation) {
        let primary = self.ordered(group);
        let pinned_model = primary.first().map(|(d, _)| d.model.clone());
        let primary_price = primary
            .first()
            .and_then(|(d, _)| self.price(d))
            .map(|p| blended(&p));
        let add = |out: &mut Explanation,
                   g: &RoutingGroup,
                   d: &Deployment,
                   share: Option<u32>,
                   backup: bool| {
            let id = d.id();
            let skip = |out: &mut Explanation, reason: &str| {
                out.skipped.push(SkippedView {
                    group: g.alias.clone(),
                    deployment_id: id.clone(),
                    reason: reason.to_owned(),
                });
            };
            if !self.class.may_change_model() && Some(&d.model) != pinned_model.as_ref() {
                return skip(out, "class_forbids_model_change");
            }
            let Some(provider) = self.config.providers.iter().find(|p| p.id == d.provider_id)
            else {
                return skip(out, "unknown_provider");
            };
            let price = self.price(d);
            if backup
                && !within_cost_guardrail(
                    primary_price,
                    price.as_ref(),
                    group.policy.cost_factor_milli,
                )
            {
                return skip(out, "cost_guardrail");
            }
            let health = self.health(&id);
            out.candidates.push(CandidateView {
                position: out.candidates.len() + 1,
                group: g.alias.clone(),
                backup,
                deployment_id: id.clone(),
                provider_id: provider.id.clone(),
                provider_name: provider.name.clone(),
                provider_kind: provider.kind.as_str().to_owned(),
                model: d.model.clone(),
                tier: d.tier,
                weight: d.weight,
                weight_share_milli: share,
                max_in_flight: (d.max_in_flight > 0).then_some(d.max_in_flight),
                rpm: (d.rpm > 0).then_some(d.rpm),
                price: price.map(|p| PriceView {
                    input_micros_per_mtok: p.input_micros_per_mtok,
                    output_micros_per_mtok: p.output_micros_per_mtok,
                    price_version: p.version,
                }),
                health,
            });
        };
        for (d, share) in primary {
            add(out, group, d, share, false);
        }
        if !self.class.may_use_backup_groups() {
            return;
        }
        for alias in &group.fallbacks {
            let Some(backup) = self.config.groups.iter().find(|g| &g.alias == alias) else {
                out.skipped.push(SkippedView {
                    group: alias.clone(),
                    deployment_id: String::new(),
                    reason: "unknown_group".into(),
                });
                continue;
            };
            if self.data_class > backup.policy.max_data_class {
                for d in &backup.deployments {
                    out.skipped.push(SkippedView {
                        group: alias.clone(),
                        deployment_id: d.id(),
                        reason: "data_class".into(),
                    });
                }
                continue;
            }
            for (d, share) in self.ordered(backup) {
                add(out, backup, d, share, true);
            }
        }
    }
}
