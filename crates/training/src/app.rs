use std::net::SocketAddr;

use mlops_core::server::{self, ServeOptions};
use mlops_core::storage::ArtifactStore;
use mlops_core::{ApiError, CancellationToken, client};
use mlops_proto::v1::ingestion_service_client::IngestionServiceClient;
use mlops_proto::v1::training_service_server::TrainingServiceServer;
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::Settings;
use crate::dataset::Datasets;
use crate::grpc::Training;
use crate::jobs::Jobs;
use crate::store::Store;

/// A bound, ready-to-run training service.
pub struct Application {
    listener: TcpListener,
    api: Training,
    options: ServeOptions,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, ApiError> {
        let options = ServeOptions::from_settings(
            "training",
            &settings.auth,
            &settings.storage,
            &settings.limits,
            &settings.tls,
        )
        .await?;
        let peers = options.client_options(&settings.tls)?;
        let store = Store::open(&settings.storage.database("training")).await?;
        let artifacts = ArtifactStore::open(&settings.storage)?;
        let datasets = Datasets {
            artifacts,
            spool_dir: settings.storage.private_tmp_dir().await?,
            max_bytes: settings.training.max_dataset_bytes,
        };
        let registry = client::channel(&settings.endpoints.registry, &peers)?;
        let ingestion =
            IngestionServiceClient::new(client::channel(&settings.endpoints.ingestion, &peers)?);
        let jobs = Jobs::new(
            store,
            datasets.clone(),
            registry,
            settings.training.max_concurrent_jobs,
        );
        let listener = server::bind(settings.training.listen).await?;
        Ok(Self {
            listener,
            api: Training {
                jobs,
                ingestion,
                datasets,
            },
            options,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub async fn run_until(self, shutdown: CancellationToken) -> Result<(), ApiError> {
        tracing::info!(addr = %self.grpc_addr(), "training serving");
        server::serve(
            self.listener,
            Routes::new(
                TrainingServiceServer::new(self.api)
                    .max_decoding_message_size(self.options.limits.max_message_bytes),
            ),
            &["mlops.v1.TrainingService"],
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
