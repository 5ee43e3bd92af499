//! Gateway keys: random 32-byte secrets with a recognisable prefix, stored only as a keyed hash.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Every gateway key starts with this, so leaked keys are easy to recognise and scan for.
pub const KEY_PREFIX: &str = "mg-";
/// Admin API tokens start with this.
pub const ADMIN_TOKEN_PREFIX: &str = "mgadm-";
/// How many characters of a key are kept in clear for display (`mg-AbCdEf12`).
pub const DISPLAY_PREFIX_LEN: usize = 11;

/// The keyed hash a gateway key is stored and looked up by.
pub type KeyHash = [u8; 32];

/// A freshly generated secret, shown once.
pub struct NewSecret {
    pub secret: String,
    pub display_prefix: String,
}

/// Generates a gateway key: `mg-` followed by 32 random bytes in URL-safe hex-free base62.
pub fn generate_key() -> NewSecret {
    generate_with_prefix(KEY_PREFIX)
}

/// Generates a webhook signing secret (`whsec-…`).
pub fn generate_signing_secret() -> String {
    generate_with_prefix("whsec-").secret
}

/// Generates an admin API token (`mgadm-…`).
pub fn generate_admin_token() -> NewSecret {
    generate_with_prefix(ADMIN_TOKEN_PREFIX)
}

fn generate_with_prefix(prefix: &str) -> NewSecret {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!("{prefix}{}", base62(&bytes));
    let display_prefix = secret.chars().take(DISPLAY_PREFIX_LEN).collect();
    NewSecret {
        secret,
        display_prefix,
    }
}

/// HMAC-SHA-256 of a presented key under the server's key-hash secret.
pub fn hash_key(server_secret: &[u8], presented: &str) -> KeyHash {
    KeyHasher::new(server_secret).hash(presented)
}

/// [`hash_key`] under one server secret, for a caller that hashes many keys (the data plane,
/// once per request): HMAC hashes its key's inner and outer pad blocks before any message,
/// and here that is done once, when the secret is set, leaving two SHA-256 blocks per key
/// presented instead of four.
#[derive(Clone)]
pub struct KeyHasher(Hmac<Sha256>);

impl KeyHasher {
    pub fn new(server_secret: &[u8]) -> KeyHasher {
        // HMAC accepts keys of any length (a long one is hashed first), so this cannot fail.
        KeyHasher(
            Hmac::<Sha256>::new_from_slice(server_secret)
                .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length")),
        )
    }

    /// The keyed hash of `presented`.
    pub fn hash(&self, presented: &str) -> KeyHash {
        let mut mac = self.0.clone();
        mac.update(presented.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl Default for KeyHasher {
    /// The hasher of an empty secret (a data plane that has no snapshot yet).
    fn default() -> KeyHasher {
        KeyHasher::new(&[])
    }
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(..)")
    }
}

/// Unkeyed SHA-256, used for admin tokens (high-entropy secrets that never leave the control
/// plane, so no server secret is needed to make the stored value useless to a thief).
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Unkeyed SHA-256 of bytes, hex.
pub fn sha256_hex_bytes(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A new random server secret for keyed hashing.
pub fn generate_server_secret() -> Vec<u8> {
    let mut bytes = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

fn base62(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    // Repeated division of the big-endian number; 32 bytes give 43 digits.
    let mut digits: Vec<u8> = bytes.to_vec();
    let mut out = Vec::with_capacity(44);
    while digits.iter().any(|&d| d != 0) {
        let mut remainder = 0u32;
        for d in digits.iter_mut() {
            let acc = (remainder << 8) | u32::from(*d);
            *d = (acc / 62) as u8;
            remainder = acc % 62;
        }
        out.push(ALPHABET[remainder as usize]);
    }
    while out.len() < 43 {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_prefix_length_and_are_unique() {
        let a = generate_key();
        let b = generate_key();
        assert!(a.secret.starts_with("mg-"));
        assert_eq!(a.secret.len(), 3 + 43);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.display_prefix, &a.secret[..DISPLAY_PREFIX_LEN]);
    }

    #[test]
    fn keyed_hash_depends_on_server_secret_and_key() {
        let k = "mg-abc";
        assert_eq!(hash_key(b"s1", k), hash_key(b"s1", k));
        assert_ne!(hash_key(b"s1", k), hash_key(b"s2", k));
        assert_ne!(hash_key(b"s1", k), hash_key(b"s1", "mg-abd"));
    }

    #[test]
    fn a_key_hasher_gives_the_hmac_of_rfc_4231_and_stays_unchanged_by_use() {
        // RFC 4231, test case 2: key "Jefe".
        let jefe = KeyHasher::new(b"Jefe");
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(
            hex::encode(jefe.hash("what do ya want for nothing?")),
            expected
        );
        // The precomputed state is cloned per key, never advanced by one.
        let _ = jefe.hash("mg-first");
        assert_eq!(
            hex::encode(jefe.hash("what do ya want for nothing?")),
            expected
        );
        // RFC 4231, test case 6: a key longer than SHA-256's block is hashed first.
        let long = KeyHasher::new(&[0xaa; 131]);
        assert_eq!(
            hex::encode(long.hash("Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(KeyHasher::default().hash("mg-x"), hash_key(b"", "mg-x"));
    }

    #[test]
    fn base62_of_zero_and_max_is_fixed_width() {
        assert_eq!(base62(&[0u8; 32]).len(), 43);
        assert_eq!(base62(&[255u8; 32]).len(), 43);
    }
}
