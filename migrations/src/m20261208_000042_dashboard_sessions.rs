//! Dashboard sessions in the database (issue #15), so that every control-plane replica accepts
//! a session another one opened. A row holds the SHA-256 of the session id (the cookie value
//! never), the SHA-256 of the admin token it signed in with (as `admin_tokens.token_hash`; the
//! token never), its sign-in and last-use times, and the message for its next page, sealed.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(DashboardSessions::Table)
                .col(
                    ColumnDef::new(DashboardSessions::IdHash)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(DashboardSessions::TokenHash)
                        .string()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(DashboardSessions::CreatedAtMs)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(DashboardSessions::LastUsedAtMs)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(DashboardSessions::Flash).text().null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_dashboard_sessions_last_used")
                .table(DashboardSessions::Table)
                .col(DashboardSessions::LastUsedAtMs)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(DashboardSessions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum DashboardSessions {
    Table,
    IdHash,
    TokenHash,
    CreatedAtMs,
    LastUsedAtMs,
    Flash,
}
