//! Identity and the key lifecycle: users and team membership with roles, admin tokens with a role
//! and an optional team scope, key metadata (owner, application, data class, endpoint
//! families), disable and rotation with a grace period, resource versions for optimistic
//! concurrency, the audit log, and idempotency records for creates.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn text(col: impl IntoIden, default: &str) -> ColumnDef {
    ColumnDef::new(col)
        .string()
        .not_null()
        .default(default)
        .to_owned()
}

fn version(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .default(1)
        .to_owned()
}

fn at(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

async fn add(
    m: &SchemaManager<'_>,
    table: impl IntoIden + 'static,
    col: ColumnDef,
) -> Result<(), DbErr> {
    m.alter_table(Table::alter().table(table).add_column(col).to_owned())
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Users::Table)
                .col(ColumnDef::new(Users::Id).string().not_null().primary_key())
                .col(
                    ColumnDef::new(Users::Email)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(text(Users::Name, ""))
                .col(version(Users::Version))
                .col(at(Users::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(TeamMembers::Table)
                .col(ColumnDef::new(TeamMembers::TeamId).string().not_null())
                .col(ColumnDef::new(TeamMembers::UserId).string().not_null())
                .col(ColumnDef::new(TeamMembers::Role).string().not_null())
                .col(at(TeamMembers::CreatedAt))
                .primary_key(
                    Index::create()
                        .col(TeamMembers::TeamId)
                        .col(TeamMembers::UserId),
                )
                .to_owned(),
        )
        .await?;

        // Tokens minted before roles existed were all-powerful: they become organisation owners.
        add(m, AdminTokens::Table, text(AdminTokens::Role, "owner")).await?;
        add(
            m,
            AdminTokens::Table,
            ColumnDef::new(AdminTokens::TeamId)
                .string()
                .null()
                .to_owned(),
        )
        .await?;

        add(m, Teams::Table, version(Teams::Version)).await?;

        add(
            m,
            ApiKeys::Table,
            ColumnDef::new(ApiKeys::OwnerUserId)
                .string()
                .null()
                .to_owned(),
        )
        .await?;
        add(m, ApiKeys::Table, text(ApiKeys::Application, "")).await?;
        add(m, ApiKeys::Table, text(ApiKeys::DataClass, "internal")).await?;
        add(m, ApiKeys::Table, text(ApiKeys::EndpointFamilies, "[]")).await?;
        add(m, ApiKeys::Table, text(ApiKeys::Metadata, "{}")).await?;
        add(
            m,
            ApiKeys::Table,
            ColumnDef::new(ApiKeys::DisabledAt)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
        )
        .await?;
        add(
            m,
            ApiKeys::Table,
            ColumnDef::new(ApiKeys::PreviousKeyHash)
                .string()
                .null()
                .to_owned(),
        )
        .await?;
        add(
            m,
            ApiKeys::Table,
            ColumnDef::new(ApiKeys::PreviousExpiresAt)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
        )
        .await?;
        add(m, ApiKeys::Table, version(ApiKeys::Version)).await?;

        m.create_table(
            Table::create()
                .table(AuditLog::Table)
                .col(
                    ColumnDef::new(AuditLog::Id)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(AuditLog::ActorType).string().not_null())
                .col(ColumnDef::new(AuditLog::ActorId).string().not_null())
                .col(text(AuditLog::ActorRole, ""))
                .col(ColumnDef::new(AuditLog::Action).string().not_null())
                .col(ColumnDef::new(AuditLog::ResourceType).string().not_null())
                .col(ColumnDef::new(AuditLog::ResourceId).string().not_null())
                .col(ColumnDef::new(AuditLog::TeamId).string().null())
                .col(ColumnDef::new(AuditLog::Before).text().null())
                .col(ColumnDef::new(AuditLog::After).text().null())
                .col(text(AuditLog::RequestId, ""))
                .col(at(AuditLog::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_audit_resource")
                .table(AuditLog::Table)
                .col(AuditLog::ResourceType)
                .col(AuditLog::ResourceId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(IdempotencyKeys::Table)
                .col(ColumnDef::new(IdempotencyKeys::ActorId).string().not_null())
                .col(ColumnDef::new(IdempotencyKeys::Key).string().not_null())
                .col(ColumnDef::new(IdempotencyKeys::Route).string().not_null())
                .col(
                    ColumnDef::new(IdempotencyKeys::RequestHash)
                        .string()
                        .not_null(),
                )
                .col(ColumnDef::new(IdempotencyKeys::Status).integer().not_null())
                .col(ColumnDef::new(IdempotencyKeys::Response).text().not_null())
                .col(at(IdempotencyKeys::CreatedAt))
                .primary_key(
                    Index::create()
                        .col(IdempotencyKeys::ActorId)
                        .col(IdempotencyKeys::Key),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            IdempotencyKeys::Table.into_iden(),
            AuditLog::Table.into_iden(),
            TeamMembers::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        for (table, col) in [
            (
                AdminTokens::Table.into_iden(),
                AdminTokens::Role.into_iden(),
            ),
            (
                AdminTokens::Table.into_iden(),
                AdminTokens::TeamId.into_iden(),
            ),
            (Teams::Table.into_iden(), Teams::Version.into_iden()),
            (ApiKeys::Table.into_iden(), ApiKeys::OwnerUserId.into_iden()),
            (ApiKeys::Table.into_iden(), ApiKeys::Application.into_iden()),
            (ApiKeys::Table.into_iden(), ApiKeys::DataClass.into_iden()),
            (
                ApiKeys::Table.into_iden(),
                ApiKeys::EndpointFamilies.into_iden(),
            ),
            (ApiKeys::Table.into_iden(), ApiKeys::Metadata.into_iden()),
            (ApiKeys::Table.into_iden(), ApiKeys::DisabledAt.into_iden()),
            (
                ApiKeys::Table.into_iden(),
                ApiKeys::PreviousKeyHash.into_iden(),
            ),
            (
                ApiKeys::Table.into_iden(),
                ApiKeys::PreviousExpiresAt.into_iden(),
            ),
            (ApiKeys::Table.into_iden(), ApiKeys::Version.into_iden()),
        ] {
            m.alter_table(Table::alter().table(table).drop_column(col).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    Name,
    Version,
    CreatedAt,
}

#[derive(DeriveIden)]
enum TeamMembers {
    Table,
    TeamId,
    UserId,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AdminTokens {
    Table,
    Role,
    TeamId,
}

#[derive(DeriveIden)]
enum Teams {
    Table,
    Version,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    OwnerUserId,
    Application,
    DataClass,
    EndpointFamilies,
    Metadata,
    DisabledAt,
    PreviousKeyHash,
    PreviousExpiresAt,
    Version,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    ActorType,
    ActorId,
    ActorRole,
    Action,
    ResourceType,
    ResourceId,
    TeamId,
    Before,
    After,
    RequestId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    ActorId,
    Key,
    Route,
    RequestHash,
    Status,
    Response,
    CreatedAt,
}
