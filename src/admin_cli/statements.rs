//! `modelgate statements show`: a team's monthly statement, as a table, JSON or CSV.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::table::{self, field, Column};
use super::{AdminClient, CliError, Reply, Run};

#[derive(Debug, Subcommand)]
pub enum StatementsCommand {
    /// A team's statement for one month (UTC): line items by model, price version and unit,
    /// credits, opening and closing balance.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[arg(long)]
    pub team_id: String,
    /// YYYY-MM
    #[arg(long)]
    pub month: String,
    /// Print the API's CSV export instead.
    #[arg(long)]
    pub csv: bool,
}

const SUMMARY: &[Column] = &[
    Column {
        header: "TEAM",
        cell: |v| field(v, "team_id"),
    },
    Column {
        header: "MONTH",
        cell: |v| field(v, "month"),
    },
    Column {
        header: "STATUS",
        cell: |v| field(v, "status"),
    },
    Column {
        header: "REQUESTS",
        cell: |v| field(v, "requests"),
    },
    Column {
        header: "USAGE_MICROS",
        cell: |v| field(v, "usage_micros"),
    },
    Column {
        header: "CREDITS_MICROS",
        cell: |v| field(v, "credits_micros"),
    },
    Column {
        header: "OPENING_BALANCE_MICROS",
        cell: |v| field(v, "opening_balance_micros"),
    },
    Column {
        header: "CLOSING_BALANCE_MICROS",
        cell: |v| field(v, "closing_balance_micros"),
    },
];

const LINES: &[Column] = &[
    Column {
        header: "MODEL",
        cell: |v| field(v, "model"),
    },
    Column {
        header: "SERVED",
        cell: |v| field(v, "served_model"),
    },
    Column {
        header: "PRICE_VERSION",
        cell: |v| field(v, "price_version"),
    },
    Column {
        header: "UNIT",
        cell: |v| field(v, "unit"),
    },
    Column {
        header: "QUANTITY",
        cell: |v| field(v, "quantity"),
    },
    Column {
        header: "UNIT_PRICE_MICROS",
        cell: |v| {
            format!(
                "{} {}",
                field(v, "unit_price_micros"),
                field(v, "price_basis")
            )
        },
    },
    Column {
        header: "AMOUNT_MICROS",
        cell: |v| field(v, "amount_micros"),
    },
    Column {
        header: "ORIGINAL_DAY",
        cell: |v| field(v, "original_day"),
    },
];

impl Run for StatementsCommand {
    async fn run(self, client: &AdminClient) -> Result<Reply, CliError> {
        let StatementsCommand::Show(a) = self;
        let query = [("team_id", a.team_id), ("month", a.month)];
        if a.csv {
            let text = client.get_text(&["statements"], &query, "text/csv").await?;
            return Ok(Reply::Text {
                value: Value::String(text.clone()),
                text,
            });
        }
        let value = client
            .call(reqwest::Method::GET, &["statements"], &query, None)
            .await?;
        let mut text = table::record(SUMMARY, &value);
        let lines = value["lines"].as_array().cloned().unwrap_or_default();
        if !lines.is_empty() {
            text.push('\n');
            text.push_str(&table::rows(LINES, &lines));
        }
        Ok(Reply::Text { value, text })
    }
}
