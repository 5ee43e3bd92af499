//! The admission decision: what a request is allowed, and why not. Pure (every fact is an
//! input, `now` among them), and the one place its order is written: the data plane's
//! pipeline (`pipeline::admit`) and the control plane's `POST /explain` both call it, each
//! mapping a [`Refusal`] to its own answer in one place.
//!
//! The order, first failing check wins ([`Stage`] names each step, in this order):
//!
//! 1. [`Stage::Key`]: the key is not revoked, not disabled, not expired.
//! 2. [`Stage::Endpoint`]: the key may call the endpoint family.
//! 3. [`Stage::Model`]: the key may use the alias, and a routing group has that name.
//! 4. [`Stage::TrafficClass`]: the class asked for (or the key's own) is one the key may send.
//! 5. [`Stage::DataClass`]: the group may receive data of the key's class.
//! 6. [`Stage::Cost`]: the price-and-bound policy. A group with an unpriced deployment, or a
//!    request under a hard budget whose worst case cannot be bounded, follows the group's
//!    `missing_price` policy: `reject` refuses, `allow_and_flag` admits it unreserved and
//!    flagged. A priced, bounded request under a hard budget is admitted with the worst case
//!    to reserve.
//!
//! The decision comes in two calls, because the data plane reads a request's body only for a
//! key that may call the endpoint: [`admit_key`] (steps 1–2, from the key alone) returns the
//! [`KeyAdmitted`] that alone can take the request ([`KeyAdmitted::admit`], steps 3–6). What
//! needs state — rate-limit shares, budget reservations, deployment health — follows the
//! decision, in the data plane (explain reads the fleet's figures instead).

use crate::key_view::KeyView;
use crate::pricing::Price;
use crate::quota::{worst_case_cost, WorstCase};
use crate::routing::TrafficClass;
use crate::snapshot::{data_class_rank, ApiKey, MissingPricePolicy, RoutingGroup};

/// The steps of the decision, in the order they are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Key,
    Endpoint,
    Model,
    TrafficClass,
    DataClass,
    Cost,
}

/// Why a request is refused. Each caller renders it in one place (the data plane as its
/// `ProxyError`, explain as its reason, status and message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<'a> {
    KeyRevoked,
    KeyDisabled,
    KeyExpired,
    EndpointNotAllowed {
        family: &'a str,
    },
    ModelNotAllowed {
        alias: &'a str,
    },
    ModelNotFound {
        alias: &'a str,
    },
    /// The traffic class asked for names no class.
    TrafficClassInvalid,
    TrafficClassNotAllowed {
        requested: TrafficClass,
    },
    DataClassNotAllowed {
        alias: &'a str,
        data_class: &'a str,
    },
    /// A deployment of the group has no catalog price, and the group's policy rejects.
    PriceMissing {
        alias: &'a str,
    },
    /// A hard budget applies, the output is not bounded on the deployment `model` (no
    /// `max_tokens`, no catalog output limit), and the group's policy rejects.
    CostNotEstimable {
        model: &'a str,
    },
}

impl Refusal<'_> {
    /// The step that refused.
    pub fn stage(&self) -> Stage {
        match self {
            Refusal::KeyRevoked | Refusal::KeyDisabled | Refusal::KeyExpired => Stage::Key,
            Refusal::EndpointNotAllowed { .. } => Stage::Endpoint,
            Refusal::ModelNotAllowed { .. } | Refusal::ModelNotFound { .. } => Stage::Model,
            Refusal::TrafficClassInvalid | Refusal::TrafficClassNotAllowed { .. } => {
                Stage::TrafficClass
            }
            Refusal::DataClassNotAllowed { .. } => Stage::DataClass,
            Refusal::PriceMissing { .. } | Refusal::CostNotEstimable { .. } => Stage::Cost,
        }
    }
}

/// The traffic class a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestedClass {
    /// None named: the key's own class.
    #[default]
    KeyDefault,
    Named(TrafficClass),
    /// Something that names no class (an unreadable header).
    Invalid,
}

/// A routing group with what the catalog says about its deployments.
#[derive(Debug, Clone, Copy)]
pub struct Group<'a> {
    pub group: &'a RoutingGroup,
    /// Each deployment's catalog price, aligned with `group.deployments`.
    pub prices: &'a [Option<Price>],
    /// Each deployment's catalog output-token limit, aligned with `group.deployments`.
    pub output_limits: &'a [Option<u64>],
}

/// What the decision needs to know about the request itself.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The model alias it names.
    pub alias: &'a str,
    /// The routing group named `alias` (`None`: no group has that name).
    pub group: Option<Group<'a>>,
    pub class: RequestedClass,
    /// Some hard budget applies to the key: the worst case must be bounded, to be reserved.
    pub hard_budget: bool,
    /// Bytes of the request body: each counts as an input token in the worst case.
    pub prompt_bytes: u64,
    /// The output bound the client set (`max_tokens` and its kin).
    pub max_output_tokens: Option<u64>,
    /// Audio the request carries, in milliseconds (a transcription's upload, its duration read
    /// from the file's header; 0 when unknown or none), priced per second in the worst case.
    pub media_ms: u64,
    /// Characters of text to speak (text-to-speech), priced per 1M characters in the worst case.
    pub characters: u64,
}

/// A key that may call the endpoint family: the only way to a decision on a request.
/// `K`: the key's form (the control plane's `ApiKey`, the data plane's compact key).
#[derive(Debug)]
pub struct KeyAdmitted<'a, K: ?Sized = ApiKey> {
    key: &'a K,
}

/// An admitted request, with what the next stages need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub traffic_class: TrafficClass,
    /// Rank of the key's data class (routing keeps backup groups to it).
    pub data_class: usize,
    pub cost: Cost,
}

/// What the budget side of admission does with an admitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// No hard budget applies (and every deployment is priced): nothing to reserve.
    Unreserved,
    /// Reserve this worst case (micro-USD) from each hard budget of the key before forwarding.
    Reserve(i64),
    /// Served unreserved, its usage row flagged `price_missing` (`allow_and_flag`).
    PriceMissing,
    /// Served unreserved, its usage row flagged `cost_unbounded` (`allow_and_flag`).
    Unbounded,
}

/// Steps 1–2: the key's own state, then the endpoint family it calls.
pub fn admit_key<'a, K: KeyView + ?Sized>(
    key: &'a K,
    family: &'a str,
    now_unix: i64,
) -> Result<KeyAdmitted<'a, K>, Refusal<'a>> {
    if key.is_revoked() {
        return Err(Refusal::KeyRevoked);
    }
    if key.is_disabled() {
        return Err(Refusal::KeyDisabled);
    }
    if key.expires_at().is_some_and(|t| t <= now_unix) {
        return Err(Refusal::KeyExpired);
    }
    if !key.may_call(family) {
        return Err(Refusal::EndpointNotAllowed { family });
    }
    Ok(KeyAdmitted { key })
}

impl<K: ?Sized> Clone for KeyAdmitted<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: ?Sized> Copy for KeyAdmitted<'_, K> {}

impl<'k, K: KeyView + ?Sized> KeyAdmitted<'k, K> {
    pub fn key(&self) -> &'k K {
        self.key
    }

    /// Steps 3–6: the key's policy for the model, then the price-and-bound policy.
    pub fn admit<'a>(&self, request: &Request<'a>) -> Result<Admitted, Refusal<'a>>
    where
        'k: 'a,
    {
        let key = self.key;
        let alias = request.alias;
        if !key.may_use(alias) {
            return Err(Refusal::ModelNotAllowed { alias });
        }
        let Some(group) = request.group else {
            return Err(Refusal::ModelNotFound { alias });
        };
        let requested = match request.class {
            RequestedClass::KeyDefault => None,
            RequestedClass::Named(c) => Some(c),
            RequestedClass::Invalid => return Err(Refusal::TrafficClassInvalid),
        };
        let traffic_class =
            key.traffic_class_for(requested)
                .ok_or(Refusal::TrafficClassNotAllowed {
                    requested: requested.unwrap_or_default(),
                })?;
        let data_class = data_class_rank(key.data_class());
        if data_class > group.group.policy.max_data_class {
            return Err(Refusal::DataClassNotAllowed {
                alias,
                data_class: key.data_class(),
            });
        }
        let cost = cost(&group, request)?;
        Ok(Admitted {
            traffic_class,
            data_class,
            cost,
        })
    }
}

/// Step 6: the price-and-bound policy.
fn cost<'a>(group: &Group<'a>, request: &Request<'a>) -> Result<Cost, Refusal<'a>> {
    let allow = group.group.policy.missing_price == MissingPricePolicy::AllowAndFlag;
    if group.prices.iter().any(Option::is_none) {
        return if allow {
            Ok(Cost::PriceMissing)
        } else {
            Err(Refusal::PriceMissing {
                alias: &group.group.alias,
            })
        };
    }
    if !request.hard_budget {
        return Ok(Cost::Unreserved);
    }
    match worst_case(group, request) {
        Ok(c) => Ok(Cost::Reserve(c)),
        Err(_) if allow => Ok(Cost::Unbounded),
        Err(model) => Err(Refusal::CostNotEstimable { model }),
    }
}

/// The most a request can cost on any deployment of its group: every prompt byte as an input
/// token plus the output bound (the client's `max_tokens`, else the deployment's catalog output
/// limit, else 0 when the row prices no output), plus its audio seconds and characters, at each
/// deployment's price; the dearest wins. Else the first deployment whose cost
/// cannot be bounded.
fn worst_case<'a>(group: &Group<'a>, request: &Request<'a>) -> Result<i64, &'a str> {
    let mut worst: Option<i64> = None;
    let rows = group.prices.iter().zip(group.output_limits);
    for (i, (price, limit)) in rows.enumerate() {
        let model = group
            .group
            .deployments
            .get(i)
            .map_or("", |d| d.model.as_str());
        // An output the row does not price (a transcription priced by the second, speech by
        // the character) costs nothing however long it is: bounded at 0.
        let free_output = price
            .is_some_and(|p| p.output_micros_per_mtok == 0 && p.reasoning_micros_per_mtok == 0);
        let bound = request
            .max_output_tokens
            .or(*limit)
            .or(free_output.then_some(0));
        let c = price
            .as_ref()
            .and_then(|p| {
                worst_case_cost(
                    p,
                    WorstCase {
                        prompt_bytes: request.prompt_bytes,
                        max_output_tokens: bound,
                        media_ms: request.media_ms,
                        characters: request.characters,
                    },
                )
            })
            .ok_or(model)?;
        worst = Some(worst.map_or(c, |w| w.max(c)));
    }
    worst.ok_or("")
}

#[cfg(test)]
mod tests;
