//! `/metrics` on the metrics listener (`--metrics-listen`, loopback by default), never on the
//! proxy port. A scrape reads the state other modules own into
//! [`NodeReadings`] and renders the node's registry (`crate::metrics`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::Response;
use modelgate_shared::tls::TlsFiles;

use crate::metrics::{DeploymentReading, NodeReadings, CONTENT_TYPE};
use crate::pipeline::App;

pub(super) async fn metrics(
    State((app, certificates)): State<(App, Option<Arc<TlsFiles>>)>,
) -> Response {
    let mut readings = read(&app).await;
    if let Some(files) = certificates {
        readings.certificates = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for (name, path) in [("client", &files.cert), ("ca", &files.ca)] {
                match modelgate_shared::tls::expiry::not_after_of_file(path) {
                    Ok(t) => out.push((name, t)),
                    Err(e) => tracing::warn!(error = %e, "certificate expiry not readable"),
                }
            }
            out
        })
        .await
        .unwrap_or_default();
    }
    let text = app.origin.metrics.render(readings);
    let mut r = Response::new(Body::from(text));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE),
    );
    r
}

async fn read(app: &App) -> NodeReadings {
    use std::sync::atomic::Ordering::Relaxed;
    // The backlog is read from the spool's files: off the async workers.
    let backlog = {
        let spool = app.spool.clone();
        tokio::task::spawn_blocking(move || crate::usage::shipper::backlog_bytes(&spool))
            .await
            .unwrap_or(0)
    };
    let runtime = app.runtime.load();
    let stats = app.spool.stats();
    let security = app.security.counts();
    NodeReadings {
        config_version: runtime.version,
        config_full: app.config_updates.full(),
        config_deltas: app.config_updates.deltas(),
        config_resyncs: app.config_updates.resyncs(),
        spool_disk_bytes: stats.disk_bytes.load(Relaxed),
        spool_max_bytes: app.spool.max_bytes(),
        spool_backlog_bytes: backlog,
        spool_refused: stats.refused.load(Relaxed),
        unmetered: stats.unmetered.load(Relaxed),
        retry_budget_denied: app.retry_budget.denied(),
        unauthenticated_refused: security
            .refused
            .iter()
            .map(|(reason, n)| (reason.as_str(), *n))
            .collect(),
        security_log_sampled_out: security.sampled_out,
        security_log_dropped: security.dropped,
        auth_throttle_sources: security.throttle_sources,
        certificates: Vec::new(),
        deployments: runtime
            .health
            .snapshot(crate::time::now_ms())
            .into_iter()
            .map(|h| DeploymentReading {
                deployment_id: h.deployment_id,
                ejected: h.ejected,
                consecutive_failures: h.consecutive_failures,
                in_flight: h.in_flight,
                ewma_ttfb_us: h.ewma_ttfb_us,
            })
            .collect(),
    }
}
