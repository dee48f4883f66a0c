//! The ceiling for `scripts/bench/infer.sh`: a tonic OIP server whose ModelInfer does no work
//! and answers an empty response. Everything our server does beyond this costs throughput.
//!
//! Run: `bare_oip 127.0.0.1:9101`

use mlops_proto::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use mlops_proto::inference::*;
use tonic::{Request, Response, Status};

struct Bare;

#[tonic::async_trait]
impl GrpcInferenceService for Bare {
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
        _: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        Ok(Response::new(ModelReadyResponse { ready: true }))
    }
    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse::default()))
    }
    async fn model_metadata(
        &self,
        _: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        Ok(Response::new(ModelMetadataResponse::default()))
    }
    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        Ok(Response::new(ModelInferResponse {
            model_name: request.into_inner().model_name,
            ..Default::default()
        }))
    }
    async fn model_config(
        &self,
        _: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        Err(Status::unimplemented("bare server"))
    }
    async fn model_statistics(
        &self,
        _: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        Err(Status::unimplemented("bare server"))
    }
    async fn repository_index(
        &self,
        _: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        Err(Status::unimplemented("bare server"))
    }
    async fn repository_model_load(
        &self,
        _: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        Err(Status::unimplemented("bare server"))
    }
    async fn repository_model_unload(
        &self,
        _: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        Err(Status::unimplemented("bare server"))
    }
    async fn model_drift(
        &self,
        _: Request<ModelDriftRequest>,
    ) -> Result<Response<ModelDriftResponse>, Status> {
        Err(Status::unimplemented("bare server"))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9101".into())
        .parse()?;
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(GrpcInferenceServiceServer::new(Bare).max_decoding_message_size(64 << 20))
        .serve(addr)
        .await?;
    Ok(())
}
