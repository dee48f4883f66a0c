//! The artifact store: blobs addressed by the sha256 of their content. Clients only ever hold
//! digests; the key layout is ours. With a key configured, blobs are encrypted at rest.

pub mod cipher;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

use crate::ApiError;
use crate::config::StorageSettings;
pub use cipher::{Cipher, EncryptionSettings};

#[derive(Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    /// The same store when it is a local directory: finished files are linked into it.
    local: Option<Arc<LocalFileSystem>>,
    cipher: Option<Arc<Cipher>>,
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

/// An S3 (or compatible) bucket, with the endpoint and region the settings give and
/// credentials from the environment (AWS_ACCESS_KEY_ID, ...).
pub fn s3_bucket(
    s3: &crate::config::S3Settings,
    bucket: &str,
) -> Result<Arc<dyn ObjectStore>, ApiError> {
    crate::tls::install_crypto_provider();
    let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
    if !s3.endpoint.is_empty() {
        builder = builder.with_endpoint(&s3.endpoint);
    }
    if !s3.region.is_empty() {
        builder = builder.with_region(&s3.region);
    }
    if s3.allow_http {
        builder = builder.with_allow_http(true);
    }
    Ok(Arc::new(builder.build()?))
}

/// An S3 (or compatible) bucket, under the URL's path as a prefix.
fn s3(settings: &StorageSettings) -> Result<Arc<dyn ObjectStore>, ApiError> {
    let invalid = |why: String| ApiError::invalid_argument(format!("storage.artifact_url: {why}"));
    let url = url::Url::parse(&settings.artifact_url).map_err(|e| invalid(e.to_string()))?;
    if url.scheme() != "s3" {
        return Err(invalid(format!(
            "scheme {:?} is not supported: use s3://bucket/prefix",
            url.scheme()
        )));
    }
    let bucket = url
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| invalid("no bucket: use s3://bucket/prefix".into()))?;
    let store = s3_bucket(&settings.s3, bucket)?;
    let prefix = url.path().trim_matches('/');
    Ok(if prefix.is_empty() {
        store
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
    })
}

fn named_key(key: &str) -> Result<StorePath, ApiError> {
    let valid = !key.is_empty()
        && !key.starts_with("blobs")
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if valid {
        Ok(StorePath::from(key))
    } else {
        Err(ApiError::invalid_argument(format!(
            "{key:?} is not a valid artifact key"
        )))
    }
}

/// Links the finished file at `path` into the local store under `key`, keeping its mode:
/// true when it is there, false when it cannot be linked (another filesystem) and must be
/// copied. As a copy would, it replaces what was stored under the key (a blob damaged on disk
/// is mended by storing the data again), atomically: linked under a fresh name, renamed over.
async fn link_into(
    local: &LocalFileSystem,
    key: &StorePath,
    path: &Path,
) -> Result<bool, ApiError> {
    let target = local.path_to_filesystem(key)?;
    let path = path.to_path_buf();
    // One blocking task from link to rename: a caller that goes away meanwhile (a deadline)
    // cannot leave the staged name behind.
    tokio::task::spawn_blocking(move || {
        let Some(parent) = target.parent() else {
            return Ok(false);
        };
        std::fs::create_dir_all(parent)?;
        let staged = parent.join(format!(".link-{}", crate::ids::new_id()));
        // Another filesystem, or one without hard links: the copy reports any real problem.
        if std::fs::hard_link(&path, &staged).is_err() {
            return Ok(false);
        }
        let renamed = std::fs::rename(&staged, &target);
        // Gone when renamed, unless the blob already was this very file: then rename does
        // nothing.
        let _ = std::fs::remove_file(&staged);
        renamed?;
        Ok(true)
    })
    .await
    .map_err(|e| ApiError::internal(format!("linking into the artifact store: {e}")))?
}

/// `file` rewound, once its plaintext hashes to `digest`; a sealed file is opened into an
/// anonymous file under `spool_dir`.
fn verified(
    mut file: std::fs::File,
    digest: &str,
    cipher: Option<&Cipher>,
    spool_dir: &Path,
    memory_limit: u64,
) -> Result<std::fs::File, ApiError> {
    use std::io::{Read, Seek, Write};
    let mut head = Vec::with_capacity(cipher::HEADER_LEN);
    (&mut file)
        .take(cipher::HEADER_LEN as u64)
        .read_to_end(&mut head)?;
    if Cipher::is_sealed(&head) {
        let cipher = require_key(cipher, &format!("artifact {digest}"))?;
        let size = file.metadata()?.len();
        if size.saturating_mul(2) > memory_limit {
            return Err(ApiError::resource_exhausted(format!(
                "artifact {digest} is encrypted: opening it takes twice its {size} bytes in \
                 memory, over the limit of {memory_limit}"
            )));
        }
        file.rewind()?;
        let mut sealed = Vec::new();
        file.read_to_end(&mut sealed)?;
        let plain = cipher.open(&sealed, digest.as_bytes())?;
        drop(sealed);
        if sha256_hex(&plain) != digest {
            return Err(corrupted(digest));
        }
        let mut spool = tempfile::tempfile_in(spool_dir)?;
        spool.write_all(&plain)?;
        spool.rewind()?;
        return Ok(spool);
    }
    file.rewind()?;
    let mut hasher = Sha256::new();
    std::io::copy(
        &mut std::io::BufReader::with_capacity(1 << 20, &file),
        &mut hasher,
    )?;
    if hex::encode(hasher.finalize()) != digest {
        return Err(corrupted(digest));
    }
    file.rewind()?;
    Ok(file)
}

/// The key that opens what `what` names, which is sealed.
fn require_key<'a>(cipher: Option<&'a Cipher>, what: &str) -> Result<&'a Cipher, ApiError> {
    cipher.ok_or_else(|| {
        ApiError::failed_precondition(format!(
            "{what} is encrypted and no storage.encryption key is configured"
        ))
    })
}

fn corrupted(digest: &str) -> ApiError {
    ApiError::data_loss(format!(
        "artifact {digest} is corrupted: its bytes no longer match the digest"
    ))
}

fn key(digest: &str) -> StorePath {
    StorePath::from(format!("blobs/sha256/{}/{digest}", &digest[..2]))
}

impl ArtifactStore {
    /// The store the settings describe: `<data_dir>/artifacts` or `storage.artifact_url`,
    /// encrypted when a key is set.
    pub fn open(settings: &StorageSettings) -> Result<Self, ApiError> {
        let cipher = Cipher::from_settings(&settings.encryption)?.map(Arc::new);
        if settings.artifact_url.is_empty() {
            return Self::local(&settings.artifacts_dir(), cipher);
        }
        Ok(Self {
            store: s3(settings)?,
            local: None,
            cipher,
        })
    }

    /// A store in a local directory (created if needed).
    pub fn local(dir: &Path, cipher: Option<Arc<Cipher>>) -> Result<Self, ApiError> {
        std::fs::create_dir_all(dir)?;
        let store = Arc::new(LocalFileSystem::new_with_prefix(dir)?);
        Ok(Self {
            store: store.clone(),
            local: Some(store),
            cipher,
        })
    }

    /// Stores `data` and returns the digest of its plaintext. Writing the same content twice is
    /// a no-op in effect; the write is atomic (temporary file, then rename).
    pub async fn put(&self, data: Bytes) -> Result<String, ApiError> {
        let digest = sha256_hex(&data);
        let stored = match &self.cipher {
            Some(cipher) => Bytes::from(cipher.seal(&data, digest.as_bytes())?),
            None => data,
        };
        self.store
            .put(&key(&digest), PutPayload::from_bytes(stored))
            .await?;
        Ok(digest)
    }

    pub async fn get(&self, digest: &str) -> Result<Bytes, ApiError> {
        validate_digest("digest", digest)?;
        let mut bytes = self.store.get(&key(digest)).await?.bytes().await?;
        if Cipher::is_sealed(&bytes) {
            let cipher = require_key(self.cipher.as_deref(), &format!("artifact {digest}"))?;
            bytes = Bytes::from(cipher.open(&bytes, digest.as_bytes())?);
        }
        // The content is its own checksum: refuse a corrupted blob rather than serve it.
        if sha256_hex(&bytes) != digest {
            return Err(corrupted(digest));
        }
        Ok(bytes)
    }

    /// The blob `digest` as a file to read from, its content checked against the digest first
    /// (reading it in 1 MiB pieces, so a blob of any size never sits in memory): the blob
    /// itself in a local store, else a copy spooled into `spool_dir`. Copies are anonymous
    /// files, gone when the handle is dropped or the process dies. An encrypted blob is
    /// decrypted whole (the cipher seals one piece) into such a copy: one whose sealed and
    /// plain bytes together pass `memory_limit` is refused with RESOURCE_EXHAUSTED.
    pub async fn open_file(
        &self,
        digest: &str,
        spool_dir: &Path,
        memory_limit: u64,
    ) -> Result<std::fs::File, ApiError> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        validate_digest("digest", digest)?;
        let file = match &self.local {
            Some(local) => {
                let path = local.path_to_filesystem(&key(digest))?;
                match tokio::fs::File::open(&path).await {
                    Ok(file) => file.into_std().await,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(ApiError::not_found(format!("artifact {digest} not found")));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => {
                let spool = tempfile::tempfile_in(spool_dir)?;
                let mut out = tokio::fs::File::from_std(spool);
                let mut parts = self.store.get(&key(digest)).await?.into_stream();
                while let Some(part) = parts.next().await {
                    out.write_all(&part?).await?;
                }
                out.flush().await?;
                out.into_std().await
            }
        };
        let digest = digest.to_owned();
        let cipher = self.cipher.clone();
        let spool_dir = spool_dir.to_owned();
        tokio::task::spawn_blocking(move || {
            verified(file, &digest, cipher.as_deref(), &spool_dir, memory_limit)
        })
        .await
        .map_err(|e| ApiError::internal(format!("reading artifact: {e}")))?
    }

    /// Stores `data` under a key this server built (e.g. a prediction log file), encrypted like
    /// every blob. Keys are checked: segments of letters, digits, `.`, `_`, `-`, never `..`.
    /// Stores the file at `path`, whose plaintext sha256 the caller computed while writing it
    /// and which nobody changes afterwards. A local store links it into place when it is on the
    /// same filesystem (no copy; the blob keeps the file's mode, so create it as readable as a
    /// blob should be); otherwise it is streamed in parts, so that its size never sits in
    /// memory. Encrypted stores seal the file as one blob, so it is read whole there.
    pub async fn put_file(&self, digest: &str, path: &Path) -> Result<(), ApiError> {
        validate_digest("digest", digest)?;
        if self.cipher.is_none()
            && let Some(local) = &self.local
            && link_into(local, &key(digest), path).await?
        {
            return Ok(());
        }
        if self.cipher.is_some() {
            // `put` hashes what it seals; a file that is not what the caller hashed is our bug.
            let stored = self.put(tokio::fs::read(path).await?.into()).await?;
            if stored != digest {
                return Err(ApiError::internal(format!(
                    "{} does not hash to {digest}",
                    path.display()
                )));
            }
            return Ok(());
        }
        use tokio::io::AsyncReadExt;
        let upload = self.store.put_multipart(&key(digest)).await?;
        let mut writer = object_store::WriteMultipart::new(upload);
        let mut file = tokio::fs::File::open(path).await?;
        let mut buffer = vec![0u8; 4 << 20];
        loop {
            let n = file.read(&mut buffer).await?;
            if n == 0 {
                break;
            }
            // At most two parts in flight: memory stays a few chunks whatever the size.
            writer.wait_for_capacity(2).await?;
            writer.write(&buffer[..n]);
        }
        writer.finish().await?;
        Ok(())
    }

    pub async fn put_named(&self, key: &str, data: Bytes) -> Result<(), ApiError> {
        let path = named_key(key)?;
        let stored = match &self.cipher {
            Some(cipher) => Bytes::from(cipher.seal(&data, key.as_bytes())?),
            None => data,
        };
        self.store
            .put(&path, PutPayload::from_bytes(stored))
            .await?;
        Ok(())
    }

    pub async fn get_named(&self, key: &str) -> Result<Bytes, ApiError> {
        let bytes = self.store.get(&named_key(key)?).await?.bytes().await?;
        if Cipher::is_sealed(&bytes) {
            let cipher = require_key(self.cipher.as_deref(), key)?;
            return Ok(Bytes::from(cipher.open(&bytes, key.as_bytes())?));
        }
        Ok(bytes)
    }

    /// Keys under a prefix (as given to `put_named`), sorted.
    pub async fn list_named(&self, prefix: &str) -> Result<Vec<String>, ApiError> {
        use futures::TryStreamExt;
        let prefix = named_key(prefix)?;
        let mut keys: Vec<String> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await?;
        keys.sort();
        Ok(keys)
    }

    /// The stored size of a blob (after encryption, when on).
    pub async fn size(&self, digest: &str) -> Result<u64, ApiError> {
        validate_digest("digest", digest)?;
        Ok(self.store.head(&key(digest)).await?.size)
    }

    /// Removes a blob; removing one that is already gone is not an error.
    pub async fn delete(&self, digest: &str) -> Result<(), ApiError> {
        validate_digest("digest", digest)?;
        match self.store.delete(&key(digest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn named_keys_round_trip_list_and_refuse_traversal() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::local(dir.path(), None).unwrap();
        store
            .put_named("logs/m/2026-11-27/a.jsonl", Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(
            store.list_named("logs/m").await.unwrap(),
            ["logs/m/2026-11-27/a.jsonl"]
        );
        assert_eq!(
            store.get_named("logs/m/2026-11-27/a.jsonl").await.unwrap(),
            Bytes::from_static(b"x")
        );
        for bad in [
            "../x",
            "logs/../../etc",
            "/abs",
            "logs//x",
            "blobs/sha256/x",
            "a b",
        ] {
            assert!(store.put_named(bad, Bytes::new()).await.is_err(), "{bad}");
        }
    }

    #[test]
    fn artifact_urls_other_than_s3_are_refused_by_name() {
        for (url, why) in [
            ("ftp://bucket/x", "scheme"),
            ("s3:///prefix", "bucket"),
            ("not a url", "artifact_url"),
        ] {
            let settings = StorageSettings {
                artifact_url: url.into(),
                ..Default::default()
            };
            let error = ArtifactStore::open(&settings).err().expect(url);
            assert_eq!(error.kind, crate::ErrorKind::InvalidArgument, "{url}");
            assert!(
                error.message.contains("storage.artifact_url") && error.message.contains(why),
                "{url}: {}",
                error.message
            );
        }
    }

    #[tokio::test]
    async fn blobs_open_as_checked_files_locally_remotely_and_encrypted() {
        use std::io::Read;
        let read = |mut file: std::fs::File| {
            let mut text = String::new();
            file.read_to_string(&mut text).unwrap();
            text
        };
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("tmp");
        std::fs::create_dir_all(&spool).unwrap();
        // More than one read buffer, so the hash covers every piece.
        let content = "row,value\n".repeat(300_000);
        let spooled = || std::fs::read_dir(&spool).unwrap().count();
        let refused = |opened: Result<std::fs::File, ApiError>| opened.unwrap_err().kind;

        let local = ArtifactStore::local(&dir.path().join("local"), None).unwrap();
        let digest = local.put(Bytes::from(content.clone())).await.unwrap();
        assert_eq!(
            read(local.open_file(&digest, &spool, u64::MAX).await.unwrap()),
            content
        );

        let remote = ArtifactStore {
            store: Arc::new(object_store::memory::InMemory::new()),
            local: None,
            cipher: None,
        };
        remote.put(Bytes::from(content.clone())).await.unwrap();
        assert_eq!(
            read(remote.open_file(&digest, &spool, u64::MAX).await.unwrap()),
            content
        );

        let settings = EncryptionSettings {
            key: cipher::generate_key(),
            ..Default::default()
        };
        let sealed = ArtifactStore::local(
            &dir.path().join("sealed"),
            Cipher::from_settings(&settings).unwrap().map(Arc::new),
        )
        .unwrap();
        sealed.put(Bytes::from(content.clone())).await.unwrap();
        assert_eq!(
            read(sealed.open_file(&digest, &spool, u64::MAX).await.unwrap()),
            content
        );
        assert_eq!(
            refused(sealed.open_file(&digest, &spool, 1 << 20).await),
            crate::ErrorKind::ResourceExhausted
        );
        let unkeyed = ArtifactStore::local(&dir.path().join("sealed"), None).unwrap();
        assert_eq!(
            refused(unkeyed.open_file(&digest, &spool, u64::MAX).await),
            crate::ErrorKind::FailedPrecondition
        );
        // Spooled copies leave no name behind.
        assert_eq!(spooled(), 0);

        let missing = "0".repeat(64);
        for store in [&local, &remote] {
            assert_eq!(
                refused(store.open_file(&missing, &spool, u64::MAX).await),
                crate::ErrorKind::NotFound
            );
        }
        assert_eq!(
            refused(local.open_file("../x", &spool, u64::MAX).await),
            crate::ErrorKind::InvalidArgument
        );
        // One byte changed on disk: refused, not served.
        let on_disk = dir
            .path()
            .join(format!("local/blobs/sha256/{}/{digest}", &digest[..2]));
        let mut damaged = std::fs::read(&on_disk).unwrap();
        damaged[2_000_000] ^= 1;
        std::fs::write(&on_disk, damaged).unwrap();
        assert_eq!(
            refused(local.open_file(&digest, &spool, u64::MAX).await),
            crate::ErrorKind::DataLoss
        );
    }

    #[tokio::test]
    async fn round_trip_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::local(dir.path(), None).unwrap();
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

    #[tokio::test]
    async fn a_finished_file_is_linked_into_a_local_store_not_copied() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::local(&dir.path().join("artifacts"), None).unwrap();
        let written = dir.path().join("finished.parquet");
        std::fs::write(&written, b"rows").unwrap();
        std::fs::set_permissions(&written, std::fs::Permissions::from_mode(0o640)).unwrap();
        let digest = sha256_hex(b"rows");
        let blob = dir
            .path()
            .join(format!("artifacts/blobs/sha256/{}/{digest}", &digest[..2]));
        // A blob damaged on disk is replaced when the same data is stored again.
        std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
        std::fs::write(&blob, b"").unwrap();
        store.put_file(&digest, &written).await.unwrap();
        let (file, stored) = (
            std::fs::metadata(&written).unwrap(),
            std::fs::metadata(&blob).unwrap(),
        );
        assert_eq!((file.ino(), file.nlink()), (stored.ino(), 2), "not linked");
        assert_eq!(stored.mode() & 0o777, 0o640);
        // Stored again (another import of the same data): still one blob, nothing left over.
        store.put_file(&digest, &written).await.unwrap();
        assert_eq!(
            std::fs::read_dir(blob.parent().unwrap()).unwrap().count(),
            1
        );
        // The caller's file goes away; the blob stays.
        std::fs::remove_file(&written).unwrap();
        assert_eq!(
            store.get(&digest).await.unwrap(),
            Bytes::from_static(b"rows")
        );
    }

    #[tokio::test]
    async fn encrypted_blobs_hide_the_plaintext_and_survive_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (cipher::generate_key(), cipher::generate_key());
        let with = |key: &str, previous: Vec<String>| {
            let settings = EncryptionSettings {
                key: key.into(),
                previous_keys: previous,
                ..Default::default()
            };
            ArtifactStore::local(
                dir.path(),
                Cipher::from_settings(&settings).unwrap().map(Arc::new),
            )
            .unwrap()
        };
        let plaintext = Bytes::from_static(b"patient,glucose\n1,148\n");
        let digest = with(&old, vec![]).put(plaintext.clone()).await.unwrap();
        let on_disk = std::fs::read(
            dir.path()
                .join(format!("blobs/sha256/{}/{digest}", &digest[..2])),
        )
        .unwrap();
        assert!(
            !on_disk.windows(7).any(|w| w == b"glucose"),
            "plaintext on disk"
        );

        let rotated = with(&new, vec![old.clone()]);
        assert_eq!(rotated.get(&digest).await.unwrap(), plaintext);
        let unkeyed = ArtifactStore::local(dir.path(), None).unwrap();
        assert!(unkeyed.get(&digest).await.is_err());
        let wrong = with(&cipher::generate_key(), vec![]);
        assert!(wrong.get(&digest).await.is_err());
    }
}
