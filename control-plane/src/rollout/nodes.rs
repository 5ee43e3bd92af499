//! The live state of every connected node, as its config stream tells it: labels, the version
//! assigned and the version applied (with hashes), its last NACK, and its traffic reports. The
//! rollout gates read the traffic by version; the fleet view reads drift and rates. In memory
//! only: a node that disconnects leaves it (the `data_plane_nodes` row keeps the last values).
//! Beside them, the reports and NACKs of nodes connected to other replicas, as the replica that
//! drives rollouts reads them from the database (`rollout::shared_reports`), so the gates judge
//! every node.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{PoisonError, RwLock};

use chrono::{DateTime, Duration, Utc};
use modelgate_shared::rollout::Traffic;

/// Reports kept per node: at one every few seconds, more than an hour of them.
const MAX_SAMPLES: usize = 2_048;

/// One traffic report: cumulative counts since the node started, while serving `version`.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub version: u64,
    pub requests: u64,
    pub errors: u64,
    pub latency_buckets: Vec<u64>,
}

#[derive(Debug, Clone)]
pub struct NodeState {
    pub labels: BTreeMap<String, String>,
    pub software_version: String,
    /// The version (and hash) last sent to the node.
    pub assigned: Option<(u64, String)>,
    /// The version (and hash) the node serves, by its hello and its ACKs.
    pub applied: (u64, String),
    /// Since when the applied version differs from the assigned one.
    pub mismatch_since: Option<DateTime<Utc>>,
    /// The last version the node refused, and why.
    pub last_nack: Option<(u64, String)>,
    pub last_seen: DateTime<Utc>,
    samples: VecDeque<Sample>,
}

/// What the fleet view shows of a connected node.
#[derive(Debug, Clone)]
pub struct LiveView {
    pub assigned: Option<(u64, String)>,
    pub applied: (u64, String),
    pub drifting_since: Option<DateTime<Utc>>,
    pub drifting: bool,
    pub last_seen: DateTime<Utc>,
    /// Requests and 5xx answers per second over the last minute of reports.
    pub request_rate: f64,
    pub error_rate: f64,
}

#[derive(Debug, Default)]
pub struct NodeStates {
    nodes: RwLock<HashMap<String, NodeState>>,
    /// Nodes as other replicas received them: their traffic reports and last NACK.
    remote: RwLock<HashMap<String, RemoteNode>>,
    /// The last `node_reports.seq` read into `remote`.
    pub(crate) remote_cursor: std::sync::atomic::AtomicI64,
    /// The minute (Unix) old `node_reports` were last pruned in.
    pub(crate) pruned_minute: std::sync::atomic::AtomicI64,
}

/// What another replica received from a node.
#[derive(Debug, Default)]
struct RemoteNode {
    samples: VecDeque<Sample>,
    last_nack: Option<(u64, String)>,
}

fn push_sample(samples: &mut VecDeque<Sample>, sample: Sample) {
    if samples.len() == MAX_SAMPLES {
        samples.pop_front();
    }
    samples.push_back(sample);
}

impl NodeState {
    fn settle(&mut self, now: DateTime<Utc>) {
        let matches = match &self.assigned {
            None => true,
            Some((v, h)) => *v == self.applied.0 && (h.is_empty() || *h == self.applied.1),
        };
        if matches {
            self.mismatch_since = None;
        } else if self.mismatch_since.is_none() {
            self.mismatch_since = Some(now);
        }
    }

    /// [`traffic_by_version`] of this node's reports.
    fn traffic_by_version(&self, now: DateTime<Utc>, window: Duration) -> Vec<(u64, Traffic)> {
        traffic_by_version(&self.samples, now, window)
    }
}

/// The traffic a node served, per version, between reports within `window` of `now`:
/// each count is the difference of two consecutive reports, attributed to the later
/// report's version (a node reports once more under the old version right before it swaps
/// in a new one, so what follows that report was served by the new one); a restart, where
/// counts fall, starts afresh.
fn traffic_by_version(
    samples: &VecDeque<Sample>,
    now: DateTime<Utc>,
    window: Duration,
) -> Vec<(u64, Traffic)> {
    let since = now - window;
    let mut out: Vec<(u64, Traffic)> = Vec::new();
    let mut prev: Option<&Sample> = None;
    for s in samples {
        if let Some(p) = prev {
            if s.at >= since && s.requests >= p.requests && s.errors >= p.errors {
                let buckets: Vec<u64> = s
                    .latency_buckets
                    .iter()
                    .zip(p.latency_buckets.iter().chain(std::iter::repeat(&0)))
                    .map(|(a, b)| a.saturating_sub(*b))
                    .collect();
                let entry = match out.iter_mut().find(|(v, _)| *v == s.version) {
                    Some(e) => e,
                    None => {
                        out.push((s.version, Traffic::default()));
                        let last = out.len() - 1;
                        &mut out[last]
                    }
                };
                entry
                    .1
                    .add(s.requests - p.requests, s.errors - p.errors, &buckets);
            }
        }
        prev = Some(s);
    }
    out
}

impl NodeStates {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, NodeState>> {
        self.nodes.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, NodeState>> {
        self.nodes.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A node said hello: what it serves is what it applied.
    pub fn connected(
        &self,
        node_id: &str,
        labels: BTreeMap<String, String>,
        software_version: String,
        applied: (u64, String),
        now: DateTime<Utc>,
    ) {
        self.write().insert(
            node_id.to_owned(),
            NodeState {
                labels,
                software_version,
                assigned: None,
                applied,
                mismatch_since: None,
                last_nack: None,
                last_seen: now,
                samples: VecDeque::new(),
            },
        );
    }

    pub fn assigned(&self, node_id: &str, version: u64, hash: &str, now: DateTime<Utc>) {
        if let Some(n) = self.write().get_mut(node_id) {
            n.assigned = Some((version, hash.to_owned()));
            n.settle(now);
        }
    }

    pub fn applied(&self, node_id: &str, version: u64, hash: String, now: DateTime<Utc>) {
        if let Some(n) = self.write().get_mut(node_id) {
            // An ACK of an older hello-time version never moves what the node serves back.
            if version >= n.applied.0 {
                n.applied = (version, hash);
            }
            n.last_seen = now;
            n.settle(now);
        }
    }

    pub fn nacked(&self, node_id: &str, version: u64, reason: String, now: DateTime<Utc>) {
        if let Some(n) = self.write().get_mut(node_id) {
            n.last_nack = Some((version, reason));
            n.last_seen = now;
            n.settle(now);
        }
    }

    pub fn reported(&self, node_id: &str, sample: Sample) {
        if let Some(n) = self.write().get_mut(node_id) {
            n.last_seen = sample.at;
            push_sample(&mut n.samples, sample);
        }
    }

    /// A traffic report another replica received.
    pub fn remote_reported(&self, node_id: &str, sample: Sample) {
        let mut remote = self.remote.write().unwrap_or_else(PoisonError::into_inner);
        push_sample(
            &mut remote.entry(node_id.to_owned()).or_default().samples,
            sample,
        );
    }

    /// A NACK another replica received.
    pub fn remote_nacked(&self, node_id: &str, version: u64, reason: String) {
        let mut remote = self.remote.write().unwrap_or_else(PoisonError::into_inner);
        remote.entry(node_id.to_owned()).or_default().last_nack = Some((version, reason));
    }

    pub fn forget(&self, node_id: &str) {
        self.write().remove(node_id);
    }

    /// Every connected node's labels.
    pub fn labels(&self) -> Vec<(String, BTreeMap<String, String>)> {
        let mut out: Vec<_> = self
            .read()
            .iter()
            .map(|(id, n)| (id.clone(), n.labels.clone()))
            .collect();
        out.sort();
        out
    }

    /// The traffic of every node over `window`, summed per version: the nodes connected here
    /// and what other replicas received.
    pub fn traffic(&self, now: DateTime<Utc>, window: Duration) -> HashMap<u64, Traffic> {
        let mut out: HashMap<u64, Traffic> = HashMap::new();
        let mut add = |by_version: Vec<(u64, Traffic)>| {
            for (v, t) in by_version {
                out.entry(v)
                    .or_default()
                    .add(t.requests, t.errors, &t.latency_buckets);
            }
        };
        for n in self.read().values() {
            add(n.traffic_by_version(now, window));
        }
        let remote = self.remote.read().unwrap_or_else(PoisonError::into_inner);
        for n in remote.values() {
            add(traffic_by_version(&n.samples, now, window));
        }
        out
    }

    /// Nodes whose last NACK was of one of `versions`.
    pub fn nacks_of(&self, versions: &std::collections::BTreeSet<u64>) -> u32 {
        let refused =
            |nack: &Option<(u64, String)>| nack.as_ref().is_some_and(|(v, _)| versions.contains(v));
        let local = self.read();
        let remote = self.remote.read().unwrap_or_else(PoisonError::into_inner);
        // A node counts once, by what this replica saw of it when it is connected here.
        let n = local.values().filter(|n| refused(&n.last_nack)).count()
            + remote
                .iter()
                .filter(|(id, n)| !local.contains_key(*id) && refused(&n.last_nack))
                .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The fleet view of one connected node; drifting once its applied version has differed
    /// from its assignment for longer than `bound`.
    pub fn view(&self, node_id: &str, now: DateTime<Utc>, bound: Duration) -> Option<LiveView> {
        let nodes = self.read();
        let n = nodes.get(node_id)?;
        Some(live_view(n, now, bound))
    }

    /// The fleet view of every node connected here, by node id.
    pub fn views(&self, now: DateTime<Utc>, bound: Duration) -> Vec<(String, LiveView)> {
        self.read()
            .iter()
            .map(|(id, n)| (id.clone(), live_view(n, now, bound)))
            .collect()
    }

    /// Whether `node_id` is connected to this replica.
    pub fn is_connected(&self, node_id: &str) -> bool {
        self.read().contains_key(node_id)
    }

    /// `(node, drifting)` for every connected node.
    pub fn drift(&self, now: DateTime<Utc>, bound: Duration) -> Vec<(String, bool)> {
        self.read()
            .iter()
            .map(|(id, n)| (id.clone(), live_view(n, now, bound).drifting))
            .collect()
    }
}

fn live_view(n: &NodeState, now: DateTime<Utc>, bound: Duration) -> LiveView {
    let minute = Duration::seconds(60);
    let (requests, errors) = n
        .traffic_by_version(now, minute)
        .iter()
        .fold((0, 0), |(r, e), (_, t)| (r + t.requests, e + t.errors));
    let span = n
        .samples
        .iter()
        .find(|s| s.at >= now - minute)
        .map(|first| (now - first.at).num_milliseconds().max(1) as f64 / 1000.0)
        .unwrap_or(60.0);
    LiveView {
        assigned: n.assigned.clone(),
        applied: n.applied.clone(),
        drifting_since: n.mismatch_since,
        drifting: n.mismatch_since.is_some_and(|t| now - t > bound),
        last_seen: n.last_seen,
        request_rate: requests as f64 / span,
        error_rate: errors as f64 / span,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: DateTime<Utc>, version: u64, requests: u64, errors: u64) -> Sample {
        Sample {
            at,
            version,
            requests,
            errors,
            latency_buckets: vec![requests],
        }
    }

    #[test]
    fn traffic_is_the_difference_of_reports_counted_for_the_later_version() {
        let states = NodeStates::default();
        let t0 = Utc::now();
        states.connected("a", BTreeMap::new(), "1".into(), (1, "h1".into()), t0);
        states.reported("a", sample(t0, 1, 10, 0));
        // The report the node sends right before it swaps in version 2.
        states.reported("a", sample(t0 + Duration::seconds(1), 1, 30, 5));
        // What follows it was served by version 2.
        states.reported("a", sample(t0 + Duration::seconds(2), 2, 35, 5));
        states.reported("a", sample(t0 + Duration::seconds(3), 2, 45, 9));
        // A restart: counts start again from zero, the fall is not traffic.
        states.reported("a", sample(t0 + Duration::seconds(4), 2, 3, 0));
        let t = states.traffic(t0 + Duration::seconds(4), Duration::seconds(60));
        assert_eq!((t[&1].requests, t[&1].errors), (20, 5));
        assert_eq!((t[&2].requests, t[&2].errors), (15, 4));
    }

    #[test]
    fn a_node_that_does_not_apply_its_assignment_drifts_after_the_bound() {
        let states = NodeStates::default();
        let t0 = Utc::now();
        let bound = Duration::seconds(5);
        states.connected("a", BTreeMap::new(), "1".into(), (1, "h1".into()), t0);
        states.assigned("a", 2, "h2", t0);
        let v = states.view("a", t0 + Duration::seconds(4), bound).unwrap();
        assert!(!v.drifting && v.drifting_since == Some(t0));
        assert!(
            states
                .view("a", t0 + Duration::seconds(6), bound)
                .unwrap()
                .drifting
        );
        states.applied("a", 2, "h2".into(), t0 + Duration::seconds(7));
        assert!(
            !states
                .view("a", t0 + Duration::seconds(8), bound)
                .unwrap()
                .drifting
        );
    }
}
