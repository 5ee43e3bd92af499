//! Metering: the full usage event schema (v2), the ingest sequence that orders events by commit
//! for pull consumers and exporters, daily aggregates, and export sinks.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .string()
        .not_null()
        .default("")
        .to_owned()
}

fn big(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .default(0)
        .to_owned()
}

fn flag(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .boolean()
        .not_null()
        .default(false)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column per ALTER TABLE.
        let columns = [
            ColumnDef::new(UsageEvents::Seq)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(UsageEvents::SchemaVersion)
                .integer()
                .not_null()
                .default(1)
                .to_owned(),
            big(UsageEvents::FirstByteAtMs),
            text(UsageEvents::Region),
            text(UsageEvents::UserId),
            text(UsageEvents::Application),
            text(UsageEvents::Environment),
            text(UsageEvents::DeploymentId),
            ColumnDef::new(UsageEvents::Attempts)
                .text()
                .not_null()
                .default("[]")
                .to_owned(),
            big(UsageEvents::CachedInputTokens),
            big(UsageEvents::ReasoningTokens),
            big(UsageEvents::Images),
            big(UsageEvents::MediaMs),
            flag(UsageEvents::FallbackUsed),
            text(UsageEvents::TrafficClass),
        ];
        for col in columns {
            m.alter_table(
                Table::alter()
                    .table(UsageEvents::Table)
                    .add_column(col)
                    .to_owned(),
            )
            .await?;
        }
        // Events stored before this migration get sequence numbers in id (time) order.
        let db = m.get_connection();
        db.execute_unprepared(
            "UPDATE usage_events SET seq = (SELECT COUNT(*) FROM usage_events AS u \
             WHERE u.id <= usage_events.id)",
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_usage_events_seq")
                .table(UsageEvents::Table)
                .col(UsageEvents::Seq)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Counters::Table)
                .col(
                    ColumnDef::new(Counters::Name)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(big(Counters::Value))
                .to_owned(),
        )
        .await?;
        let backend = db.get_database_backend();
        db.execute(Statement::from_string(
            backend,
            "INSERT INTO counters (name, value) \
             SELECT 'usage_seq', COALESCE(MAX(seq), 0) FROM usage_events",
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(UsageDaily::Table)
                .col(ColumnDef::new(UsageDaily::Day).string().not_null())
                .col(ColumnDef::new(UsageDaily::KeyId).string().not_null())
                .col(ColumnDef::new(UsageDaily::TeamId).string().not_null())
                .col(ColumnDef::new(UsageDaily::UserId).string().not_null())
                .col(ColumnDef::new(UsageDaily::Model).string().not_null())
                .col(ColumnDef::new(UsageDaily::ProviderId).string().not_null())
                .col(big(UsageDaily::Requests))
                .col(big(UsageDaily::Errors))
                .col(big(UsageDaily::InputTokens))
                .col(big(UsageDaily::OutputTokens))
                .col(big(UsageDaily::CachedInputTokens))
                .col(big(UsageDaily::ReasoningTokens))
                .col(big(UsageDaily::Images))
                .col(big(UsageDaily::MediaMs))
                .col(big(UsageDaily::CostMicros))
                .primary_key(
                    Index::create()
                        .col(UsageDaily::Day)
                        .col(UsageDaily::KeyId)
                        .col(UsageDaily::TeamId)
                        .col(UsageDaily::UserId)
                        .col(UsageDaily::Model)
                        .col(UsageDaily::ProviderId),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_usage_daily_team_day")
                .table(UsageDaily::Table)
                .col(UsageDaily::TeamId)
                .col(UsageDaily::Day)
                .to_owned(),
        )
        .await?;
        // Aggregate what was stored before aggregates existed (UTC day of the start time).
        let day = match backend {
            DbBackend::Postgres => {
                "to_char(to_timestamp(started_at_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            }
            _ => "strftime('%Y-%m-%d', started_at_ms / 1000, 'unixepoch')",
        };
        db.execute_unprepared(&format!(
            "INSERT INTO usage_daily (day, key_id, team_id, user_id, model, provider_id, \
             requests, errors, input_tokens, output_tokens, cost_micros) \
             SELECT day, key_id, team_id, user_id, model, provider_id, COUNT(*), \
             SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(input_tokens), \
             SUM(output_tokens), SUM(cost_micros) FROM ( \
             SELECT {day} AS day, key_id, team_id, user_id, provider_id, status, input_tokens, \
             output_tokens, cost_micros, \
             CASE WHEN served_model = '' THEN requested_model ELSE served_model END AS model \
             FROM usage_events) AS t \
             GROUP BY day, key_id, team_id, user_id, model, provider_id"
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(ExportSinks::Table)
                .col(
                    ColumnDef::new(ExportSinks::Id)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(ExportSinks::Name)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(ExportSinks::Kind).string().not_null())
                .col(ColumnDef::new(ExportSinks::Url).string().not_null())
                .col(text(ExportSinks::Subject))
                .col(text(ExportSinks::Stream))
                .col(text(ExportSinks::SecretCiphertext))
                .col(big(ExportSinks::Cursor))
                .col(big(ExportSinks::Delivered))
                .col(big(ExportSinks::Failures))
                .col(ColumnDef::new(ExportSinks::LastError).string().null())
                .col(
                    ColumnDef::new(ExportSinks::LastDeliveryAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(
                    ColumnDef::new(ExportSinks::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ExportSinks::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(UsageDaily::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Counters::Table).to_owned())
            .await?;
        m.drop_index(
            Index::drop()
                .name("idx_usage_events_seq")
                .table(UsageEvents::Table)
                .to_owned(),
        )
        .await?;
        for col in [
            UsageEvents::Seq,
            UsageEvents::SchemaVersion,
            UsageEvents::FirstByteAtMs,
            UsageEvents::Region,
            UsageEvents::UserId,
            UsageEvents::Application,
            UsageEvents::Environment,
            UsageEvents::DeploymentId,
            UsageEvents::Attempts,
            UsageEvents::CachedInputTokens,
            UsageEvents::ReasoningTokens,
            UsageEvents::Images,
            UsageEvents::MediaMs,
            UsageEvents::FallbackUsed,
            UsageEvents::TrafficClass,
        ] {
            m.alter_table(
                Table::alter()
                    .table(UsageEvents::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum UsageEvents {
    Table,
    Seq,
    SchemaVersion,
    FirstByteAtMs,
    Region,
    UserId,
    Application,
    Environment,
    DeploymentId,
    Attempts,
    CachedInputTokens,
    ReasoningTokens,
    Images,
    MediaMs,
    FallbackUsed,
    TrafficClass,
}

#[derive(DeriveIden)]
enum Counters {
    Table,
    Name,
    Value,
}

#[derive(DeriveIden)]
enum UsageDaily {
    Table,
    Day,
    KeyId,
    TeamId,
    UserId,
    Model,
    ProviderId,
    Requests,
    Errors,
    InputTokens,
    OutputTokens,
    CachedInputTokens,
    ReasoningTokens,
    Images,
    MediaMs,
    CostMicros,
}

#[derive(DeriveIden)]
enum ExportSinks {
    Table,
    Id,
    Name,
    Kind,
    Url,
    Subject,
    Stream,
    SecretCiphertext,
    Cursor,
    Delivered,
    Failures,
    LastError,
    LastDeliveryAt,
    CreatedAt,
}
