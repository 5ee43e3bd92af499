//! The fleet view of deployment health: each connected data plane reports its own passive
//! health (ejections, 429 parking, in-flight, time to first byte) every few seconds over its
//! config stream; the latest report per node is kept in memory here. Nothing is persisted: a
//! node that disconnects leaves the view, and a restarted control plane relearns the fleet
//! within one report interval.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::authz::{Action, Actor};
use super::{ServiceError, Services};

/// One node's view of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDeploymentHealth {
    pub deployment_id: String,
    pub ejected: bool,
    /// Unix ms; 0 when not parked.
    pub rate_limited_until_ms: i64,
    pub consecutive_failures: u32,
    pub in_flight: u32,
    pub ewma_ttfb_us: u64,
}

#[derive(Debug, Clone)]
struct NodeReport {
    received_at: DateTime<Utc>,
    deployments: Vec<NodeDeploymentHealth>,
}

/// The latest health report of every connected node.
#[derive(Debug, Default)]
pub struct FleetHealth {
    nodes: RwLock<HashMap<String, NodeReport>>,
}

/// One deployment across the fleet.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct DeploymentFleetHealth {
    pub deployment_id: String,
    /// Nodes that have routed to this deployment and reported it.
    pub nodes_reporting: u32,
    /// Nodes on which outlier detection has it ejected right now.
    pub nodes_ejected: u32,
    /// Nodes on which it is parked after a 429.
    pub nodes_rate_limited: u32,
    /// Attempts in progress across the fleet.
    pub in_flight: u32,
    /// The worst node's consecutive failures.
    pub max_consecutive_failures: u32,
    /// Mean of the nodes' moving averages of time to first byte (measured nodes only).
    pub ttfb_ewma_ms: Option<f64>,
    pub nodes: Vec<NodeView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub node_id: String,
    pub ejected: bool,
    pub rate_limited_until: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    pub in_flight: u32,
    pub reported_at: DateTime<Utc>,
}

impl DeploymentFleetHealth {
    /// Healthy on at least one reporting node, or not yet seen by any.
    pub fn available_somewhere(&self) -> bool {
        self.nodes_reporting == 0
            || self.nodes_ejected + self.nodes_rate_limited < self.nodes_reporting
    }
}

impl FleetHealth {
    pub fn record(&self, node_id: &str, deployments: Vec<NodeDeploymentHealth>) {
        if let Ok(mut nodes) = self.nodes.write() {
            nodes.insert(
                node_id.to_owned(),
                NodeReport {
                    received_at: Utc::now(),
                    deployments,
                },
            );
        }
    }

    pub fn forget(&self, node_id: &str) {
        if let Ok(mut nodes) = self.nodes.write() {
            nodes.remove(node_id);
        }
    }

    /// Every reported deployment across the fleet, by deployment id.
    pub fn view(&self) -> BTreeMap<String, DeploymentFleetHealth> {
        let now_ms = Utc::now().timestamp_millis();
        let mut out: BTreeMap<String, DeploymentFleetHealth> = BTreeMap::new();
        let mut ttfb: HashMap<String, (u64, u32)> = HashMap::new();
        let Ok(nodes) = self.nodes.read() else {
            return out;
        };
        let mut node_ids: Vec<&String> = nodes.keys().collect();
        node_ids.sort();
        for node_id in node_ids {
            let report = &nodes[node_id];
            for d in &report.deployments {
                let entry =
                    out.entry(d.deployment_id.clone())
                        .or_insert_with(|| DeploymentFleetHealth {
                            deployment_id: d.deployment_id.clone(),
                            ..Default::default()
                        });
                let parked = d.rate_limited_until_ms > now_ms;
                entry.nodes_reporting += 1;
                entry.nodes_ejected += u32::from(d.ejected);
                entry.nodes_rate_limited += u32::from(parked);
                entry.in_flight += d.in_flight;
                entry.max_consecutive_failures =
                    entry.max_consecutive_failures.max(d.consecutive_failures);
                if d.ewma_ttfb_us > 0 {
                    let t = ttfb.entry(d.deployment_id.clone()).or_default();
                    t.0 += d.ewma_ttfb_us;
                    t.1 += 1;
                }
                entry.nodes.push(NodeView {
                    node_id: node_id.clone(),
                    ejected: d.ejected,
                    rate_limited_until: parked
                        .then(|| DateTime::from_timestamp_millis(d.rate_limited_until_ms))
                        .flatten(),
                    consecutive_failures: d.consecutive_failures,
                    in_flight: d.in_flight,
                    reported_at: report.received_at,
                });
            }
        }
        for (id, (sum, n)) in ttfb {
            if let Some(e) = out.get_mut(&id) {
                e.ttfb_ewma_ms = Some(sum as f64 / f64::from(n) / 1000.0);
            }
        }
        out
    }
}

/// `GET /health/deployments`: the fleet view.
pub fn deployments(
    s: &Services,
    actor: &Actor,
) -> Result<Vec<DeploymentFleetHealth>, ServiceError> {
    actor.require(Action::ReadConfig)?;
    Ok(s.fleet.view().into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(id: &str, ejected: bool, in_flight: u32) -> NodeDeploymentHealth {
        NodeDeploymentHealth {
            deployment_id: id.into(),
            ejected,
            rate_limited_until_ms: 0,
            consecutive_failures: u32::from(ejected) * 5,
            in_flight,
            ewma_ttfb_us: 2_000,
        }
    }

    #[test]
    fn the_view_sums_nodes_and_forgets_a_disconnected_one() {
        let fleet = FleetHealth::default();
        fleet.record("a", vec![health("p/m", true, 1)]);
        fleet.record("b", vec![health("p/m", false, 2)]);
        let v = &fleet.view()["p/m"];
        assert_eq!((v.nodes_reporting, v.nodes_ejected, v.in_flight), (2, 1, 3));
        assert_eq!(v.max_consecutive_failures, 5);
        assert_eq!(v.ttfb_ewma_ms, Some(2.0));
        assert!(v.available_somewhere());
        fleet.forget("b");
        let v = &fleet.view()["p/m"];
        assert_eq!((v.nodes_reporting, v.nodes_ejected), (1, 1));
        assert!(!v.available_somewhere());
    }
}
