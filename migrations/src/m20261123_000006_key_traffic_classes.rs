//! Traffic classes on keys: the class a request gets when it names none, and the classes it may
//! ask for by header.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (col, default) in [
            (ApiKeys::TrafficClass, "interactive"),
            (ApiKeys::AllowedTrafficClasses, "[]"),
        ] {
            m.alter_table(
                Table::alter()
                    .table(ApiKeys::Table)
                    .add_column(ColumnDef::new(col).string().not_null().default(default))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [ApiKeys::TrafficClass, ApiKeys::AllowedTrafficClasses] {
            m.alter_table(
                Table::alter()
                    .table(ApiKeys::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    TrafficClass,
    AllowedTrafficClasses,
}
