//! `usage_daily.check_traffic`: the daily aggregates keep the acceptance runs' requests
//! (`modelgate check`, application `modelgate-check`) in rows of their own, so that the
//! overview and `GET /admin/v1/usage/daily` can leave them out or show them alone, as the
//! request log can.
//!
//! The flag joins the primary key, which SQLite cannot change in place, so the table is
//! rebuilt (the same way on both backends). Existing rows become ordinary traffic, then the check traffic still in the
//! ledger is moved into rows of its own (summed from its events, taken off the ordinary row it
//! was counted in). An event the retention already dropped cannot be told apart and stays
//! counted as ordinary traffic.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The aggregate's key columns before this migration.
const KEY: [&str; 6] = [
    "day",
    "key_id",
    "team_id",
    "user_id",
    "model",
    "provider_id",
];
/// Its counters, each summed from the events it counts.
const COUNTERS: [&str; 10] = [
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "images",
    "media_ms",
    "characters",
    "cost_micros",
];

fn counters() -> impl Iterator<Item = &'static str> {
    COUNTERS.into_iter()
}

/// `f` of each name, joined with `sep`.
fn each(
    names: impl Iterator<Item = &'static str>,
    sep: &str,
    f: impl Fn(&str) -> String,
) -> String {
    names.map(f).collect::<Vec<_>>().join(sep)
}

/// The rebuilt table, `with_flag` deciding whether `check_traffic` is a column and key part.
fn table(name: &str, with_flag: bool) -> TableCreateStatement {
    let mut t = Table::create();
    t.table(Alias::new(name));
    for k in KEY {
        t.col(ColumnDef::new(Alias::new(k)).string().not_null());
    }
    if with_flag {
        t.col(
            ColumnDef::new(Alias::new("check_traffic"))
                .boolean()
                .not_null()
                .default(false),
        );
    }
    for c in counters() {
        t.col(
            ColumnDef::new(Alias::new(c))
                .big_integer()
                .not_null()
                .default(0),
        );
    }
    let mut pk = Index::create();
    for k in KEY {
        pk.col(Alias::new(k));
    }
    if with_flag {
        pk.col(Alias::new("check_traffic"));
    }
    t.primary_key(&mut pk);
    t.to_owned()
}

/// Drops `usage_daily`, renames `from` in its place and gives it back its team index (and, on
/// Postgres, the primary key constraint its usual name).
async fn replace_with(m: &SchemaManager<'_>, from: &str) -> Result<(), DbErr> {
    let db = m.get_connection();
    m.drop_table(Table::drop().table(Alias::new("usage_daily")).to_owned())
        .await?;
    m.rename_table(
        Table::rename()
            .table(Alias::new(from), Alias::new("usage_daily"))
            .to_owned(),
    )
    .await?;
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_unprepared(&format!(
            "ALTER TABLE usage_daily RENAME CONSTRAINT {from}_pkey TO usage_daily_pkey"
        ))
        .await?;
    }
    m.create_index(
        Index::create()
            .name("idx_usage_daily_team_day")
            .table(Alias::new("usage_daily"))
            .col(Alias::new("team_id"))
            .col(Alias::new("day"))
            .to_owned(),
    )
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let key = KEY.join(", ");
        let sums = counters().collect::<Vec<_>>().join(", ");
        m.create_table(table("usage_daily_next", true)).await?;
        db.execute_unprepared(&format!(
            "INSERT INTO usage_daily_next ({key}, check_traffic, {sums}) \
             SELECT {key}, FALSE, {sums} FROM usage_daily"
        ))
        .await?;

        // The check traffic still in the ledger, summed as ingest sums it (UTC day of the
        // start, the served model or else the requested one), moved only where the ordinary
        // row holds at least as much (it always does unless a row was edited by hand).
        let day = match db.get_database_backend() {
            DbBackend::Postgres => {
                "to_char(to_timestamp(started_at_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            }
            _ => "strftime('%Y-%m-%d', started_at_ms / 1000, 'unixepoch')",
        };
        let summed = each(counters(), ", ", |c| match c {
            "requests" => "COUNT(*) AS requests".to_owned(),
            "errors" => "SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS errors".to_owned(),
            c => format!("SUM({c}) AS {c}"),
        });
        let raw = each(
            counters().filter(|c| *c != "requests" && *c != "errors"),
            ", ",
            str::to_owned,
        );
        let same_key =
            |a: &str, b: &str| each(KEY.into_iter(), " AND ", |k| format!("{a}.{k} = {b}.{k}"));
        let from_c = each(KEY.into_iter().chain(counters()), ", ", |c| {
            format!("c.{c}")
        });
        let covered = each(counters(), " AND ", |c| format!("o.{c} >= c.{c}"));
        db.execute_unprepared(&format!(
            "INSERT INTO usage_daily_next ({key}, {sums}, check_traffic) \
             SELECT {from_c}, TRUE FROM ( \
               SELECT {key}, {summed} FROM ( \
                 SELECT {day} AS day, key_id, team_id, user_id, provider_id, status, {raw}, \
                   CASE WHEN served_model = '' THEN requested_model ELSE served_model END \
                   AS model \
                 FROM usage_events WHERE application = 'modelgate-check') AS e \
               GROUP BY {key}) AS c \
             JOIN usage_daily_next AS o ON {join} AND o.check_traffic = FALSE \
             WHERE {covered}",
            join = same_key("o", "c"),
        ))
        .await?;
        // Taken off the ordinary rows they were counted in; a row left with no requests held
        // only check traffic.
        let moved = |c: &str| {
            format!(
                "{c} = {c} - (SELECT m.{c} FROM usage_daily_next AS m \
                 WHERE m.check_traffic = TRUE AND {})",
                same_key("m", "usage_daily_next")
            )
        };
        db.execute_unprepared(&format!(
            "UPDATE usage_daily_next SET {} WHERE check_traffic = FALSE AND EXISTS ( \
               SELECT 1 FROM usage_daily_next AS m WHERE m.check_traffic = TRUE AND {})",
            each(counters(), ", ", moved),
            same_key("m", "usage_daily_next")
        ))
        .await?;
        db.execute_unprepared(
            "DELETE FROM usage_daily_next WHERE check_traffic = FALSE AND requests = 0",
        )
        .await?;
        replace_with(m, "usage_daily_next").await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let key = KEY.join(", ");
        let sums = counters().collect::<Vec<_>>().join(", ");
        let summed = each(counters(), ", ", |c| format!("SUM({c})"));
        m.create_table(table("usage_daily_before", false)).await?;
        db.execute_unprepared(&format!(
            "INSERT INTO usage_daily_before ({key}, {sums}) \
             SELECT {key}, {summed} FROM usage_daily GROUP BY {key}"
        ))
        .await?;
        replace_with(m, "usage_daily_before").await
    }
}
