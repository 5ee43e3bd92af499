//! Staged rollouts and the version model every config change follows, written
//! once for both planes.
//!
//! # The version model
//!
//! - A **version** is one immutable config content under one fleet-wide number. Numbers come
//!   from one counter and only ever grow; the same content may appear under several numbers.
//! - Each connected node is **assigned** one version (the control plane decides per node, from
//!   the labels its certificate binds); it **applies** a version only if its number is above the
//!   one it serves ([`crate::snapshot::should_apply`], enforced by the data plane itself), so a
//!   node's version only ever increases.
//! - During a rollout the fleet has two **tracks**: nodes inside the waves reached so far serve
//!   the *new* policy, the others the *old* one. Moving nodes between tracks (a promotion, a
//!   rollback, a completion) or changing what every node must see at once (a security change)
//!   hands each moving node a version above the one it serves: the track's own version when its
//!   number is already higher ([`reuse_or_mint`]), else a freshly minted one with the track's
//!   content. So a rollback never reuses an old number, and a security change during a paused
//!   rollout mints one version per track: old policy + change, new policy + change.
//! - The **content hash** is over the canonical encoding ([`crate::canonical`]); the **policy
//!   hash** over its policy part only. A change that moves only the policy hash (routes,
//!   providers, prices, budgets, rate limits) is rolled out in waves; one that moves only the
//!   immediate part (keys: revoke, disable, rotation end; credentials; the key-hash secret)
//!   reaches every node at once, whatever the rollout's state ([`compose`]).
//!
//! # A plan
//!
//! A [`Plan`] orders [`Wave`]s by label [`Selector`]; a node belongs to the first wave whose
//! selector it matches (a node no wave matches moves at completion). Each wave bakes for its
//! `bake_s`, then its [`Gates`] compare nodes on the new version with nodes on the old over the
//! evaluation window ([`evaluate`]); a pass moves to the next wave, a failure pauses or rolls
//! back (`on_failure`), not enough traffic yet waits.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::quota::BudgetKind;
use crate::snapshot::Config;

/// Upper bounds (milliseconds) of the request-latency buckets nodes report for the latency
/// gate; a last, unbounded bucket follows them.
pub const LATENCY_BUCKETS_MS: [u64; 14] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000,
];

/// How many buckets a report carries: the bounded ones and the last.
pub const LATENCY_BUCKET_COUNT: usize = LATENCY_BUCKETS_MS.len() + 1;

/// The bucket a request of `latency_ms` falls in.
pub fn latency_bucket(latency_ms: u64) -> usize {
    LATENCY_BUCKETS_MS
        .iter()
        .position(|b| latency_ms <= *b)
        .unwrap_or(LATENCY_BUCKETS_MS.len())
}

/// A label selector: `*` (every node), or comma-separated `key=value` / `key=*` (the node has
/// the label, any value) terms that must all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    terms: Vec<(String, Option<String>)>,
    text: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("selector `{0}`: each term is `key=value` or `key=*`, or the whole selector is `*`")]
    Selector(String),
    #[error("a plan needs at least one wave")]
    NoWaves,
    #[error("a plan has at most {max} waves", max = Plan::MAX_WAVES)]
    TooManyWaves,
    #[error("waves[{0}].bake_s: at most 86400 seconds")]
    Bake(usize),
    #[error("gates.{0}")]
    Gate(&'static str),
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, PlanError> {
        let text = text.trim();
        if text == "*" {
            return Ok(Selector {
                terms: Vec::new(),
                text: text.to_owned(),
            });
        }
        let mut terms = Vec::new();
        for term in text.split(',') {
            let (k, v) = term
                .split_once('=')
                .ok_or_else(|| PlanError::Selector(text.to_owned()))?;
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() || v.is_empty() || k == "*" {
                return Err(PlanError::Selector(text.to_owned()));
            }
            terms.push((k.to_owned(), (v != "*").then(|| v.to_owned())));
        }
        Ok(Selector {
            terms,
            text: text.to_owned(),
        })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.terms.iter().all(|(k, v)| match (labels.get(k), v) {
            (Some(_), None) => true,
            (Some(have), Some(want)) => have == want,
            (None, _) => false,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Selector::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One wave of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wave {
    pub selector: Selector,
    /// Seconds the wave runs on the new version before its gates may pass it (default 300).
    #[serde(default = "Wave::default_bake_s")]
    pub bake_s: u64,
}

impl Wave {
    fn default_bake_s() -> u64 {
        300
    }
}

/// What a failed gate does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Stop where the rollout is; an operator resumes, promotes or rolls back.
    Pause,
    /// Put every node back on the old content (the default).
    #[default]
    Rollback,
}

/// The health gates of every wave. Defaults (documented in ARCHITECTURE.md, "Rollouts"): at
/// most 0 NACKs, an error rate at most 5 points above the old version's, a p99 latency at most
/// 1.5 times the old version's (and 100 ms above it), 50 requests on the new version before a
/// gate may pass or fail on traffic, over the last 300 s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gates {
    /// Nodes that may NACK the new version before the gate fails.
    pub max_nacks: u32,
    /// How much higher (as a fraction, 0.05 = 5 points) the new version's error rate (5xx
    /// answers, which include upstream failures) may be than the old one's.
    pub max_error_rate_increase: f64,
    /// How many times the old version's p99 latency the new one's may be.
    pub max_p99_ratio: f64,
    /// A p99 within this many milliseconds of the old one's never fails the gate.
    pub p99_slack_ms: u64,
    /// Requests the new version must have served in the window before the traffic gates may
    /// pass or fail (the old version's are compared only when it has as many).
    pub min_requests: u64,
    /// The evaluation window, seconds.
    pub window_s: u64,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            max_nacks: 0,
            max_error_rate_increase: 0.05,
            max_p99_ratio: 1.5,
            p99_slack_ms: 100,
            min_requests: 50,
            window_s: 300,
        }
    }
}

/// A rollout policy: the plan every policy change follows while it is configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub waves: Vec<Wave>,
    #[serde(default)]
    pub gates: Gates,
    #[serde(default)]
    pub on_failure: OnFailure,
}

impl Plan {
    pub const MAX_WAVES: usize = 16;

    pub fn validate(&self) -> Result<(), PlanError> {
        if self.waves.is_empty() {
            return Err(PlanError::NoWaves);
        }
        if self.waves.len() > Self::MAX_WAVES {
            return Err(PlanError::TooManyWaves);
        }
        if let Some(i) = self.waves.iter().position(|w| w.bake_s > 86_400) {
            return Err(PlanError::Bake(i));
        }
        let g = &self.gates;
        if !(0.0..=1.0).contains(&g.max_error_rate_increase) {
            return Err(PlanError::Gate("max_error_rate_increase: between 0 and 1"));
        }
        if !(g.max_p99_ratio >= 1.0 && g.max_p99_ratio.is_finite()) {
            return Err(PlanError::Gate("max_p99_ratio: at least 1"));
        }
        if g.window_s == 0 || g.window_s > 86_400 {
            return Err(PlanError::Gate("window_s: 1 to 86400"));
        }
        Ok(())
    }

    /// Whether a node with `labels` is in one of the waves `0..=reached`.
    pub fn reached(&self, reached: usize, labels: &BTreeMap<String, String>) -> bool {
        self.waves
            .iter()
            .take(reached.saturating_add(1))
            .any(|w| w.selector.matches(labels))
    }
}

/// Which content a node is on during a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Track {
    Old,
    New,
}

/// What moving nodes to a track needs (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handover {
    /// The track's version is above every mover's: assign it as it is.
    Reuse,
    /// Some mover serves that number or a higher one: mint the track's content anew.
    Mint,
}

/// Whether nodes serving at most `highest_mover` can be handed the track version `track` as it
/// is, or need a new version of the same content (a node never applies a version at or below
/// the one it serves).
pub fn reuse_or_mint(track: u64, highest_mover: u64) -> Handover {
    if track > highest_mover {
        Handover::Reuse
    } else {
        Handover::Mint
    }
}

/// The content a track serves: the policy part of `policy` with the immediate part of
/// `current` (the key-hash secret, every key, and each provider's credential — taken from
/// `current` where the provider still exists there, else kept from `policy`; and every prepaid
/// balance, whose top-ups are money, not policy). So a security
/// change in `current` reaches both tracks, and neither track's policy moves.
pub fn compose(policy: &Config, current: &Config) -> Config {
    let mut out = Config {
        key_hash_secret: current.key_hash_secret.clone(),
        keys: current.keys.clone(),
        providers: policy.providers.clone(),
        prices: policy.prices.clone(),
        groups: policy.groups.clone(),
        // Spend budgets are policy; prepaid balances (top-ups, adjustments) are money and, like
        // keys, reach every track at once.
        budgets: policy
            .budgets
            .iter()
            .filter(|b| b.kind == BudgetKind::Spend)
            .chain(
                current
                    .budgets
                    .iter()
                    .filter(|b| b.kind == BudgetKind::Balance),
            )
            .cloned()
            .collect(),
        rate_limits: policy.rate_limits.clone(),
    };
    for p in &mut out.providers {
        if let Some(c) = current.providers.iter().find(|c| c.id == p.id) {
            p.credential.clone_from(&c.credential);
        }
    }
    out.canonicalize();
    out
}

/// One resource that differs between two configs' policy parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `provider`, `price`, `route`, `budget` or `rate_limit`.
    pub kind: &'static str,
    /// The resource's id (a route's alias, a price's `model@provider`).
    pub id: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
}

/// The policy changes from `old` to `new` (a pending version's preview), sorted by kind and id.
/// Credentials are not compared (they are not policy).
pub fn policy_diff(old: &Config, new: &Config) -> Vec<Change> {
    let mut out = Vec::new();
    let redact = |p: &crate::snapshot::ProviderAccount| {
        let mut p = p.clone();
        p.credential.clear();
        p
    };
    diff_by(
        &mut out,
        "provider",
        &old.providers.iter().map(redact).collect::<Vec<_>>(),
        &new.providers.iter().map(redact).collect::<Vec<_>>(),
        |p| p.id.clone(),
    );
    diff_by(&mut out, "price", &old.prices, &new.prices, |p| {
        format!(
            "{}@{}",
            p.model,
            if p.provider.is_empty() {
                "*"
            } else {
                &p.provider
            }
        )
    });
    diff_by(&mut out, "route", &old.groups, &new.groups, |g| {
        g.alias.clone()
    });
    let spend = |c: &Config| -> Vec<crate::quota::Budget> {
        c.budgets
            .iter()
            .filter(|b| b.kind == BudgetKind::Spend)
            .cloned()
            .collect()
    };
    diff_by(&mut out, "budget", &spend(old), &spend(new), |b| {
        b.id.clone()
    });
    diff_by(
        &mut out,
        "rate_limit",
        &old.rate_limits,
        &new.rate_limits,
        |l| l.id.clone(),
    );
    out
}

fn diff_by<T: PartialEq>(
    out: &mut Vec<Change>,
    kind: &'static str,
    old: &[T],
    new: &[T],
    id: impl Fn(&T) -> String,
) {
    let old: BTreeMap<String, &T> = old.iter().map(|t| (id(t), t)).collect();
    let new: BTreeMap<String, &T> = new.iter().map(|t| (id(t), t)).collect();
    for (k, o) in &old {
        match new.get(k) {
            None => out.push(Change {
                kind,
                id: k.clone(),
                change: "removed",
            }),
            Some(n) if n != o => out.push(Change {
                kind,
                id: k.clone(),
                change: "changed",
            }),
            Some(_) => {}
        }
    }
    for k in new.keys().filter(|k| !old.contains_key(*k)) {
        out.push(Change {
            kind,
            id: k.clone(),
            change: "added",
        });
    }
}

/// Traffic served by a group of nodes over the window: requests, errors (5xx), and request
/// latencies by [`LATENCY_BUCKETS_MS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    pub requests: u64,
    pub errors: u64,
    pub latency_buckets: Vec<u64>,
}

impl Traffic {
    pub fn add(&mut self, requests: u64, errors: u64, buckets: &[u64]) {
        self.requests += requests;
        self.errors += errors;
        if self.latency_buckets.len() < buckets.len() {
            self.latency_buckets.resize(buckets.len(), 0);
        }
        for (sum, n) in self.latency_buckets.iter_mut().zip(buckets) {
            *sum += n;
        }
    }

    /// Errors over requests (0 without requests).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// The p99 latency as the upper bound of the bucket holding the 99th percentile (nearest
    /// rank); the unbounded bucket reads as twice the last bound. `None` without requests.
    pub fn p99_ms(&self) -> Option<u64> {
        let total: u64 = self.latency_buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = total - total / 100;
        let mut seen = 0;
        for (i, n) in self.latency_buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(
                    LATENCY_BUCKETS_MS
                        .get(i)
                        .copied()
                        .unwrap_or(LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.len() - 1] * 2),
                );
            }
        }
        None
    }
}

/// What the gates say about a wave now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    /// Not enough evidence yet (too few requests on the new version).
    Wait(String),
    Fail(String),
}

/// The gates on the window's traffic of the nodes on the new version and of those on the old,
/// and the count of nodes that NACKed the new version.
pub fn evaluate(gates: &Gates, new: &Traffic, old: &Traffic, nacks: u32) -> Verdict {
    if nacks > gates.max_nacks {
        return Verdict::Fail(format!(
            "{nacks} node(s) refused the new version (at most {} allowed)",
            gates.max_nacks
        ));
    }
    if new.requests < gates.min_requests {
        return Verdict::Wait(format!(
            "{} of the {} requests the new version needs before its gates can decide",
            new.requests, gates.min_requests
        ));
    }
    let old_known = old.requests >= gates.min_requests;
    let baseline = if old_known { old.error_rate() } else { 0.0 };
    let rate = new.error_rate();
    if rate - baseline > gates.max_error_rate_increase {
        return Verdict::Fail(format!(
            "error rate {:.1}% on the new version against {:.1}% on the old (at most {:.1} points more)",
            rate * 100.0,
            baseline * 100.0,
            gates.max_error_rate_increase * 100.0
        ));
    }
    if old_known {
        if let (Some(n), Some(o)) = (new.p99_ms(), old.p99_ms()) {
            if n as f64 > o as f64 * gates.max_p99_ratio && n > o + gates.p99_slack_ms {
                return Verdict::Fail(format!(
                    "p99 latency {n} ms on the new version against {o} ms on the old (at most {}x)",
                    gates.max_p99_ratio
                ));
            }
        }
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests;
