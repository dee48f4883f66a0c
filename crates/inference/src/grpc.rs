//! GRPCInferenceService: the Open Inference Protocol over gRPC.

use mlops_core::auth::Principal;
use mlops_proto::inference::grpc_inference_service_server::GrpcInferenceService;
use mlops_proto::inference::*;
use tonic::{Request, Response, Status};

use crate::models::Models;

pub const SERVER_NAME: &str = "mlops-inference";

pub struct Inference {
    pub models: Models,
}

pub fn server_metadata() -> ServerMetadataResponse {
    ServerMetadataResponse {
        name: SERVER_NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        // Triton's names for the Triton extensions, then ours.
        extensions: [
            "model_repository",
            "model_configuration",
            "statistics",
            "parameters",
            "mlops_explain",
            "mlops_drift",
        ]
        .map(String::from)
        .to_vec(),
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: true }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        self.models
            .resolve(caller.as_ref(), &request.name, &request.version)
            .await?;
        Ok(Response::new(ModelReadyResponse { ready: true }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(server_metadata()))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        Ok(Response::new(
            self.models
                .metadata(caller.as_ref(), &request.name, &request.version)
                .await?,
        ))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        Ok(Response::new(
            self.models
                .infer(caller.as_ref(), request.into_inner())
                .await?,
        ))
    }

    async fn model_config(
        &self,
        request: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        Ok(Response::new(
            self.models
                .config(caller.as_ref(), &request.name, &request.version)
                .await?,
        ))
    }

    async fn model_statistics(
        &self,
        request: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        Ok(Response::new(self.models.statistics(
            caller.as_ref(),
            &request.name,
            &request.version,
        )?))
    }

    async fn model_drift(
        &self,
        request: Request<ModelDriftRequest>,
    ) -> Result<Response<ModelDriftResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        Ok(Response::new(
            self.models
                .drift(caller.as_ref(), &request.name, &request.version)
                .await?,
        ))
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let ready = request.into_inner().ready;
        Ok(Response::new(
            self.models.repository_index(caller.as_ref(), ready).await?,
        ))
    }

    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        self.models
            .repository_load(caller.as_ref(), &request.into_inner())
            .await?;
        Ok(Response::new(RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        self.models
            .repository_unload(caller.as_ref(), &request.into_inner())?;
        Ok(Response::new(RepositoryModelUnloadResponse {}))
    }
}
