//! The RegistryService API: validation here, persistence in the store.

use std::collections::{HashMap, VecDeque};

use mlops_core::auth::{Principal, ResourceKind, authorize, authorize_visible};
use mlops_core::ids::{validate_id, validate_name};
use mlops_core::storage::{sha256_hex, validate_digest};
use mlops_core::watch::WatchStream;
use mlops_core::{ApiError, CancellationToken, ErrorKind};
use mlops_proto::v1::registry_service_server::RegistryService;
use mlops_proto::v1::*;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::model_file;
use crate::search;
use crate::store::{AliasMove, EventQuery, NewVersion, Search, Store};

/// Bundles stream out in pieces of this size.
const DOWNLOAD_CHUNK_BYTES: usize = 1 << 20;
/// A watcher reads the event table this many rows at a time.
const WATCH_BATCH: u32 = 256;
/// How often a waiting watcher reads the table without being woken.
const WATCH_POLL: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Registry {
    pub store: Store,
    /// Ends open watch streams, so shutdown is not held up by them.
    pub shutdown: CancellationToken,
    pub max_bundle_bytes: u64,
}

fn validate_version_request(request: &CreateModelVersionRequest) -> Result<(), ApiError> {
    validate_name("model_name", &request.model_name)?;
    if request.model_type.is_empty() {
        return Err(ApiError::invalid_argument("model_type is required"));
    }
    validate_digest("artifact_digest", &request.artifact_digest)?;
    let key = &request.idempotency_key;
    if key.chars().count() > 200 || key.chars().any(char::is_control) {
        return Err(ApiError::invalid_argument(
            "idempotency_key must be at most 200 printable characters",
        ));
    }
    validate_description(
        &request.metrics,
        &request.params,
        &HashMap::new(),
        request.lineage.as_ref(),
    )?;
    validate_schema(&request.feature_names, &request.target)
}

fn validate_schema(feature_names: &[String], target: &str) -> Result<(), ApiError> {
    let bad = |name: &str| name.len() > 1000 || name.chars().any(char::is_control);
    if feature_names.iter().any(|n| n.is_empty() || bad(n)) {
        return Err(ApiError::invalid_argument(
            "feature_names must be non-empty, at most 1000 characters, without control characters",
        ));
    }
    if bad(target) {
        return Err(ApiError::invalid_argument(
            "target must be at most 1000 characters, without control characters",
        ));
    }
    Ok(())
}

/// Metrics, params, tags and lineage: what CreateModelVersion and imports both carry.
fn validate_description(
    metrics: &HashMap<String, f64>,
    params: &HashMap<String, String>,
    tags: &HashMap<String, String>,
    lineage: Option<&Lineage>,
) -> Result<(), ApiError> {
    for (key, value) in tags {
        validate_tag(key, value)?;
    }
    for (name, value) in metrics {
        validate_name("metric name", name)?;
        if !value.is_finite() {
            return Err(ApiError::invalid_argument(format!(
                "metric {name:?} must be a finite number"
            )));
        }
    }
    for name in params.keys() {
        validate_name("param name", name)?;
    }
    if let Some(lineage) = lineage {
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
        if !lineage.pipeline_run_id.is_empty() {
            validate_id("lineage.pipeline_run_id", &lineage.pipeline_run_id).map_err(|_| {
                ApiError::invalid_argument("lineage.pipeline_run_id is not a run id")
            })?;
        }
        if lineage.source.len() > 1000 || lineage.source.chars().any(char::is_control) {
            return Err(ApiError::invalid_argument(
                "lineage.source must be at most 1000 characters, without control characters",
            ));
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
                .create_model(&request.name, &request.description, &subject(&caller))
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
        // The store checks the bundle exists, is intact and is a model.
        let version = self
            .store
            .create_version(
                &NewVersion {
                    model_name: &request.model_name,
                    model_type: &request.model_type,
                    digest: &request.artifact_digest,
                    format: "",
                    metrics: &request.metrics,
                    params: &request.params,
                    tags: &HashMap::new(),
                    lineage: request.lineage.clone().unwrap_or_default(),
                    feature_names: &request.feature_names,
                    target: &request.target,
                    idempotency_key: &request.idempotency_key,
                },
                &subject(&caller),
            )
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
        Ok(Response::new(
            self.resolve(&request.model_name, request.version, &request.alias)
                .await?,
        ))
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
            .delete_version(&request.model_name, request.version, &subject(&caller))
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
                &subject(&caller),
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
            .delete_tag(
                &request.model_name,
                request.version,
                &request.key,
                &subject(&caller),
            )
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
        let order = search::parse_order(&request.order_by)?;
        let after = search::parse_page_token(&request.page_token, &order)?;
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
            order,
            after,
            limit,
            include_archived: request.include_archived,
            visible: model_grants(caller.as_ref())?,
        };
        let (versions, next) = self.store.search(&query).await?;
        let next_page_token = next.as_ref().map(search::page_token).unwrap_or_default();
        Ok(Response::new(SearchModelVersionsResponse {
            versions,
            next_page_token,
        }))
    }

    async fn archive_model_version(
        &self,
        request: Request<ArchiveModelVersionRequest>,
    ) -> Result<Response<ModelVersion>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        self.set_archived(caller, &request.model_name, request.version, true)
            .await
    }

    async fn restore_model_version(
        &self,
        request: Request<RestoreModelVersionRequest>,
    ) -> Result<Response<ModelVersion>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        self.set_archived(caller, &request.model_name, request.version, false)
            .await
    }

    async fn collect_garbage(
        &self,
        request: Request<CollectGarbageRequest>,
    ) -> Result<Response<CollectGarbageResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        let principal = mlops_core::auth::gate::principal(caller.as_ref())?;
        if !principal.grants.is_empty() {
            return Err(ApiError::new(
                ErrorKind::PermissionDenied,
                "garbage collection spans every model: it needs a token without per-resource grants",
            )
            .into());
        }
        let min_age_ms = request
            .min_age_seconds
            .checked_mul(1000)
            .and_then(|ms| i64::try_from(ms).ok())
            .ok_or_else(|| ApiError::invalid_argument("min_age_seconds is out of range"))?;
        let garbage = self
            .store
            .collect_garbage(request.dry_run, min_age_ms, &principal.subject)
            .await?;
        tracing::info!(
            dry_run = request.dry_run,
            artifacts = garbage.digests.len(),
            bytes = garbage.bytes,
            "garbage collected"
        );
        Ok(Response::new(CollectGarbageResponse {
            digests: garbage.digests,
            bytes: garbage.bytes,
            dry_run: request.dry_run,
        }))
    }

    type WatchRegistryStream = WatchStream<RegistryEvent>;

    async fn watch_registry(
        &self,
        request: Request<WatchRegistryRequest>,
    ) -> Result<Response<Self::WatchRegistryStream>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        if !request.model_name.is_empty() {
            validate_name("model_name", &request.model_name)?;
            authorize(caller.as_ref(), ResourceKind::Model, &request.model_name)?;
        }
        let caller = mlops_core::auth::gate::principal(caller.as_ref())?.clone();
        let committed = self.store.subscribe();
        // From the table, not this process's last commit: replicas may have written since.
        let cursor = if request.from_now {
            self.store.newest_seq().await?
        } else {
            request.after_seq
        };
        let watcher = Watcher {
            store: self.store.clone(),
            committed,
            shutdown: self.shutdown.clone(),
            caller,
            model: request.model_name,
            cursor,
            pending: VecDeque::new(),
            failed: false,
        };
        Ok(Response::new(Box::pin(futures::stream::unfold(
            watcher,
            Watcher::next,
        ))))
    }

    async fn list_registry_events(
        &self,
        request: Request<ListRegistryEventsRequest>,
    ) -> Result<Response<ListRegistryEventsResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        if !request.model_name.is_empty() {
            validate_name("model_name", &request.model_name)?;
            authorize(caller.as_ref(), ResourceKind::Model, &request.model_name)?;
        }
        if request.principal.len() > 256 || request.principal.chars().any(char::is_control) {
            return Err(ApiError::invalid_argument(
                "principal must be at most 256 characters, without control characters",
            )
            .into());
        }
        for kind in &request.kinds {
            if !matches!(RegistryEventKind::try_from(*kind), Ok(k) if k != RegistryEventKind::Unspecified)
            {
                return Err(ApiError::invalid_argument(format!(
                    "kinds: {kind} is not an event kind"
                ))
                .into());
            }
        }
        if request.limit > 1000 {
            return Err(ApiError::invalid_argument("limit is over 1000").into());
        }
        let events = self
            .store
            .events(&EventQuery {
                model_name: &request.model_name,
                principal: &request.principal,
                kinds: request.kinds.clone(),
                before_seq: request.before_seq,
                limit: if request.limit == 0 {
                    100
                } else {
                    request.limit
                },
                visible: model_grants(caller.as_ref())?,
            })
            .await?;
        Ok(Response::new(ListRegistryEventsResponse { events }))
    }

    async fn import_model_version(
        &self,
        request: Request<Streaming<ImportModelVersionRequest>>,
    ) -> Result<Response<ModelVersion>, Status> {
        use import_model_version_request::Part;
        let caller = request.extensions().get::<Principal>().cloned();
        let mut stream = request.into_inner();
        let header = match stream.message().await? {
            Some(ImportModelVersionRequest {
                part: Some(Part::Header(header)),
            }) => header,
            _ => {
                return Err(ApiError::invalid_argument(
                    "the first message must be the header, then the file in chunks",
                )
                .into());
            }
        };
        validate_name("model_name", &header.model_name)?;
        authorize(caller.as_ref(), ResourceKind::Model, &header.model_name)?;
        validate_description(
            &header.metrics,
            &header.params,
            &header.tags,
            header.lineage.as_ref(),
        )?;
        validate_schema(&header.feature_names, &header.target)?;
        if !header.expected_digest.is_empty() {
            validate_digest("expected_digest", &header.expected_digest)?;
        }
        let mut data = Vec::new();
        while let Some(message) = stream.message().await? {
            match message.part {
                Some(Part::Chunk(chunk)) => {
                    if (data.len() + chunk.len()) as u64 > self.max_bundle_bytes {
                        return Err(ApiError::resource_exhausted(format!(
                            "the model file is over registry.max_bundle_bytes ({} bytes); nothing was stored",
                            self.max_bundle_bytes
                        ))
                        .into());
                    }
                    data.extend_from_slice(&chunk);
                }
                _ => {
                    return Err(ApiError::invalid_argument(
                        "after the header, every message must be a chunk",
                    )
                    .into());
                }
            }
        }
        if data.is_empty() {
            return Err(ApiError::invalid_argument("the model file is empty").into());
        }
        let digest = sha256_hex(&data);
        if !header.expected_digest.is_empty() && header.expected_digest != digest {
            return Err(ApiError::invalid_argument(format!(
                "the upload hashes to {digest}, not expected_digest {}: nothing was stored",
                header.expected_digest
            ))
            .into());
        }
        // Refuse what is not a model before a byte is stored.
        let inspected = model_file::inspect(&data, &header.format)?;
        // Off the garbage list first, so collection cannot delete it between put and create.
        self.store.claim_artifact(&digest).await?;
        self.store.artifacts().put(data.into()).await?;
        let created = self
            .store
            .create_version(
                &NewVersion {
                    model_name: &header.model_name,
                    model_type: "",
                    digest: &digest,
                    format: inspected.format,
                    metrics: &header.metrics,
                    params: &header.params,
                    tags: &header.tags,
                    lineage: header.lineage.clone().unwrap_or_default(),
                    feature_names: &header.feature_names,
                    target: &header.target,
                    idempotency_key: "",
                },
                &subject(&caller),
            )
            .await;
        let version = match created {
            Ok(version) => version,
            Err(error) => {
                // The stored bytes serve nothing now: leave them to garbage collection.
                self.store.forget_artifact(&digest).await?;
                return Err(error.into());
            }
        };
        tracing::info!(model = %version.model_name, version = version.version, format = %version.format, "model version imported");
        Ok(Response::new(version))
    }

    type DownloadModelVersionStream = WatchStream<DownloadModelVersionResponse>;

    async fn download_model_version(
        &self,
        request: Request<DownloadModelVersionRequest>,
    ) -> Result<Response<Self::DownloadModelVersionStream>, Status> {
        use download_model_version_response::Part;
        let caller = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        validate_name("model_name", &request.model_name)?;
        authorize(caller.as_ref(), ResourceKind::Model, &request.model_name)?;
        let version = self
            .resolve(&request.model_name, request.version, &request.alias)
            .await?;
        // Read and verified in full before the first byte goes out: a corrupted bundle is
        // reported, never served.
        let bytes = match self.store.artifacts().get(&version.artifact_digest).await {
            Err(error) if error.kind == ErrorKind::NotFound => {
                return Err(ApiError::data_loss(format!(
                    "the bundle of model {:?} version {} ({}) is missing from the artifact store",
                    version.model_name, version.version, version.artifact_digest
                ))
                .into());
            }
            other => other?,
        };
        let mut messages = vec![Ok(DownloadModelVersionResponse {
            part: Some(Part::Version(version)),
        })];
        let mut offset = 0;
        while offset < bytes.len() {
            let end = (offset + DOWNLOAD_CHUNK_BYTES).min(bytes.len());
            messages.push(Ok(DownloadModelVersionResponse {
                part: Some(Part::Chunk(bytes[offset..end].to_vec())),
            }));
            offset = end;
        }
        Ok(Response::new(Box::pin(futures::stream::iter(messages))))
    }
}

impl Registry {
    /// By version, by alias, or (neither) the latest.
    async fn resolve(
        &self,
        model: &str,
        version: u32,
        alias: &str,
    ) -> Result<ModelVersion, ApiError> {
        match (version, alias) {
            (0, "") => self.store.latest_version(model).await,
            (0, alias) => {
                validate_name("alias", alias)?;
                let version = self.store.alias_target(model, alias).await?;
                self.store.version(model, version).await
            }
            (version, "") => self.store.version(model, version).await,
            _ => Err(ApiError::invalid_argument(
                "give version or alias, not both",
            )),
        }
    }

    async fn set_archived(
        &self,
        caller: Option<Principal>,
        model: &str,
        version: u32,
        archive: bool,
    ) -> Result<Response<ModelVersion>, Status> {
        validate_name("model_name", model)?;
        authorize(caller.as_ref(), ResourceKind::Model, model)?;
        if version == 0 {
            return Err(
                ApiError::invalid_argument("version is required (versions start at 1)").into(),
            );
        }
        let version = self
            .store
            .set_archived(model, version, archive, &subject(&caller))
            .await?;
        Ok(Response::new(version))
    }
}

/// The caller's model grant patterns, for filtering in SQL; None when its role's reach is
/// unrestricted.
fn model_grants(caller: Option<&Principal>) -> Result<Option<Vec<String>>, ApiError> {
    let caller = mlops_core::auth::gate::principal(caller)?;
    if caller.grants.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        caller
            .grants
            .iter()
            .filter(|g| g.kind == ResourceKind::Model)
            .map(|g| g.pattern.clone())
            .collect(),
    ))
}

/// Events about a model are visible to whoever may see the model; registry-wide ones (garbage
/// collection) to everyone who may read.
fn visible(caller: &Principal, event: &RegistryEvent) -> bool {
    event.model_name.is_empty() || caller.can_see(ResourceKind::Model, &event.model_name)
}

/// One WatchRegistry stream: replays the event table from its cursor, then sleeps until the
/// store reports a commit.
struct Watcher {
    store: Store,
    committed: watch::Receiver<u64>,
    shutdown: CancellationToken,
    caller: Principal,
    model: String,
    cursor: u64,
    pending: VecDeque<RegistryEvent>,
    failed: bool,
}

impl Watcher {
    async fn next(mut self) -> Option<(Result<RegistryEvent, Status>, Self)> {
        loop {
            if self.failed {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            // Mark the current commit seen before reading, so a commit that lands after the
            // read still wakes us.
            self.committed.borrow_and_update();
            match self
                .store
                .events_after(self.cursor, &self.model, WATCH_BATCH)
                .await
            {
                Err(error) => {
                    self.failed = true;
                    return Some((Err(error.into()), self));
                }
                Ok(events) if !events.is_empty() => {
                    self.cursor = events.last().map_or(self.cursor, |e| e.seq);
                    let caller = &self.caller;
                    self.pending = events.into_iter().filter(|e| visible(caller, e)).collect();
                    continue;
                }
                Ok(_) => {}
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                changed = self.committed.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                // Commits by other replicas sharing a PostgreSQL database wake nobody here:
                // look again now and then.
                _ = tokio::time::sleep(WATCH_POLL) => {}
            }
        }
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
