//! Schema migrations for the control plane's database. They run forward automatically when the
//! control plane starts, on Postgres and on embedded SQLite alike.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_foundation;
mod m20261123_000002_metering;
mod m20261123_000003_identity;
mod m20261123_000004_routing;
mod m20261123_000005_pricing_catalog;
mod m20261123_000006_key_traffic_classes;
mod m20261123_000007_quotas;
mod m20261123_000008_budget_alerts_and_grants;
mod m20261123_000009_rate_limits;
mod m20261205_000010_usage_quarantine;
mod m20261205_000011_admin_token_expiry;
mod m20261205_000012_bind_sealed_values;
mod m20261205_000013_node_revocation;
mod m20261206_000014_request_log;
mod m20261206_000015_audio_characters;
mod m20261206_000016_response_cache;
mod m20261206_000017_node_assignment;
mod m20261206_000018_rollouts;
mod m20261206_000019_rollout_policy;
mod m20261206_000020_balances;
mod m20261206_000021_statements;
mod m20261206_000023_usage_partitions;
mod m20261206_000026_usage_trace_id;
mod m20261207_000033_replica_leases;
mod m20261207_000034_rate_grants;
mod m20261207_000037_usage_sequence_blocks;
mod m20261207_000038_request_log_provider_index;
mod m20261208_000039_rollout_requests;
mod m20261208_000040_node_reports;
mod m20261208_000041_fleet_view;
mod m20261208_000042_dashboard_sessions;
mod m20261208_000043_usage_index_diet;
mod m20261209_000045_key_revisions;
mod m20261210_000046_usage_daily_check_traffic;
pub mod usage_partitions;

/// The settings row recording whether sealed values are bound (`bound`) or not yet (`unbound`).
pub use m20261205_000012_bind_sealed_values::MARKER as SEALED_VALUES_FORMAT;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_foundation::Migration),
            Box::new(m20261123_000002_metering::Migration),
            Box::new(m20261123_000003_identity::Migration),
            Box::new(m20261123_000004_routing::Migration),
            Box::new(m20261123_000005_pricing_catalog::Migration),
            Box::new(m20261123_000006_key_traffic_classes::Migration),
            Box::new(m20261123_000007_quotas::Migration),
            Box::new(m20261123_000008_budget_alerts_and_grants::Migration),
            Box::new(m20261123_000009_rate_limits::Migration),
            Box::new(m20261205_000010_usage_quarantine::Migration),
            Box::new(m20261205_000011_admin_token_expiry::Migration),
            Box::new(m20261205_000012_bind_sealed_values::Migration),
            Box::new(m20261205_000013_node_revocation::Migration),
            Box::new(m20261206_000014_request_log::Migration),
            Box::new(m20261206_000015_audio_characters::Migration),
            Box::new(m20261206_000016_response_cache::Migration),
            Box::new(m20261206_000017_node_assignment::Migration),
            Box::new(m20261206_000018_rollouts::Migration),
            Box::new(m20261206_000019_rollout_policy::Migration),
            Box::new(m20261206_000020_balances::Migration),
            Box::new(m20261206_000021_statements::Migration),
            Box::new(m20261206_000023_usage_partitions::Migration),
            Box::new(m20261206_000026_usage_trace_id::Migration),
            Box::new(m20261207_000033_replica_leases::Migration),
            Box::new(m20261207_000034_rate_grants::Migration),
            Box::new(m20261207_000037_usage_sequence_blocks::Migration),
            Box::new(m20261207_000038_request_log_provider_index::Migration),
            Box::new(m20261208_000039_rollout_requests::Migration),
            Box::new(m20261208_000040_node_reports::Migration),
            Box::new(m20261208_000041_fleet_view::Migration),
            Box::new(m20261208_000042_dashboard_sessions::Migration),
            Box::new(m20261208_000043_usage_index_diet::Migration),
            Box::new(m20261209_000045_key_revisions::Migration),
            Box::new(m20261210_000046_usage_daily_check_traffic::Migration),
        ]
    }
}
