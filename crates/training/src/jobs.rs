//! Running a job: each stage updates the job in memory (watchers see it at once) and in SQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mlops_core::client::Channel;
use mlops_core::{ApiError, now_ms};
use mlops_ml::MlError;
use mlops_ml::model::{Estimator, Params};
use mlops_ml::train::{self, Event, value_text};
use mlops_proto::v1::registry_service_client::RegistryServiceClient;
use mlops_proto::v1::{
    CandidateScore, CreateModelVersionRequest, FeatureImportance, JobState, Lineage, TrainingJob,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

use crate::dataset::Datasets;
use crate::store::Store;

/// Hyperparameters as the text the API carries.
fn params_text(params: &Params) -> BTreeMap<String, String> {
    params
        .iter()
        .map(|(k, v)| (k.clone(), value_text(v)))
        .collect()
}

/// Jobs in flight (and finished ones since start), by id.
#[derive(Clone)]
pub struct Jobs {
    live: Arc<Mutex<HashMap<String, watch::Sender<TrainingJob>>>>,
    store: Store,
    /// Also where bundles are stored: its artifact store.
    datasets: Datasets,
    registry: RegistryServiceClient<Channel>,
    slots: Arc<Semaphore>,
}

impl Jobs {
    pub fn new(store: Store, datasets: Datasets, registry: Channel, max_concurrent: usize) -> Self {
        Self {
            live: Arc::default(),
            store,
            datasets,
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
        // Live before it is stored: whoever lists it from the store can then watch it to its
        // end, never only its stored Pending state.
        let (sender, _) = watch::channel(job.clone());
        self.live
            .lock()
            .expect("jobs lock")
            .insert(job.id.clone(), sender.clone());
        // Stored and started in a task of its own: a caller that goes away meanwhile (its
        // deadline passed) must not leave a job live, or stored, that never runs.
        let (runner, stored) = (self.clone(), job.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = runner.store.save(&stored).await {
                runner.live.lock().expect("jobs lock").remove(&stored.id);
                return Err(error);
            }
            tokio::spawn(async move { runner.run(sender).await });
            metrics::counter!("mlops_training_jobs_submitted_total").increment(1);
            Ok(())
        });
        task.await.unwrap_or_else(|e| {
            self.live.lock().expect("jobs lock").remove(&job.id);
            Err(ApiError::internal(format!("starting a job: {e}")))
        })?;
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
        let fit = spec.fit.clone().unwrap_or_default();
        let target = spec.target_column.clone();
        let table = self
            .datasets
            .read(&spec.dataset_digest, &target, &fit.features)
            .await?;

        self.update(sender, |job| {
            job.stage = "fitting".into();
            job.progress = 0.3;
        })
        .await?;
        let train_spec =
            crate::grpc::train_spec(&spec.model_type, &fit, spec.test_fraction, spec.seed)?;
        let candidates = train::candidates(&train_spec.params, &train_spec.grid)
            .map_err(|e| ApiError::invalid_argument(e.to_string()))?;
        let progress = sender.clone();
        let trained = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
            let mut last_notified = Instant::now();
            let mut on_event = |event: Event| {
                // Every event lands in the job; watchers hear of it at most every 100 ms.
                progress.send_if_modified(|job| {
                    match event {
                        Event::Epoch { loss, .. } => job.loss_curve.push(loss),
                        Event::Fold {
                            candidate, score, ..
                        } => {
                            while job.candidates.len() <= candidate {
                                let params = &candidates[job.candidates.len()];
                                job.candidates.push(CandidateScore {
                                    params: params_text(params).into_iter().collect(),
                                    ..Default::default()
                                });
                            }
                            let scores = &mut job.candidates[candidate];
                            scores.fold_scores.push(score);
                            let n = scores.fold_scores.len() as f64;
                            scores.mean = scores.fold_scores.iter().sum::<f64>() / n;
                        }
                    }
                    let due = last_notified.elapsed() >= Duration::from_millis(100);
                    if due {
                        last_notified = Instant::now();
                    }
                    due
                });
            };
            train::train(
                &train_spec,
                table.features,
                &target,
                &table.target,
                &mut on_event,
            )
            .map_err(|e| match e {
                MlError::Bundle(_) => ApiError::internal(e.to_string()),
                _ => ApiError::failed_precondition(format!("training failed: {e}")),
            })
        })
        .await
        .map_err(|e| ApiError::internal(format!("fit task: {e}")))??;

        let mut bundle = trained.bundle;
        bundle.training.dataset_digest = spec.dataset_digest.clone();
        let digest = self.datasets.artifacts.put(bundle.to_json().into()).await?;
        let feature_names = bundle.input_names();
        let mut params = params_text(&trained.best_params);
        if let Estimator::Linear {
            coefficients,
            intercept,
        } = &bundle.estimator
        {
            for (name, c) in bundle.features.iter().zip(coefficients) {
                params.insert(format!("coef.{name}"), c.to_string());
            }
            params.insert("intercept".into(), intercept.to_string());
        }
        params.insert("model".into(), spec.model_type.clone());
        params.insert("test_fraction".into(), spec.test_fraction.to_string());
        params.insert("seed".into(), spec.seed.to_string());
        if !trained.candidates.is_empty() {
            params.insert(
                "cv_folds".into(),
                trained.candidates[0].fold_scores.len().to_string(),
            );
            params.insert("selection_metric".into(), trained.selection_metric.clone());
        }
        if !bundle.preprocessing.steps.is_empty() {
            let kinds: Vec<String> = spec
                .fit
                .iter()
                .flat_map(|f| f.preprocessing.iter().map(|s| s.kind.clone()))
                .collect();
            params.insert("preprocessing".into(), kinds.join(","));
        }
        let mut warnings = trained.warnings;
        // Undefined metrics (ROC AUC with one class in the test rows) are left out, and said so.
        let metric_map: HashMap<String, f64> = trained
            .test_metrics
            .iter()
            .filter(|(name, v)| {
                let finite = v.is_finite();
                if !finite {
                    warnings.push(format!("{name} is undefined on the test rows"));
                }
                finite
            })
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let params: HashMap<String, String> = params.into_iter().collect();
        let candidate_scores: Vec<CandidateScore> = trained
            .candidates
            .iter()
            .map(|c| CandidateScore {
                params: params_text(&c.params).into_iter().collect(),
                fold_scores: c.fold_scores.clone(),
                mean: c.mean,
                std: c.std,
            })
            .collect();
        let (train_rows, test_rows) = (trained.train_rows, trained.test_rows);
        let loss_curve = trained.loss_per_epoch;
        let importance: Vec<FeatureImportance> = trained
            .importance
            .iter()
            .map(|i| FeatureImportance {
                feature: i.input.clone(),
                mean: i.mean,
                std: i.std,
            })
            .collect();
        let selection_metric = trained.selection_metric;
        self.update(sender, |job| {
            job.stage = "evaluated".into();
            job.progress = 0.8;
            job.metrics = metric_map.clone();
            job.params = params.clone();
            job.feature_names = feature_names.clone();
            job.artifact_digest = digest.clone();
            job.train_rows = train_rows as u64;
            job.test_rows = test_rows as u64;
            job.loss_curve = loss_curve.clone();
            job.candidates = candidate_scores.clone();
            job.selection_metric = selection_metric.clone();
            job.warnings = warnings.clone();
            job.importance = importance.clone();
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
                    idempotency_key: format!("training-job/{}", spec.id),
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

#[cfg(test)]
mod tests {
    use super::*;
    use mlops_core::client::{self, ClientOptions};
    use mlops_core::db::Location;
    use mlops_core::ids::new_id;

    /// Jobs whose registry never answers (the jobs here need only be started).
    async fn jobs(dir: &std::path::Path, slots: usize) -> Jobs {
        let store = Store::open(&Location::Sqlite(dir.join("training.db")))
            .await
            .unwrap();
        let artifacts =
            mlops_core::storage::ArtifactStore::local(&dir.join("artifacts"), None).unwrap();
        let registry = client::channel("http://127.0.0.1:9", &ClientOptions::default()).unwrap();
        let datasets = Datasets {
            artifacts,
            spool_dir: dir.to_path_buf(),
            max_bytes: u64::MAX,
        };
        Jobs::new(store, datasets, registry, slots)
    }

    /// A pending job on a dataset that does not exist: it fails as soon as it runs.
    fn doomed_job() -> TrainingJob {
        let mut job = TrainingJob {
            id: new_id(),
            dataset: "absent".into(),
            created_at_ms: now_ms(),
            ..Default::default()
        };
        job.set_state(JobState::Pending);
        job
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_listed_from_the_store_is_already_watchable() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = jobs(dir.path(), 1).await;
        for _ in 0..5 {
            let watcher = {
                let jobs = jobs.clone();
                let known = jobs.store().list().await.unwrap();
                tokio::spawn(async move {
                    loop {
                        let listed = jobs.store().list().await.unwrap();
                        if let Some(new) =
                            listed.iter().find(|j| !known.iter().any(|k| k.id == j.id))
                        {
                            return jobs.subscribe(&new.id).is_some();
                        }
                        tokio::task::yield_now().await;
                    }
                })
            };
            jobs.start(doomed_job()).await.unwrap();
            assert!(watcher.await.unwrap(), "a stored job was not live");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_start_cut_short_by_its_deadline_leaves_no_job_that_never_runs() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = jobs(dir.path(), 64).await;
        // Deadlines that end the call at every point of a start, the store's write included.
        for micros in (0..12_000).step_by(300) {
            let start = jobs.start(doomed_job());
            let _ = tokio::time::timeout(Duration::from_micros(micros), start).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stored = jobs.store().list().await.unwrap();
        let live: Vec<TrainingJob> = jobs
            .live
            .lock()
            .unwrap()
            .values()
            .map(|sender| sender.borrow().clone())
            .collect();
        // Each job ran (and failed: its dataset is absent), live and stored alike.
        assert_eq!(live.len(), stored.len());
        for job in live.iter().chain(&stored) {
            assert_eq!(job.state(), JobState::Failed, "{job:?}");
        }
    }
}
