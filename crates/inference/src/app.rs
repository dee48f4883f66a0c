use std::net::SocketAddr;

use mlops_core::server::{self, ServeOptions};
use mlops_core::storage::ArtifactStore;
use mlops_core::{ApiError, CancellationToken, client};
use mlops_proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::Settings;
use crate::grpc::Inference;
use crate::models::Models;
use crate::prediction_log::PredictionLog;

/// A bound, ready-to-run inference service: OIP over gRPC and over HTTP.
pub struct Application {
    log_shutdown: CancellationToken,
    log_writer: Option<tokio::task::JoinHandle<()>>,
    grpc: TcpListener,
    http: TcpListener,
    models: Models,
    max_request_bytes: usize,
    options: ServeOptions,
    http_tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, ApiError> {
        let mut options = ServeOptions::from_settings(
            "inference",
            &settings.auth,
            &settings.storage,
            &settings.limits,
            &settings.tls,
        )
        .await?;
        options.in_flight = Some(server::InFlight::new(settings.inference.max_in_flight));
        let artifacts = ArtifactStore::open(&settings.storage)?;
        let registry = client::channel(
            &settings.endpoints.registry,
            &options.client_options(&settings.tls)?,
        )?;
        let log_shutdown = CancellationToken::new();
        let (log, log_writer) = PredictionLog::start(
            &settings.inference.prediction_log,
            artifacts.clone(),
            log_shutdown.clone(),
        );
        let models = Models::new(
            registry,
            artifacts,
            settings.inference.default_alias.clone(),
            log,
            settings.inference.batching.clone(),
            settings.inference.drift.clone(),
        );
        Ok(Self {
            log_shutdown,
            log_writer,
            grpc: server::bind(settings.inference.grpc_listen).await?,
            http: server::bind(settings.inference.http_listen).await?,
            models,
            max_request_bytes: settings.inference.max_request_bytes,
            http_tls: settings.tls.rustls_server_config()?,
            options,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub async fn run_until(self, shutdown: CancellationToken) -> Result<(), ApiError> {
        tracing::info!(grpc = %self.grpc_addr(), http = %self.http_addr(), "inference serving");
        let service = GrpcInferenceServiceServer::new(Inference {
            models: self.models.clone(),
        })
        .max_decoding_message_size(self.max_request_bytes);
        tokio::spawn(self.models.clone().follow_registry(shutdown.clone()));
        tokio::spawn(self.models.clone().publish_drift(shutdown.clone()));
        let rest = crate::rest::router(self.models, self.max_request_bytes);
        let grpc = server::serve(
            self.grpc,
            Routes::new(service),
            &["inference.GRPCInferenceService"],
            self.options.clone(),
            shutdown.clone(),
        );
        let http = server::serve_http(self.http, rest, self.options, self.http_tls, shutdown);
        let served = tokio::try_join!(grpc, http);
        // Requests are drained: write what the prediction log still holds.
        self.log_shutdown.cancel();
        if let Some(writer) = self.log_writer {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), writer).await;
        }
        served?;
        Ok(())
    }
}

/// Builds and runs the service until `shutdown`.
pub async fn serve(settings: Settings, shutdown: CancellationToken) -> Result<(), ApiError> {
    Application::build(settings)
        .await?
        .run_until(shutdown)
        .await
}
