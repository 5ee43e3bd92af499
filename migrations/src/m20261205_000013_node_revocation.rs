//! Revoked data-plane nodes (issue #14): a node listed here is refused on every gRPC call and
//! its open streams are closed, by every control plane on the database.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(NodeRevocations::Table)
                .col(
                    ColumnDef::new(NodeRevocations::NodeId)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(NodeRevocations::RevokedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(NodeRevocations::RevokedBy)
                        .string()
                        .not_null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(NodeRevocations::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum NodeRevocations {
    Table,
    NodeId,
    RevokedAt,
    RevokedBy,
}
