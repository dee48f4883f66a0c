//! The IngestionService API.

use std::path::PathBuf;

use futures::StreamExt;
use mlops_core::ApiError;
use mlops_core::auth::{Principal, ResourceKind, authorize, authorize_visible};
use mlops_core::ids::validate_name;
use mlops_core::storage::ArtifactStore;
use mlops_proto::v1::ingestion_service_server::IngestionService;
use mlops_proto::v1::upload_dataset_request::Part;
use mlops_proto::v1::*;
use object_store::ObjectStoreExt;
use object_store::path::Path as StorePath;
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use crate::csv_import::{CHUNK_VALUES, ColumnRule, ColumnType, CsvLimits, CsvOptions};
use crate::import::{ImportSpec, Imported, import};
use crate::store::{NewVersion, Store};

/// An encrypted version is opened in memory whatever its size: it was sealed from memory when
/// it was stored, so the import already needed as much.
const ENCRYPTED_IN_MEMORY: u64 = u64::MAX;

pub struct Ingestion {
    pub store: Store,
    pub artifacts: ArtifactStore,
    pub tmp_dir: PathBuf,
    pub max_upload_bytes: u64,
    pub limits: CsvLimits,
    /// The HMAC key of `hash` masking; empty when none is configured.
    pub masking_key: String,
    /// Most bytes a compressed upload may decompress to.
    pub max_decompressed_bytes: u64,
    /// The directory `header.uri` may name files under (canonical); None turns URIs off.
    pub import_root: Option<PathBuf>,
    /// The S3 locations `header.uri` may name objects under, and how to reach S3.
    pub import_s3_prefixes: Vec<S3Location>,
    pub s3: mlops_core::config::S3Settings,
}

/// A bucket and a key (or key prefix), from `s3://bucket/key`.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Location {
    pub bucket: String,
    pub key: StorePath,
}

impl S3Location {
    /// Parses `s3://bucket/key`; `..`, `.`, empty segments and percent-encoding are refused,
    /// so a key can be compared segment by segment. The error says why.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let rest = uri.strip_prefix("s3://").ok_or("use s3://bucket/key")?;
        if rest.contains('%') || rest.contains('\\') || rest.contains('\0') {
            return Err("give a plain key (no percent-encoding)".into());
        }
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err("use s3://bucket/key".into());
        }
        let key = StorePath::parse(key.trim_end_matches('/'))
            .map_err(|e| format!("not a valid key: {e}"))?;
        Ok(Self {
            bucket: bucket.to_string(),
            key,
        })
    }
}

/// The object an `s3://bucket/key` URI names, which must lie under one of the allowed
/// prefixes.
fn resolve_s3(prefixes: &[S3Location], uri: &str) -> Result<S3Location, ApiError> {
    if prefixes.is_empty() {
        return Err(ApiError::failed_precondition(
            "header.uri: importing from S3 is off (set ingestion.import_s3_prefixes)",
        ));
    }
    let invalid = |why: String| ApiError::invalid_argument(format!("header.uri {uri:?}: {why}"));
    let object = S3Location::parse(uri).map_err(invalid)?;
    if object.key.parts().next().is_none() {
        return Err(invalid("use s3://bucket/key".into()));
    }
    let allowed = prefixes
        .iter()
        .any(|p| p.bucket == object.bucket && object.key.prefix_matches(&p.key));
    if !allowed {
        return Err(ApiError::new(
            mlops_core::ErrorKind::PermissionDenied,
            format!("header.uri {uri:?}: outside ingestion.import_s3_prefixes"),
        ));
    }
    Ok(object)
}

/// Writes chunks to the spool file, refusing more than `limit` bytes in all.
async fn spool<B: AsRef<[u8]>>(
    path: &std::path::Path,
    mut chunks: impl futures::Stream<Item = Result<B, ApiError>> + Unpin,
    limit: u64,
    what: &str,
) -> Result<u64, ApiError> {
    let mut file = tokio::fs::File::create(path).await?;
    let mut received = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        received += chunk.as_ref().len() as u64;
        if received > limit {
            return Err(ApiError::resource_exhausted(format!(
                "{what} exceeds the limit of {limit} bytes"
            )));
        }
        file.write_all(chunk.as_ref()).await?;
    }
    file.flush().await?;
    Ok(received)
}

/// The file a `header.uri` names, which must lie inside the import root: a path relative to
/// it, or a `file://` URI. Parent components, percent-encoding and anything that resolves
/// (through symlinks) outside the root are refused; nothing the client sends is trusted as a
/// path until it has been proved to be inside.
fn resolve_import(root: Option<&std::path::Path>, uri: &str) -> Result<PathBuf, ApiError> {
    let Some(root) = root else {
        return Err(ApiError::failed_precondition(
            "header.uri: importing from a URI is off (set ingestion.import_root)",
        ));
    };
    let denied = |why: &str| {
        ApiError::new(
            mlops_core::ErrorKind::PermissionDenied,
            format!("header.uri {uri:?}: {why}"),
        )
    };
    let path_text = match uri.split_once("://") {
        Some(("file", rest)) => rest,
        Some((scheme, _)) => {
            return Err(ApiError::invalid_argument(format!(
                "header.uri {uri:?}: scheme {scheme:?} is not supported (a path under the import \
                 root, or file://)"
            )));
        }
        None => uri,
    };
    if path_text.is_empty() || path_text.contains('%') || path_text.contains('\0') {
        return Err(ApiError::invalid_argument(format!(
            "header.uri {uri:?}: give a plain path (no percent-encoding)"
        )));
    }
    let path = std::path::Path::new(path_text);
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(denied("parent directories (..) are not allowed"));
    }
    let candidate = if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    };
    if !candidate.starts_with(root) {
        return Err(denied("outside the import root"));
    }
    // Resolve symlinks and check again: a link inside the root may point outside it.
    let resolved = candidate
        .canonicalize()
        .map_err(|_| ApiError::not_found(format!("header.uri {uri:?}: no such file")))?;
    if !resolved.starts_with(root) {
        return Err(denied("resolves outside the import root"));
    }
    if !resolved.is_file() {
        return Err(ApiError::invalid_argument(format!(
            "header.uri {uri:?}: not a regular file"
        )));
    }
    Ok(resolved)
}

impl Ingestion {
    /// A version by number, by alias (`latest` built in), or (neither) the latest, for a caller
    /// allowed to see the dataset.
    async fn resolve(
        &self,
        caller: Option<&Principal>,
        dataset: &str,
        version: u32,
        alias: &str,
    ) -> Result<DatasetVersion, ApiError> {
        validate_name("dataset", dataset)?;
        authorize(caller, ResourceKind::Dataset, dataset)?;
        let version = match (alias, version) {
            ("", version) => version,
            (alias, 0) => {
                validate_name("alias", alias)?;
                self.store.resolve_alias(dataset, alias).await?
            }
            (_, _) => {
                return Err(ApiError::invalid_argument(
                    "give version or alias, not both",
                ));
            }
        };
        self.store.version(dataset, version).await
    }
}

/// CSV options and declared columns from the upload header, checked.
fn upload_spec(header: &UploadHeader) -> Result<(CsvOptions, Vec<ColumnRule>), ApiError> {
    let mut options = CsvOptions::default();
    if let Some(csv) = &header.csv {
        let one_byte = |field: &str, value: &str| -> Result<Option<u8>, ApiError> {
            match value.as_bytes() {
                [] => Ok(None),
                [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' => Ok(Some(*b)),
                _ => Err(ApiError::invalid_argument(format!(
                    "csv.{field} must be one ASCII character other than a line break, got {value:?}"
                ))),
            }
        };
        if let Some(d) = one_byte("delimiter", &csv.delimiter)? {
            options.delimiter = d;
        }
        if let Some(q) = one_byte("quote", &csv.quote)? {
            options.quote = q;
        }
        if options.delimiter == options.quote {
            return Err(ApiError::invalid_argument(
                "csv.delimiter and csv.quote must differ",
            ));
        }
        options.has_header = csv.has_header.unwrap_or(true);
        if !csv.null_markers.is_empty() {
            options.null_markers = csv.null_markers.clone();
        }
    }
    let mut rules = Vec::with_capacity(header.columns.len());
    for spec in &header.columns {
        if rules.iter().any(|r: &ColumnRule| r.name == spec.name) {
            return Err(ApiError::invalid_argument(format!(
                "columns: {:?} is declared twice",
                spec.name
            )));
        }
        let data_type = match DataType::try_from(spec.data_type).unwrap_or_default() {
            DataType::Unspecified => None,
            DataType::Int64 => Some(ColumnType::Int64),
            DataType::Float64 => Some(ColumnType::Float64),
            DataType::String => Some(ColumnType::String),
            DataType::Bool => Some(ColumnType::Bool),
            DataType::Timestamp => Some(ColumnType::Timestamp),
        };
        if let (Some(min), Some(max)) = (spec.min, spec.max)
            && (min.is_nan() || max.is_nan() || min > max)
        {
            return Err(ApiError::invalid_argument(format!(
                "columns: {:?} has min {min} above max {max}",
                spec.name
            )));
        }
        rules.push(ColumnRule {
            name: spec.name.clone(),
            data_type,
            not_null: spec.not_null,
            unique: spec.unique,
            min: spec.min,
            max: spec.max,
            allowed: spec.allowed.clone(),
        });
    }
    Ok((options, rules))
}

impl Ingestion {
    /// Copies an S3 object into the spool file, within the upload size limit.
    async fn fetch_s3(
        &self,
        location: &S3Location,
        uri: &str,
        path: &std::path::Path,
    ) -> Result<(), ApiError> {
        let store = mlops_core::storage::s3_bucket(&self.s3, &location.bucket)?;
        let object = match store.get(&location.key).await {
            Ok(object) => object,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(ApiError::not_found(format!(
                    "header.uri {uri:?}: no such object"
                )));
            }
            Err(error) => return Err(error.into()),
        };
        if object.meta.size > self.max_upload_bytes {
            return Err(ApiError::resource_exhausted(format!(
                "header.uri {uri:?}: {} bytes, over the limit of {} bytes",
                object.meta.size, self.max_upload_bytes
            )));
        }
        let chunks = object
            .into_stream()
            .map(|chunk| chunk.map_err(ApiError::from));
        spool(
            path,
            chunks,
            self.max_upload_bytes,
            &format!("header.uri {uri:?}"),
        )
        .await?;
        Ok(())
    }

    async fn upload(
        &self,
        caller: Option<&Principal>,
        mut stream: Streaming<UploadDatasetRequest>,
    ) -> Result<UploadDatasetResponse, ApiError> {
        let header = match stream.next().await {
            Some(Ok(UploadDatasetRequest {
                part: Some(Part::Header(header)),
            })) => header,
            Some(Err(status)) => return Err(ApiError::from_status("upload stream", &status)),
            _ => {
                return Err(ApiError::invalid_argument(
                    "the first upload message must carry header (name)",
                ));
            }
        };
        validate_name("header.name", &header.name)?;
        authorize(caller, ResourceKind::Dataset, &header.name)?;

        // Spool to a temporary file (deleted on drop), so a failed upload leaves nothing behind
        // and a large one does not sit in memory twice.
        let spooled = tempfile::NamedTempFile::new_in(&self.tmp_dir)?;
        let chunks = stream.map(|message| {
            match message
                .map_err(|s| ApiError::from_status("upload stream", &s))?
                .part
            {
                Some(Part::Chunk(chunk)) => Ok(chunk),
                _ => Err(ApiError::invalid_argument(
                    "only the first upload message may carry a header",
                )),
            }
        });
        let received = spool(spooled.path(), chunks, self.max_upload_bytes, "upload").await?;

        // A URI names a file the server reads itself, under the import root only, or an S3
        // object under an allowed prefix (fetched into the spool).
        if !header.uri.is_empty() && received > 0 {
            return Err(ApiError::invalid_argument(
                "header.uri: give a uri or chunks of data, not both",
            ));
        }
        let path = if header.uri.is_empty() {
            spooled.path().to_path_buf()
        } else if header.uri.starts_with("s3://") {
            let object = resolve_s3(&self.import_s3_prefixes, &header.uri)?;
            self.fetch_s3(&object, &header.uri, spooled.path()).await?;
            spooled.path().to_path_buf()
        } else {
            resolve_import(self.import_root.as_deref(), &header.uri)?
        };
        let (options, rules) = upload_spec(&header)?;
        let spec = ImportSpec {
            format: header.format.clone(),
            options,
            rules,
            masking: header.masking.clone(),
            masking_key: self.masking_key.clone(),
            limits: self.limits,
            max_decompressed_bytes: self.max_decompressed_bytes,
            tmp_dir: self.tmp_dir.clone(),
            chunk_values: CHUNK_VALUES,
        };
        let mut imported = tokio::task::spawn_blocking(move || import(&path, &spec))
            .await
            .map_err(|e| ApiError::internal(format!("import task: {e}")))??;
        drop(spooled);
        if let Some(source) = &mut imported.details.source {
            source.kind = if header.uri.is_empty() {
                "upload"
            } else {
                "uri"
            }
            .into();
            source.uri = header.uri.clone();
            source.ingested_by = caller.map(|p| p.subject.clone()).unwrap_or_default();
        }
        self.artifacts
            .put_file(&imported.digest, imported.parquet.path())
            .await?;
        let Imported {
            digest,
            size_bytes,
            rows,
            columns,
            details,
            ..
        } = imported;
        let (version, created) = self
            .store
            .add_version(NewVersion {
                dataset: &header.name,
                description: &header.description,
                digest: &digest,
                row_count: rows,
                columns,
                size_bytes,
                details,
            })
            .await?;
        metrics::counter!("mlops_ingested_rows_total").increment(if created {
            version.row_count
        } else {
            0
        });
        tracing::info!(dataset = %version.id, rows = version.row_count, created, "dataset version stored");
        Ok(UploadDatasetResponse {
            version: Some(version),
            created,
        })
    }
}

#[tonic::async_trait]
impl IngestionService for Ingestion {
    async fn upload_dataset(
        &self,
        request: Request<Streaming<UploadDatasetRequest>>,
    ) -> Result<Response<UploadDatasetResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        Ok(Response::new(
            self.upload(caller.as_ref(), request.into_inner()).await?,
        ))
    }

    async fn get_dataset(
        &self,
        request: Request<GetDatasetRequest>,
    ) -> Result<Response<Dataset>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let name = request.into_inner().name;
        validate_name("name", &name)?;
        authorize(caller.as_ref(), ResourceKind::Dataset, &name)?;
        Ok(Response::new(self.store.dataset(&name).await?))
    }

    async fn list_datasets(
        &self,
        request: Request<ListDatasetsRequest>,
    ) -> Result<Response<ListDatasetsResponse>, Status> {
        let datasets = authorize_visible(
            request.extensions().get::<Principal>(),
            ResourceKind::Dataset,
            self.store.datasets().await?,
            |d| &d.name,
        )?;
        Ok(Response::new(ListDatasetsResponse { datasets }))
    }

    async fn get_dataset_version(
        &self,
        request: Request<GetDatasetVersionRequest>,
    ) -> Result<Response<DatasetVersion>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        Ok(Response::new(
            self.resolve(
                caller.as_ref(),
                &request.dataset,
                request.version,
                &request.alias,
            )
            .await?,
        ))
    }

    async fn preview_dataset_version(
        &self,
        request: Request<PreviewDatasetVersionRequest>,
    ) -> Result<Response<PreviewDatasetVersionResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        let rows = match request.rows {
            0 => 10,
            n @ 1..=1000 => n as usize,
            n => {
                return Err(
                    ApiError::invalid_argument(format!("rows must be 1 to 1000, got {n}")).into(),
                );
            }
        };
        let version = self
            .resolve(
                caller.as_ref(),
                &request.dataset,
                request.version,
                &request.alias,
            )
            .await?;
        let file = self
            .artifacts
            .open_file(&version.digest, &self.tmp_dir, ENCRYPTED_IN_MEMORY)
            .await?;
        let rows = tokio::task::spawn_blocking(move || crate::preview::first_rows(file, rows))
            .await
            .map_err(|e| ApiError::internal(format!("preview task: {e}")))??;
        Ok(Response::new(PreviewDatasetVersionResponse {
            version: Some(version),
            rows,
        }))
    }

    type DownloadDatasetVersionStream = std::pin::Pin<
        Box<
            dyn futures::Stream<Item = Result<DownloadDatasetVersionResponse, Status>>
                + Send
                + 'static,
        >,
    >;

    async fn download_dataset_version(
        &self,
        request: Request<DownloadDatasetVersionRequest>,
    ) -> Result<Response<Self::DownloadDatasetVersionStream>, Status> {
        use download_dataset_version_response::Part;
        const CHUNK: usize = 1 << 20;
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        let version = self
            .resolve(
                caller.as_ref(),
                &request.dataset,
                request.version,
                &request.alias,
            )
            .await?;
        // Its digest checked by the store before the first byte goes out; then sent a chunk
        // at a time from the file, so a version of any size never sits in memory.
        let file = self
            .artifacts
            .open_file(&version.digest, &self.tmp_dir, ENCRYPTED_IN_MEMORY)
            .await?;
        let header =
            futures::stream::once(futures::future::ready(Ok(DownloadDatasetVersionResponse {
                part: Some(Part::Version(version)),
            })));
        let chunks =
            futures::stream::try_unfold(tokio::fs::File::from_std(file), |mut file| async move {
                use tokio::io::AsyncReadExt;
                let mut chunk = Vec::with_capacity(CHUNK);
                (&mut file)
                    .take(CHUNK as u64)
                    .read_to_end(&mut chunk)
                    .await
                    .map_err(|e| Status::internal(format!("reading the version: {e}")))?;
                Ok((!chunk.is_empty()).then(|| {
                    let part = Some(Part::Chunk(chunk));
                    (DownloadDatasetVersionResponse { part }, file)
                }))
            });
        Ok(Response::new(Box::pin(header.chain(chunks))))
    }

    async fn set_dataset_alias(
        &self,
        request: Request<SetDatasetAliasRequest>,
    ) -> Result<Response<DatasetAlias>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        validate_name("dataset", &request.dataset)?;
        validate_name("alias", &request.alias)?;
        authorize(caller.as_ref(), ResourceKind::Dataset, &request.dataset)?;
        if request.alias == "latest" {
            return Err(ApiError::invalid_argument(
                "alias \"latest\" is built in: it always names the newest version",
            )
            .into());
        }
        if request.version == 0 {
            return Err(ApiError::invalid_argument("version is required (1 or more)").into());
        }
        Ok(Response::new(
            self.store
                .set_alias(&request.dataset, &request.alias, request.version)
                .await?,
        ))
    }

    async fn list_dataset_versions(
        &self,
        request: Request<ListDatasetVersionsRequest>,
    ) -> Result<Response<ListDatasetVersionsResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let dataset = request.into_inner().dataset;
        validate_name("dataset", &dataset)?;
        authorize(caller.as_ref(), ResourceKind::Dataset, &dataset)?;
        Ok(Response::new(ListDatasetVersionsResponse {
            versions: self.store.versions(&dataset).await?,
        }))
    }

    async fn delete_dataset(
        &self,
        request: Request<DeleteDatasetRequest>,
    ) -> Result<Response<DeleteDatasetResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let name = request.into_inner().name;
        validate_name("name", &name)?;
        authorize(caller.as_ref(), ResourceKind::Dataset, &name)?;
        let versions_deleted = self.store.delete(&name).await?;
        tracing::info!(dataset = %name, versions_deleted, "dataset deleted");
        Ok(Response::new(DeleteDatasetResponse { versions_deleted }))
    }
}
