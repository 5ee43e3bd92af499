//! `replica_leases`: named leases that control-plane replicas over one database hold in turn
//! (`rollouts`: the replica that drives staged rollouts; `sqlite`: the one control plane a SQLite
//! file may have). A lease is held until `expires_at_ms` (Unix milliseconds, the database's
//! clock on Postgres) and renewed by its holder well before then.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ReplicaLeases::Table)
                .col(
                    ColumnDef::new(ReplicaLeases::Name)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(ReplicaLeases::Holder).string().not_null())
                .col(
                    ColumnDef::new(ReplicaLeases::ExpiresAtMs)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ReplicaLeases::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ReplicaLeases {
    Table,
    Name,
    Holder,
    ExpiresAtMs,
}
