//! `/metrics` (Prometheus text), served on its own listener (`--metrics-listen`, loopback by
//! default), never on the proxy port.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::Response;

use crate::pipeline::App;
use crate::routing::health::HealthView;

/// A per-deployment gauge: name, help text, and how to read it from a deployment's health.
type DeploymentGauge = (&'static str, &'static str, fn(&HealthView) -> f64);

/// Prometheus text exposition of the node's own gauges and counters.
pub(super) async fn metrics(State(app): State<App>) -> Response {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering::Relaxed;
    let stats = app.spool.stats();
    let backlog = {
        let spool = app.spool.clone();
        tokio::task::spawn_blocking(move || crate::usage::shipper::backlog_bytes(&spool))
            .await
            .unwrap_or(0)
    };
    let mut out = String::with_capacity(1024);
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    metric(
        "modelgate_config_version",
        "gauge",
        "Version of the config snapshot being served.",
        app.runtime.load().version,
    );
    metric(
        "modelgate_usage_spool_disk_bytes",
        "gauge",
        "Bytes of usage spool segments on disk.",
        stats.disk_bytes.load(Relaxed),
    );
    metric(
        "modelgate_usage_spool_max_bytes",
        "gauge",
        "Disk bound of the usage spool.",
        app.spool.max_bytes(),
    );
    metric(
        "modelgate_usage_spool_backlog_bytes",
        "gauge",
        "Spooled usage bytes not yet acknowledged by the control plane.",
        backlog,
    );
    metric(
        "modelgate_usage_spool_refused_total",
        "counter",
        "Requests refused because the usage spool was full.",
        stats.refused.load(Relaxed),
    );
    metric(
        "modelgate_usage_unmetered_total",
        "counter",
        "Requests served without a usage event because the usage spool was full.",
        stats.unmetered.load(Relaxed),
    );
    metric(
        "modelgate_retry_budget_denied_total",
        "counter",
        "Retries or fallbacks refused by the node's retry budget.",
        app.retry_budget.denied(),
    );
    app.security.render_metrics(&mut out);
    let health = app.runtime.load().health.snapshot(crate::time::now_ms());
    let per_deployment: [DeploymentGauge; 4] = [
        (
            "modelgate_deployment_ejected",
            "1 while a deployment is ejected by outlier detection.",
            |h| f64::from(u8::from(h.ejected)),
        ),
        (
            "modelgate_deployment_consecutive_failures",
            "Consecutive failed attempts.",
            |h| f64::from(h.consecutive_failures),
        ),
        (
            "modelgate_deployment_in_flight",
            "Attempts in progress.",
            |h| f64::from(h.in_flight),
        ),
        (
            "modelgate_deployment_ttfb_ewma_seconds",
            "Moving average time to first byte.",
            |h| h.ewma_ttfb_us as f64 / 1e6,
        ),
    ];
    if !health.is_empty() {
        for (name, help, value) in per_deployment {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n");
            for h in &health {
                let label = h.deployment_id.replace(['"', '\\', '\n'], "_");
                let _ = writeln!(out, "{name}{{deployment=\"{label}\"}} {}", value(h));
            }
        }
    }
    let mut r = Response::new(Body::from(out));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}
