//! Usage: idempotent batch ingest with same-transaction aggregates ([`ingest`]; on Postgres by
//! binary `COPY`, [`copy`]) that quarantines
//! what fails validation ([`validate`], [`quarantine`]), the pull API and aggregate queries
//! ([`query`]), the ingest sequence that the pull cursor follows ([`sequence`]), the request log
//! ([`requests`]), latency percentiles per day for the dashboard
//! ([`latency`]), export sink administration ([`sinks`]), and the ledger's partitions and
//! retention ([`partitions`]).

mod copy;
mod ingest;
pub mod latency;
pub mod partitions;
pub mod quarantine;
mod query;
pub mod requests;
pub mod sequence;
pub mod sinks;
mod sqlite_load;
pub mod validate;

pub use ingest::{ingest, ingest_received, Delivery, Ingested, Received, Writer};
pub use query::{daily, events_after, list, DailyFilter, DailyRow, UsageFilter, UsageRow};
