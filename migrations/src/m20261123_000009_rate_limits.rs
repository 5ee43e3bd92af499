//! Rate limits: requests per minute, tokens per minute and concurrent requests on a key,
//! team, user or model alias. Only definitions are stored; the counts live in leases the control
//! plane grants data planes per minute.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().not_null().to_owned()
}

fn big(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .default(0)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(RateLimits::Table)
                .col(text(RateLimits::Id).primary_key().to_owned())
                .col(text(RateLimits::ScopeKind))
                .col(text(RateLimits::ScopeId))
                .col(ColumnDef::new(RateLimits::Model).string().null())
                .col(big(RateLimits::Rpm))
                .col(big(RateLimits::Tpm))
                .col(big(RateLimits::MaxConcurrent))
                .col(text(RateLimits::WhenUnreachable))
                .col(
                    ColumnDef::new(RateLimits::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("rate_limits_scope")
                .table(RateLimits::Table)
                .col(RateLimits::ScopeKind)
                .col(RateLimits::ScopeId)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(RateLimits::Table).to_owned())
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum RateLimits {
    Table,
    Id,
    ScopeKind,
    ScopeId,
    Model,
    Rpm,
    Tpm,
    MaxConcurrent,
    WhenUnreachable,
    CreatedAt,
}
