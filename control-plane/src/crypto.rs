//! Sealing secrets at rest: the shared AES-256-GCM sealer (see `modelgate_shared::crypto`).

pub use modelgate_shared::crypto::{CryptoError, Sealer};
