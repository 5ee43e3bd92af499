//! Domain types and logic that both ModelGate planes use.
//!
//! - [`snapshot`]: the config snapshot the control plane builds and data planes serve from,
//!   with its explicit conversions to and from the wire types in `modelgate-proto`.
//! - [`keys`]: gateway key generation and keyed hashing (HMAC-SHA-256).
//! - [`pricing`]: exact cost arithmetic in integer micro-USD.
//! - [`routing`]: traffic classes and the cost guardrail (used by routing and by explain).
//! - [`usage`]: the usage event, one per request.
//! - [`quota`]: budget definitions, calendar periods, worst-case cost of a request.
//!
//! Nothing here does I/O.

pub mod clock;
pub mod crypto;
pub mod keys;
pub mod pricing;
pub mod quota;
pub mod routing;
pub mod snapshot;
pub mod usage;

/// The snapshot protocol version this build understands. A snapshot that declares a
/// higher `min_protocol_version` is NACKed rather than misapplied.
pub const SNAPSHOT_PROTOCOL_VERSION: u32 = 5;

/// A new time-ordered unique id (UUIDv7), used for every resource and event.
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}
