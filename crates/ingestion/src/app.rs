use std::net::SocketAddr;

use mlops_core::server::{self, ServeOptions};
use mlops_core::storage::ArtifactStore;
use mlops_core::{ApiError, CancellationToken};
use mlops_proto::v1::ingestion_service_server::IngestionServiceServer;
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::Settings;
use crate::grpc::Ingestion;
use crate::store::Store;

/// A bound, ready-to-run ingestion service.
pub struct Application {
    listener: TcpListener,
    api: Ingestion,
    options: ServeOptions,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, ApiError> {
        let options = ServeOptions::from_settings(
            "ingestion",
            &settings.auth,
            &settings.storage,
            &settings.limits,
            &settings.tls,
        )
        .await?;
        let storage = &settings.storage;
        // Private: imports write plaintext there (a Parquet file is linked into a local
        // store, 0666 less the umask, as a blob would be created).
        let tmp_dir = storage.private_tmp_dir().await?;
        let store = Store::open(&storage.database("ingestion")).await?;
        let artifacts = ArtifactStore::open(storage)?;
        let listener = server::bind(settings.ingestion.listen).await?;
        let masking_key = settings.ingestion.masking_key.clone();
        if !masking_key.is_empty() && masking_key.len() < 16 {
            return Err(ApiError::invalid_argument(
                "ingestion.masking_key must be at least 16 bytes",
            ));
        }
        let import_root = match settings.ingestion.import_root.as_str() {
            "" => None,
            root => Some(std::path::Path::new(root).canonicalize().map_err(|e| {
                ApiError::invalid_argument(format!(
                    "ingestion.import_root {root:?} cannot be opened: {e}"
                ))
            })?),
        };
        let import_s3_prefixes = settings
            .ingestion
            .import_s3_prefixes
            .iter()
            .map(|prefix| {
                crate::grpc::S3Location::parse(prefix).map_err(|why| {
                    ApiError::invalid_argument(format!(
                        "ingestion.import_s3_prefixes: {prefix:?}: {why}"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let api = Ingestion {
            import_s3_prefixes,
            s3: settings.storage.s3.clone(),
            import_root,
            masking_key,
            max_decompressed_bytes: settings.ingestion.max_decompressed_bytes,
            store,
            artifacts,
            tmp_dir,
            max_upload_bytes: settings.ingestion.max_upload_bytes,
            limits: crate::csv_import::CsvLimits {
                max_rows: settings.ingestion.max_rows,
                max_columns: settings.ingestion.max_columns,
                max_line_bytes: settings.ingestion.max_line_bytes,
            },
        };
        Ok(Self {
            listener,
            api,
            options,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub async fn run_until(self, shutdown: CancellationToken) -> Result<(), ApiError> {
        tracing::info!(addr = %self.grpc_addr(), "ingestion serving");
        let service = IngestionServiceServer::new(self.api)
            .max_decoding_message_size(self.options.limits.max_message_bytes);
        server::serve(
            self.listener,
            Routes::new(service),
            &["mlops.v1.IngestionService"],
            self.options,
            shutdown,
        )
        .await
    }
}

/// Builds and runs the service until `shutdown`.
pub async fn serve(settings: Settings, shutdown: CancellationToken) -> Result<(), ApiError> {
    Application::build(settings)
        .await?
        .run_until(shutdown)
        .await
}
