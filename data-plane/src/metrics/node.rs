//! The metrics read at scrape time from state other modules own: the config version, the usage
//! spool, the retry budget, the security guard and each deployment's health. The scrape handler
//! reads them into [`NodeReadings`]; [`NodeCollector`] encodes the last readings with the
//! registry. Names are the ones `/metrics` has always shown.

use std::sync::{Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::labels::label_value;

/// One scrape's view of the node.
#[derive(Debug, Clone, Default)]
pub struct NodeReadings {
    pub config_version: u64,
    /// Full snapshots and deltas applied, and full snapshots asked for, since start.
    pub config_full: u64,
    pub config_deltas: u64,
    pub config_resyncs: u64,
    pub spool_disk_bytes: u64,
    pub spool_max_bytes: u64,
    pub spool_backlog_bytes: u64,
    pub spool_refused: u64,
    pub unmetered: u64,
    pub retry_budget_denied: u64,
    /// Refusals before authentication, by reason name (every reason, zeros included).
    pub unauthenticated_refused: Vec<(&'static str, u64)>,
    pub security_log_sampled_out: u64,
    pub security_log_dropped: u64,
    pub auth_throttle_sources: u64,
    /// `(which certificate, its notAfter as Unix seconds)`: `client` (the node's certificate
    /// for the control-plane channel) and `ca` (the fleet CA); empty without TLS.
    pub certificates: Vec<(&'static str, i64)>,
    pub deployments: Vec<DeploymentReading>,
}

/// One deployment's health on this node.
#[derive(Debug, Clone, Default)]
pub struct DeploymentReading {
    pub deployment_id: String,
    pub ejected: bool,
    pub consecutive_failures: u32,
    pub in_flight: u32,
    pub ewma_ttfb_us: u64,
}

/// Encodes the readings set by the last scrape.
#[derive(Debug, Default)]
pub(super) struct NodeCollector {
    readings: Mutex<NodeReadings>,
}

impl NodeCollector {
    pub(super) fn set(&self, readings: NodeReadings) {
        *self.readings.lock().unwrap_or_else(PoisonError::into_inner) = readings;
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(value).encode(encoder.encode_descriptor(
        name,
        help,
        None,
        MetricType::Counter,
    )?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?)
}

/// A per-deployment count: name, help text, and how to read it.
type DeploymentCount = (&'static str, &'static str, fn(&DeploymentReading) -> u64);

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let r = self.readings.lock().unwrap_or_else(PoisonError::into_inner);
        let e = &mut encoder;
        gauge(
            e,
            "modelgate_config_version",
            "Version of the config snapshot being served.",
            None,
            r.config_version,
        )?;
        {
            let mut family = e.encode_descriptor(
                "modelgate_config_updates",
                "Config versions applied since start, by kind: `full` snapshots and `delta`s.",
                None,
                MetricType::Counter,
            )?;
            for (kind, n) in [("full", r.config_full), ("delta", r.config_deltas)] {
                ConstCounter::new(n).encode(family.encode_family(&[("kind", kind)])?)?;
            }
        }
        counter(
            e,
            "modelgate_config_resyncs",
            "Full snapshots asked for because a delta did not fit the served config or failed \
             its checks.",
            r.config_resyncs,
        )?;
        let bytes = Some(&Unit::Bytes);
        gauge(
            e,
            "modelgate_usage_spool_disk",
            "Bytes of usage spool segments on disk.",
            bytes,
            r.spool_disk_bytes,
        )?;
        gauge(
            e,
            "modelgate_usage_spool_max",
            "Disk bound of the usage spool.",
            bytes,
            r.spool_max_bytes,
        )?;
        gauge(
            e,
            "modelgate_usage_spool_backlog",
            "Spooled usage bytes not yet acknowledged by the control plane.",
            bytes,
            r.spool_backlog_bytes,
        )?;
        counter(
            e,
            "modelgate_usage_spool_refused",
            "Requests refused because the usage spool was full.",
            r.spool_refused,
        )?;
        counter(
            e,
            "modelgate_usage_unmetered",
            "Requests served without a usage event because the usage spool was full.",
            r.unmetered,
        )?;
        counter(
            e,
            "modelgate_retry_budget_denied",
            "Retries or fallbacks refused by the node's retry budget.",
            r.retry_budget_denied,
        )?;
        {
            let mut family = e.encode_descriptor(
                "modelgate_unauthenticated_refused",
                "Requests refused before a key was authenticated (never metered), by reason.",
                None,
                MetricType::Counter,
            )?;
            for (reason, n) in &r.unauthenticated_refused {
                ConstCounter::new(*n).encode(family.encode_family(&[("reason", *reason)])?)?;
            }
        }
        counter(
            e,
            "modelgate_security_log_sampled_out",
            "Refusals not written to the security log because their source or the node was over \
             its sampling rate.",
            r.security_log_sampled_out,
        )?;
        counter(
            e,
            "modelgate_security_log_dropped",
            "Security-log records lost because the writer was behind or the write failed.",
            r.security_log_dropped,
        )?;
        gauge(
            e,
            "modelgate_auth_throttle_sources",
            "Source addresses the failed-authentication throttle remembers.",
            None,
            r.auth_throttle_sources,
        )?;
        if !r.certificates.is_empty() {
            let mut family = e.encode_descriptor(
                "modelgate_tls_certificate_expiry_timestamp_seconds",
                "When a certificate of the control-plane channel expires (Unix seconds): \
                 `client` (this node's), `ca` (the fleet CA).",
                None,
                MetricType::Gauge,
            )?;
            for (cert, not_after) in &r.certificates {
                ConstGauge::new(*not_after).encode(family.encode_family(&[("cert", *cert)])?)?;
            }
        }
        if r.deployments.is_empty() {
            return Ok(());
        }
        let counts: [DeploymentCount; 3] = [
            (
                "modelgate_deployment_ejected",
                "1 while a deployment is ejected by outlier detection.",
                |d| u64::from(d.ejected),
            ),
            (
                "modelgate_deployment_consecutive_failures",
                "Consecutive failed attempts.",
                |d| u64::from(d.consecutive_failures),
            ),
            (
                "modelgate_deployment_in_flight",
                "Attempts in progress.",
                |d| u64::from(d.in_flight),
            ),
        ];
        let ids: Vec<_> = r
            .deployments
            .iter()
            .map(|d| label_value(&d.deployment_id))
            .collect();
        for (name, help, value) in counts {
            let mut family = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (d, id) in r.deployments.iter().zip(&ids) {
                ConstGauge::new(value(d))
                    .encode(family.encode_family(&[("deployment", id.as_ref())])?)?;
            }
        }
        let mut family = e.encode_descriptor(
            "modelgate_deployment_ttfb_ewma",
            "Moving average time to first byte.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (d, id) in r.deployments.iter().zip(&ids) {
            ConstGauge::new(d.ewma_ttfb_us as f64 / 1e6)
                .encode(family.encode_family(&[("deployment", id.as_ref())])?)?;
        }
        Ok(())
    }
}
