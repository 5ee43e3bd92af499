//! Usage: idempotent batch ingest with same-transaction aggregates ([`ingest`]) that quarantines
//! what fails validation ([`validate`], [`quarantine`]), the pull API and aggregate queries
//! ([`query`]), and export sink administration ([`sinks`]).

mod ingest;
pub mod quarantine;
mod query;
pub mod sinks;
pub mod validate;

pub use ingest::{ingest, ingest_received, Ingested, Received, Writer};
pub use query::{daily, events_after, list, DailyFilter, DailyRow, UsageFilter, UsageRow};
