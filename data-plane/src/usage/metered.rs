//! Video jobs this node has already charged. A finished job is charged by the first poll that
//! sees it completed; this set keeps a node from charging it twice, and the charge's event id
//! (derived from the job id) keeps the fleet from it at ingest.

use std::collections::HashSet;
use std::sync::Mutex;

/// Bound on the node's memory of metered jobs; past it the set starts over (the event id
/// still prevents a double charge at ingest).
const MAX_REMEMBERED: usize = 100_000;

/// Gateway job ids already metered by this node.
#[derive(Debug, Default)]
pub struct MeteredJobs(Mutex<HashSet<String>>);

impl MeteredJobs {
    /// True the first time `id` is offered.
    pub fn first(&self, id: &str) -> bool {
        match self.0.lock() {
            Ok(mut set) => {
                if set.contains(id) {
                    return false;
                }
                if set.len() >= MAX_REMEMBERED {
                    set.clear();
                }
                set.insert(id.to_owned())
            }
            // A poisoned set: rely on the event id alone.
            Err(_) => true,
        }
    }
}
