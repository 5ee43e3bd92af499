//! `modelgate requests list|show`: the request log, newest first, and one request with its
//! upstream attempts.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::table::{self, field, Column};
use super::{list, AdminClient, CliError, ListArgs, Reply, Run};

#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// List requests, newest first (50 unless --limit says otherwise).
    List(Box<ListRequests>),
    /// One request with every upstream attempt.
    Show {
        /// The request id (`x-request-id` of the gateway's answer).
        request_id: String,
        /// If the request is not in the log yet, ask again for up to this many seconds (a
        /// request reaches the log within about a second of its answer).
        #[arg(long, default_value_t = 0)]
        wait_secs: u64,
    },
}

/// The request log's filters, as the API takes them.
#[derive(Debug, Args)]
pub struct ListRequests {
    /// Started at or after this time (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Started before this time (RFC 3339).
    #[arg(long)]
    to: Option<String>,
    #[arg(long)]
    key_id: Option<String>,
    #[arg(long)]
    team_id: Option<String>,
    #[arg(long)]
    user_id: Option<String>,
    #[arg(long)]
    application: Option<String>,
    #[arg(long)]
    environment: Option<String>,
    /// The model alias the client asked for.
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    provider_id: Option<String>,
    /// An HTTP status (429) or a class (4xx, 5xx).
    #[arg(long)]
    status: Option<String>,
    /// An error class, `none` (successes) or `any` (every failure).
    #[arg(long)]
    error_class: Option<String>,
    /// Only requests that fell back (true) or did not (false).
    #[arg(long)]
    fallback_used: Option<bool>,
    /// Only streamed requests (true) or unstreamed ones (false).
    #[arg(long)]
    streamed: Option<bool>,
    /// Only requests that took at least this many milliseconds.
    #[arg(long)]
    min_latency_ms: Option<u64>,
    /// Only requests that cost at least this many micro-USD.
    #[arg(long)]
    min_cost_micros: Option<u64>,
    /// Only check traffic, `modelgate check`'s requests (true), or every request but those
    /// (false).
    #[arg(long)]
    check_traffic: Option<bool>,
    /// Print at most this many requests.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    limit: u64,
    /// While fewer than --limit requests match, ask again for up to this many seconds (a
    /// request reaches the log within about a second of its answer); then print what there is.
    #[arg(long, default_value_t = 0)]
    wait_secs: u64,
}

impl ListRequests {
    fn filters(self) -> (Vec<(&'static str, String)>, ListArgs) {
        let mut f: Vec<(&'static str, String)> = Vec::new();
        let text = [
            ("from", self.from),
            ("to", self.to),
            ("key_id", self.key_id),
            ("team_id", self.team_id),
            ("user_id", self.user_id),
            ("application", self.application),
            ("environment", self.environment),
            ("model", self.model),
            ("provider_id", self.provider_id),
            ("status", self.status),
            ("error_class", self.error_class),
        ];
        f.extend(text.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        let other = [
            ("fallback_used", self.fallback_used.map(|b| b.to_string())),
            ("streamed", self.streamed.map(|b| b.to_string())),
            ("min_latency_ms", self.min_latency_ms.map(|n| n.to_string())),
            (
                "min_cost_micros",
                self.min_cost_micros.map(|n| n.to_string()),
            ),
            ("check_traffic", self.check_traffic.map(|b| b.to_string())),
        ];
        f.extend(other.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        (
            f,
            ListArgs {
                limit: Some(self.limit),
            },
        )
    }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS.mmmZ`.
fn ms_time(v: &Value, name: &str) -> String {
    v.get(name)
        .and_then(Value::as_i64)
        .filter(|ms| *ms > 0)
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || table::NONE.to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string(),
        )
}

/// Microseconds as milliseconds with one decimal.
fn ms(v: &Value, name: &str) -> String {
    v.get(name).and_then(Value::as_i64).map_or_else(
        || table::NONE.to_owned(),
        |us| format!("{:.1}", us as f64 / 1000.0),
    )
}

const LIST_COLUMNS: &[Column] = &[
    Column {
        header: "STARTED",
        cell: |v| ms_time(v, "started_at_ms"),
    },
    Column {
        header: "REQUEST ID",
        cell: |v| field(v, "request_id"),
    },
    Column {
        header: "MODEL",
        cell: |v| field(v, "model"),
    },
    Column {
        header: "PROVIDER",
        cell: |v| field(v, "provider_id"),
    },
    Column {
        header: "STATUS",
        cell: |v| field(v, "status"),
    },
    Column {
        header: "ERROR",
        cell: |v| field(v, "error_class"),
    },
    Column {
        header: "MS",
        cell: |v| ms(v, "latency_us"),
    },
    Column {
        header: "TOKENS IN/OUT",
        cell: |v| format!("{}/{}", field(v, "input_tokens"), field(v, "output_tokens")),
    },
    Column {
        header: "COST µ$",
        cell: |v| field(v, "cost_micros"),
    },
    Column {
        header: "ATTEMPTS",
        cell: |v| field(v, "attempts"),
    },
];

const DETAIL_COLUMNS: &[Column] = &[
    Column {
        header: "REQUEST ID",
        cell: |v| field(v, "request_id"),
    },
    Column {
        header: "STARTED",
        cell: |v| ms_time(v, "started_at_ms"),
    },
    Column {
        header: "KEY",
        cell: |v| field(v, "key_id"),
    },
    Column {
        header: "TEAM",
        cell: |v| field(v, "team_id"),
    },
    Column {
        header: "ENDPOINT",
        cell: |v| field(v, "endpoint"),
    },
    Column {
        header: "MODEL",
        cell: |v| field(v, "requested_model"),
    },
    Column {
        header: "SERVED BY",
        cell: |v| format!("{} {}", field(v, "provider_id"), field(v, "served_model")),
    },
    Column {
        header: "STATUS",
        cell: |v| field(v, "status"),
    },
    Column {
        header: "ERROR",
        cell: |v| format!("{} {}", field(v, "error_class"), field(v, "error_message")),
    },
    Column {
        header: "LATENCY MS",
        cell: |v| ms(v, "latency_us"),
    },
    Column {
        header: "TOKENS IN/OUT",
        cell: |v| format!("{}/{}", field(v, "input_tokens"), field(v, "output_tokens")),
    },
    Column {
        header: "COST µ$",
        cell: |v| field(v, "cost_micros"),
    },
    Column {
        header: "STREAMED",
        cell: |v| field(v, "streamed"),
    },
    Column {
        header: "FALLBACK",
        cell: |v| field(v, "fallback_used"),
    },
];

const ATTEMPT_COLUMNS: &[Column] = &[
    Column {
        header: "STARTED",
        cell: |v| ms_time(v, "started_at_ms"),
    },
    Column {
        header: "DEPLOYMENT",
        cell: |v| field(v, "deployment_id"),
    },
    Column {
        header: "PROVIDER",
        cell: |v| field(v, "provider_id"),
    },
    Column {
        header: "STATUS",
        cell: |v| field(v, "status"),
    },
    Column {
        header: "ERROR",
        cell: |v| field(v, "error_class"),
    },
    Column {
        header: "MS",
        cell: |v| ms(v, "latency_us"),
    },
    Column {
        header: "WHY",
        cell: |v| field(v, "error_message"),
    },
];

/// A request as text: its fields, then its attempts as a table.
fn detail_text(value: &Value) -> String {
    let mut out = table::record(DETAIL_COLUMNS, value);
    let attempts = value
        .get("attempts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    out.push('\n');
    if attempts.is_empty() {
        out.push_str("no upstream attempt\n");
    } else {
        out.push_str(&table::rows(ATTEMPT_COLUMNS, &attempts));
    }
    out
}

/// How often `--wait-secs` asks again.
const POLL: std::time::Duration = std::time::Duration::from_millis(100);

fn deadline(wait_secs: u64) -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(wait_secs)
}

impl Run for RequestsCommand {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError> {
        match self {
            RequestsCommand::List(args) => {
                let until = deadline(args.wait_secs);
                let (filters, args) = args.filters();
                loop {
                    let reply = list(client, &["requests"], &filters, &args, LIST_COLUMNS).await?;
                    let full = match &reply {
                        Reply::Many { rows, .. } => {
                            args.limit.is_none_or(|l| rows.len() as u64 >= l)
                        }
                        _ => true,
                    };
                    if full || std::time::Instant::now() >= until {
                        return Ok(reply);
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
            RequestsCommand::Show {
                request_id,
                wait_secs,
            } => {
                let until = deadline(wait_secs);
                let value = loop {
                    match client.get(&["requests", &request_id]).await {
                        Ok(value) => break value,
                        Err(CliError::Api { .. }) if std::time::Instant::now() < until => {
                            tokio::time::sleep(POLL).await;
                        }
                        Err(e) => return Err(e),
                    }
                };
                let text = detail_text(&value);
                Ok(Reply::Text { value, text })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_request_prints_its_fields_then_one_line_per_attempt() {
        let v = json!({
            "request_id": "r1", "started_at_ms": 1_765_000_000_000_i64, "status": 200,
            "latency_us": 12_345, "attempts": [
                {"deployment_id": "p1/gpt", "provider_id": "p1", "status": 503,
                 "error_class": "provider_error", "latency_us": 1000,
                 "started_at_ms": 1_765_000_000_001_i64, "error_message": "503"},
                {"deployment_id": "p2/gpt", "provider_id": "p2", "status": 200,
                 "latency_us": 2000, "started_at_ms": 1_765_000_000_030_i64}
            ]
        });
        let text = detail_text(&v);
        assert!(text.contains("LATENCY MS     12.3"), "{text}");
        let (_, attempts) = text.split_once("\n\n").unwrap();
        let lines: Vec<&str> = attempts.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[1].contains("p1/gpt") && lines[1].contains("provider_error"));
        assert!(lines[2].contains("p2/gpt") && lines[2].contains("200"));
    }
}
