//! What every stage of the pipeline shares: the node's state, built once at start and shared
//! with each request through one `Arc`. The lowest stage: it names no other.

use std::sync::Arc;

use crate::config::SharedRuntime;
use crate::routing::budget::RetryBudget;
use crate::usage::metered::MeteredJobs;
use crate::usage::spool::Spool;
use crate::usage::Origin;

/// What every handler and stage shares: one reference-counted handle, so that the two clones
/// a request makes (axum's state for the guard and for the handler) are one atomic increment
/// each rather than one per field.
pub type App = Arc<AppState>;

/// The node's state behind [`App`].
pub struct AppState {
    pub runtime: SharedRuntime,
    pub spool: Spool,
    pub origin: Arc<Origin>,
    pub max_body_bytes: usize,
    /// The cap on a transcription or translation upload (the whole multipart body).
    pub max_audio_bytes: usize,
    /// Stream pumps outlive their handler; shutdown waits for them.
    pub tasks: tokio_util::task::TaskTracker,
    pub retry_budget: Arc<RetryBudget>,
    /// Video jobs this node has already metered.
    pub videos_metered: Arc<MeteredJobs>,
    /// This node's budget slices (leased from the control plane).
    pub quotas: Arc<crate::quota::Quotas>,
    /// This node's rate-limit shares (leased from the control plane).
    pub limits: Arc<crate::limits::Limits>,
    /// Wall-clock time for budget periods (injected).
    pub clock: modelgate_shared::clock::SharedClock,
    /// Refusals before authentication: throttle, counters, security log.
    pub security: Arc<crate::security::Guard>,
    /// The response cache (in-process layer and shared store).
    pub cache: Arc<crate::cache::Cache>,
    /// Full snapshots and deltas applied, resyncs asked for (the metrics read them).
    pub config_updates: Arc<crate::config::delta::UpdateCounts>,
}
