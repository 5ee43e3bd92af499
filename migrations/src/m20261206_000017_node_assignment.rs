//! Per-node config assignment (issue #15): the version and content hash the control plane
//! assigned to each data plane, and the content hash of the version it applied, so the fleet
//! view shows drift. Existing rows start with nothing assigned.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DataPlaneNodes {
    Table,
    AssignedVersion,
    AssignedHash,
    AppliedHash,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            ColumnDef::new(DataPlaneNodes::AssignedVersion)
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
            ColumnDef::new(DataPlaneNodes::AssignedHash)
                .string()
                .not_null()
                .default("")
                .to_owned(),
            ColumnDef::new(DataPlaneNodes::AppliedHash)
                .string()
                .not_null()
                .default("")
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
            DataPlaneNodes::AssignedVersion,
            DataPlaneNodes::AssignedHash,
            DataPlaneNodes::AppliedHash,
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
