//! Envelope encryption at rest: each blob gets a fresh data key (AES-256-GCM), wrapped by the
//! configured key-encryption key. The key id travels in the blob header, so after a rotation
//! old blobs stay readable with the previous keys while new ones use the active key.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ApiError;

const MAGIC: &[u8; 8] = b"MLOPSENC";
const FORMAT: u8 = 1;
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const WRAPPED_KEY_LEN: usize = 32 + 16;
pub(crate) const HEADER_LEN: usize =
    MAGIC.len() + 1 + KEY_ID_LEN + NONCE_LEN + WRAPPED_KEY_LEN + NONCE_LEN;

/// `[storage.encryption]`: a 32-byte key, base64 in `key` or in the file `key_file`; older
/// keys kept for reading blobs written before a rotation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionSettings {
    pub key: String,
    pub key_file: String,
    pub previous_keys: Vec<String>,
    pub previous_key_files: Vec<String>,
}

fn aead(key: &[u8]) -> Aes256Gcm {
    Aes256Gcm::new_from_slice(key).expect("keys are checked to be 32 bytes")
}

fn nonce(bytes: &[u8]) -> Nonce<U12> {
    let array: [u8; NONCE_LEN] = bytes.try_into().expect("nonces are NONCE_LEN bytes");
    array.into()
}

struct Kek {
    id: [u8; KEY_ID_LEN],
    cipher: Aes256Gcm,
}

pub struct Cipher {
    active: Kek,
    keys: Vec<Kek>,
}

fn kek(material: &str, origin: &str) -> Result<Kek, ApiError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(material.trim())
        .map_err(|_| ApiError::invalid_argument(format!("{origin}: not base64")))?;
    if bytes.len() != 32 {
        return Err(ApiError::invalid_argument(format!(
            "{origin}: a key must be 32 bytes, got {}",
            bytes.len()
        )));
    }
    // The id is derived from the key, so it never has to be configured and cannot mismatch.
    let digest = Sha256::digest([b"mlops-kek-id".as_slice(), &bytes].concat());
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest[..KEY_ID_LEN]);
    Ok(Kek {
        id,
        cipher: aead(&bytes),
    })
}

fn read_key_file(path: &str) -> Result<String, ApiError> {
    std::fs::read_to_string(path).map_err(|e| {
        ApiError::invalid_argument(format!(
            "storage.encryption key file {path:?} cannot be read: {e}"
        ))
    })
}

/// A new random key, base64, for `mlops` to print or a key file.
pub fn generate_key() -> String {
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

impl Cipher {
    /// `None` when no key is configured (encryption off).
    pub fn from_settings(settings: &EncryptionSettings) -> Result<Option<Self>, ApiError> {
        let active = match (settings.key.is_empty(), settings.key_file.is_empty()) {
            (true, true) => return Ok(None),
            (false, true) => kek(&settings.key, "storage.encryption.key")?,
            (true, false) => kek(
                &read_key_file(&settings.key_file)?,
                "storage.encryption.key_file",
            )?,
            (false, false) => {
                return Err(ApiError::invalid_argument(
                    "set storage.encryption.key or key_file, not both",
                ));
            }
        };
        let mut keys = Vec::new();
        for key in &settings.previous_keys {
            keys.push(kek(key, "storage.encryption.previous_keys")?);
        }
        for file in &settings.previous_key_files {
            keys.push(kek(
                &read_key_file(file)?,
                "storage.encryption.previous_key_files",
            )?);
        }
        Ok(Some(Self { active, keys }))
    }

    /// `aad` binds the ciphertext to its identity (the content digest).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, ApiError> {
        let mut data_key = [0u8; 32];
        OsRng.fill_bytes(&mut data_key);
        let (mut key_nonce, mut data_nonce) = ([0u8; NONCE_LEN], [0u8; NONCE_LEN]);
        OsRng.fill_bytes(&mut key_nonce);
        OsRng.fill_bytes(&mut data_nonce);
        let failed = |_| ApiError::internal("encryption failed");
        let wrapped = self
            .active
            .cipher
            .encrypt(
                &nonce(&key_nonce),
                Payload {
                    msg: &data_key,
                    aad: &self.active.id,
                },
            )
            .map_err(failed)?;
        let sealed = aead(&data_key)
            .encrypt(
                &nonce(&data_nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(failed)?;
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.push(FORMAT);
        out.extend_from_slice(&self.active.id);
        out.extend_from_slice(&key_nonce);
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&data_nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn is_sealed(blob: &[u8]) -> bool {
        blob.len() >= HEADER_LEN && blob.starts_with(MAGIC)
    }

    pub fn open(&self, blob: &[u8], aad: &[u8]) -> Result<Vec<u8>, ApiError> {
        if !Self::is_sealed(blob) || blob[MAGIC.len()] != FORMAT {
            return Err(ApiError::data_loss(
                "blob is not in a known encrypted format",
            ));
        }
        let mut at = MAGIC.len() + 1;
        let mut take = |n: usize| {
            let part = &blob[at..at + n];
            at += n;
            part
        };
        let key_id = take(KEY_ID_LEN);
        let key_nonce = take(NONCE_LEN);
        let wrapped = take(WRAPPED_KEY_LEN);
        let data_nonce = take(NONCE_LEN);
        let sealed = &blob[HEADER_LEN..];
        let kek = std::iter::once(&self.active)
            .chain(&self.keys)
            .find(|k| k.id == key_id)
            .ok_or_else(|| {
                ApiError::failed_precondition(format!(
                    "blob is encrypted with key {} which is not configured",
                    hex::encode(key_id)
                ))
            })?;
        let corrupt =
            |_| ApiError::data_loss("encrypted blob failed authentication (corrupt or tampered)");
        let data_key = kek
            .cipher
            .decrypt(
                &nonce(key_nonce),
                Payload {
                    msg: wrapped,
                    aad: &kek.id,
                },
            )
            .map_err(corrupt)?;
        aead(&data_key)
            .decrypt(&nonce(data_nonce), Payload { msg: sealed, aad })
            .map_err(corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(key: &str, previous: &[&str]) -> EncryptionSettings {
        EncryptionSettings {
            key: key.into(),
            previous_keys: previous.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn seals_opens_and_survives_rotation() {
        let (old, new) = (generate_key(), generate_key());
        let before = Cipher::from_settings(&settings(&old, &[]))
            .unwrap()
            .unwrap();
        let blob = before.seal(b"secret rows", b"digest").unwrap();
        assert!(!blob.windows(6).any(|w| w == b"secret"));
        assert_eq!(before.open(&blob, b"digest").unwrap(), b"secret rows");
        assert!(before.open(&blob, b"other digest").is_err());

        let after = Cipher::from_settings(&settings(&new, &[&old]))
            .unwrap()
            .unwrap();
        assert_eq!(after.open(&blob, b"digest").unwrap(), b"secret rows");
        let fresh = after.seal(b"new", b"d").unwrap();
        assert!(
            before.open(&fresh, b"d").is_err(),
            "the old key alone cannot read new blobs"
        );

        let mut tampered = blob.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(after.open(&tampered, b"digest").is_err());
    }

    #[test]
    fn bad_keys_are_rejected() {
        assert!(
            Cipher::from_settings(&EncryptionSettings::default())
                .unwrap()
                .is_none()
        );
        assert!(Cipher::from_settings(&settings("not base64!", &[])).is_err());
        assert!(Cipher::from_settings(&settings("c2hvcnQ=", &[])).is_err());
    }
}
