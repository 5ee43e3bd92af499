//! The runtime as the source of the request metrics' label values: the aliases and provider
//! ids of the config being served (`crate::metrics::labels`).

use arc_swap::ArcSwap;

use super::Runtime;
use crate::metrics::labels::{LabelSource, Names};

impl LabelSource for ArcSwap<Runtime> {
    fn version(&self) -> u64 {
        self.load().version
    }

    fn names(&self) -> Names {
        let runtime = self.load();
        Names::new(
            runtime.version,
            runtime.groups.keys().map(String::as_str),
            runtime.providers.keys().map(String::as_str),
        )
    }
}
