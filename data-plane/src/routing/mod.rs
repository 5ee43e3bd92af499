//! Routing state on this node: which deployments are healthy right now ([`health`]: outlier
//! detection, 429 parking, in-flight and latency averages, carried across snapshots) and how
//! many retries the node can afford ([`budget`]). The runtime holds the health table, so this
//! sits below `config`; the plan that reads both is a pipeline stage (`pipeline::plan`), and
//! the failure ladder that walks it is `pipeline::attempt`.

pub mod budget;
pub mod health;

pub use modelgate_shared::routing::TrafficClass;
