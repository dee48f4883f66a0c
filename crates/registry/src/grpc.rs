//! The RegistryService API: validation here, persistence in the store.

use mlops_core::auth::{Principal, ResourceKind, authorize, authorize_visible};
use mlops_core::ids::{validate_id, validate_name};
use mlops_core::storage::ArtifactStore;
use mlops_core::storage::validate_digest;
use mlops_core::{ApiError, ErrorKind};
use mlops_proto::v1::registry_service_server::RegistryService;
use mlops_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::search;
use crate::store::{AliasMove, Search, Store};

pub struct Registry {
    pub store: Store,
    pub artifacts: ArtifactStore,
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
        // A version may only point at a bundle that exists and is intact.
        match self.artifacts.get(&request.artifact_digest).await {
            Err(error) if error.kind == ErrorKind::NotFound => {
                return Err(ApiError::failed_precondition(format!(
                    "artifact_digest {} is not in the artifact store",
                    request.artifact_digest
                ))
                .into());
            }
            other => other?,
        };
        let version = self
            .store
            .create_version(&request, &subject(&caller))
            .await?;
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
        let moves = [AliasMove {
            alias: &request.alias,
            version: request.version,
            expected: request.expected_version,
        }];
        let previous_version = self
            .store
            .set_aliases(&request.model_name, &moves, &subject(&caller))
            .await?[0];
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
            .delete_alias(&request.model_name, &request.alias, &subject(&caller))
            .await?;
        Ok(Response::new(DeleteModelAliasResponse {}))
    }

    async fn set_model_aliases(
        &self,
        request: Request<SetModelAliasesRequest>,
    ) -> Result<Response<SetModelAliasesResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        validate_name("model_name", &request.model_name)?;
        authorize(caller.as_ref(), ResourceKind::Model, &request.model_name)?;
        if request.moves.is_empty() {
            return Err(ApiError::invalid_argument("moves must name at least one alias").into());
        }
        let mut seen = std::collections::HashSet::new();
        for change in &request.moves {
            validate_name("moves.alias", &change.alias)?;
            if change.version == 0 {
                return Err(ApiError::invalid_argument(format!(
                    "moves: alias {:?} needs a version (from 1)",
                    change.alias
                ))
                .into());
            }
            if !seen.insert(change.alias.as_str()) {
                return Err(ApiError::invalid_argument(format!(
                    "moves: alias {:?} appears twice",
                    change.alias
                ))
                .into());
            }
        }
        let moves: Vec<AliasMove> = request
            .moves
            .iter()
            .map(|m| AliasMove {
                alias: &m.alias,
                version: m.version,
                expected: m.expected_version,
            })
            .collect();
        let previous_versions = self
            .store
            .set_aliases(&request.model_name, &moves, &subject(&caller))
            .await?;
        tracing::info!(model = %request.model_name, moves = moves.len(), "aliases set");
        Ok(Response::new(SetModelAliasesResponse { previous_versions }))
    }

    async fn list_alias_history(
        &self,
        request: Request<ListAliasHistoryRequest>,
    ) -> Result<Response<ListAliasHistoryResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        validate_name("model_name", &request.model_name)?;
        authorize(caller.as_ref(), ResourceKind::Model, &request.model_name)?;
        if !request.alias.is_empty() {
            validate_name("alias", &request.alias)?;
        }
        let changes = self
            .store
            .alias_history(&request.model_name, &request.alias)
            .await?;
        Ok(Response::new(ListAliasHistoryResponse { changes }))
    }

    async fn delete_model_version(
        &self,
        request: Request<DeleteModelVersionRequest>,
    ) -> Result<Response<DeleteModelVersionResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        validate_name("model_name", &request.model_name)?;
        authorize(caller.as_ref(), ResourceKind::Model, &request.model_name)?;
        if request.version == 0 {
            return Err(
                ApiError::invalid_argument("version is required (versions start at 1)").into(),
            );
        }
        self.store
            .delete_version(&request.model_name, request.version)
            .await?;
        tracing::info!(model = %request.model_name, version = request.version, "model version deleted");
        Ok(Response::new(DeleteModelVersionResponse {}))
    }

    async fn set_model_version_tag(
        &self,
        request: Request<SetModelVersionTagRequest>,
    ) -> Result<Response<SetModelVersionTagResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        validate_name("model_name", &request.model_name)?;
        authorize(caller.as_ref(), ResourceKind::Model, &request.model_name)?;
        validate_tag(&request.key, &request.value)?;
        self.store
            .set_tag(
                &request.model_name,
                request.version,
                &request.key,
                &request.value,
            )
            .await?;
        Ok(Response::new(SetModelVersionTagResponse {}))
    }

    async fn delete_model_version_tag(
        &self,
        request: Request<DeleteModelVersionTagRequest>,
    ) -> Result<Response<DeleteModelVersionTagResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        validate_name("model_name", &request.model_name)?;
        authorize(caller.as_ref(), ResourceKind::Model, &request.model_name)?;
        validate_name("key", &request.key)?;
        self.store
            .delete_tag(&request.model_name, request.version, &request.key)
            .await?;
        Ok(Response::new(DeleteModelVersionTagResponse {}))
    }

    async fn search_model_versions(
        &self,
        request: Request<SearchModelVersionsRequest>,
    ) -> Result<Response<SearchModelVersionsResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        if !request.model_name.is_empty() {
            validate_name("model_name", &request.model_name)?;
        }
        if !request.alias.is_empty() {
            validate_name("alias", &request.alias)?;
        }
        if !request.dataset.is_empty() {
            validate_name("dataset", &request.dataset)?;
        }
        for (key, value) in &request.tags {
            validate_tag(key, value)?;
        }
        if request.page_size > search::MAX_PAGE_SIZE {
            return Err(ApiError::invalid_argument(format!(
                "page_size is over {}",
                search::MAX_PAGE_SIZE
            ))
            .into());
        }
        let limit = if request.page_size == 0 {
            search::DEFAULT_PAGE_SIZE
        } else {
            request.page_size
        };
        let offset = search::parse_page_token(&request.page_token)?;
        let query = Search {
            model_name: &request.model_name,
            filters: request
                .metric_filters
                .iter()
                .map(|f| search::parse_filter(f))
                .collect::<Result<_, _>>()?,
            tags: request
                .tags
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            alias: &request.alias,
            dataset: &request.dataset,
            dataset_version: request.dataset_version,
            order: search::parse_order(&request.order_by)?,
            offset,
            limit,
        };
        let (versions, more) = self.store.search(&query).await?;
        let versions = authorize_visible(caller.as_ref(), ResourceKind::Model, versions, |v| {
            &v.model_name
        })?;
        let next_page_token = if more {
            search::page_token(offset + limit as u64)
        } else {
            String::new()
        };
        Ok(Response::new(SearchModelVersionsResponse {
            versions,
            next_page_token,
        }))
    }
}

fn validate_tag(key: &str, value: &str) -> Result<(), ApiError> {
    validate_name("key", key)?;
    if value.len() > 5000 || value.chars().any(char::is_control) {
        return Err(ApiError::invalid_argument(
            "value must be at most 5000 characters, without control characters",
        ));
    }
    Ok(())
}

/// Who is acting, for the records that keep it.
fn subject(caller: &Option<Principal>) -> String {
    caller
        .as_ref()
        .map(|p| p.subject.clone())
        .unwrap_or_default()
}
