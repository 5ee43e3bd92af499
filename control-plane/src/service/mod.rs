//! The service layer: business rules. Handlers (REST, gRPC) call in here; this layer makes ids
//! and timestamps, validates input, writes through the store, and triggers a snapshot rebuild
//! after every committed config change.

pub mod audit;
pub mod authz;
pub mod balances;
pub mod bootstrap;
pub mod budget_alerts;
pub mod budgets;
pub mod explain;
pub mod fleet;
pub mod keys;
pub mod limits;
pub mod maintenance;
pub mod models;
pub mod nodes;
pub mod providers;
pub mod revocations;
pub mod rollouts;
pub mod routes;
mod scopes;
pub mod statements;
pub mod teams;
pub mod tokens;
pub mod usage;
pub mod users;

use sea_orm::{DatabaseConnection, DbErr};
use serde::Serialize;
use thiserror::Error;

use crate::crypto::{CryptoError, Sealer};
use crate::snapshot::Publisher;

/// The default bound after which a node that has not applied its assigned version is flagged
/// as drifting (`--config-drift-after`).
pub const DEFAULT_CONFIG_DRIFT_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// What every service function needs.
#[derive(Clone)]
pub struct Services {
    pub db: DatabaseConnection,
    pub sealer: Sealer,
    pub publisher: Publisher,
    /// The latest deployment-health report of every connected data plane.
    pub fleet: std::sync::Arc<fleet::FleetHealth>,
    /// Budget leases granted to data planes (in memory).
    pub allocator: std::sync::Arc<budgets::Allocator>,
    /// Rate-limit leases granted to data planes (in memory).
    pub rate_ledger: std::sync::Arc<limits::Ledger>,
    /// Wall-clock time for budget periods (injected; tests move it across a UTC boundary).
    pub clock: modelgate_shared::clock::SharedClock,
    /// Wakes the budget-alert delivery worker when ingest queued an alert.
    pub alert_wakeup: std::sync::Arc<tokio::sync::Notify>,
    /// Revoked data-plane nodes (the database's list, kept current by polling).
    pub revoked: std::sync::Arc<revocations::Revoked>,
    /// The control plane's Prometheus metrics.
    pub metrics: std::sync::Arc<crate::metrics::CpMetrics>,
    /// The one task that stores usage batches (group commit).
    pub ingest_writer: std::sync::Arc<usage::Writer>,
    /// Each connected node's assigned and applied versions and traffic reports (rollout
    /// gates, drift).
    pub node_states: std::sync::Arc<crate::rollout::nodes::NodeStates>,
    /// A node whose applied config differs from its assignment longer than this is drifting.
    pub config_drift_after: std::time::Duration,
    /// How long after a month ends its statements close (`statements`; default 72 h).
    pub statement_grace: std::time::Duration,
    /// This process among the control-plane replicas of its database (`crate::replica`).
    pub replica: std::sync::Arc<crate::replica::Replica>,
}

impl Services {
    /// The services over `db`, with empty in-memory state, and the usage writer started on the
    /// current runtime.
    pub fn new(
        db: DatabaseConnection,
        sealer: Sealer,
        clock: modelgate_shared::clock::SharedClock,
    ) -> Self {
        let alert_wakeup = std::sync::Arc::new(tokio::sync::Notify::new());
        let ingest_writer =
            std::sync::Arc::new(usage::Writer::start(db.clone(), alert_wakeup.clone()));
        Services {
            replica: std::sync::Arc::new(crate::replica::Replica::new(&db)),
            db,
            sealer,
            publisher: Publisher::new(),
            fleet: Default::default(),
            allocator: Default::default(),
            rate_ledger: Default::default(),
            clock,
            alert_wakeup,
            revoked: Default::default(),
            metrics: Default::default(),
            ingest_writer,
            node_states: Default::default(),
            config_drift_after: DEFAULT_CONFIG_DRIFT_AFTER,
            statement_grace: statements::DEFAULT_GRACE,
        }
    }
}

#[derive(Debug, Error)]
pub enum ServiceError {
    /// The input is invalid; `param` names the field (dotted path).
    #[error("{param}: {message}")]
    Invalid { param: String, message: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The actor's role or scope does not allow this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// `If-Match` named another version than the current one.
    #[error("version mismatch (current {current})")]
    VersionMismatch { current: i64 },
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("crypto error: {0}")]
    Crypto(#[from] CryptoError),
    /// Not answerable yet; the caller should treat the control plane as unreachable.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl ServiceError {
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        ServiceError::Invalid {
            param: param.to_owned(),
            message: message.into(),
        }
    }
}

/// A page of a list: `{"data": [...], "next_cursor": ...}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Cursor pagination parameters (cursor = the last id seen; ids are time-ordered UUIDv7).
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    pub after: Option<String>,
    pub limit: Option<u64>,
}

impl PageParams {
    pub const MAX_LIMIT: u64 = 1000;

    pub fn limit(&self) -> Result<u64, ServiceError> {
        match self.limit {
            None => Ok(100),
            Some(0) => Err(ServiceError::invalid("limit", "must be at least 1")),
            Some(n) if n > Self::MAX_LIMIT => Err(ServiceError::invalid(
                "limit",
                format!("must be at most {}", Self::MAX_LIMIT),
            )),
            Some(n) => Ok(n),
        }
    }
}

/// Turns `limit + 1` fetched rows into a page.
pub(crate) fn page<R, T>(
    mut rows: Vec<R>,
    limit: u64,
    cursor_of: impl Fn(&R) -> String,
    to_api: impl Fn(R) -> T,
) -> Page<T> {
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(&cursor_of)
    } else {
        None
    };
    Page {
        data: rows.into_iter().map(to_api).collect(),
        next_cursor,
    }
}

pub(crate) fn require_name(param: &str, value: &str) -> Result<String, ServiceError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ServiceError::invalid(param, "must not be empty"));
    }
    if trimmed.len() > 200 {
        return Err(ServiceError::invalid(
            param,
            "must be at most 200 characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// Maps a unique-constraint violation to a conflict naming the resource.
pub(crate) fn unique_violation(err: DbErr, what: &str) -> ServiceError {
    let text = err.to_string().to_lowercase();
    if text.contains("unique") || text.contains("duplicate") {
        ServiceError::Conflict(format!("{what} already exists"))
    } else {
        ServiceError::Db(err)
    }
}
