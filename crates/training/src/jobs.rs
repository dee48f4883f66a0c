//! Running a job: each stage updates the job in memory (watchers see it at once) and in SQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mlops_core::client::Channel;
use mlops_core::storage::ArtifactStore;
use mlops_core::{ApiError, now_ms};
use mlops_ml::split::train_test_split;
use mlops_ml::{LinearRegression, ModelBundle, RegressionMetrics};
use mlops_proto::v1::registry_service_client::RegistryServiceClient;
use mlops_proto::v1::{CreateModelVersionRequest, JobState, Lineage, TrainingJob};
use ndarray::Axis;
use tokio::sync::{Semaphore, watch};

use crate::dataset;
use crate::store::Store;

/// Jobs in flight (and finished ones since start), by id.
#[derive(Clone)]
pub struct Jobs {
    live: Arc<Mutex<HashMap<String, watch::Sender<TrainingJob>>>>,
    store: Store,
    artifacts: ArtifactStore,
    registry: RegistryServiceClient<Channel>,
    slots: Arc<Semaphore>,
}

impl Jobs {
    pub fn new(
        store: Store,
        artifacts: ArtifactStore,
        registry: Channel,
        max_concurrent: usize,
    ) -> Self {
        Self {
            live: Arc::default(),
            store,
            artifacts,
            registry: RegistryServiceClient::new(registry),
            slots: Arc::new(Semaphore::new(max_concurrent.max(1))),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A receiver of every change to a job this process ran, if it ran it.
    pub fn subscribe(&self, id: &str) -> Option<watch::Receiver<TrainingJob>> {
        self.live
            .lock()
            .expect("jobs lock")
            .get(id)
            .map(watch::Sender::subscribe)
    }

    /// Records the pending job and starts it in the background.
    pub async fn start(&self, job: TrainingJob) -> Result<TrainingJob, ApiError> {
        self.store.save(&job).await?;
        let (sender, _) = watch::channel(job.clone());
        self.live
            .lock()
            .expect("jobs lock")
            .insert(job.id.clone(), sender.clone());
        let runner = self.clone();
        tokio::spawn(async move { runner.run(sender).await });
        metrics::counter!("mlops_training_jobs_submitted_total").increment(1);
        Ok(job)
    }

    async fn run(self, sender: watch::Sender<TrainingJob>) {
        let _slot = self.slots.clone().acquire_owned().await;
        let outcome = self.execute(&sender).await;
        let mut job = sender.borrow().clone();
        job.finished_at_ms = now_ms();
        match outcome {
            Ok(()) => {
                job.set_state(JobState::Succeeded);
                job.progress = 1.0;
                job.stage = "done".into();
                metrics::counter!("mlops_training_jobs_total", "state" => "succeeded").increment(1);
            }
            Err(error) => {
                tracing::warn!(job = %job.id, %error, "training job failed");
                job.set_state(JobState::Failed);
                job.error = error.message;
                metrics::counter!("mlops_training_jobs_total", "state" => "failed").increment(1);
            }
        }
        if let Err(error) = self.store.save(&job).await {
            tracing::error!(job = %job.id, %error, "cannot record the job's end");
        }
        sender.send_replace(job);
    }

    async fn update(
        &self,
        sender: &watch::Sender<TrainingJob>,
        change: impl FnOnce(&mut TrainingJob),
    ) -> Result<(), ApiError> {
        let mut job = sender.borrow().clone();
        change(&mut job);
        self.store.save(&job).await?;
        sender.send_replace(job);
        Ok(())
    }

    async fn execute(&self, sender: &watch::Sender<TrainingJob>) -> Result<(), ApiError> {
        self.update(sender, |job| {
            job.set_state(JobState::Running);
            job.stage = "loading dataset".into();
            job.progress = 0.1;
        })
        .await?;
        let spec = sender.borrow().clone();
        let parquet = self.artifacts.get(&spec.dataset_digest).await?;

        self.update(sender, |job| {
            job.stage = "fitting".into();
            job.progress = 0.3;
        })
        .await?;
        let target = spec.target_column.clone();
        let (test_fraction, seed) = (spec.test_fraction, spec.seed);
        let fitted = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
            let table = dataset::load(parquet, &target)?;
            let (train, test) = train_test_split(table.features.nrows(), test_fraction, seed)
                .map_err(|e| ApiError::invalid_argument(e.to_string()))?;
            let x_train = table.features.select(Axis(0), &train);
            let y_train = table.target.select(Axis(0), &train);
            let model = LinearRegression::fit(x_train.view(), y_train.view())
                .map_err(|e| ApiError::invalid_argument(e.to_string()))?;
            let x_test = table.features.select(Axis(0), &test);
            let predicted = model
                .predict(x_test.view())
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let metrics = RegressionMetrics::compute(
                table.target.select(Axis(0), &test).view(),
                predicted.view(),
            );
            Ok((model, metrics, table.feature_names, train.len(), test.len()))
        })
        .await
        .map_err(|e| ApiError::internal(format!("fit task: {e}")))??;
        let (model, metrics, feature_names, train_rows, test_rows) = fitted;

        let bundle = ModelBundle::linear(&model, feature_names.clone(), spec.target_column.clone());
        let digest = self.artifacts.put(bundle.to_json().into()).await?;
        let mut params: HashMap<String, String> = feature_names
            .iter()
            .zip(model.coefficients.iter())
            .map(|(name, c)| (format!("coef.{name}"), c.to_string()))
            .collect();
        params.insert("intercept".into(), model.intercept.to_string());
        params.insert("test_fraction".into(), spec.test_fraction.to_string());
        params.insert("seed".into(), spec.seed.to_string());
        params.insert("rank".into(), model.rank.to_string());
        let metric_map: HashMap<String, f64> = metrics
            .named()
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        self.update(sender, |job| {
            job.stage = "evaluated".into();
            job.progress = 0.8;
            job.metrics = metric_map.clone();
            job.params = params.clone();
            job.feature_names = feature_names.clone();
            job.artifact_digest = digest.clone();
            job.train_rows = train_rows as u64;
            job.test_rows = test_rows as u64;
        })
        .await?;

        if !spec.register_as.is_empty() {
            self.update(sender, |job| job.stage = "registering".into())
                .await?;
            let version = self
                .registry
                .clone()
                .create_model_version(CreateModelVersionRequest {
                    model_name: spec.register_as.clone(),
                    model_type: spec.model_type.clone(),
                    artifact_digest: digest,
                    metrics: metric_map,
                    params,
                    lineage: Some(Lineage {
                        dataset: spec.dataset.clone(),
                        dataset_version: spec.dataset_version,
                        dataset_digest: spec.dataset_digest.clone(),
                        training_job_id: spec.id.clone(),
                        ..Default::default()
                    }),
                    feature_names,
                    target: spec.target_column.clone(),
                })
                .await
                .map_err(|s| ApiError::from_status("registering the model", &s))?
                .into_inner();
            self.update(sender, |job| {
                job.model_name = version.model_name;
                job.model_version = version.version;
            })
            .await?;
        }
        Ok(())
    }
}
