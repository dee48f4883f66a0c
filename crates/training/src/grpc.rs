//! The TrainingService API.

use mlops_core::auth::gate::principal;
use mlops_core::auth::{Action, Principal, ResourceKind, authorize, authorize_visible};
use mlops_core::client::Channel;
use mlops_core::ids::{new_id, validate_id, validate_name};
use mlops_core::watch::{self, WatchStream};
use mlops_core::{ApiError, now_ms};
use mlops_ml::MlError;
use mlops_ml::model::Task;
use mlops_ml::train::{StepText, TrainSpec};
use mlops_proto::v1::ingestion_service_client::IngestionServiceClient;
use mlops_proto::v1::training_service_server::TrainingService;
use mlops_proto::v1::*;
use std::collections::BTreeMap;
use tonic::{Request, Response, Status};

use crate::jobs::Jobs;

/// The library's training spec from the request's text fields, checked in full: an unknown
/// model, hyperparameter, grid value, step or metric is an INVALID_ARGUMENT naming it.
pub fn train_spec(
    model_type: &str,
    fit: &FitSpec,
    test_fraction: f64,
    seed: u64,
) -> Result<TrainSpec, ApiError> {
    mlops_ml::model::ModelKind::parse(model_type)
        .map_err(|e| ApiError::invalid_argument(format!("model_type: {}", e.reason())))?;
    let invalid = |e: MlError| ApiError::invalid_argument(format!("fit: {}", e.reason()));
    let params: BTreeMap<String, String> = fit.params.clone().into_iter().collect();
    let grid: BTreeMap<String, Vec<String>> = fit
        .grid
        .iter()
        .map(|(k, v)| (k.clone(), v.values.clone()))
        .collect();
    let steps: Vec<StepText> = fit
        .preprocessing
        .iter()
        .map(|s| StepText {
            kind: s.kind.clone(),
            columns: s.columns.clone(),
            options: s.options.clone().into_iter().collect(),
        })
        .collect();
    let cv_folds = usize::try_from(fit.cv_folds).unwrap_or(usize::MAX);
    if cv_folds == 1 {
        return Err(ApiError::invalid_argument(
            "fit.cv_folds must be 0 (no cross-validation) or at least 2",
        ));
    }
    let mut spec = TrainSpec::from_text(
        model_type,
        &params,
        &grid,
        &steps,
        cv_folds,
        &fit.selection_metric,
    )
    .map_err(invalid)?;
    spec.test_fraction = test_fraction;
    spec.seed = seed;
    Ok(spec)
}

/// Every metric of the bundle's task on a dataset version: its inputs and target columns read
/// as for training; a classifier's labels matched to the classes it knows.
fn score(
    bundle: &mlops_ml::ModelBundle,
    table: crate::dataset::Table,
    id: &str,
) -> Result<(BTreeMap<String, f64>, u64), ApiError> {
    let invalid = |why: String| ApiError::invalid_argument(format!("dataset {id}: {why}"));
    let rows = table.target.len();
    if rows == 0 {
        return Err(invalid("no rows to evaluate on".into()));
    }
    let target =
        if bundle.classes.is_empty() {
            mlops_ml::train::build_target(Task::Regression, &table.target)
                .map_err(|e| invalid(e.reason().to_string()))?
                .0
        } else {
            let texts: Vec<Option<String>> = match &table.target {
                mlops_ml::frame::Values::Numeric(v) => v
                    .iter()
                    .map(|x| x.is_finite().then(|| x.to_string()))
                    .collect(),
                mlops_ml::frame::Values::Categorical(v) => v.clone(),
            };
            let labels =
                texts
                    .iter()
                    .enumerate()
                    .map(|(row, text)| {
                        let text = text.as_deref().ok_or_else(|| {
                            invalid(format!("the target is missing at row {row}"))
                        })?;
                        bundle.classes.iter().position(|c| c == text).ok_or_else(|| {
                    invalid(format!(
                        "row {row}: label {text:?} is not one of the model's classes ({})",
                        bundle.classes.join(", ")
                    ))
                })
                    })
                    .collect::<Result<Vec<usize>, ApiError>>()?;
            mlops_ml::Target::Classification {
                labels,
                classes: bundle.classes.len(),
            }
        };
    let prediction = bundle
        .predict_frame(table.features)
        .map_err(|e| invalid(e.reason().to_string()))?;
    let metrics = mlops_ml::train::evaluate(&target, &prediction)
        .map_err(|e| invalid(e.reason().to_string()))?;
    Ok((metrics, rows as u64))
}

pub struct Training {
    pub jobs: Jobs,
    pub ingestion: IngestionServiceClient<Channel>,
    /// Also where bundles are read from: its artifact store.
    pub datasets: crate::dataset::Datasets,
}

impl Training {
    async fn evaluate(
        &self,
        caller: Option<&Principal>,
        request: EvaluateModelRequest,
    ) -> Result<EvaluateModelResponse, ApiError> {
        mlops_core::storage::validate_digest("artifact_digest", &request.artifact_digest)?;
        validate_name("dataset", &request.dataset)?;
        authorize(caller, ResourceKind::Dataset, &request.dataset)?;
        let version = self
            .ingestion
            .clone()
            .get_dataset_version(GetDatasetVersionRequest {
                dataset: request.dataset.clone(),
                version: request.dataset_version,
                alias: request.dataset_alias.clone(),
            })
            .await
            .map_err(|s| ApiError::from_status("dataset", &s))?
            .into_inner();
        let bundle = self
            .datasets
            .artifacts
            .get(&request.artifact_digest)
            .await?;
        let bundle = mlops_ml::ModelBundle::from_json(&bundle).map_err(|e| {
            ApiError::failed_precondition(format!(
                "artifact {} is not a model bundle this platform trained: {}",
                request.artifact_digest,
                e.reason()
            ))
        })?;
        let id = version.id.clone();
        let table = self
            .datasets
            .read(&version.digest, &bundle.target, &bundle.input_names())
            .await
            .map_err(|e| ApiError {
                message: format!("dataset {id}: {}", e.message),
                ..e
            })?;
        let (metrics, rows) = tokio::task::spawn_blocking(move || score(&bundle, table, &id))
            .await
            .map_err(|e| ApiError::internal(format!("evaluation task: {e}")))??;
        Ok(EvaluateModelResponse {
            metrics: metrics.into_iter().collect(),
            dataset: version.dataset,
            dataset_version: version.version,
            rows,
        })
    }

    async fn submit(
        &self,
        caller: Option<&Principal>,
        request: SubmitTrainingJobRequest,
    ) -> Result<TrainingJob, ApiError> {
        validate_name("dataset", &request.dataset)?;
        authorize(caller, ResourceKind::Dataset, &request.dataset)?;
        if request.target_column.is_empty() {
            return Err(ApiError::invalid_argument("target_column is required"));
        }
        if !request.register_as.is_empty() {
            validate_name("register_as", &request.register_as)?;
            // Registering is its own permission: a caller who may train may not always register.
            principal(caller)?.require(Action::RegisterModel)?;
            authorize(caller, ResourceKind::Model, &request.register_as)?;
        }
        let test_fraction = request.test_fraction.unwrap_or(0.2);
        if !(test_fraction > 0.0 && test_fraction < 1.0) {
            return Err(ApiError::invalid_argument(format!(
                "test_fraction must be in (0, 1), got {test_fraction}"
            )));
        }
        let fit = request.fit.clone().unwrap_or_default();
        let seed = request.seed.unwrap_or(42);
        let spec = train_spec(&request.model_type, &fit, test_fraction, seed)?;
        // Resolve the version now, so a wrong dataset or column fails the call, not the job,
        // and the job records exactly which data it used.
        let version = self
            .ingestion
            .clone()
            .get_dataset_version(GetDatasetVersionRequest {
                dataset: request.dataset.clone(),
                version: request.dataset_version,
                ..Default::default()
            })
            .await
            .map_err(|s| ApiError::from_status("dataset", &s))?
            .into_inner();
        if !version
            .columns
            .iter()
            .any(|c| c.name == request.target_column)
        {
            let columns: Vec<&str> = version.columns.iter().map(|c| c.name.as_str()).collect();
            return Err(ApiError::invalid_argument(format!(
                "target_column {:?} is not a column of dataset {} (columns: {})",
                request.target_column,
                version.id,
                columns.join(", ")
            )));
        }
        if let Some(missing) = fit
            .features
            .iter()
            .find(|f| !version.columns.iter().any(|c| &c.name == *f))
        {
            return Err(ApiError::invalid_argument(format!(
                "fit.features: {missing:?} is not a column of dataset {}",
                version.id
            )));
        }
        crate::dataset::check_unique_features(&fit.features)?;
        let train_rows =
            version.row_count as f64 - (version.row_count as f64 * test_fraction).ceil();
        let folds = match (spec.cv_folds, spec.grid.is_empty()) {
            (0, false) => 5,
            (k, _) => k,
        };
        if folds as f64 > train_rows {
            return Err(ApiError::invalid_argument(format!(
                "fit.cv_folds ({folds}) exceeds the {train_rows} training rows of dataset {}",
                version.id
            )));
        }
        if version.columns.len() < 2 {
            return Err(ApiError::invalid_argument(format!(
                "dataset {} has no feature columns besides the target",
                version.id
            )));
        }
        let mut job = TrainingJob {
            id: new_id(),
            dataset: version.dataset,
            dataset_version: version.version,
            dataset_digest: version.digest,
            target_column: request.target_column,
            model_type: request.model_type,
            register_as: request.register_as,
            test_fraction,
            seed,
            task: match spec.model.task() {
                Task::Regression => "regression".into(),
                Task::Classification => "classification".into(),
            },
            fit: Some(fit),
            stage: "queued".into(),
            created_at_ms: now_ms(),
            ..Default::default()
        };
        job.set_state(JobState::Pending);
        tracing::info!(job = %job.id, dataset = %job.dataset, version = job.dataset_version, "training job submitted");
        self.jobs.start(job).await
    }

    /// A job, visible when the caller may see its dataset.
    async fn job(&self, caller: Option<&Principal>, id: &str) -> Result<TrainingJob, ApiError> {
        validate_id("id", id)?;
        let job = match self.jobs.subscribe(id) {
            Some(receiver) => receiver.borrow().clone(),
            None => self.jobs.store().get(id).await?,
        };
        authorize(caller, ResourceKind::Dataset, &job.dataset)?;
        Ok(job)
    }
}

fn is_terminal(job: &TrainingJob) -> bool {
    matches!(job.state(), JobState::Succeeded | JobState::Failed)
}

#[tonic::async_trait]
impl TrainingService for Training {
    async fn submit_training_job(
        &self,
        request: Request<SubmitTrainingJobRequest>,
    ) -> Result<Response<TrainingJob>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        Ok(Response::new(
            self.submit(caller.as_ref(), request.into_inner()).await?,
        ))
    }

    async fn evaluate_model(
        &self,
        request: Request<EvaluateModelRequest>,
    ) -> Result<Response<EvaluateModelResponse>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        Ok(Response::new(
            self.evaluate(caller.as_ref(), request.into_inner()).await?,
        ))
    }

    async fn get_training_job(
        &self,
        request: Request<GetTrainingJobRequest>,
    ) -> Result<Response<TrainingJob>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        Ok(Response::new(
            self.job(caller.as_ref(), &request.into_inner().id).await?,
        ))
    }

    async fn list_training_jobs(
        &self,
        request: Request<ListTrainingJobsRequest>,
    ) -> Result<Response<ListTrainingJobsResponse>, Status> {
        let jobs = authorize_visible(
            request.extensions().get::<Principal>(),
            ResourceKind::Dataset,
            self.jobs.store().list().await?,
            |j| &j.dataset,
        )?;
        Ok(Response::new(ListTrainingJobsResponse { jobs }))
    }

    type WatchTrainingJobStream = WatchStream<TrainingJob>;

    async fn watch_training_job(
        &self,
        request: Request<WatchTrainingJobRequest>,
    ) -> Result<Response<Self::WatchTrainingJobStream>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let id = request.into_inner().id;
        let current = self.job(caller.as_ref(), &id).await?;
        Ok(Response::new(match self.jobs.subscribe(&id) {
            Some(receiver) => watch::until_terminal(receiver, is_terminal),
            // Finished before this process started: its last state is all there is.
            None => watch::once(current),
        }))
    }
}
