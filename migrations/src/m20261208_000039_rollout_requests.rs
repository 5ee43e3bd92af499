//! `rollout_requests`: an operator's rollout action (promote, pause, resume, rollback) received by
//! a control-plane replica that does not drive rollouts, for the replica that does to carry out.
//! The driver claims a request by setting `claimed_at_ms`, acts, and writes the outcome; the
//! receiving replica waits for it, or withdraws a request still unclaimed.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(RolloutRequests::Table)
                .col(
                    ColumnDef::new(RolloutRequests::Id)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(RolloutRequests::RolloutId)
                        .string()
                        .not_null(),
                )
                .col(ColumnDef::new(RolloutRequests::Action).string().not_null())
                .col(ColumnDef::new(RolloutRequests::Reason).string().null())
                .col(
                    ColumnDef::new(RolloutRequests::RequestedAtMs)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(RolloutRequests::ClaimedAtMs)
                        .big_integer()
                        .null(),
                )
                .col(ColumnDef::new(RolloutRequests::Outcome).string().null())
                .col(ColumnDef::new(RolloutRequests::Message).string().null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(RolloutRequests::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum RolloutRequests {
    Table,
    Id,
    RolloutId,
    Action,
    Reason,
    RequestedAtMs,
    ClaimedAtMs,
    Outcome,
    Message,
}
