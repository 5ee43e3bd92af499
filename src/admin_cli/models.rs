//! `modelgate models set|list|versions|import`: the pricing catalog.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};

use super::table::{field, grid, time, Column};
use super::{list, AdminClient, CliError, ListArgs, Reply, Run};

/// A price file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// LiteLLM's `model_prices_and_context_window.json`.
    Litellm,
    /// CSV with a header row (see the README for the columns).
    Csv,
}

impl ImportFormat {
    fn as_str(self) -> &'static str {
        match self {
            ImportFormat::Litellm => "litellm",
            ImportFormat::Csv => "csv",
        }
    }

    /// `.json` is a LiteLLM map, `.csv` a CSV file.
    fn from_path(path: &std::path::Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(ImportFormat::Litellm),
            "csv" => Some(ImportFormat::Csv),
            _ => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Set a provider model's price row (creates it, or replaces it with a new price version
    /// if anything differs; options left out take their defaults).
    Set {
        /// The provider's model name, as deployments name it (e.g. `gpt-4o-2024-08-06`).
        #[arg(long)]
        model: String,
        /// The provider kind the row prices (`openai`, `anthropic`, `mock`, ...); `*` for any.
        #[arg(long, default_value = "*")]
        provider: String,
        /// Endpoint family: chat, embeddings, images, audio, video, responses, ...
        #[arg(long, default_value = "chat")]
        family: String,
        /// Input price in integer micro-USD per 1M tokens (2500000 = $2.50).
        #[arg(long)]
        input_micros_per_mtok: i64,
        /// Output price in integer micro-USD per 1M tokens.
        #[arg(long)]
        output_micros_per_mtok: i64,
        /// Cached input price per 1M tokens (0: charged at the input price).
        #[arg(long, default_value_t = 0)]
        cached_input_micros_per_mtok: i64,
        /// Reasoning price per 1M tokens (0: charged at the output price).
        #[arg(long, default_value_t = 0)]
        reasoning_micros_per_mtok: i64,
        /// Micro-USD per generated image.
        #[arg(long, default_value_t = 0)]
        per_image_micros: i64,
        /// Micro-USD per second of audio or video.
        #[arg(long, default_value_t = 0)]
        per_second_micros: i64,
        /// Micro-USD per 1M input characters (text-to-speech).
        #[arg(long, default_value_t = 0)]
        per_mchar_micros: i64,
        /// Maximum input tokens (0: unknown).
        #[arg(long, default_value_t = 0)]
        context_window: i64,
        /// Maximum output tokens (0: unknown).
        #[arg(long, default_value_t = 0)]
        max_output_tokens: i64,
        /// active, deprecated or disabled.
        #[arg(long, default_value = "active")]
        status: String,
    },
    /// List model prices.
    List(ListArgs),
    /// Every price version of one catalog row, oldest first.
    Versions {
        /// The catalog row's id.
        id: String,
    },
    /// Import a price file (a LiteLLM price map or CSV) and print what changed: rows added,
    /// changed (before → after), unchanged, and skipped with the reason.
    Import {
        /// The file to import.
        file: PathBuf,
        /// The file's format (default: from the extension, `.json` → litellm, `.csv` → csv).
        #[arg(long, value_enum)]
        format: Option<ImportFormat>,
        /// Show what would change without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
}

const VERSION_COLUMNS: &[Column] = &[
    Column {
        header: "VERSION",
        cell: |v| field(v, "version"),
    },
    Column {
        header: "PROVIDER",
        cell: |v| field(v, "provider"),
    },
    Column {
        header: "MODEL",
        cell: |v| field(v, "model"),
    },
    Column {
        header: "INPUT",
        cell: |v| field(v, "input_micros_per_mtok"),
    },
    Column {
        header: "OUTPUT",
        cell: |v| field(v, "output_micros_per_mtok"),
    },
    Column {
        header: "CACHED",
        cell: |v| field(v, "cached_input_micros_per_mtok"),
    },
    Column {
        header: "REASONING",
        cell: |v| field(v, "reasoning_micros_per_mtok"),
    },
    Column {
        header: "STATUS",
        cell: |v| field(v, "status"),
    },
    Column {
        header: "CREATED",
        cell: |v| time(v, "created_at"),
    },
];

/// The catalog fields a diff line compares, in the order they are shown.
const DIFF_FIELDS: &[&str] = &[
    "family",
    "input_micros_per_mtok",
    "output_micros_per_mtok",
    "cached_input_micros_per_mtok",
    "reasoning_micros_per_mtok",
    "per_image_micros",
    "image_prices",
    "per_second_micros",
    "per_mchar_micros",
    "context_window",
    "max_output_tokens",
    "status",
];

/// An import diff as text: a summary line, then one line per added, changed or skipped row.
pub fn render_diff(diff: &Value) -> String {
    let count = |name: &str| diff[name].as_array().map_or(0, Vec::len);
    let mut out = format!(
        "{}{} added, {} changed, {} unchanged, {} skipped\n",
        if diff["dry_run"] == Value::Bool(true) {
            "dry run (nothing changed): "
        } else {
            ""
        },
        count("added"),
        count("changed"),
        diff["unchanged"].as_u64().unwrap_or(0),
        count("skipped"),
    );
    let mut rows: Vec<Vec<String>> = Vec::new();
    for a in diff["added"].as_array().into_iter().flatten() {
        let prices = DIFF_FIELDS
            .iter()
            .filter(|f| !is_default(&a[**f]))
            .map(|f| format!("{f}={}", field(a, f)))
            .collect::<Vec<_>>()
            .join(" ");
        rows.push(vec![
            "added".into(),
            field(a, "provider"),
            field(a, "model"),
            field(a, "price_version"),
            prices,
        ]);
    }
    for c in diff["changed"].as_array().into_iter().flatten() {
        let (before, after) = (&c["before"], &c["after"]);
        let changes = DIFF_FIELDS
            .iter()
            .filter(|f| before[**f] != after[**f])
            .map(|f| format!("{f}: {} -> {}", field(before, f), field(after, f)))
            .collect::<Vec<_>>()
            .join("; ");
        rows.push(vec![
            "changed".into(),
            field(c, "provider"),
            field(c, "model"),
            format!(
                "{} -> {}",
                field(c, "before_version"),
                field(c, "after_version")
            ),
            changes,
        ]);
    }
    for sk in diff["skipped"].as_array().into_iter().flatten() {
        rows.push(vec![
            "skipped".into(),
            "-".into(),
            field(sk, "model"),
            "-".into(),
            field(sk, "reason"),
        ]);
    }
    if !rows.is_empty() {
        let rows: Vec<Vec<String>> = rows
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|c| {
                        c.chars()
                            .map(|ch| if ch.is_control() { ' ' } else { ch })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        out.push_str(&grid(
            &["ACTION", "PROVIDER", "MODEL", "VERSION", "DETAIL"],
            &rows,
        ));
    }
    out
}

fn is_default(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty() || s == "chat" || s == "active",
        _ => false,
    }
}

const COLUMNS: &[Column] = &[
    Column {
        header: "ID",
        cell: |v| field(v, "id"),
    },
    Column {
        header: "PROVIDER",
        cell: |v| field(v, "provider"),
    },
    Column {
        header: "MODEL",
        cell: |v| field(v, "model"),
    },
    Column {
        header: "FAMILY",
        cell: |v| field(v, "family"),
    },
    Column {
        header: "INPUT MICROS/MTOK",
        cell: |v| field(v, "input_micros_per_mtok"),
    },
    Column {
        header: "OUTPUT MICROS/MTOK",
        cell: |v| field(v, "output_micros_per_mtok"),
    },
    Column {
        header: "CACHED",
        cell: |v| field(v, "cached_input_micros_per_mtok"),
    },
    Column {
        header: "REASONING",
        cell: |v| field(v, "reasoning_micros_per_mtok"),
    },
    Column {
        header: "PER IMAGE",
        cell: |v| field(v, "per_image_micros"),
    },
    Column {
        header: "PER SECOND",
        cell: |v| field(v, "per_second_micros"),
    },
    Column {
        header: "PER 1M CHARS",
        cell: |v| field(v, "per_mchar_micros"),
    },
    Column {
        header: "STATUS",
        cell: |v| field(v, "status"),
    },
    Column {
        header: "PRICE VERSION",
        cell: |v| field(v, "price_version"),
    },
    Column {
        header: "CREATED",
        cell: |v| time(v, "created_at"),
    },
];

impl Run for ModelsCommand {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError> {
        match self {
            ModelsCommand::Set {
                model,
                provider,
                family,
                input_micros_per_mtok,
                output_micros_per_mtok,
                cached_input_micros_per_mtok,
                reasoning_micros_per_mtok,
                per_image_micros,
                per_second_micros,
                per_mchar_micros,
                context_window,
                max_output_tokens,
                status,
            } => {
                let body = json!({
                    "model": model,
                    "provider": provider,
                    "family": family,
                    "input_micros_per_mtok": input_micros_per_mtok,
                    "output_micros_per_mtok": output_micros_per_mtok,
                    "cached_input_micros_per_mtok": cached_input_micros_per_mtok,
                    "reasoning_micros_per_mtok": reasoning_micros_per_mtok,
                    "per_image_micros": per_image_micros,
                    "per_second_micros": per_second_micros,
                    "per_mchar_micros": per_mchar_micros,
                    "context_window": context_window,
                    "max_output_tokens": max_output_tokens,
                    "status": status,
                });
                let value = client.post(&["models"], Some(&body)).await?;
                Ok(Reply::One {
                    value,
                    columns: COLUMNS,
                })
            }
            ModelsCommand::List(args) => list(client, &["models"], &[], &args, COLUMNS).await,
            ModelsCommand::Versions { id } => {
                let page = client.get(&["models", &id, "versions"]).await?;
                let rows = page["data"].as_array().cloned().unwrap_or_default();
                Ok(Reply::Many {
                    rows,
                    columns: VERSION_COLUMNS,
                })
            }
            ModelsCommand::Import {
                file,
                format,
                dry_run,
            } => {
                let format = format
                    .or_else(|| ImportFormat::from_path(&file))
                    .ok_or_else(|| {
                        CliError::Usage(format!(
                            "cannot tell the format of {} from its name: pass --format litellm|csv",
                            file.display()
                        ))
                    })?;
                let content = std::fs::read_to_string(&file)
                    .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
                let body = json!({
                    "format": format.as_str(),
                    "content": content,
                    "dry_run": dry_run,
                });
                let value = client.post(&["models", "import"], Some(&body)).await?;
                let text = render_diff(&value);
                Ok(Reply::Text { value, text })
            }
        }
    }
}
