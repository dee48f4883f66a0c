//! The IngestionService API.

use std::path::PathBuf;

use arrow_schema::DataType as ArrowType;
use futures::StreamExt;
use mlops_core::ApiError;
use mlops_core::auth::{Principal, ResourceKind, authorize, authorize_visible};
use mlops_core::ids::validate_name;
use mlops_core::storage::ArtifactStore;
use mlops_proto::v1::ingestion_service_server::IngestionService;
use mlops_proto::v1::upload_dataset_request::Part;
use mlops_proto::v1::*;
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use crate::csv_import::{CsvLimits, import_csv};
use crate::store::{NewVersion, Store};

pub struct Ingestion {
    pub store: Store,
    pub artifacts: ArtifactStore,
    pub tmp_dir: PathBuf,
    pub max_upload_bytes: u64,
    pub limits: CsvLimits,
}

impl Ingestion {
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
        let spool = tempfile::NamedTempFile::new_in(&self.tmp_dir)?;
        let mut file = tokio::fs::File::from_std(spool.reopen()?);
        let mut received = 0u64;
        while let Some(message) = stream.next().await {
            let message = message.map_err(|s| ApiError::from_status("upload stream", &s))?;
            let chunk = match message.part {
                Some(Part::Chunk(chunk)) => chunk,
                _ => {
                    return Err(ApiError::invalid_argument(
                        "only the first upload message may carry a header",
                    ));
                }
            };
            received += chunk.len() as u64;
            if received > self.max_upload_bytes {
                return Err(ApiError::resource_exhausted(format!(
                    "upload exceeds the limit of {} bytes",
                    self.max_upload_bytes
                )));
            }
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        drop(file);

        let path = spool.path().to_path_buf();
        let limits = self.limits;
        let table = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
            Ok(import_csv(
                std::io::BufReader::new(std::fs::File::open(path)?),
                limits,
            )?)
        })
        .await
        .map_err(|e| ApiError::internal(format!("import task: {e}")))??;
        drop(spool);

        let size_bytes = table.parquet.len() as u64;
        let digest = self.artifacts.put(table.parquet.into()).await?;
        let columns = table
            .columns
            .into_iter()
            .map(|(name, data_type)| Column {
                name,
                data_type: match data_type {
                    ArrowType::Int64 => DataType::Int64,
                    ArrowType::Utf8 => DataType::String,
                    _ => DataType::Float64,
                } as i32,
            })
            .collect();
        let (version, created) = self
            .store
            .add_version(NewVersion {
                dataset: &header.name,
                description: &header.description,
                digest: &digest,
                row_count: table.rows,
                columns,
                size_bytes,
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
        validate_name("dataset", &request.dataset)?;
        authorize(caller.as_ref(), ResourceKind::Dataset, &request.dataset)?;
        Ok(Response::new(
            self.store
                .version(&request.dataset, request.version)
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
