//! Mutual TLS between the planes: the fleet PKI (issuing a CA and certificates offline, with
//! `rcgen`), loading PEM files into rustls configurations that re-read their files when they
//! change, and a node's identity as its certificate states it.
//!
//! - The fleet CA signs every certificate; both planes trust only it (no system roots).
//! - A node certificate carries the `clientAuth` extended key usage only, its id as the URI
//!   `urn:modelgate:node:<id>` and any labels as `urn:modelgate:label:<key>=<value>`.
//! - The control plane's certificate carries `serverAuth` only, with DNS names and IP addresses,
//!   so a node certificate cannot impersonate the control plane and the control plane's
//!   certificate cannot log in as a node.
//! - TLS 1.3 only, rustls with the `ring` provider (no OpenSSL, no aws-lc).
//!
//! This module reads and writes files (certificates, keys); key files are created 0600 and
//! directories 0700, written under a temporary name and renamed into place.

mod config;
pub mod expiry;
mod identity;
pub mod issue;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use config::{client_config, server_config, Reloading, TlsFiles, RECHECK_INTERVAL};
pub use identity::{node_identity, validate_label, validate_node_id, NodeIdentity};
pub use rustls::pki_types::ServerName;
pub use rustls::{ClientConfig, ServerConfig};

/// The URI SAN prefix naming a node.
pub const NODE_URI_PREFIX: &str = "urn:modelgate:node:";
/// The URI SAN prefix of one label, `key=value`.
pub const LABEL_URI_PREFIX: &str = "urn:modelgate:label:";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{0}")]
    Identity(String),
    #[error("{path} already exists; refusing to overwrite the fleet CA")]
    Exists { path: PathBuf },
    #[error("invalid {what}: {message}")]
    Invalid { what: &'static str, message: String },
}
