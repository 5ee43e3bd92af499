//! What ingest accepts from a node. A data plane is trusted to report usage, not to report any
//! number: an event is counted only if every figure is one a genuine node could have produced,
//! and its key exists and belongs to the team it names. Anything else is quarantined with the
//! [`Refusal`] as its reason (`super::ingest`), never stored as usage, never counted.
//!
//! [`check`] is the part that needs nothing but the event and the control plane's clock; the key
//! check ([`check_key`]) takes the key's team as read from the database.

use modelgate_shared::usage::{UnknownValue, UsageEvent, USAGE_SCHEMA_VERSION};
use thiserror::Error;

/// Tokens of one kind in one request. The largest context windows are around 10^7 tokens; 10^9
/// leaves two orders of magnitude of headroom while keeping the sum of a million such events
/// inside an `i64` aggregate (a `u64::MAX` count would overflow the daily sums and block the
/// whole batch).
pub const MAX_TOKENS_PER_EVENT: u64 = 1_000_000_000;

/// Cost of one request: 10^12 micro-USD is one million US dollars, orders of magnitude above any
/// single model call, and a million such events still sum inside an `i64`.
pub const MAX_COST_MICROS_PER_EVENT: i64 = 1_000_000_000_000;

/// Images generated or read in one request.
pub const MAX_IMAGES_PER_EVENT: u64 = 1_000_000;

/// Media time in one request: 10^9 ms is more than eleven days of audio or video.
pub const MAX_MEDIA_MS_PER_EVENT: u64 = 1_000_000_000;

/// Characters of text to speak in one request: 10^9 is far beyond any provider's input limit
/// (OpenAI's is 4096).
pub const MAX_CHARACTERS_PER_EVENT: u64 = 1_000_000_000;

/// How far ahead of the control plane's clock a node's clock may run. Spend is counted in the
/// budget period the request started in, so a far-future start would move spend out of the
/// period whose hard budget it should count against. Ten minutes covers clocks that NTP has not
/// yet stepped.
pub const MAX_CLOCK_AHEAD_MS: i64 = 10 * 60 * 1000;

/// No request started before 2024-01-01T00:00:00Z: ModelGate did not exist. An earlier start is
/// a node without a set clock or an invented event. (Old spooled events are accepted however
/// late they arrive, so there is no tighter lower bound.)
pub const EARLIEST_START_MS: i64 = 1_704_067_200_000;

/// HTTP status codes are three digits (RFC 9110 §15); the data plane passes an upstream's code
/// through, and its HTTP stack accepts 100–999.
pub const STATUS_CODES: std::ops::RangeInclusive<u16> = 100..=999;

/// Why an event was quarantined. The text is stored as the quarantine reason; it names figures
/// and ids, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("the event has no id")]
    NoId,
    #[error("schema version {0} is newer than this control plane knows ({USAGE_SCHEMA_VERSION})")]
    UnknownSchema(u32),
    #[error("cost_micros {0} is negative")]
    NegativeCost(i64),
    #[error("cost_micros {0} is above the bound of {MAX_COST_MICROS_PER_EVENT} per request")]
    CostTooHigh(i64),
    #[error("{field} {value} is above the bound of {max} per request")]
    TooMany {
        field: &'static str,
        value: u64,
        max: u64,
    },
    #[error("status {0} is not an HTTP status code")]
    InvalidStatus(u16),
    #[error("ended_at_ms {ended} is before started_at_ms {started}")]
    EndedBeforeStarted { started: i64, ended: i64 },
    #[error("started_at_ms {0} is before 2024-01-01")]
    StartedTooEarly(i64),
    #[error("started_at_ms {value} is more than {MAX_CLOCK_AHEAD_MS} ms ahead of the control plane's clock ({now})")]
    InTheFuture { value: i64, now: i64 },
    #[error("an event without a key names a team, user or environment")]
    KeylessWithOwner,
    #[error("an event without a key carries cost or usage")]
    KeylessWithUsage,
    #[error("key {0} does not exist")]
    UnknownKey(String),
    /// Values this build does not know in typed fields (a newer writer that did not raise its
    /// schema version, or a forged one): never stored under a guessed value.
    #[error("{}", unknown_values(.0))]
    UnknownValues(Vec<UnknownValue>),
    #[error("key {key} belongs to team {owner}, not team {named}")]
    KeyOfAnotherTeam {
        key: String,
        owner: String,
        named: String,
    },
}

fn unknown_values(unknown: &[UnknownValue]) -> String {
    let parts: Vec<String> = unknown.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

/// The checks that need only the event and the control plane's clock (`now_ms`).
pub fn check(e: &UsageEvent, now_ms: i64) -> Result<(), Refusal> {
    if e.id.is_empty() {
        return Err(Refusal::NoId);
    }
    // Version 0 is an event from before the field existed (schema 1).
    if e.schema_version > USAGE_SCHEMA_VERSION {
        return Err(Refusal::UnknownSchema(e.schema_version));
    }
    if e.cost_micros < 0 {
        return Err(Refusal::NegativeCost(e.cost_micros));
    }
    if e.cost_micros > MAX_COST_MICROS_PER_EVENT {
        return Err(Refusal::CostTooHigh(e.cost_micros));
    }
    let counts = [
        ("input_tokens", e.input_tokens, MAX_TOKENS_PER_EVENT),
        ("output_tokens", e.output_tokens, MAX_TOKENS_PER_EVENT),
        (
            "cached_input_tokens",
            e.cached_input_tokens,
            MAX_TOKENS_PER_EVENT,
        ),
        ("reasoning_tokens", e.reasoning_tokens, MAX_TOKENS_PER_EVENT),
        ("images", e.images, MAX_IMAGES_PER_EVENT),
        ("media_ms", e.media_ms, MAX_MEDIA_MS_PER_EVENT),
        ("characters", e.characters, MAX_CHARACTERS_PER_EVENT),
    ];
    if let Some((field, value, max)) = counts.into_iter().find(|(_, v, max)| v > max) {
        return Err(Refusal::TooMany { field, value, max });
    }
    if !STATUS_CODES.contains(&e.status) {
        return Err(Refusal::InvalidStatus(e.status));
    }
    if e.started_at_ms < EARLIEST_START_MS {
        return Err(Refusal::StartedTooEarly(e.started_at_ms));
    }
    if e.ended_at_ms < e.started_at_ms {
        return Err(Refusal::EndedBeforeStarted {
            started: e.started_at_ms,
            ended: e.ended_at_ms,
        });
    }
    // The start decides the day and the budget period; the end is the node's wall clock at
    // the last byte and only has to follow the start.
    if e.started_at_ms > now_ms.saturating_add(MAX_CLOCK_AHEAD_MS) {
        return Err(Refusal::InTheFuture {
            value: e.started_at_ms,
            now: now_ms,
        });
    }
    if e.key_id.is_empty() {
        // A request refused before its key was known: billable to no one.
        if !(e.team_id.is_empty() && e.user_id.is_empty() && e.environment.is_none()) {
            return Err(Refusal::KeylessWithOwner);
        }
        let usage = e.input_tokens
            | e.output_tokens
            | e.cached_input_tokens
            | e.reasoning_tokens
            | e.images
            | e.media_ms
            | e.characters;
        if e.cost_micros != 0 || usage != 0 {
            return Err(Refusal::KeylessWithUsage);
        }
    }
    Ok(())
}

/// The key check: `owner` is the team of the event's key as stored, `None` when no such key
/// exists. Keys are never deleted and never change team, so a genuine event always passes.
/// An event without a key passes here ([`check`] has bounded it).
pub fn check_key(e: &UsageEvent, owner: Option<&str>) -> Result<(), Refusal> {
    if e.key_id.is_empty() {
        return Ok(());
    }
    match owner {
        None => Err(Refusal::UnknownKey(e.key_id.clone())),
        Some(team) if team != e.team_id => Err(Refusal::KeyOfAnotherTeam {
            key: e.key_id.clone(),
            owner: team.to_owned(),
            named: e.team_id.clone(),
        }),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests;
