//! The store: sea-orm entities (row types) and the database connection. Row types never leave
//! the control plane; the service layer converts them to domain or API types.

pub mod admin_token;
pub mod api_key;
pub mod audit;
pub mod balance_entry;
pub mod budget;
pub mod budget_alert;
pub mod budget_grant;
pub mod budget_period;
pub mod config_version;
pub mod counter;
pub mod dashboard_session;
pub mod export_sink;
pub mod idempotency;
pub mod model_price;
pub mod model_price_version;
pub mod node;
pub mod node_report;
pub mod node_revocation;
pub mod provider_account;
pub mod rate_grant;
pub mod rate_limit;
pub mod raw_txn;
pub mod rollout;
pub mod rollout_policy;
pub mod rollout_request;
pub mod routing_group;
pub mod setting;
pub mod statement;
pub mod statement_close;
pub mod team;
pub mod team_member;
pub mod usage_daily;
pub mod usage_event;
pub mod usage_quarantine;
pub mod user;

use modelgate_migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

/// Connects and runs every pending migration forward.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false);
    if url.starts_with("sqlite:") {
        // SQLite has one writer at a time, and a transaction that reads before it writes fails
        // with SQLITE_BUSY (no wait) if another connection wrote meanwhile. One connection
        // serialises every transaction instead; SQLite is the single-node, zero-setup store.
        opts.max_connections(1);
    } else {
        opts.max_connections(16);
    }
    let db = Database::connect(opts).await?;
    if url.starts_with("sqlite:") {
        use sea_orm::ConnectionTrait;
        db.execute_unprepared("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;")
            .await?;
    }
    Migrator::up(&db, None).await?;
    Ok(db)
}
