//! The foundation schema: teams, gateway keys, provider accounts, prices, routing groups,
//! config versions, data-plane nodes, usage events, admin tokens and settings.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .string()
        .not_null()
        .primary_key()
        .to_owned()
}

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().not_null().to_owned()
}

fn created_at(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn big(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .default(0)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Teams::Table)
                .col(id(Teams::Id))
                .col(text(Teams::Name).unique_key().to_owned())
                .col(created_at(Teams::CreatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ApiKeys::Table)
                .col(id(ApiKeys::Id))
                .col(text(ApiKeys::TeamId))
                .col(text(ApiKeys::Name))
                .col(text(ApiKeys::KeyHash).unique_key().to_owned())
                .col(text(ApiKeys::Prefix))
                .col(text(ApiKeys::Environment))
                .col(text(ApiKeys::AllowedModels))
                .col(
                    ColumnDef::new(ApiKeys::ExpiresAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(
                    ColumnDef::new(ApiKeys::RevokedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(created_at(ApiKeys::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(ApiKeys::Table, ApiKeys::TeamId)
                        .to(Teams::Table, Teams::Id),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ProviderAccounts::Table)
                .col(id(ProviderAccounts::Id))
                .col(text(ProviderAccounts::Name).unique_key().to_owned())
                .col(text(ProviderAccounts::Kind))
                .col(text(ProviderAccounts::BaseUrl))
                .col(text(ProviderAccounts::CredentialCiphertext))
                .col(text(ProviderAccounts::CredentialLast4))
                .col(created_at(ProviderAccounts::CreatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Models::Table)
                .col(id(Models::Id))
                .col(text(Models::Model).unique_key().to_owned())
                .col(big(Models::InputMicrosPerMtok))
                .col(big(Models::OutputMicrosPerMtok))
                .col(big(Models::PriceVersion))
                .col(created_at(Models::CreatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(RoutingGroups::Table)
                .col(id(RoutingGroups::Id))
                .col(text(RoutingGroups::Alias).unique_key().to_owned())
                .col(text(RoutingGroups::Deployments))
                .col(created_at(RoutingGroups::CreatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ConfigVersions::Table)
                .col(
                    ColumnDef::new(ConfigVersions::Version)
                        .big_integer()
                        .not_null()
                        .primary_key(),
                )
                .col(text(ConfigVersions::ContentHash))
                .col(ColumnDef::new(ConfigVersions::Body).binary().not_null())
                .col(created_at(ConfigVersions::CreatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(DataPlaneNodes::Table)
                .col(id(DataPlaneNodes::NodeId))
                .col(text(DataPlaneNodes::Labels))
                .col(text(DataPlaneNodes::SoftwareVersion))
                .col(big(DataPlaneNodes::AppliedVersion))
                .col(text(DataPlaneNodes::Status))
                .col(ColumnDef::new(DataPlaneNodes::LastError).string().null())
                .col(
                    ColumnDef::new(DataPlaneNodes::Connected)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(created_at(DataPlaneNodes::LastSeen))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(UsageEvents::Table)
                .col(id(UsageEvents::Id))
                .col(text(UsageEvents::RequestId))
                .col(big(UsageEvents::StartedAtMs))
                .col(big(UsageEvents::EndedAtMs))
                .col(text(UsageEvents::NodeId))
                .col(text(UsageEvents::KeyId))
                .col(text(UsageEvents::TeamId))
                .col(text(UsageEvents::Endpoint))
                .col(text(UsageEvents::RequestedModel))
                .col(text(UsageEvents::ProviderId))
                .col(text(UsageEvents::ServedModel))
                .col(ColumnDef::new(UsageEvents::Status).integer().not_null())
                .col(ColumnDef::new(UsageEvents::ErrorClass).string().null())
                .col(text(UsageEvents::ErrorMessage))
                .col(big(UsageEvents::LatencyUs))
                .col(big(UsageEvents::TtfbUs))
                .col(big(UsageEvents::InputTokens))
                .col(big(UsageEvents::OutputTokens))
                .col(big(UsageEvents::CostMicros))
                .col(big(UsageEvents::PriceVersion))
                .col(ColumnDef::new(UsageEvents::Streamed).boolean().not_null())
                .col(ColumnDef::new(UsageEvents::Estimated).boolean().not_null())
                .col(created_at(UsageEvents::IngestedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_usage_events_request_id")
                .table(UsageEvents::Table)
                .col(UsageEvents::RequestId)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_usage_events_team_started")
                .table(UsageEvents::Table)
                .col(UsageEvents::TeamId)
                .col(UsageEvents::StartedAtMs)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(AdminTokens::Table)
                .col(id(AdminTokens::Id))
                .col(text(AdminTokens::Name))
                .col(text(AdminTokens::TokenHash).unique_key().to_owned())
                .col(text(AdminTokens::Prefix))
                .col(
                    ColumnDef::new(AdminTokens::RevokedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(created_at(AdminTokens::CreatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Settings::Table)
                .col(id(Settings::Name))
                .col(text(Settings::Value))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Settings::Table.into_iden(),
            AdminTokens::Table.into_iden(),
            UsageEvents::Table.into_iden(),
            DataPlaneNodes::Table.into_iden(),
            ConfigVersions::Table.into_iden(),
            RoutingGroups::Table.into_iden(),
            Models::Table.into_iden(),
            ProviderAccounts::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            Teams::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Teams {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    TeamId,
    Name,
    KeyHash,
    Prefix,
    Environment,
    AllowedModels,
    ExpiresAt,
    RevokedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ProviderAccounts {
    Table,
    Id,
    Name,
    Kind,
    BaseUrl,
    CredentialCiphertext,
    CredentialLast4,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Models {
    Table,
    Id,
    Model,
    InputMicrosPerMtok,
    OutputMicrosPerMtok,
    PriceVersion,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RoutingGroups {
    Table,
    Id,
    Alias,
    Deployments,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ConfigVersions {
    Table,
    Version,
    ContentHash,
    Body,
    CreatedAt,
}

#[derive(DeriveIden)]
enum DataPlaneNodes {
    Table,
    NodeId,
    Labels,
    SoftwareVersion,
    AppliedVersion,
    Status,
    LastError,
    Connected,
    LastSeen,
}

#[derive(DeriveIden)]
enum UsageEvents {
    Table,
    Id,
    RequestId,
    StartedAtMs,
    EndedAtMs,
    NodeId,
    KeyId,
    TeamId,
    Endpoint,
    RequestedModel,
    ProviderId,
    ServedModel,
    Status,
    ErrorClass,
    ErrorMessage,
    LatencyUs,
    TtfbUs,
    InputTokens,
    OutputTokens,
    CostMicros,
    PriceVersion,
    Streamed,
    Estimated,
    IngestedAt,
}

#[derive(DeriveIden)]
enum AdminTokens {
    Table,
    Id,
    Name,
    TokenHash,
    Prefix,
    RevokedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Settings {
    Table,
    Name,
    Value,
}
