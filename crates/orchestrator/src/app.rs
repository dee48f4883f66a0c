use std::net::SocketAddr;

use mlops_core::auth::api::AuthApi;
use mlops_core::server::{self, ServeOptions};
use mlops_core::{ApiError, CancellationToken, client};
use mlops_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use mlops_proto::v1::auth_service_server::AuthServiceServer;
use mlops_proto::v1::ingestion_service_client::IngestionServiceClient;
use mlops_proto::v1::orchestrator_service_server::OrchestratorServiceServer;
use mlops_proto::v1::registry_service_client::RegistryServiceClient;
use mlops_proto::v1::training_service_client::TrainingServiceClient;
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::Settings;
use crate::grpc::Orchestrator;
use crate::runner::{Clients, Runner};
use crate::store::Store;
use crate::triggers::Triggers;

/// A bound, ready-to-run orchestrator.
pub struct Application {
    listener: TcpListener,
    api: Orchestrator,
    options: ServeOptions,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, ApiError> {
        let options = ServeOptions::from_settings(
            "orchestrator",
            &settings.auth,
            &settings.storage,
            &settings.limits,
            &settings.tls,
        )
        .await?;
        let peers = options.client_options(&settings.tls)?;
        let store = Store::open(&settings.storage.database("orchestrator")).await?;
        let endpoints = &settings.endpoints;
        let clients = Clients {
            ingestion: IngestionServiceClient::new(client::channel(&endpoints.ingestion, &peers)?)
                .max_encoding_message_size(client::MAX_MESSAGE_BYTES)
                .max_decoding_message_size(client::MAX_MESSAGE_BYTES),
            training: TrainingServiceClient::new(client::channel(&endpoints.training, &peers)?),
            registry: RegistryServiceClient::new(client::channel(&endpoints.registry, &peers)?),
            inference: GrpcInferenceServiceClient::new(client::channel(
                &endpoints.inference,
                &peers,
            )?)
            .max_decoding_message_size(client::MAX_MESSAGE_BYTES),
        };
        let runner = Runner::new(store, clients, settings.sources_dir());
        let continued = runner.recover().await?;
        if continued > 0 {
            tracing::info!(runs = continued, "continuing runs left unfinished");
        }
        let poll = settings.orchestrator.trigger_poll_ms;
        if poll == 0 {
            return Err(ApiError::invalid_argument(
                "orchestrator.trigger_poll_ms must be at least 1",
            ));
        }
        let triggers = Triggers::new(runner.clone(), std::time::Duration::from_millis(poll));
        let listener = server::bind(settings.orchestrator.listen).await?;
        Ok(Self {
            listener,
            api: Orchestrator { runner, triggers },
            options,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub async fn run_until(self, shutdown: CancellationToken) -> Result<(), ApiError> {
        tracing::info!(addr = %self.grpc_addr(), "orchestrator serving");
        tokio::spawn(self.api.triggers.clone().run(shutdown.clone()));
        server::serve(
            self.listener,
            Routes::new(OrchestratorServiceServer::new(self.api)).add_service(
                AuthServiceServer::new(AuthApi {
                    auth: self.options.gate.auth.clone(),
                }),
            ),
            &["mlops.v1.OrchestratorService", "mlops.v1.AuthService"],
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
