//! The RegistryService API: validation here, persistence in the store.

use mlops_core::ApiError;
use mlops_core::auth::{Principal, ResourceKind, authorize, authorize_visible};
use mlops_core::ids::{validate_id, validate_name};
use mlops_core::storage::validate_digest;
use mlops_proto::v1::registry_service_server::RegistryService;
use mlops_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::store::Store;

pub struct Registry {
    pub store: Store,
}

fn validate_version_request(request: &CreateModelVersionRequest) -> Result<(), ApiError> {
    validate_name("model_name", &request.model_name)?;
    if request.model_type.is_empty() {
        return Err(ApiError::invalid_argument("model_type is required"));
    }
    validate_digest("artifact_digest", &request.artifact_digest)?;
    for (name, value) in &request.metrics {
        validate_name("metric name", name)?;
        if !value.is_finite() {
            return Err(ApiError::invalid_argument(format!(
                "metric {name:?} must be a finite number"
            )));
        }
    }
    for name in request.params.keys() {
        validate_name("param name", name)?;
    }
    for name in &request.feature_names {
        if name.is_empty() {
            return Err(ApiError::invalid_argument(
                "feature_names must not contain an empty name",
            ));
        }
    }
    if let Some(lineage) = &request.lineage {
        if !lineage.dataset.is_empty() {
            validate_name("lineage.dataset", &lineage.dataset)?;
        }
        if !lineage.dataset_digest.is_empty() {
            validate_digest("lineage.dataset_digest", &lineage.dataset_digest)?;
        }
        if !lineage.training_job_id.is_empty() {
            validate_id("lineage.training_job_id", &lineage.training_job_id).map_err(|_| {
                ApiError::invalid_argument("lineage.training_job_id is not a job id")
            })?;
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl RegistryService for Registry {
    async fn create_registered_model(
        &self,
        request: Request<CreateRegisteredModelRequest>,
    ) -> Result<Response<RegisteredModel>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        validate_name("name", &request.name)?;
        authorize(caller.as_ref(), ResourceKind::Model, &request.name)?;
        Ok(Response::new(
            self.store
                .create_model(&request.name, &request.description)
                .await?,
        ))
    }

    async fn get_registered_model(
        &self,
        request: Request<GetRegisteredModelRequest>,
    ) -> Result<Response<RegisteredModel>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let name = request.into_inner().name;
        validate_name("name", &name)?;
        authorize(caller.as_ref(), ResourceKind::Model, &name)?;
        Ok(Response::new(self.store.model(&name).await?))
    }

    async fn list_registered_models(
        &self,
        request: Request<ListRegisteredModelsRequest>,
    ) -> Result<Response<ListRegisteredModelsResponse>, Status> {
        let models = authorize_visible(
            request.extensions().get::<Principal>(),
            ResourceKind::Model,
            self.store.models().await?,
            |m| &m.name,
        )?;
        Ok(Response::new(ListRegisteredModelsResponse { models }))
    }

    async fn create_model_version(
        &self,
        request: Request<CreateModelVersionRequest>,
    ) -> Result<Response<ModelVersion>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        validate_version_request(&request)?;
        authorize(caller.as_ref(), ResourceKind::Model, &request.model_name)?;
        let version = self.store.create_version(&request).await?;
        tracing::info!(model = %version.model_name, version = version.version, "model version registered");
        Ok(Response::new(version))
    }

    async fn get_model_version(
        &self,
        request: Request<GetModelVersionRequest>,
    ) -> Result<Response<ModelVersion>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        validate_name("model_name", &request.model_name)?;
        authorize(caller.as_ref(), ResourceKind::Model, &request.model_name)?;
        let version = match (request.version, request.alias.as_str()) {
            (0, "") => self.store.latest_version(&request.model_name).await?,
            (0, alias) => {
                validate_name("alias", alias)?;
                let version = self.store.alias_target(&request.model_name, alias).await?;
                self.store.version(&request.model_name, version).await?
            }
            (version, "") => self.store.version(&request.model_name, version).await?,
            _ => return Err(ApiError::invalid_argument("give version or alias, not both").into()),
        };
        Ok(Response::new(version))
    }

    async fn list_model_versions(
        &self,
        request: Request<ListModelVersionsRequest>,
    ) -> Result<Response<ListModelVersionsResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let model = request.into_inner().model_name;
        validate_name("model_name", &model)?;
        authorize(caller.as_ref(), ResourceKind::Model, &model)?;
        Ok(Response::new(ListModelVersionsResponse {
            versions: self.store.versions(&model).await?,
        }))
    }

    async fn set_model_alias(
        &self,
        request: Request<SetModelAliasRequest>,
    ) -> Result<Response<SetModelAliasResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        validate_name("model_name", &request.model_name)?;
        authorize(caller.as_ref(), ResourceKind::Model, &request.model_name)?;
        validate_name("alias", &request.alias)?;
        if request.version == 0 {
            return Err(
                ApiError::invalid_argument("version is required (versions start at 1)").into(),
            );
        }
        let previous_version = self
            .store
            .set_alias(&request.model_name, &request.alias, request.version)
            .await?;
        tracing::info!(model = %request.model_name, alias = %request.alias, version = request.version, previous_version, "alias set");
        Ok(Response::new(SetModelAliasResponse { previous_version }))
    }

    async fn delete_model_alias(
        &self,
        request: Request<DeleteModelAliasRequest>,
    ) -> Result<Response<DeleteModelAliasResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        validate_name("model_name", &request.model_name)?;
        authorize(caller.as_ref(), ResourceKind::Model, &request.model_name)?;
        validate_name("alias", &request.alias)?;
        self.store
            .delete_alias(&request.model_name, &request.alias)
            .await?;
        Ok(Response::new(DeleteModelAliasResponse {}))
    }
}
