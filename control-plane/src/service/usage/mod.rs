//! Usage: idempotent batch ingest with same-transaction aggregates ([`ingest`]), the pull API and
//! aggregate queries ([`query`]), and export sink administration ([`sinks`]).

mod ingest;
mod query;
pub mod sinks;

pub use ingest::{ingest, Ingested};
pub use query::{daily, events_after, list, DailyFilter, DailyRow, UsageFilter, UsageRow};
