//! The fleet view across control-plane replicas (issue #15): each node's row says which replica
//! it is connected to, since when its applied config differs from its assignment, and its
//! request and error rates (thousandths per second), refreshed by that replica every few
//! seconds, so any replica answers `GET /nodes` for the whole fleet. Existing rows start with
//! no replica, no difference and no traffic.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DataPlaneNodes {
    Table,
    Replica,
    DiffersSince,
    RequestRateMilli,
    ErrorRateMilli,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            ColumnDef::new(DataPlaneNodes::Replica)
                .string()
                .null()
                .to_owned(),
            ColumnDef::new(DataPlaneNodes::DiffersSince)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
            ColumnDef::new(DataPlaneNodes::RequestRateMilli)
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
            ColumnDef::new(DataPlaneNodes::ErrorRateMilli)
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
        ];
        // One statement per column: SQLite adds one column per ALTER TABLE.
        for mut col in columns {
            m.alter_table(
                Table::alter()
                    .table(DataPlaneNodes::Table)
                    .add_column(&mut col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            DataPlaneNodes::Replica,
            DataPlaneNodes::DiffersSince,
            DataPlaneNodes::RequestRateMilli,
            DataPlaneNodes::ErrorRateMilli,
        ] {
            m.alter_table(
                Table::alter()
                    .table(DataPlaneNodes::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
