use std::net::SocketAddr;

use mlops_core::server::{self, ServeOptions};
use mlops_core::storage::ArtifactStore;
use mlops_core::{ApiError, CancellationToken};
use mlops_proto::v1::registry_service_server::RegistryServiceServer;
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::Settings;
use crate::grpc::Registry;
use crate::store::Store;

/// A bound, ready-to-run registry service.
pub struct Application {
    listener: TcpListener,
    api: Registry,
    options: ServeOptions,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, ApiError> {
        let options = ServeOptions::from_settings(
            "registry",
            &settings.auth,
            &settings.storage,
            &settings.limits,
            &settings.tls,
        )
        .await?;
        let store = Store::open(
            &settings.storage.database("registry"),
            ArtifactStore::open(&settings.storage)?,
        )
        .await?;
        let listener = server::bind(settings.registry.listen).await?;
        Ok(Self {
            listener,
            api: Registry {
                store,
                shutdown: CancellationToken::new(),
                max_bundle_bytes: settings.registry.max_bundle_bytes,
            },
            options,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub async fn run_until(mut self, shutdown: CancellationToken) -> Result<(), ApiError> {
        self.api.shutdown = shutdown.clone();
        tracing::info!(addr = %self.grpc_addr(), "registry serving");
        server::serve(
            self.listener,
            Routes::new(
                RegistryServiceServer::new(self.api)
                    .max_decoding_message_size(self.options.limits.max_message_bytes),
            ),
            &["mlops.v1.RegistryService"],
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
