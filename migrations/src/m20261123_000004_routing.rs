//! Routing: a group's approved backup groups and its retry/timeout/ejection policy (tiers live in
//! the deployments JSON).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (col, default) in [
            (RoutingGroups::Fallbacks, "[]"),
            (RoutingGroups::Policy, "{}"),
        ] {
            m.alter_table(
                Table::alter()
                    .table(RoutingGroups::Table)
                    .add_column(ColumnDef::new(col).string().not_null().default(default))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [RoutingGroups::Fallbacks, RoutingGroups::Policy] {
            m.alter_table(
                Table::alter()
                    .table(RoutingGroups::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum RoutingGroups {
    Table,
    Fallbacks,
    Policy,
}
