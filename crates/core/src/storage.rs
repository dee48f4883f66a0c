//! The artifact store: blobs addressed by the sha256 of their content. Clients only ever hold
//! digests; the key layout is ours.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

use crate::ApiError;

#[derive(Clone, Debug)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
}

/// Hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A digest is exactly 64 lowercase hex digits; anything else is refused before it gets near
/// a key.
pub fn validate_digest(field: &str, digest: &str) -> Result<(), ApiError> {
    if digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(ApiError::invalid_argument(format!(
            "{field} must be a sha256 digest of 64 lowercase hex digits"
        )))
    }
}

fn key(digest: &str) -> StorePath {
    StorePath::from(format!("blobs/sha256/{}/{digest}", &digest[..2]))
}

impl ArtifactStore {
    /// A store in a local directory (created if needed).
    pub fn local(dir: &Path) -> Result<Self, ApiError> {
        std::fs::create_dir_all(dir)?;
        let store = LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self {
            store: Arc::new(store),
        })
    }

    /// Stores `data` and returns its digest. Writing the same content twice is a no-op
    /// in effect; the write is atomic (temporary file, then rename).
    pub async fn put(&self, data: Bytes) -> Result<String, ApiError> {
        let digest = sha256_hex(&data);
        self.store
            .put(&key(&digest), PutPayload::from_bytes(data))
            .await?;
        Ok(digest)
    }

    pub async fn get(&self, digest: &str) -> Result<Bytes, ApiError> {
        validate_digest("digest", digest)?;
        let bytes = self.store.get(&key(digest)).await?.bytes().await?;
        // The content is its own checksum: refuse a corrupted blob rather than serve it.
        if sha256_hex(&bytes) != digest {
            return Err(ApiError::internal(format!(
                "artifact {digest} is corrupted"
            )));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::local(dir.path()).unwrap();
        let digest = store.put(Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(
            digest,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(
            store.get(&digest).await.unwrap(),
            Bytes::from_static(b"hello")
        );
        let missing = "0".repeat(64);
        assert_eq!(
            store.get(&missing).await.unwrap_err().kind,
            crate::ErrorKind::NotFound
        );
        assert_eq!(
            store.get("../../etc/passwd").await.unwrap_err().kind,
            crate::ErrorKind::InvalidArgument
        );
    }
}
