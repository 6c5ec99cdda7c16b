//! Sealed secrets: AES-256-GCM under the operator's master key.
//!
//! Every seal draws a fresh random 96-bit nonce and binds the tenant id and
//! the secret's name as associated data, so a sealed value copied to another
//! tenant or name does not open. A sealed value carries the id of the key
//! that sealed it (the first 8 bytes of a SHA-256 over the key), so a wrong
//! master key is named as such before any decryption is tried, and a key
//! rotation interrupted half way resumes where it stopped.
//!
//! The master key comes from `ML_CONNECTOR_MASTER_KEY` (base64 of 32 bytes)
//! or a key file holding the same text; it is never written beside the data.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mlc_common::Secret;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The environment variable holding the master key (base64 of 32 bytes).
pub const MASTER_KEY_ENV: &str = "ML_CONNECTOR_MASTER_KEY";

/// Bytes of a sealed value before the ciphertext: version, key id, nonce.
const HEADER: usize = 1 + 8 + 12;
/// The layout version of a sealed value.
const LAYOUT: u8 = 1;

/// Why a master key could not be had, or a value not sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// No master key was given.
    #[error(
        "no master key: set {MASTER_KEY_ENV} to the base64 of 32 random bytes (e.g. `openssl rand -base64 32`) or pass --master-key-file FILE"
    )]
    Missing,
    /// The key text is not base64 of exactly 32 bytes.
    #[error("the master key from {origin} is not the base64 of 32 bytes")]
    Malformed {
        /// Where the key came from (the variable or the file).
        origin: String,
    },
    /// The key file could not be read.
    #[error("reading the master key file {path}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The value was sealed under another key.
    #[error(
        "secret `{name}` of tenant `{tenant}` was sealed under master key {sealed_with}, but the master key given is {given}: set {MASTER_KEY_ENV} (or --master-key-file) to the key this store was set up with"
    )]
    WrongKey {
        /// The tenant.
        tenant: String,
        /// The secret's name.
        name: String,
        /// Id of the key that sealed it.
        sealed_with: KeyId,
        /// Id of the key given.
        given: KeyId,
    },
    /// The value does not open: tampered, truncated, or moved from another
    /// tenant or name.
    #[error(
        "secret `{name}` of tenant `{tenant}` does not open under its key: it was altered or copied from another tenant or name; set it again with `ml-connector secret set {tenant} {name}`"
    )]
    Corrupt {
        /// The tenant.
        tenant: String,
        /// The secret's name.
        name: String,
    },
}

/// The id of a master key: 8 bytes of SHA-256 over a label and the key,
/// printed as 16 hex digits. Safe to show; it says nothing of the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// The operator's master key, wiped from memory when dropped.
pub struct MasterKey {
    key: Zeroizing<[u8; 32]>,
    id: KeyId,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(id {}, ***)", self.id)
    }
}

impl MasterKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"ml-connector master key id v1\0");
        hasher.update(bytes);
        let digest = hasher.finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Self {
            key: Zeroizing::new(bytes),
            id: KeyId(id),
        }
    }

    /// A key from its base64 text (surrounding white space ignored);
    /// `origin` names where it came from, for the error.
    pub fn from_base64(text: &str, origin: &str) -> Result<Self, SealError> {
        let malformed = || SealError::Malformed {
            origin: origin.to_owned(),
        };
        let decoded = Zeroizing::new(BASE64.decode(text.trim()).map_err(|_| malformed())?);
        let bytes: [u8; 32] = decoded.as_slice().try_into().map_err(|_| malformed())?;
        Ok(Self::from_bytes(bytes))
    }

    /// The key from `file` when given, else from [`MASTER_KEY_ENV`].
    pub fn from_env_or_file(file: Option<&Path>) -> Result<Self, SealError> {
        if let Some(path) = file {
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
                SealError::File {
                    path: path.display().to_string(),
                    source,
                }
            })?);
            return Self::from_base64(&text, &path.display().to_string());
        }
        match std::env::var(MASTER_KEY_ENV) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                Self::from_base64(&text, MASTER_KEY_ENV)
            }
            Err(_) => Err(SealError::Missing),
        }
    }

    /// A new random key, as base64 text (for `keys generate` and tests).
    pub fn generate_base64() -> Secret {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(bytes.as_mut());
        Secret::new(BASE64.encode(bytes.as_ref()))
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(*self.key))
    }

    /// Seals `value` as secret `name` of `tenant`.
    pub fn seal(&self, tenant: &str, name: &str, value: &Secret) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated_data(tenant, name);
        // Encryption with a valid key and in-memory buffers cannot fail.
        let ciphertext = self
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: value.expose().as_bytes(),
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER + ciphertext.len());
        out.push(LAYOUT);
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Opens a value sealed as secret `name` of `tenant`.
    pub fn open(&self, tenant: &str, name: &str, sealed: &[u8]) -> Result<Secret, SealError> {
        let corrupt = || SealError::Corrupt {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
        };
        let sealed_with = sealed_key_id(sealed).ok_or_else(corrupt)?;
        if sealed_with != self.id {
            return Err(SealError::WrongKey {
                tenant: tenant.to_owned(),
                name: name.to_owned(),
                sealed_with,
                given: self.id,
            });
        }
        let nonce: [u8; 12] = sealed
            .get(9..HEADER)
            .and_then(|n| n.try_into().ok())
            .ok_or_else(corrupt)?;
        let aad = associated_data(tenant, name);
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: &sealed[HEADER..],
                        aad: &aad,
                    },
                )
                .map_err(|_| corrupt())?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| corrupt())?;
        Ok(Secret::new(text.to_owned()))
    }
}

/// The id of the key that sealed `sealed`, if it is a sealed value at all.
pub fn sealed_key_id(sealed: &[u8]) -> Option<KeyId> {
    if sealed.len() < HEADER + 16 || sealed[0] != LAYOUT {
        return None;
    }
    sealed.get(1..9)?.try_into().ok().map(KeyId)
}

/// `tenant \0 name`: binds a sealed value to its place.
fn associated_data(tenant: &str, name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(tenant.len() + name.len() + 16);
    aad.extend_from_slice(b"ml-connector secret v1\0");
    aad.extend_from_slice(tenant.as_bytes());
    aad.push(0);
    aad.extend_from_slice(name.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes([byte; 32])
    }

    #[test]
    fn seals_and_opens() {
        let k = key(1);
        let sealed = k.seal("acme", "pat", &Secret::new("hunter2"));
        assert!(
            !sealed.windows(7).any(|w| w == b"hunter2"),
            "the clear value is in the sealed bytes"
        );
        let opened = k.open("acme", "pat", &sealed).unwrap();
        assert_eq!(opened.expose(), "hunter2");
        // A fresh nonce per seal: the same value seals differently.
        let again = k.seal("acme", "pat", &Secret::new("hunter2"));
        assert_ne!(sealed, again);
    }

    #[test]
    fn wrong_key_is_named_and_never_shows_the_value() {
        let sealed = key(1).seal("acme", "pat", &Secret::new("hunter2"));
        let err = key(2).open("acme", "pat", &sealed).unwrap_err();
        assert!(matches!(err, SealError::WrongKey { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(MASTER_KEY_ENV), "{text}");
        assert!(text.contains(&key(1).id().to_string()), "{text}");
        assert!(!text.contains("hunter2"));
    }

    #[test]
    fn moved_or_altered_values_do_not_open() {
        let k = key(3);
        let sealed = k.seal("acme", "pat", &Secret::new("v"));
        for (tenant, name) in [("other", "pat"), ("acme", "other")] {
            let err = k.open(tenant, name, &sealed).unwrap_err();
            assert!(matches!(err, SealError::Corrupt { .. }), "{err:?}");
        }
        let mut flipped = sealed.clone();
        if let Some(last) = flipped.last_mut() {
            *last ^= 1;
        }
        assert!(matches!(
            k.open("acme", "pat", &flipped),
            Err(SealError::Corrupt { .. })
        ));
        assert!(matches!(
            k.open("acme", "pat", &sealed[..10]),
            Err(SealError::Corrupt { .. })
        ));
    }

    #[test]
    fn key_text_must_be_32_bytes_of_base64() {
        assert!(MasterKey::from_base64("not base64!", "test").is_err());
        assert!(MasterKey::from_base64(&BASE64.encode([0u8; 16]), "test").is_err());
        let text = MasterKey::generate_base64();
        let k = MasterKey::from_base64(&format!(" {}\n", text.expose()), "test").unwrap();
        assert!(format!("{k:?}").contains("***"));
    }
}
