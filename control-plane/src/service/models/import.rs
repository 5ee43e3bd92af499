//! Price files into catalog rows, exactly: every price is parsed from its decimal text
//! (`modelgate_shared::pricing::parse_decimal_scaled`), never through `f64`. A row that cannot
//! be expressed exactly in the catalog's units (1 micro-USD per 1M tokens, 1 micro-USD per
//! image or second), or that names an unknown provider or endpoint family, is skipped and
//! reported with the reason; the rest of the file still counts.
//!
//! **LiteLLM** (`model_prices_and_context_window.json`): an object keyed by model name.
//! `sample_spec` (the format's own example) is skipped. Per row: `litellm_provider` → provider
//! kind (`openai`/`text-completion-openai` → `openai`, `azure`/`azure_text` → `azure-openai`,
//! `anthropic`, `gemini`, and ModelGate's own kind names as they are); a `<provider>/` prefix
//! on the key is dropped (`azure/gpt-4o` → `gpt-4o`); `mode` → family (`chat`; `completion` →
//! `completions`; `embedding` → `embeddings`; `image_generation` → `images`;
//! `audio_transcription`/`audio_speech` → `audio`; `video_generation` → `video`; `responses`,
//! `moderation` → `moderations`, `rerank`; absent → `chat`). USD per token fields
//! (`input_cost_per_token`, `output_cost_per_token`, `cache_read_input_token_cost`,
//! `output_cost_per_reasoning_token`) become micro-USD per 1M tokens; the per-image price is
//! `output_cost_per_image`, else `input_cost_per_image`; the per-second price
//! `output_cost_per_second`, else `input_cost_per_second`; the per-1M-characters price
//! `input_cost_per_character` (text-to-speech; USD per character, like the token prices, so
//! `1.5e-05` is 15_000_000 micro-USD per 1M); `max_input_tokens` is the context
//! window and `max_output_tokens` (else `max_tokens`) the output limit. The file has no status:
//! a new row is `active` and an existing row keeps its status.
//!
//! **CSV**: a header row naming columns (any order; only `model` is required):
//! `model, provider, family, input_per_mtok_usd, output_per_mtok_usd,
//! cached_input_per_mtok_usd, reasoning_per_mtok_usd, per_image_usd, per_second_usd,
//! per_mchar_usd, context_window, max_output_tokens, status`. Prices are decimal USD (`2.50` =
//! $2.50 per 1M tokens, `15` = $15 per 1M characters), limits whole numbers. An empty cell means 0, except `provider` (`*`, any),
//! `family` (`chat`) and `status` (kept, or `active` for a new row). Fields may be quoted
//! (RFC 4180, `""` for a quote). An unknown column name refuses the whole file.
//!
//! Neither format carries per-size image prices: a row keeps the `image_prices` map it has.
//! LiteLLM fields the catalog has no unit for (cache writes, tiered prices above a context
//! size, output per-character or per-pixel prices) are ignored.

use std::collections::BTreeMap;

use modelgate_shared::pricing::parse_decimal_scaled;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{CatalogEntry, ServiceError};

/// USD per token → micro-USD per 1M tokens.
const PER_TOKEN: u32 = 12;
/// USD → micro-USD.
const USD: u32 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// LiteLLM's `model_prices_and_context_window.json`.
    Litellm,
    /// CSV with a header row.
    Csv,
}

/// A row an import left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Skipped {
    pub model: String,
    pub reason: String,
}

/// One parsed row. Status and per-size image prices may come from the row it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    pub entry: CatalogEntry,
    /// `None`: keep the current row's status (`active` for a new row).
    pub status: Option<String>,
}

impl ImportRow {
    /// The entry to write over `current` (the row with the same provider and model, if any).
    pub fn resolve(self, current: Option<CatalogEntry>) -> CatalogEntry {
        let mut entry = self.entry;
        if let Some(cur) = &current {
            entry.image_prices = cur.image_prices.clone();
        }
        entry.status = match (self.status, current) {
            (Some(s), _) => s,
            (None, Some(cur)) => cur.status,
            (None, None) => "active".into(),
        };
        entry
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub rows: Vec<ImportRow>,
    pub skipped: Vec<Skipped>,
}

/// Parses a whole file. Only a file that is unreadable as a whole (not JSON, no header) is an
/// error; a bad row is skipped.
pub fn parse(format: Format, content: &str) -> Result<Parsed, ServiceError> {
    match format {
        Format::Litellm => litellm(content),
        Format::Csv => csv(content),
    }
}

fn blank(model: &str) -> CatalogEntry {
    CatalogEntry {
        model: model.to_owned(),
        provider: "*".into(),
        family: "chat".into(),
        input_micros_per_mtok: 0,
        output_micros_per_mtok: 0,
        cached_input_micros_per_mtok: 0,
        reasoning_micros_per_mtok: 0,
        per_image_micros: 0,
        image_prices: BTreeMap::new(),
        per_second_micros: 0,
        per_mchar_micros: 0,
        context_window: 0,
        max_output_tokens: 0,
        status: String::new(),
    }
}

// ---- LiteLLM ----

#[derive(Deserialize)]
struct LiteLlmRow {
    #[serde(default)]
    litellm_provider: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    input_cost_per_token: Option<Box<RawValue>>,
    #[serde(default)]
    output_cost_per_token: Option<Box<RawValue>>,
    #[serde(default)]
    cache_read_input_token_cost: Option<Box<RawValue>>,
    #[serde(default)]
    output_cost_per_reasoning_token: Option<Box<RawValue>>,
    #[serde(default)]
    input_cost_per_image: Option<Box<RawValue>>,
    #[serde(default)]
    output_cost_per_image: Option<Box<RawValue>>,
    #[serde(default)]
    input_cost_per_second: Option<Box<RawValue>>,
    #[serde(default)]
    output_cost_per_second: Option<Box<RawValue>>,
    #[serde(default)]
    input_cost_per_character: Option<Box<RawValue>>,
    #[serde(default)]
    max_input_tokens: Option<Box<RawValue>>,
    #[serde(default)]
    max_output_tokens: Option<Box<RawValue>>,
    #[serde(default)]
    max_tokens: Option<Box<RawValue>>,
}

fn litellm(content: &str) -> Result<Parsed, ServiceError> {
    let map: BTreeMap<String, Box<RawValue>> = serde_json::from_str(content).map_err(|e| {
        ServiceError::invalid(
            "content",
            format!("not a LiteLLM price map (a JSON object keyed by model): {e}"),
        )
    })?;
    let mut parsed = Parsed::default();
    for (key, raw) in map {
        if key == "sample_spec" {
            parsed.skipped.push(Skipped {
                model: key,
                reason: "the LiteLLM format's example entry, not a model".into(),
            });
            continue;
        }
        match litellm_row(&key, &raw) {
            Ok(entry) => parsed.rows.push(ImportRow {
                entry,
                status: None,
            }),
            Err(reason) => parsed.skipped.push(Skipped { model: key, reason }),
        }
    }
    Ok(parsed)
}

fn litellm_provider(name: &str) -> Option<&'static str> {
    Some(match name {
        "openai" | "text-completion-openai" => "openai",
        "azure" | "azure_text" => "azure-openai",
        "anthropic" => "anthropic",
        "gemini" => "gemini",
        "openai-compatible" => "openai-compatible",
        "azure-openai" => "azure-openai",
        "mock" => "mock",
        _ => return None,
    })
}

fn litellm_family(mode: &str) -> Option<&'static str> {
    Some(match mode {
        "chat" => "chat",
        "completion" => "completions",
        "responses" => "responses",
        "embedding" => "embeddings",
        "image_generation" | "image_edit" => "images",
        "audio_transcription" | "audio_speech" => "audio",
        "video_generation" => "video",
        "moderation" => "moderations",
        "rerank" => "rerank",
        _ => return None,
    })
}

fn litellm_row(key: &str, raw: &RawValue) -> Result<CatalogEntry, String> {
    let row: LiteLlmRow =
        serde_json::from_str(raw.get()).map_err(|e| format!("not a price entry: {e}"))?;
    let source = row
        .litellm_provider
        .ok_or_else(|| "no `litellm_provider`".to_owned())?;
    let provider = litellm_provider(&source)
        .ok_or_else(|| format!("LiteLLM provider `{source}` has no ModelGate provider kind"))?;
    let family = match row.mode.as_deref() {
        None => "chat",
        Some(mode) => litellm_family(mode)
            .ok_or_else(|| format!("mode `{mode}` has no ModelGate endpoint family"))?,
    };
    let model = key
        .strip_prefix(&format!("{source}/"))
        .unwrap_or(key)
        .to_owned();
    let num = |name: &str, v: &Option<Box<RawValue>>, scale: u32| -> Result<i64, String> {
        match v {
            None => Ok(0),
            Some(raw) => number(raw.get(), scale).map_err(|e| format!("{name}: {e}")),
        }
    };
    let either = |a: (&str, &Option<Box<RawValue>>), b: (&str, &Option<Box<RawValue>>)| {
        if is_set(a.1) {
            num(a.0, a.1, USD)
        } else {
            num(b.0, b.1, USD)
        }
    };
    let mut entry = blank(&model);
    entry.provider = provider.into();
    entry.family = family.into();
    entry.input_micros_per_mtok =
        num("input_cost_per_token", &row.input_cost_per_token, PER_TOKEN)?;
    entry.output_micros_per_mtok = num(
        "output_cost_per_token",
        &row.output_cost_per_token,
        PER_TOKEN,
    )?;
    entry.cached_input_micros_per_mtok = num(
        "cache_read_input_token_cost",
        &row.cache_read_input_token_cost,
        PER_TOKEN,
    )?;
    entry.reasoning_micros_per_mtok = num(
        "output_cost_per_reasoning_token",
        &row.output_cost_per_reasoning_token,
        PER_TOKEN,
    )?;
    entry.per_image_micros = either(
        ("output_cost_per_image", &row.output_cost_per_image),
        ("input_cost_per_image", &row.input_cost_per_image),
    )?;
    entry.per_second_micros = either(
        ("output_cost_per_second", &row.output_cost_per_second),
        ("input_cost_per_second", &row.input_cost_per_second),
    )?;
    entry.per_mchar_micros = num(
        "input_cost_per_character",
        &row.input_cost_per_character,
        PER_TOKEN,
    )?;
    entry.context_window = num("max_input_tokens", &row.max_input_tokens, 0)?;
    entry.max_output_tokens = if is_set(&row.max_output_tokens) {
        num("max_output_tokens", &row.max_output_tokens, 0)?
    } else {
        num("max_tokens", &row.max_tokens, 0)?
    };
    Ok(entry)
}

fn is_set(v: &Option<Box<RawValue>>) -> bool {
    v.as_ref().is_some_and(|r| r.get().trim() != "null")
}

/// A JSON number's own text (or a JSON string holding one), scaled exactly.
fn number(json: &str, scale: u32) -> Result<i64, String> {
    let json = json.trim();
    if json == "null" {
        return Ok(0);
    }
    let text = if json.starts_with('"') {
        serde_json::from_str::<String>(json).map_err(|e| e.to_string())?
    } else {
        json.to_owned()
    };
    parse_decimal_scaled(&text, scale).map_err(|e| e.to_string())
}

// ---- CSV ----

/// The CSV columns, in the order the docs list them.
pub const CSV_COLUMNS: &[&str] = &[
    "model",
    "provider",
    "family",
    "input_per_mtok_usd",
    "output_per_mtok_usd",
    "cached_input_per_mtok_usd",
    "reasoning_per_mtok_usd",
    "per_image_usd",
    "per_second_usd",
    "per_mchar_usd",
    "context_window",
    "max_output_tokens",
    "status",
];

fn csv(content: &str) -> Result<Parsed, ServiceError> {
    let records = csv_records(content).map_err(|e| ServiceError::invalid("content", e))?;
    let mut records = records.into_iter();
    let Some((_, header)) = records.next() else {
        return Err(ServiceError::invalid("content", "no header row"));
    };
    let header: Vec<String> = header.iter().map(|h| h.trim().to_lowercase()).collect();
    for (i, name) in header.iter().enumerate() {
        if !CSV_COLUMNS.contains(&name.as_str()) {
            return Err(ServiceError::invalid(
                "content",
                format!(
                    "header column {} `{name}` is not one of {}",
                    i + 1,
                    CSV_COLUMNS.join(", ")
                ),
            ));
        }
        if header[..i].contains(name) {
            return Err(ServiceError::invalid(
                "content",
                format!("header column `{name}` appears twice"),
            ));
        }
    }
    if !header.iter().any(|h| h == "model") {
        return Err(ServiceError::invalid(
            "content",
            "the header has no `model` column",
        ));
    }
    let mut parsed = Parsed::default();
    for (line, fields) in records {
        if fields.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let cells: BTreeMap<&str, &str> = header
            .iter()
            .map(String::as_str)
            .zip(fields.iter().map(|f| f.trim()))
            .collect();
        let model = cells.get("model").copied().unwrap_or_default();
        let label = if model.is_empty() {
            format!("line {line}")
        } else {
            model.to_owned()
        };
        if fields.len() != header.len() {
            parsed.skipped.push(Skipped {
                model: label,
                reason: format!(
                    "line {line} has {} fields, the header {}",
                    fields.len(),
                    header.len()
                ),
            });
            continue;
        }
        match csv_row(&cells) {
            Ok(row) => parsed.rows.push(row),
            Err(reason) => parsed.skipped.push(Skipped {
                model: label,
                reason: format!("line {line}: {reason}"),
            }),
        }
    }
    Ok(parsed)
}

fn csv_row(cells: &BTreeMap<&str, &str>) -> Result<ImportRow, String> {
    let cell = |name: &str| cells.get(name).copied().unwrap_or_default();
    let num = |name: &str, scale: u32| -> Result<i64, String> {
        let text = cell(name);
        if text.is_empty() {
            return Ok(0);
        }
        parse_decimal_scaled(text, scale).map_err(|e| format!("{name}: {e}"))
    };
    let model = cell("model");
    if model.is_empty() {
        return Err("model: must not be empty".into());
    }
    let mut entry = blank(model);
    if !cell("provider").is_empty() {
        entry.provider = cell("provider").to_owned();
    }
    if !cell("family").is_empty() {
        entry.family = cell("family").to_owned();
    }
    entry.input_micros_per_mtok = num("input_per_mtok_usd", USD)?;
    entry.output_micros_per_mtok = num("output_per_mtok_usd", USD)?;
    entry.cached_input_micros_per_mtok = num("cached_input_per_mtok_usd", USD)?;
    entry.reasoning_micros_per_mtok = num("reasoning_per_mtok_usd", USD)?;
    entry.per_image_micros = num("per_image_usd", USD)?;
    entry.per_second_micros = num("per_second_usd", USD)?;
    entry.per_mchar_micros = num("per_mchar_usd", USD)?;
    entry.context_window = num("context_window", 0)?;
    entry.max_output_tokens = num("max_output_tokens", 0)?;
    let status = Some(cell("status"))
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    Ok(ImportRow { entry, status })
}

/// Splits CSV text into records (with the line each starts on): comma-separated fields,
/// optionally double-quoted with `""` for a quote; quoted fields may hold commas and newlines.
fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut start = 1;
    let mut quoted = false;
    // Whether the current field began with a quote (and so may only end with one).
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            '"' => return Err(format!("line {line}: a quote inside an unquoted field")),
            ',' => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                records.push((start, std::mem::take(&mut fields)));
                was_quoted = false;
                line += 1;
                start = line;
            }
            _ if was_quoted && !c.is_whitespace() => {
                return Err(format!("line {line}: text after a closing quote"))
            }
            _ if was_quoted => {}
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(format!("line {start}: a quoted field is never closed"));
    }
    if !field.is_empty() || !fields.is_empty() || was_quoted {
        fields.push(field);
        records.push((start, fields));
    }
    Ok(records)
}

#[cfg(test)]
mod tests;
