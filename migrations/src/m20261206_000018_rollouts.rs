//! Staged rollouts (issue #15): one row per rollout of a policy change, with its plan, the
//! wave it reached, its state, and the versions of its two tracks (the old content and the new),
//! so the operator's history survives restarts and a restarted control plane resumes a
//! rollout in progress. The rollout policy itself is the settings row `rollout_policy`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Rollouts {
    Table,
    Id,
    Status,
    Plan,
    Wave,
    OldVersion,
    NewVersion,
    OldPolicyHash,
    NewPolicyHash,
    Reason,
    CreatedAt,
    UpdatedAt,
    WaveStartedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Rollouts::Table)
                .col(
                    ColumnDef::new(Rollouts::Id)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Rollouts::Status).string().not_null())
                .col(ColumnDef::new(Rollouts::Plan).text().not_null())
                .col(ColumnDef::new(Rollouts::Wave).integer().not_null())
                .col(
                    ColumnDef::new(Rollouts::OldVersion)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Rollouts::NewVersion)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(Rollouts::OldPolicyHash).string().not_null())
                .col(ColumnDef::new(Rollouts::NewPolicyHash).string().not_null())
                .col(ColumnDef::new(Rollouts::Reason).text().null())
                .col(
                    ColumnDef::new(Rollouts::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Rollouts::UpdatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Rollouts::WaveStartedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("rollouts_status")
                .table(Rollouts::Table)
                .col(Rollouts::Status)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Rollouts::Table).to_owned())
            .await
    }
}
