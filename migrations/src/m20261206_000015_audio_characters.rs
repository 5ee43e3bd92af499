//! Text-to-speech metering (issue #19): a per-1M-characters price on catalog rows and their
//! frozen versions, and the characters a request was metered by on usage events and their
//! daily aggregates. Existing rows price no characters and count none.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn zero(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .default(0)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            (Alias::new("models"), Alias::new("per_mchar_micros")),
            (
                Alias::new("model_price_versions"),
                Alias::new("per_mchar_micros"),
            ),
            (Alias::new("usage_events"), Alias::new("characters")),
            (Alias::new("usage_daily"), Alias::new("characters")),
        ];
        // One statement per column: SQLite adds one column per ALTER TABLE.
        for (table, col) in columns {
            m.alter_table(Table::alter().table(table).add_column(zero(col)).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            (Alias::new("models"), Alias::new("per_mchar_micros")),
            (
                Alias::new("model_price_versions"),
                Alias::new("per_mchar_micros"),
            ),
            (Alias::new("usage_events"), Alias::new("characters")),
            (Alias::new("usage_daily"), Alias::new("characters")),
        ];
        for (table, col) in columns {
            m.alter_table(Table::alter().table(table).drop_column(col).to_owned())
                .await?;
        }
        Ok(())
    }
}
