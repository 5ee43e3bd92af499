//! Sealing secrets at rest with AES-256-GCM: on the control plane provider credentials, the
//! key-hash secret and idempotency records under the master key; on a data plane its
//! last-known-good snapshot under the node's LKG key. Format: `v1:` + hex(nonce ‖ ciphertext+tag).

use aes_gcm::aead::{Aead, KeyInit, OsRng};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CryptoError {
    #[error("master key must be 32 bytes as 64 hex characters")]
    BadMasterKey,
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value does not open under this master key")]
    WrongKey,
}

/// Seals and opens secrets under one master key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl Sealer {
    pub fn from_hex(master_key_hex: &str) -> Result<Self, CryptoError> {
        let bytes = hex::decode(master_key_hex.trim()).map_err(|_| CryptoError::BadMasterKey)?;
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

    pub fn seal(&self, plaintext: &[u8]) -> String {
        let nonce = Aes256Gcm::generate_nonce(OsRng);
        // Encryption with a fresh nonce and an in-memory buffer cannot fail.
        let ciphertext = self.cipher.encrypt(&nonce, plaintext).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        format!("v1:{}", hex::encode(out))
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, CryptoError> {
        let hex_part = sealed.strip_prefix("v1:").ok_or(CryptoError::Malformed)?;
        let bytes = hex::decode(hex_part).map_err(|_| CryptoError::Malformed)?;
        if bytes.len() < 12 + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| CryptoError::WrongKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secret_opens_only_under_its_key_and_hides_plaintext() {
        let a = Sealer::from_hex(&Sealer::generate_master_key_hex()).unwrap();
        let b = Sealer::from_hex(&Sealer::generate_master_key_hex()).unwrap();
        let sealed = a.seal(b"sk-live-secret");
        assert!(!sealed.contains("sk-live"));
        assert_eq!(a.open(&sealed).unwrap(), b"sk-live-secret");
        assert!(matches!(b.open(&sealed), Err(CryptoError::WrongKey)));
        assert_ne!(a.seal(b"x"), a.seal(b"x"), "nonces must differ");
    }

    #[test]
    fn bad_master_keys_are_refused() {
        assert!(Sealer::from_hex("abcd").is_err());
        assert!(Sealer::from_hex(&"zz".repeat(32)).is_err());
    }
}
