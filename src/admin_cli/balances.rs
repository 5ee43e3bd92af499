//! `modelgate balances show|adjust`: a team's prepaid balance.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::table::{self, field, time, Column};
use super::{AdminClient, CliError, Reply, Run};

#[derive(Debug, Subcommand)]
pub enum BalancesCommand {
    /// Show a team's balance, its mode and its latest credits.
    Show {
        /// The team's id.
        team_id: String,
    },
    /// Top up or adjust a team's balance (the first call opens it, in `refuse` mode unless
    /// `--mode alert`).
    Adjust(AdjustArgs),
}

#[derive(Debug, Args)]
pub struct AdjustArgs {
    /// The team's id.
    pub team_id: String,
    /// Micro-USD (1 USD = 1 000 000); a top-up is positive, an adjustment signed.
    #[arg(long, allow_hyphen_values = true)]
    pub amount_micros: i64,
    /// Why (kept with the entry and in the audit log).
    #[arg(long)]
    pub reason: String,
    /// top_up (default) | adjustment
    #[arg(long)]
    pub kind: Option<String>,
    /// refuse | alert
    #[arg(long)]
    pub mode: Option<String>,
    /// Where alerts go; an empty value removes it.
    #[arg(long)]
    pub alert_webhook_url: Option<String>,
}

const COLUMNS: &[Column] = &[
    Column {
        header: "TEAM",
        cell: |v| field(v, "team_id"),
    },
    Column {
        header: "MODE",
        cell: |v| field(v, "mode"),
    },
    Column {
        header: "CREDITED_MICROS",
        cell: |v| field(v, "credited_micros"),
    },
    Column {
        header: "DEDUCTED_MICROS",
        cell: |v| field(v, "deducted_micros"),
    },
    Column {
        header: "BALANCE_MICROS",
        cell: |v| field(v, "balance_micros"),
    },
    Column {
        header: "RESERVED_MICROS",
        cell: |v| field(v, "reserved_micros"),
    },
];

const HISTORY: &[Column] = &[
    Column {
        header: "CREATED_AT",
        cell: |v| time(v, "created_at"),
    },
    Column {
        header: "KIND",
        cell: |v| field(v, "kind"),
    },
    Column {
        header: "AMOUNT_MICROS",
        cell: |v| field(v, "amount_micros"),
    },
    Column {
        header: "ACTOR",
        cell: |v| format!("{}:{}", field(v, "actor_type"), field(v, "actor_id")),
    },
    Column {
        header: "REASON",
        cell: |v| field(v, "reason"),
    },
];

/// The balance, then its history.
fn render(value: Value) -> Reply {
    let mut text = table::record(COLUMNS, &value);
    let history = value["history"].as_array().cloned().unwrap_or_default();
    if !history.is_empty() {
        text.push('\n');
        text.push_str(&table::rows(HISTORY, &history));
    }
    Reply::Text { value, text }
}

impl Run for BalancesCommand {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError> {
        match self {
            BalancesCommand::Show { team_id } => {
                Ok(render(client.get(&["teams", &team_id, "balance"]).await?))
            }
            BalancesCommand::Adjust(a) => {
                let mut body = Map::new();
                body.insert("amount_micros".into(), json!(a.amount_micros));
                body.insert("reason".into(), json!(a.reason));
                for (name, v) in [
                    ("kind", a.kind),
                    ("mode", a.mode),
                    ("alert_webhook_url", a.alert_webhook_url),
                ] {
                    if let Some(v) = v {
                        body.insert(name.into(), Value::String(v));
                    }
                }
                Ok(render(
                    client
                        .post(
                            &["teams", &a.team_id, "balance", "adjustments"],
                            Some(&Value::Object(body)),
                        )
                        .await?,
                ))
            }
        }
    }
}
