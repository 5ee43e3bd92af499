//! Sealing secrets at rest with AES-256-GCM: on the control plane provider credentials, the
//! key-hash secret, sink secrets and idempotency records under the master key; on a data plane
//! its last-known-good snapshot under the node's LKG key.
//!
//! Every sealed value is bound to where it lives: the [`Binding`] (table, column and row id, or a
//! file label) is the AEAD's associated data, so a ciphertext copied into another row or column
//! does not open there. Format: `v2:` + hex(nonce ‖ ciphertext+tag). The unbound format of
//! earlier releases (`v1:`, no associated data) is only read to re-seal it
//! ([`Sealer::open_bound_or_unbound`]); [`Sealer::open_bound`] refuses it.

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use thiserror::Error;

const UNBOUND: &str = "v1:";
const BOUND: &str = "v2:";

#[derive(Debug, Error)]
pub enum CryptoError {
    #[error("master key must be 32 bytes as 64 hex characters")]
    BadMasterKey,
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value does not open under this key where it is stored (wrong key, or copied from elsewhere)")]
    WrongKey,
    #[error("sealed value predates binding and was not re-sealed")]
    Unbound,
}

/// Where a sealed value lives, as the AEAD's associated data: a canonical, length-prefixed
/// encoding of (table, column, row id parts), or of a file label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding(Vec<u8>);

impl Binding {
    /// A database cell: `row` is the primary key, one part per key column.
    pub fn cell(table: &str, column: &str, row: &[&str]) -> Self {
        let mut b = Binding(b"modelgate/cell".to_vec());
        b.push(table);
        b.push(column);
        for part in row {
            b.push(part);
        }
        b
    }

    /// A file (e.g. the data plane's last-known-good snapshot), named by a fixed label.
    pub fn file(label: &str) -> Self {
        let mut b = Binding(b"modelgate/file".to_vec());
        b.push(label);
        b
    }

    fn push(&mut self, part: &str) {
        // u32 length prefixes keep the encoding injective ("a","bc" ≠ "ab","c").
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(part.as_bytes());
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Seals and opens secrets under one master key. Its `Debug` shows no key material.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([REDACTED])")
    }
}

impl Sealer {
    pub fn from_hex(master_key_hex: &str) -> Result<Self, CryptoError> {
        let bytes = secrecy::zeroize::Zeroizing::new(
            hex::decode(master_key_hex.trim()).map_err(|_| CryptoError::BadMasterKey)?,
        );
        if bytes.len() != 32 {
            return Err(CryptoError::BadMasterKey);
        }
        Ok(Sealer {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
        })
    }

    /// A new random master key, hex encoded.
    pub fn generate_master_key_hex() -> String {
        hex::encode(Aes256Gcm::generate_key(OsRng))
    }

    /// Seals `plaintext` bound to `binding`: it opens only with the same binding.
    pub fn seal_bound(&self, plaintext: &[u8], binding: &Binding) -> String {
        self.seal_with(BOUND, plaintext, binding.as_bytes())
    }

    /// Opens a value sealed by [`Sealer::seal_bound`] with the same binding; refuses any other
    /// binding and the unbound format.
    pub fn open_bound(&self, sealed: &str, binding: &Binding) -> Result<Vec<u8>, CryptoError> {
        if sealed.starts_with(UNBOUND) {
            return Err(CryptoError::Unbound);
        }
        self.open_with(BOUND, sealed, binding.as_bytes())
    }

    /// Opens a bound value, or an unbound one from an earlier release: only for re-sealing
    /// (the start-up binding step, master-key rotation, a node's old last-known-good file).
    pub fn open_bound_or_unbound(
        &self,
        sealed: &str,
        binding: &Binding,
    ) -> Result<Vec<u8>, CryptoError> {
        if sealed.starts_with(UNBOUND) {
            self.open_with(UNBOUND, sealed, b"")
        } else {
            self.open_with(BOUND, sealed, binding.as_bytes())
        }
    }

    /// Whether `sealed` is in the unbound format of earlier releases.
    pub fn is_unbound(sealed: &str) -> bool {
        sealed.starts_with(UNBOUND)
    }

    /// Whether `sealed` looks like a sealed value (either format).
    pub fn is_sealed(sealed: &str) -> bool {
        sealed.starts_with(UNBOUND) || sealed.starts_with(BOUND)
    }

    /// Seals in the unbound format earlier releases wrote; kept so that upgrade tests can
    /// write what such a release left in a database. Nothing in the product calls it.
    #[doc(hidden)]
    pub fn seal_unbound_as_earlier_releases_did(&self, plaintext: &[u8]) -> String {
        self.seal_with(UNBOUND, plaintext, b"")
    }

    fn seal_with(&self, prefix: &str, plaintext: &[u8], aad: &[u8]) -> String {
        let nonce = Aes256Gcm::generate_nonce(OsRng);
        // Sealed in place (room for the tag reserved) and written out as hex once: a data
        // plane's 20 MB last-known-good costs its ciphertext and its hex while it is sealed, not
        // four copies.
        let mut sealed = Vec::with_capacity(plaintext.len() + TAG_LEN);
        sealed.extend_from_slice(plaintext);
        // Encryption with a fresh nonce and an in-memory buffer cannot fail.
        if self
            .cipher
            .encrypt_in_place(&nonce, aad, &mut sealed)
            .is_err()
        {
            sealed.clear();
        }
        let mut out = String::with_capacity(prefix.len() + 2 * (nonce.len() + sealed.len()));
        out.push_str(prefix);
        push_hex(&mut out, &nonce);
        push_hex(&mut out, &sealed);
        out
    }

    fn open_with(&self, prefix: &str, sealed: &str, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let hex_part = sealed.strip_prefix(prefix).ok_or(CryptoError::Malformed)?;
        let bytes = hex::decode(hex_part).map_err(|_| CryptoError::Malformed)?;
        if bytes.len() < 12 + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::WrongKey)
    }
}

/// The AES-GCM tag's length.
const TAG_LEN: usize = 16;

/// Appends `bytes` to `out` in lowercase hex, a few kilobytes at a time.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const CHUNK: usize = 4096;
    let mut buf = [0u8; 2 * CHUNK];
    for chunk in bytes.chunks(CHUNK) {
        let hex = &mut buf[..2 * chunk.len()];
        // Twice the chunk's length always fits, and hex digits are ASCII.
        if hex::encode_to_slice(chunk, hex).is_ok() {
            out.push_str(std::str::from_utf8(hex).unwrap_or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(row: &str) -> Binding {
        Binding::cell("provider_accounts", "credential_ciphertext", &[row])
    }

    #[test]
    fn sealed_secret_opens_only_under_its_key_and_hides_plaintext() {
        let a = Sealer::from_hex(&Sealer::generate_master_key_hex()).unwrap();
        let b = Sealer::from_hex(&Sealer::generate_master_key_hex()).unwrap();
        let sealed = a.seal_bound(b"sk-live-secret", &cell("p1"));
        assert!(sealed.starts_with("v2:"));
        assert!(!sealed.contains("sk-live"));
        assert_eq!(
            a.open_bound(&sealed, &cell("p1")).unwrap(),
            b"sk-live-secret"
        );
        assert!(matches!(
            b.open_bound(&sealed, &cell("p1")),
            Err(CryptoError::WrongKey)
        ));
        assert_ne!(
            a.seal_bound(b"x", &cell("p1")),
            a.seal_bound(b"x", &cell("p1")),
            "nonces must differ"
        );
    }

    #[test]
    fn a_bound_value_opens_only_in_its_own_table_column_and_row() {
        let k = Sealer::from_hex(&Sealer::generate_master_key_hex()).unwrap();
        let sealed = k.seal_bound(b"secret", &cell("p1"));
        for other in [
            cell("p2"),
            Binding::cell("provider_accounts", "other_column", &["p1"]),
            Binding::cell("export_sinks", "credential_ciphertext", &["p1"]),
            Binding::file("p1"),
        ] {
            assert!(matches!(
                k.open_bound(&sealed, &other),
                Err(CryptoError::WrongKey)
            ));
        }
        // Length prefixes: a row id split differently is another binding.
        let ab_c = Binding::cell("t", "c", &["ab", "c"]);
        let a_bc = Binding::cell("t", "c", &["a", "bc"]);
        assert_ne!(ab_c, a_bc);
        let sealed = k.seal_bound(b"r", &ab_c);
        assert!(k.open_bound(&sealed, &a_bc).is_err());
    }

    #[test]
    fn an_unbound_value_opens_only_for_re_sealing() {
        let k = Sealer::from_hex(&Sealer::generate_master_key_hex()).unwrap();
        let old = k.seal_unbound_as_earlier_releases_did(b"legacy");
        assert!(Sealer::is_unbound(&old));
        assert!(matches!(
            k.open_bound(&old, &cell("p1")),
            Err(CryptoError::Unbound)
        ));
        assert_eq!(
            k.open_bound_or_unbound(&old, &cell("p1")).unwrap(),
            b"legacy"
        );
        let bound = k.seal_bound(b"new", &cell("p1"));
        assert_eq!(
            k.open_bound_or_unbound(&bound, &cell("p1")).unwrap(),
            b"new"
        );
        assert!(k.open_bound_or_unbound(&bound, &cell("p2")).is_err());
    }

    #[test]
    fn a_large_value_seals_as_prefix_and_lowercase_hex_of_nonce_and_ciphertext_and_opens() {
        let k = Sealer::from_hex(&Sealer::generate_master_key_hex()).unwrap();
        // Past several hex chunks, and not a multiple of one.
        let plaintext: Vec<u8> = (0..100_003u32).map(|n| (n % 251) as u8).collect();
        let binding = Binding::file("test/large");
        let sealed = k.seal_bound(&plaintext, &binding);
        let hex_part = sealed.strip_prefix(BOUND).unwrap();
        assert_eq!(hex_part.len(), 2 * (12 + plaintext.len() + 16));
        assert!(hex_part
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(k.open_bound(&sealed, &binding).unwrap(), plaintext);
        // The same bytes as sealing in one piece: nonce ‖ AES-GCM(plaintext, aad).
        let bytes = hex::decode(hex_part).unwrap();
        let (nonce, ciphertext) = bytes.split_at(12);
        let opened = k
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: binding.as_bytes(),
                },
            )
            .unwrap();
        assert_eq!(opened, plaintext);
    }

    #[test]
    fn bad_master_keys_are_refused() {
        assert!(Sealer::from_hex("abcd").is_err());
        assert!(Sealer::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn a_sealers_debug_shows_no_key() {
        let hex = Sealer::generate_master_key_hex();
        let s = Sealer::from_hex(&hex).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains(&hex) && shown.contains("REDACTED"));
    }
}
