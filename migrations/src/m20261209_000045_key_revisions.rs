//! `api_keys.revision`: a fleet-wide number each key write takes from the `key_revision`
//! counter inside its transaction, under the counter's row lock, so revisions are committed in
//! the order they are taken. The control plane's key cache reads only the rows above the last
//! counter value it saw (`control-plane/src/snapshot/keys.rs`) instead of every key after every
//! change. Existing rows keep revision 0: a control plane reads every key once when it starts.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(ApiKeys::Table)
                .add_column(
                    ColumnDef::new(ApiKeys::Revision)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_api_keys_revision")
                .table(ApiKeys::Table)
                .col(ApiKeys::Revision)
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared(
                "INSERT INTO counters (name, value) SELECT 'key_revision', 0 \
                 WHERE NOT EXISTS (SELECT 1 FROM counters WHERE name = 'key_revision')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DELETE FROM counters WHERE name = 'key_revision'")
            .await?;
        m.drop_index(
            Index::drop()
                .name("idx_api_keys_revision")
                .table(ApiKeys::Table)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(ApiKeys::Table)
                .drop_column(ApiKeys::Revision)
                .to_owned(),
        )
        .await
    }
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Revision,
}
