//! The control plane's Prometheus metrics (`prometheus-client`, OpenMetrics text), served on its
//! own metrics listener (`--metrics-listen`, loopback by default), never on the admin port.
//! ARCHITECTURE.md's "Metrics" section lists every name, label and unit.
//!
//! Recorded where things happen: usage ingest (events by outcome, batches, and how long after a
//! request ended its event was stored), the snapshot publisher (versions published), the config
//! stream (connected nodes, each node's applied version, NACKs), the quota service (grants by
//! kind) and the admin API's middleware (requests by route template, method and status, and
//! their duration). Read at scrape time: the latest published version and the expiry of the
//! TLS certificates the gRPC listener serves. Every label is bounded: route templates (never
//! raw paths), methods, status codes, fixed outcome sets, and node ids (bounded by the fleet;
//! a node's series is removed when its stream closes). No key, team or request id is a label.

use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::{text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The media type of [`CpMetrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long after a request ended its usage event was stored: from a live node's ~0.1 s to a
/// spool drained after an outage of hours.
const LAG_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0,
];

/// Admin API requests: a page of a list or a change in its transaction.
const ADMIN_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdminLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    cert: &'static str,
}

/// What a scrape reads from state other modules own.
#[derive(Debug, Default, Clone)]
pub struct Readings {
    /// The latest published snapshot version (0 before the first).
    pub snapshot_version: u64,
    /// `(which certificate, its notAfter as Unix seconds)`.
    pub certificates: Vec<(&'static str, i64)>,
}

/// Ingest outcomes, the values of `modelgate_cp_usage_events_total{outcome}`.
#[derive(Debug, Clone, Copy)]
pub enum IngestOutcome {
    Stored,
    Duplicate,
    Quarantined,
}

impl IngestOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Duplicate => "duplicate",
            Self::Quarantined => "quarantined",
        }
    }
}

/// What an allocation granted: a budget slice or a rate-limit share.
#[derive(Debug, Clone, Copy)]
pub enum GrantKind {
    Budget,
    RateLimit,
}

/// The registry and its handles.
pub struct CpMetrics {
    registry: Registry,
    scrape: Mutex<()>,
    usage_events: Family<OutcomeLabels, Counter>,
    usage_batches: Counter,
    copy_refused: Counter,
    ingest_lag: Histogram,
    snapshots_published: Counter,
    snapshot_version: Gauge,
    node_version: Family<NodeLabels, Gauge>,
    node_assigned: Family<NodeLabels, Gauge>,
    node_drift: Family<NodeLabels, Gauge>,
    config_nacks: Counter,
    config_sent: Family<KindLabels, Counter>,
    config_resyncs: Counter,
    connected_nodes: Gauge,
    grants: Family<KindLabels, Counter>,
    admin_requests: Family<AdminLabels, Counter>,
    admin_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    cert_expiry: Family<CertLabels, Gauge>,
}

impl std::fmt::Debug for CpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpMetrics").finish_non_exhaustive()
    }
}

fn admin_histogram() -> Histogram {
    Histogram::new(ADMIN_BUCKETS)
}

impl Default for CpMetrics {
    fn default() -> Self {
        let mut r = Registry::default();
        let usage_events = Family::<OutcomeLabels, Counter>::default();
        r.register(
            "modelgate_cp_usage_events",
            "Usage events received from data planes, by outcome: stored (counted in the ledger), \
             duplicate (already stored: a replay), quarantined (refused by validation)",
            usage_events.clone(),
        );
        let usage_batches = Counter::default();
        r.register(
            "modelgate_cp_usage_batches",
            "Usage batches committed and acknowledged",
            usage_batches.clone(),
        );
        let copy_refused = Counter::default();
        r.register(
            "modelgate_cp_usage_copy_refused",
            "Usage batches whose group the database refused to take in bulk (binary COPY on \
             Postgres, plain INSERTs on SQLite: an event already stored, on Postgres a NUL in \
             its text) and that were stored again by INSERT ... ON CONFLICT; a batch the node \
             marked as resent skips the bulk load and is not counted",
            copy_refused.clone(),
        );
        let ingest_lag = Histogram::new(LAG_BUCKETS);
        r.register_with_unit(
            "modelgate_cp_usage_ingest_lag",
            "For each stored usage event, the time from its request's end to its commit in the \
             ledger (spool, shipping and ingest together)",
            Unit::Seconds,
            ingest_lag.clone(),
        );
        let snapshots_published = Counter::default();
        r.register(
            "modelgate_cp_snapshots_published",
            "Config snapshot versions this control plane published",
            snapshots_published.clone(),
        );
        let snapshot_version = Gauge::default();
        r.register(
            "modelgate_cp_snapshot_version",
            "The latest config snapshot version published",
            snapshot_version.clone(),
        );
        let node_version = Family::<NodeLabels, Gauge>::default();
        r.register(
            "modelgate_cp_node_config_version",
            "The config version each connected data plane last acknowledged as applied",
            node_version.clone(),
        );
        let node_assigned = Family::<NodeLabels, Gauge>::default();
        r.register(
            "modelgate_cp_node_assigned_version",
            "The config version the control plane assigned to each connected data plane (during \
             a staged rollout, nodes outside the waves reached keep the previous one)",
            node_assigned.clone(),
        );
        let node_drift = Family::<NodeLabels, Gauge>::default();
        r.register(
            "modelgate_cp_node_config_drift",
            "1 while a connected data plane's applied config has differed from its assignment \
             for longer than the drift bound (--config-drift-after), else 0",
            node_drift.clone(),
        );
        let config_nacks = Counter::default();
        r.register(
            "modelgate_cp_config_nacks",
            "Snapshots a data plane refused (NACK)",
            config_nacks.clone(),
        );
        let config_sent = Family::<KindLabels, Counter>::default();
        r.register(
            "modelgate_cp_config_sent",
            "Config versions sent to data planes, by kind: `full` snapshots and `delta`s",
            config_sent.clone(),
        );
        let config_resyncs = Counter::default();
        r.register(
            "modelgate_cp_config_resyncs",
            "Full snapshots data planes asked for because a delta did not fit what they served",
            config_resyncs.clone(),
        );
        let connected_nodes = Gauge::default();
        r.register(
            "modelgate_cp_connected_nodes",
            "Data planes with an open config stream to this control plane",
            connected_nodes.clone(),
        );
        let grants = Family::<KindLabels, Counter>::default();
        r.register(
            "modelgate_cp_allocation_grants",
            "Allocations answered to data planes, by kind (budget slices, rate-limit shares)",
            grants.clone(),
        );
        let admin_requests = Family::<AdminLabels, Counter>::default();
        r.register(
            "modelgate_cp_admin_requests",
            "Admin API requests, by route template (`unmatched` for no route), method and status",
            admin_requests.clone(),
        );
        let admin_duration = Family::new_with_constructor(admin_histogram as fn() -> Histogram);
        r.register_with_unit(
            "modelgate_cp_admin_request_duration",
            "Admin API request duration, by route template",
            Unit::Seconds,
            admin_duration.clone(),
        );
        let cert_expiry = Family::<CertLabels, Gauge>::default();
        r.register(
            "modelgate_tls_certificate_expiry_timestamp_seconds",
            "When a certificate this process serves or trusts expires (Unix seconds): `server` \
             (the gRPC listener's), `ca` (the fleet CA)",
            cert_expiry.clone(),
        );
        CpMetrics {
            registry: r,
            scrape: Mutex::new(()),
            usage_events,
            usage_batches,
            copy_refused,
            ingest_lag,
            snapshots_published,
            snapshot_version,
            node_version,
            node_assigned,
            node_drift,
            config_nacks,
            config_sent,
            config_resyncs,
            connected_nodes,
            grants,
            admin_requests,
            admin_duration,
            cert_expiry,
        }
    }
}

impl CpMetrics {
    /// A usage batch was committed: its events by outcome and, for each stored one, the lag
    /// from its request's end (`ended_at_ms`) to `now_ms`.
    pub fn ingested(
        &self,
        stored: u64,
        duplicates: u64,
        quarantined: u64,
        ended_at_ms: impl Iterator<Item = i64>,
        now_ms: i64,
    ) {
        for (outcome, n) in [
            (IngestOutcome::Stored, stored),
            (IngestOutcome::Duplicate, duplicates),
            (IngestOutcome::Quarantined, quarantined),
        ] {
            if n > 0 {
                self.usage_events
                    .get_or_create(&OutcomeLabels {
                        outcome: outcome.as_str(),
                    })
                    .inc_by(n);
            }
        }
        self.usage_batches.inc();
        for ended in ended_at_ms {
            self.ingest_lag
                .observe((now_ms - ended).max(0) as f64 / 1000.0);
        }
    }

    /// A usage batch was stored by `INSERT` after its group's binary `COPY` was refused.
    pub fn copy_refused(&self) {
        self.copy_refused.inc();
    }

    /// A new snapshot version was published.
    pub fn published(&self, version: u64) {
        self.snapshots_published.inc();
        self.snapshot_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
    }

    /// A data plane opened its config stream.
    pub fn node_connected(&self) {
        self.connected_nodes.inc();
    }

    /// A data plane's config stream closed: its series go with it.
    pub fn node_disconnected(&self, node: &str) {
        self.connected_nodes.dec();
        let labels = NodeLabels {
            node: node.to_owned(),
        };
        self.node_version.remove(&labels);
        self.node_assigned.remove(&labels);
        self.node_drift.remove(&labels);
    }

    /// The control plane assigned `version` to a data plane.
    pub fn node_assigned(&self, node: &str, version: u64) {
        self.node_assigned
            .get_or_create(&NodeLabels {
                node: node.to_owned(),
            })
            .set(i64::try_from(version).unwrap_or(i64::MAX));
    }

    /// Whether a connected data plane is drifting now.
    /// A node of another replica is no longer shown: its drift series goes.
    pub fn forget_node_drift(&self, node: &str) {
        self.node_drift.remove(&NodeLabels {
            node: node.to_owned(),
        });
    }

    pub fn node_drift(&self, node: &str, drifting: bool) {
        self.node_drift
            .get_or_create(&NodeLabels {
                node: node.to_owned(),
            })
            .set(i64::from(drifting));
    }

    /// A data plane acknowledged `version` as applied.
    pub fn node_applied(&self, node: &str, version: u64) {
        self.node_version
            .get_or_create(&NodeLabels {
                node: node.to_owned(),
            })
            .set(i64::try_from(version).unwrap_or(i64::MAX));
    }

    /// A data plane refused a snapshot.
    pub fn node_refused(&self) {
        self.config_nacks.inc();
    }

    /// A config version went to a data plane, whole (`delta` false) or as a delta.
    pub fn config_sent(&self, delta: bool) {
        let kind = if delta { "delta" } else { "full" };
        self.config_sent.get_or_create(&KindLabels { kind }).inc();
    }

    /// A data plane asked for a full snapshot.
    pub fn config_resync(&self) {
        self.config_resyncs.inc();
    }

    /// An allocation call was answered with a grant.
    pub fn granted(&self, kind: GrantKind) {
        let kind = match kind {
            GrantKind::Budget => "budget",
            GrantKind::RateLimit => "rate_limit",
        };
        self.grants.get_or_create(&KindLabels { kind }).inc();
    }

    /// An admin API request was answered (`route`: its template, e.g. `/admin/v1/keys/{id}`).
    pub fn admin_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.admin_requests
            .get_or_create(&AdminLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.admin_duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// The registry in the OpenMetrics text format, with the scrape-time readings.
    pub fn render(&self, readings: &Readings) -> String {
        let _scrape = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        self.snapshot_version
            .set(i64::try_from(readings.snapshot_version).unwrap_or(i64::MAX));
        for (cert, not_after) in &readings.certificates {
            self.cert_expiry
                .get_or_create(&CertLabels { cert })
                .set(*not_after);
        }
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disconnected_node_leaves_no_series_and_names_follow_the_conventions() {
        let m = CpMetrics::default();
        m.node_connected();
        m.node_applied("eu-1", 7);
        m.ingested(3, 1, 0, [1_000, 2_000, 2_500].into_iter(), 3_000);
        m.admin_request("/admin/v1/keys/{id}", "GET", 200, 0.002);
        let text = m.render(&Readings {
            snapshot_version: 7,
            certificates: vec![("server", 1_900_000_000)],
        });
        for line in [
            "modelgate_cp_node_config_version{node=\"eu-1\"} 7",
            "modelgate_cp_connected_nodes 1",
            "modelgate_cp_usage_events_total{outcome=\"stored\"} 3",
            "modelgate_cp_usage_events_total{outcome=\"duplicate\"} 1",
            "modelgate_cp_usage_ingest_lag_seconds_count 3",
            "modelgate_cp_usage_ingest_lag_seconds_sum 3.5",
            "modelgate_cp_snapshot_version 7",
            "modelgate_cp_admin_requests_total{route=\"/admin/v1/keys/{id}\",method=\"GET\",status=\"200\"} 1",
            "modelgate_tls_certificate_expiry_timestamp_seconds{cert=\"server\"} 1900000000",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        m.node_disconnected("eu-1");
        let text = m.render(&Readings::default());
        assert!(!text.contains("node=\"eu-1\""), "{text}");
        assert!(text.contains("modelgate_cp_connected_nodes 0"), "{text}");
    }
}
