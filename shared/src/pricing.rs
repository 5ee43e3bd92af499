//! Exact cost arithmetic: prices are integer micro-USD (per million tokens, per image, per
//! second, per million characters), costs integer micro-USD. No floating point anywhere (R-4.6): prices imported from
//! decimal text go through [`parse_decimal_scaled`], never through `f64`.
//!
//! ## What a usage line counts
//!
//! Providers report totals that already contain their parts: OpenAI's `prompt_tokens` includes
//! `prompt_tokens_details.cached_tokens`, and `completion_tokens` includes
//! `completion_tokens_details.reasoning_tokens`. [`Tokens`] keeps that convention:
//! `input` and `output` are the provider's totals, `cached_input` is the part of `input` read
//! from the cache and `reasoning` the part of `output` spent reasoning. The cost charges each
//! token once, at the most specific price:
//!
//! ```text
//! (input - cached_input) × input      + cached_input × cached_input_or_input
//! (output - reasoning)   × output     + reasoning    × reasoning_or_output
//! images × per_image                  + media_ms / 1000 × per_second
//! characters / 10^6 × per_mchar
//! ```
//!
//! A unit price of 0 for cached input or reasoning means "no separate price": those tokens are
//! charged at the input or output price. Every line is rounded half up on its own and the sum
//! saturates at `i64::MAX` instead of overflowing.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Prices of one catalog row. Token prices are micro-USD per 1M tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub input_micros_per_mtok: i64,
    pub output_micros_per_mtok: i64,
    /// Cached (prompt-cache read) input tokens; 0 means "charged at the input price".
    #[serde(default)]
    pub cached_input_micros_per_mtok: i64,
    /// Reasoning tokens; 0 means "charged at the output price".
    #[serde(default)]
    pub reasoning_micros_per_mtok: i64,
    /// Micro-USD per generated image (the catalog row's default size and quality).
    #[serde(default)]
    pub per_image_micros: i64,
    /// Micro-USD per second of audio or video.
    #[serde(default)]
    pub per_second_micros: i64,
    /// Micro-USD per 1M input characters (text-to-speech).
    #[serde(default)]
    pub per_mchar_micros: i64,
    /// The catalog-wide price version these prices are; recorded on every usage row.
    pub version: u64,
}

/// What one request consumed, as the provider reported it (see the module doc for how the
/// parts relate to the totals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Every input (prompt) token, cached ones included.
    pub input: u64,
    /// Every output (completion) token, reasoning ones included.
    pub output: u64,
    /// The part of `input` read from the provider's prompt cache.
    pub cached_input: u64,
    /// The part of `output` the model spent reasoning.
    pub reasoning: u64,
    pub images: u64,
    /// Audio or video duration in milliseconds.
    pub media_ms: u64,
    /// Characters of input text (text-to-speech).
    pub characters: u64,
}

/// Cost in micro-USD: each line rounded half up on its own, so a bill is the sum of its parts.
/// Saturates instead of overflowing.
pub fn cost_micros(usage: Tokens, price: &Price) -> i64 {
    cost_lines(usage, price)
        .into_iter()
        .map(|l| l.amount_micros)
        .fold(0i64, i64::saturating_add)
}

/// The unit a cost line counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    InputTokens,
    CachedInputTokens,
    OutputTokens,
    ReasoningTokens,
    Images,
    /// Audio or video time; counted in milliseconds, priced per second.
    Seconds,
    Characters,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::InputTokens => "input_tokens",
            Unit::CachedInputTokens => "cached_input_tokens",
            Unit::OutputTokens => "output_tokens",
            Unit::ReasoningTokens => "reasoning_tokens",
            Unit::Images => "images",
            Unit::Seconds => "seconds",
            Unit::Characters => "characters",
        }
    }

    /// What the unit price is per: `1M tokens`, `image`, `second`, `1M characters`.
    pub fn price_basis(self) -> &'static str {
        match self {
            Unit::InputTokens
            | Unit::CachedInputTokens
            | Unit::OutputTokens
            | Unit::ReasoningTokens => "per_1m_tokens",
            Unit::Images => "per_image",
            Unit::Seconds => "per_second",
            Unit::Characters => "per_1m_characters",
        }
    }
}

/// One line of a request's cost: how many units, at which unit price, for how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostLine {
    pub unit: Unit,
    /// Tokens, images, milliseconds (for `Seconds`) or characters.
    pub quantity: u64,
    pub unit_price_micros: i64,
    pub amount_micros: i64,
}

/// The lines [`cost_micros`] sums, in a fixed order (input, cached input, output, reasoning,
/// images, seconds, characters); statements itemise a request's cost by them.
pub fn cost_lines(usage: Tokens, price: &Price) -> [CostLine; 7] {
    let cached = usage.cached_input.min(usage.input);
    let reasoning = usage.reasoning.min(usage.output);
    let cached_rate = or_else(
        price.cached_input_micros_per_mtok,
        price.input_micros_per_mtok,
    );
    let reasoning_rate = or_else(
        price.reasoning_micros_per_mtok,
        price.output_micros_per_mtok,
    );
    let line = |unit, quantity, unit_price_micros, amount_micros| CostLine {
        unit,
        quantity,
        unit_price_micros,
        amount_micros,
    };
    let input = usage.input - cached;
    let output = usage.output - reasoning;
    let input_rate = price.input_micros_per_mtok;
    let output_rate = price.output_micros_per_mtok;
    [
        line(
            Unit::InputTokens,
            input,
            input_rate,
            per_million(input, input_rate),
        ),
        line(
            Unit::CachedInputTokens,
            cached,
            cached_rate,
            per_million(cached, cached_rate),
        ),
        line(
            Unit::OutputTokens,
            output,
            output_rate,
            per_million(output, output_rate),
        ),
        line(
            Unit::ReasoningTokens,
            reasoning,
            reasoning_rate,
            per_million(reasoning, reasoning_rate),
        ),
        line(
            Unit::Images,
            usage.images,
            price.per_image_micros,
            scaled(usage.images, price.per_image_micros, 1),
        ),
        line(
            Unit::Seconds,
            usage.media_ms,
            price.per_second_micros,
            scaled(usage.media_ms, price.per_second_micros, 1_000),
        ),
        line(
            Unit::Characters,
            usage.characters,
            price.per_mchar_micros,
            per_million(usage.characters, price.per_mchar_micros),
        ),
    ]
}

fn or_else(specific: i64, general: i64) -> i64 {
    if specific > 0 {
        specific
    } else {
        general
    }
}

fn per_million(count: u64, micros_per_mtok: i64) -> i64 {
    scaled(count, micros_per_mtok, 1_000_000)
}

/// `count × unit_micros / divisor`, rounded half up.
fn scaled(count: u64, unit_micros: i64, divisor: u128) -> i64 {
    if unit_micros <= 0 || count == 0 {
        return 0;
    }
    let product = u128::from(count) * unit_micros as u128;
    let rounded = (product + divisor / 2) / divisor;
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

/// Why a decimal could not be turned into an exact integer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecimalError {
    #[error("`{0}` is not a decimal number")]
    Syntax(String),
    #[error("`{0}` is negative")]
    Negative(String),
    #[error(
        "`{0}` is more precise than the catalog's unit (it would need fractions of a micro-USD)"
    )]
    TooPrecise(String),
    #[error("`{0}` is too large")]
    TooLarge(String),
}

/// Parses decimal text (`12`, `0.15`, `2.5e-06`, `1E3`) exactly and returns it multiplied by
/// `10^scale` as an integer: e.g. USD per token with `scale` 12 is micro-USD per 1M tokens
/// (`2.5e-06` → 2_500_000), USD with `scale` 6 is micro-USD. A value that is not a whole
/// number after scaling is refused ([`DecimalError::TooPrecise`]) rather than rounded; so is a
/// negative one.
pub fn parse_decimal_scaled(text: &str, scale: u32) -> Result<i64, DecimalError> {
    let syntax = || DecimalError::Syntax(text.to_owned());
    let s = text.trim();
    let (s, negative) = match s.as_bytes().first() {
        Some(b'-') => (&s[1..], true),
        Some(b'+') => (&s[1..], false),
        _ => (s, false),
    };
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => {
            let exp: i64 = s[at + 1..].parse().map_err(|_| syntax())?;
            (&s[..at], exp)
        }
        None => (s, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(syntax());
    }
    if !whole
        .bytes()
        .chain(fraction.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return Err(syntax());
    }
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0);
    }
    if negative {
        return Err(DecimalError::Negative(text.to_owned()));
    }
    // value = digits × 10^power
    let trimmed = digits.trim_end_matches('0');
    let zeros = (digits.len() - trimmed.len()) as i64;
    let power = exponent
        .checked_sub(fraction.len() as i64)
        .and_then(|p| p.checked_add(i64::from(scale)))
        .and_then(|p| p.checked_add(zeros))
        .ok_or_else(|| DecimalError::TooLarge(text.to_owned()))?;
    if power < 0 {
        return Err(DecimalError::TooPrecise(text.to_owned()));
    }
    let too_large = || DecimalError::TooLarge(text.to_owned());
    if trimmed.len() > 19 || power > 18 {
        return Err(too_large());
    }
    let base: i64 = trimmed.parse().map_err(|_| too_large())?;
    let factor = 10i64.checked_pow(power as u32).ok_or_else(too_large)?;
    base.checked_mul(factor).ok_or_else(too_large)
}

#[cfg(test)]
mod tests;
