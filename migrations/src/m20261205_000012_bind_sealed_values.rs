//! Sealed values become bound to their table, column and row (AEAD associated data). A
//! migration cannot re-seal (it does not know the master key), so it records that this
//! database's sealed values are still in the unbound format: the settings row
//! `sealed_values_format = unbound`. The control plane re-seals them at start, in one
//! transaction, and sets the row to `bound` (`service::maintenance::bind_sealed_values`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

pub const MARKER: &str = "sealed_values_format";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let mut insert = Query::insert();
        insert
            .into_table(Settings::Table)
            .columns([Settings::Name, Settings::Value])
            .values([MARKER.into(), "unbound".into()])
            .map_err(|e| DbErr::Custom(e.to_string()))?
            .on_conflict(OnConflict::column(Settings::Name).do_nothing().to_owned());
        m.exec_stmt(insert).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let delete = Query::delete()
            .from_table(Settings::Table)
            .and_where(Expr::col(Settings::Name).eq(MARKER))
            .to_owned();
        m.exec_stmt(delete).await
    }
}

#[derive(DeriveIden)]
enum Settings {
    Table,
    Name,
    Value,
}
