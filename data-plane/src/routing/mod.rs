//! Routing: which deployments a request may try, in which order ([`plan`]), which of them are
//! healthy right now ([`health`]), and how many retries the node can afford ([`budget`]). The
//! failure ladder that walks a plan lives with the request handler (`server::ladder`).

pub mod budget;
pub mod health;
pub mod plan;

pub use modelgate_shared::routing::TrafficClass;
