//! Domain types and logic that both ModelGate planes use.
//!
//! - [`admission`]: the admission decision — what a request is allowed, and why not — in the
//!   one order the data plane's pipeline and the control plane's explain both call.
//! - [`snapshot`]: the config snapshot the control plane builds and data planes serve from,
//!   with its explicit conversions to and from the wire types in `modelgate-proto`.
//! - [`canonical`]: the canonical encoding of a config, its content hash and policy hash.
//! - [`digest`]: the structured digest of a config, kept one resource at a time.
//! - [`delta`]: the changes between two configs, computed and applied resource by resource.
//! - [`rollout`]: the version model, staged-rollout plans, health gates, policy diffs.
//! - [`key_view`]: what the request path reads of a key (an `ApiKey`, or the data plane's
//!   compact form).
//! - [`keys`]: gateway key generation and keyed hashing (HMAC-SHA-256).
//! - [`pricing`]: exact cost arithmetic in integer micro-USD.
//! - [`routing`]: traffic classes and the cost guardrail (used by routing and by explain).
//! - [`usage`]: the usage event, one per request.
//! - [`quota`]: budget definitions, calendar periods, worst-case cost of a request.
//! - [`limits`]: rate limits (requests and tokens per minute, concurrent requests).
//! - [`scope`]: the one scope a budget or rate limit names, and who owns it.
//! - [`tls`]: mutual TLS between the planes: the fleet PKI (`modelgate certs`), rustls
//!   configurations that follow their files, a node's identity from its certificate.
//!
//! - [`secret_fs`]: key files created 0600 and data directories 0700 from the start.
//!
//! Nothing here does network I/O; only [`tls`] (certificates and keys) and [`secret_fs`] touch
//! files.

/// `as_str`, `FromStr` and `Display` for a fieldless enum from its variants' names.
macro_rules! names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
        }
        impl ::std::str::FromStr for $t {
            type Err = $crate::snapshot::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok(Self::$v),)*
                    other => Err($crate::snapshot::UnknownValue(other.to_owned())),
                }
            }
        }
        impl ::std::fmt::Display for $t {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod admission;
pub mod cache;
pub mod canonical;
pub mod clock;
pub mod crypto;
pub mod delta;
pub mod digest;
pub mod key_view;
pub mod keys;
pub mod limits;
pub mod pricing;
pub mod quota;
pub mod rollout;
pub mod routing;
pub mod scope;
pub mod secret_fs;
pub mod snapshot;
pub mod tls;
pub mod usage;

/// The snapshot protocol version this build understands. A snapshot that declares a
/// higher `min_protocol_version` is NACKed rather than misapplied.
///
/// 9: deltas (`Snapshot.delta`, `SubscribeRequest.resync`, `Hello.features`); a delta declares
/// 9 and requires the `config-delta` feature, full snapshots keep declaring what their content
/// needs, so data planes of 8 and below keep receiving (and reading) full snapshots.
pub const SNAPSHOT_PROTOCOL_VERSION: u32 = 9;

/// A new time-ordered unique id (UUIDv7), used for every resource and event.
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}
