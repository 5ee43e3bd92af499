//! `node_reports`: what data planes tell the control-plane replica they are connected to that
//! the rollout gates need (traffic reports and NACKs), shared through the database so that the
//! replica driving a rollout judges every node, whichever replica it is connected to. Written
//! on Postgres only (one control plane per SQLite file); kept for an hour.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(NodeReports::Table)
                .col(
                    ColumnDef::new(NodeReports::Seq)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new(NodeReports::NodeId).string().not_null())
                .col(ColumnDef::new(NodeReports::Replica).string().not_null())
                .col(ColumnDef::new(NodeReports::AtMs).big_integer().not_null())
                .col(ColumnDef::new(NodeReports::Kind).string().not_null())
                .col(
                    ColumnDef::new(NodeReports::Version)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(NodeReports::Requests)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(NodeReports::Errors).big_integer().not_null())
                .col(
                    ColumnDef::new(NodeReports::LatencyBuckets)
                        .string()
                        .not_null(),
                )
                .col(ColumnDef::new(NodeReports::Reason).string().null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_node_reports_at")
                .table(NodeReports::Table)
                .col(NodeReports::AtMs)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(NodeReports::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum NodeReports {
    Table,
    Seq,
    NodeId,
    Replica,
    AtMs,
    Kind,
    Version,
    Requests,
    Errors,
    LatencyBuckets,
    Reason,
}
