//! Executing a run: the steps in order, each one's state saved as it changes. A step failing
//! for a passing reason is retried with backoff; one that fails for good fails the run and
//! skips the rest. Runs continue after a restart and can be resumed from the failed step.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::BackoffBuilder;
use futures::StreamExt;
use mlops_core::client::Channel;
use mlops_core::ids::new_id;
use mlops_core::tensor::{bytes_elements, fp64_from_raw, fp64_to_raw};
use mlops_core::{ApiError, CancellationToken, ErrorKind, now_ms};
use mlops_proto::inference::ModelInferRequest;
use mlops_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use mlops_proto::inference::model_infer_request::InferInputTensor;
use mlops_proto::v1::ingestion_service_client::IngestionServiceClient;
use mlops_proto::v1::registry_service_client::RegistryServiceClient;
use mlops_proto::v1::training_service_client::TrainingServiceClient;
use mlops_proto::v1::upload_dataset_request::Part;
use mlops_proto::v1::*;
use tokio::sync::watch;

use crate::pipeline::{Bound, Pipeline, StepKind};
use crate::store::Store;

#[derive(Clone)]
pub struct Clients {
    pub ingestion: IngestionServiceClient<Channel>,
    pub training: TrainingServiceClient<Channel>,
    pub registry: RegistryServiceClient<Channel>,
    pub inference: GrpcInferenceServiceClient<Channel>,
}

#[derive(Clone)]
pub struct Runner {
    live: Arc<Mutex<HashMap<String, watch::Sender<PipelineRun>>>>,
    /// The runs executing in this process, each with the token that cancels it and the
    /// execution it belongs to (a resume starts another).
    executing: Arc<Mutex<HashMap<String, (u64, CancellationToken)>>>,
    executions: Arc<std::sync::atomic::AtomicU64>,
    /// Held while a run's state is written, so concurrent steps' saves land in order.
    saving: Arc<tokio::sync::Mutex<()>>,
    /// Model -> the run whose canary step holds its canary (runs execute in this process only,
    /// so this is the whole truth about pipeline canaries).
    canary_owners: Arc<Mutex<HashMap<String, String>>>,
    store: Store,
    clients: Clients,
    sources_dir: PathBuf,
}

const UPLOAD_CHUNK_BYTES: usize = 1 << 20;

fn peer(service: &'static str) -> impl Fn(tonic::Status) -> ApiError {
    move |status| ApiError::from_status(service, &status)
}

impl Runner {
    pub fn new(store: Store, clients: Clients, sources_dir: PathBuf) -> Self {
        Self {
            live: Arc::default(),
            executing: Arc::default(),
            executions: Arc::default(),
            saving: Arc::default(),
            canary_owners: Arc::default(),
            store,
            clients,
            sources_dir,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn subscribe(&self, id: &str) -> Option<watch::Receiver<PipelineRun>> {
        self.live
            .lock()
            .expect("runs lock")
            .get(id)
            .map(watch::Sender::subscribe)
    }

    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    /// Runs of the pipeline that have not finished.
    pub fn active(&self, pipeline: &str) -> usize {
        self.live
            .lock()
            .expect("runs lock")
            .values()
            .filter(|sender| {
                let run = sender.borrow();
                run.pipeline == pipeline
                    && matches!(run.state(), JobState::Pending | JobState::Running)
            })
            .count()
    }

    /// Records the run and starts it in the background. `trigger` says what started it (empty:
    /// a caller); a `dataset_version` above 0 pins the version a source-less run trains on.
    pub async fn start(
        &self,
        pipeline: Pipeline,
        pipeline_yaml: &str,
        trigger: &str,
        dataset_version: u32,
    ) -> Result<PipelineRun, ApiError> {
        // What the run reads is checked now, so a missing file or dataset fails the call and
        // starts nothing.
        match &pipeline.dataset.source {
            Some(source) => {
                if !tokio::fs::try_exists(self.sources_dir.join(source))
                    .await
                    .unwrap_or(false)
                {
                    return Err(ApiError::not_found(format!(
                        "dataset.source {source:?} not found in the orchestrator's sources directory"
                    )));
                }
            }
            None => {
                let wanted = GetDatasetVersionRequest {
                    dataset: pipeline.dataset.name.clone(),
                    version: dataset_version,
                    alias: String::new(),
                };
                self.resolve_dataset("dataset.name", &wanted).await?;
            }
        }
        if let Some(dataset) = &pipeline.evaluate.dataset_ref {
            self.resolve_dataset("evaluate.dataset", dataset).await?;
        }
        let mut run = PipelineRun {
            id: new_id(),
            pipeline: pipeline.name.clone(),
            steps: pipeline
                .steps
                .iter()
                .map(|node| StepState {
                    name: node.name.clone(),
                    state: JobState::Pending as i32,
                    kind: node.kind.as_str().to_string(),
                    needs: node.needs.clone(),
                    ..Default::default()
                })
                .collect(),
            created_at_ms: now_ms(),
            pipeline_digest: mlops_core::storage::sha256_hex(pipeline_yaml.as_bytes()),
            trigger: trigger.to_string(),
            model_name: pipeline.register.model.clone(),
            ..Default::default()
        };
        if dataset_version > 0 {
            run.dataset = pipeline.dataset.name.clone();
            run.dataset_version = dataset_version;
        }
        run.set_state(JobState::Pending);
        // Live before it is stored: whoever lists it from the store can then watch it to its
        // end, never only its stored Pending state.
        let sender = self.make_live(&run);
        let (store, stored, yaml) = (self.store.clone(), run.clone(), pipeline_yaml.to_string());
        self.store_and_spawn(
            sender,
            pipeline,
            async move { store.create(&stored, &yaml).await },
            || metrics::counter!("mlops_pipeline_runs_started_total").increment(1),
        )
        .await?;
        Ok(run)
    }

    /// Runs `store` (the write of a run made live), then executes the run and reports it
    /// `started`, in a task of its own: a caller that goes away meanwhile (its deadline passed)
    /// must not leave a run live, or stored, that never executes. A run not stored is not live
    /// either.
    async fn store_and_spawn(
        &self,
        sender: watch::Sender<PipelineRun>,
        pipeline: Pipeline,
        store: impl Future<Output = Result<(), ApiError>> + Send + 'static,
        started: impl FnOnce() + Send + 'static,
    ) -> Result<(), ApiError> {
        let (runner, id) = (self.clone(), sender.borrow().id.clone());
        let task = {
            let id = id.clone();
            tokio::spawn(async move {
                if let Err(error) = store.await {
                    runner.live.lock().expect("runs lock").remove(&id);
                    return Err(error);
                }
                runner.spawn(sender, pipeline);
                started();
                Ok(())
            })
        };
        task.await.unwrap_or_else(|e| {
            self.live.lock().expect("runs lock").remove(&id);
            Err(ApiError::internal(format!("starting a run: {e}")))
        })
    }

    /// Makes the run watchable; `spawn` then executes it.
    fn make_live(&self, run: &PipelineRun) -> watch::Sender<PipelineRun> {
        let (sender, _) = watch::channel(run.clone());
        let mut live = self.live.lock().expect("runs lock");
        // Finished runs nobody watches are served from the store: forget them here.
        live.retain(|_, sender| {
            sender.receiver_count() > 0
                || !matches!(
                    sender.borrow().state(),
                    JobState::Succeeded | JobState::Failed
                )
        });
        live.insert(run.id.clone(), sender.clone());
        sender
    }

    /// Executes the run from its first step that has not succeeded.
    fn spawn(&self, sender: watch::Sender<PipelineRun>, pipeline: Pipeline) {
        let runner = self.clone();
        tokio::spawn(async move { runner.execute(sender, pipeline).await });
    }

    /// Continues the runs an earlier orchestrator process left pending or running (a restart,
    /// a crash, kill -9): finished steps are kept, an interrupted one runs again (a training
    /// job still running is followed, not submitted twice; registration is idempotent).
    pub async fn recover(&self) -> Result<usize, ApiError> {
        let runs = self.store.interrupted().await?;
        let count = runs.len();
        for mut run in runs {
            let pipeline = self
                .store
                .pipeline_yaml(&run.id)
                .await
                .and_then(|yaml| Pipeline::parse(&yaml));
            let pipeline = match pipeline {
                Ok(pipeline) => pipeline,
                Err(error) => {
                    run.set_state(JobState::Failed);
                    run.error = format!("cannot continue after a restart: {}", error.message);
                    run.finished_at_ms = now_ms();
                    self.store.save(&run).await?;
                    continue;
                }
            };
            run.resumes += 1;
            tracing::info!(run = %run.id, pipeline = %run.pipeline, "continuing a run interrupted by a restart");
            let sender = self.make_live(&run);
            self.spawn(sender, pipeline);
        }
        Ok(count)
    }

    /// Continues a failed run from its failed step, with its own pipeline file.
    pub async fn resume(&self, id: &str) -> Result<PipelineRun, ApiError> {
        let mut run = match self.subscribe(id) {
            Some(live) => live.borrow().clone(),
            None => self.store.get(id).await?,
        };
        if run.state() != JobState::Failed {
            return Err(ApiError::failed_precondition(format!(
                "run {id} is {}: only a failed run can be resumed",
                run.state().as_str_name()
            )));
        }
        let pipeline = Pipeline::parse(&self.store.pipeline_yaml(id).await?)?;
        run.set_state(JobState::Pending);
        run.error.clear();
        run.finished_at_ms = 0;
        run.resumes += 1;
        for step in &mut run.steps {
            if step.state() != JobState::Succeeded {
                step.set_state(JobState::Pending);
            }
        }
        // Claimed under the lock, so two concurrent resumes cannot both start the run.
        let sender = {
            let mut live = self.live.lock().expect("runs lock");
            if live.get(id).is_some_and(|sender| {
                !matches!(
                    sender.borrow().state(),
                    JobState::Succeeded | JobState::Failed
                )
            }) {
                return Err(ApiError::failed_precondition(format!(
                    "run {id} is already going again: only a failed run can be resumed"
                )));
            }
            let (sender, _) = watch::channel(run.clone());
            live.insert(run.id.clone(), sender.clone());
            sender
        };
        let (runner, stored, resumed) = (self.clone(), run.clone(), id.to_string());
        self.store_and_spawn(
            sender,
            pipeline,
            async move {
                let _saving = runner.saving.lock().await;
                runner.store.save(&stored).await
            },
            move || tracing::info!(run = %resumed, "run resumed"),
        )
        .await?;
        Ok(run)
    }

    async fn update(
        &self,
        sender: &watch::Sender<PipelineRun>,
        change: impl FnOnce(&mut PipelineRun),
    ) {
        // Applied in place at once, so steps running at the same time never lose each other's
        // changes; saved under the lock from the newest state, then announced to watchers.
        sender.send_if_modified(|run| {
            change(run);
            false
        });
        let _saving = self.saving.lock().await;
        let run = sender.borrow().clone();
        if let Err(error) = self.store.save(&run).await {
            tracing::error!(run = %run.id, %error, "cannot record the run's state");
        }
        sender.send_modify(|_| {});
    }

    /// Stops a run executing here: the running step is abandoned (a training job it started
    /// finishes on its own, and a resume follows it) and the run fails as cancelled.
    pub fn cancel(&self, id: &str) -> Result<(), ApiError> {
        match self.executing.lock().expect("runs lock").get(id) {
            Some((_, token)) => {
                token.cancel();
                tracing::info!(run = %id, "run cancelled");
                Ok(())
            }
            None => Err(ApiError::failed_precondition(format!(
                "run {id} is not running: only a pending or running run can be cancelled"
            ))),
        }
    }

    async fn execute(self, sender: watch::Sender<PipelineRun>, pipeline: Pipeline) {
        let id = sender.borrow().id.clone();
        let cancelled = CancellationToken::new();
        let execution = self
            .executions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.executing
            .lock()
            .expect("runs lock")
            .insert(id.clone(), (execution, cancelled.clone()));
        self.update(&sender, |run| {
            run.set_state(JobState::Running);
            // Runs recorded before steps carried their kind get it from the file (same names),
            // and their one train step the job and metrics they kept on the run.
            for (step, node) in run.steps.iter_mut().zip(&pipeline.steps) {
                if step.kind.is_empty() {
                    step.kind = node.kind.as_str().to_string();
                    step.needs = node.needs.clone();
                    if node.kind == StepKind::Train {
                        step.training_job_id = run.training_job_id.clone();
                        step.metrics = run.metrics.clone();
                    }
                }
            }
        })
        .await;
        // Every step whose needs have succeeded starts; after a failure no new step starts and
        // the running ones end on their own.
        let mut started = vec![false; pipeline.steps.len()];
        let mut running = futures::stream::FuturesUnordered::new();
        let mut failed = false;
        loop {
            if !failed && !cancelled.is_cancelled() {
                let ready: Vec<usize> = {
                    let run = sender.borrow();
                    let succeeded = |name: &String| {
                        run.steps
                            .iter()
                            .any(|s| &s.name == name && s.state() == JobState::Succeeded)
                    };
                    pipeline
                        .steps
                        .iter()
                        .enumerate()
                        .filter(|(i, node)| {
                            // One that succeeded before a resume or a restart is reused as is.
                            !started[*i]
                                && run.steps[*i].state() != JobState::Succeeded
                                && node.needs.iter().all(succeeded)
                        })
                        .map(|(i, _)| i)
                        .collect()
                };
                for index in ready {
                    started[index] = true;
                    let (runner, sender, pipeline) = (&self, &sender, &pipeline);
                    let cancelled = cancelled.clone();
                    running.push(async move {
                        let outcome = tokio::select! {
                            biased;
                            () = cancelled.cancelled() => Err(ApiError::failed_precondition("cancelled")),
                            outcome = runner.run_with_retries(sender, pipeline, index) => outcome,
                        };
                        // Recorded here, not by the loop: a step may hold the save lock while
                        // the loop waits, and only polling the steps lets it go.
                        let failed = outcome.is_err();
                        runner
                            .record(sender, &pipeline.steps[index].name, index, outcome, &cancelled)
                            .await;
                        failed
                    });
                }
            }
            let Some(step_failed) = running.next().await else {
                break;
            };
            failed |= step_failed;
        }
        // No step runs any more. The end is saved before it is shown and the token goes
        // first, so a resume that sees the run failed finds it stored so and not executing.
        let mut run = sender.borrow().clone();
        run.finished_at_ms = now_ms();
        let was_cancelled = cancelled.is_cancelled();
        // A cancel that came between steps stopped the run all the same.
        let unfinished = run
            .steps
            .iter()
            .find(|s| s.state() != JobState::Succeeded)
            .map(|s| s.name.clone());
        if let (true, Some(step), true) = (was_cancelled, &unfinished, run.error.is_empty()) {
            run.error = format!("cancelled before step {step}");
        }
        let failed = run.steps.iter().any(|s| s.state() == JobState::Failed)
            || (was_cancelled && unfinished.is_some());
        for step in &mut run.steps {
            if step.state() == JobState::Pending {
                step.set_state(JobState::Skipped);
            }
        }
        run.set_state(if failed {
            JobState::Failed
        } else {
            JobState::Succeeded
        });
        let label = if failed { "failed" } else { "succeeded" };
        metrics::counter!("mlops_pipeline_runs_total", "state" => label).increment(1);
        tracing::info!(run = %run.id, pipeline = %run.pipeline, state = label, "pipeline run finished");
        {
            let _saving = self.saving.lock().await;
            if let Err(error) = self.store.save(&run).await {
                tracing::error!(run = %run.id, %error, "cannot record the run's end");
            }
        }
        {
            let mut executing = self.executing.lock().expect("runs lock");
            if executing.get(&id).is_some_and(|(e, _)| *e == execution) {
                executing.remove(&id);
            }
        }
        sender.send_replace(run);
    }

    /// Records how a step ended; the first failure is the run's.
    async fn record(
        &self,
        sender: &watch::Sender<PipelineRun>,
        name: &str,
        index: usize,
        outcome: Result<String, ApiError>,
        cancelled: &CancellationToken,
    ) {
        self.update(sender, |run| {
            let step = &mut run.steps[index];
            step.finished_at_ms = now_ms();
            let error = match outcome {
                Ok(message) => {
                    step.set_state(JobState::Succeeded);
                    log(step, format!("succeeded: {message}"));
                    step.message = message;
                    step.progress = 1.0;
                    return;
                }
                Err(error) => error,
            };
            step.set_state(JobState::Failed);
            step.message = error.message.clone();
            let cause = if cancelled.is_cancelled() {
                "cancelled"
            } else {
                "failed"
            };
            log(step, format!("{cause}: {}", error.message));
            if run.error.is_empty() {
                run.error = if cancelled.is_cancelled() {
                    format!("cancelled during step {name}")
                } else {
                    format!("step {name} failed: {}", error.message)
                };
            }
        })
        .await;
    }

    /// Runs a step, retrying failures that may pass (a service unavailable, a lost race) with
    /// exponential backoff and jitter, as the pipeline's retry section says.
    async fn run_with_retries(
        &self,
        sender: &watch::Sender<PipelineRun>,
        pipeline: &Pipeline,
        index: usize,
    ) -> Result<String, ApiError> {
        let retry = &pipeline.retry;
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(retry.initial_backoff_ms))
            .with_max_delay(Duration::from_millis(retry.max_backoff_ms))
            .with_max_times(retry.attempts.saturating_sub(1) as usize)
            .with_jitter()
            .build();
        let mut attempt = 1u32;
        loop {
            self.update(sender, |run| {
                let step = &mut run.steps[index];
                step.set_state(JobState::Running);
                step.started_at_ms = now_ms();
                step.attempts += 1;
                let line = format!("attempt {} started", step.attempts);
                log(step, line);
            })
            .await;
            let error = match self.run_step(sender, pipeline, index).await {
                Ok(message) => return Ok(message),
                Err(error) if matches!(error.kind, ErrorKind::Unavailable | ErrorKind::Aborted) => {
                    error
                }
                Err(error) => return Err(error),
            };
            let Some(delay) = delays.next() else {
                return Err(ApiError::new(
                    error.kind,
                    format!("{} (gave up after {attempt} attempts)", error.message),
                ));
            };
            let note = format!(
                "attempt {attempt} failed: {}; retrying in {} ms",
                error.message,
                delay.as_millis()
            );
            tracing::warn!(run = %sender.borrow().id, step = %pipeline.steps[index].name, "{note}");
            self.update(sender, |run| {
                let step = &mut run.steps[index];
                step.message = note.clone();
                log(step, note);
            })
            .await;
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn run_step(
        &self,
        sender: &watch::Sender<PipelineRun>,
        pipeline: &Pipeline,
        index: usize,
    ) -> Result<String, ApiError> {
        match pipeline.steps[index].kind {
            StepKind::Ingest => self.ingest(sender, pipeline).await,
            StepKind::Validate => self.validate(sender, pipeline).await,
            StepKind::Train => self.train(sender, pipeline, index).await,
            StepKind::Evaluate => self.evaluate(sender, pipeline).await,
            StepKind::Register => self.register(sender, pipeline).await,
            StepKind::Canary => self.canary(sender, pipeline, index).await,
            StepKind::Promote => self.promote(sender, pipeline).await,
            StepKind::SmokeTest => self.smoke_test(sender, pipeline).await,
        }
    }

    async fn ingest(
        &self,
        sender: &watch::Sender<PipelineRun>,
        pipeline: &Pipeline,
    ) -> Result<String, ApiError> {
        let spec = &pipeline.dataset;
        let mut ingestion = self.clients.ingestion.clone();
        let (version, note) = match &spec.source {
            Some(source) => {
                // Read whole before streaming: a read error must not become a truncated upload.
                let content = tokio::fs::read(self.sources_dir.join(source))
                    .await
                    .map_err(|e| {
                        ApiError::not_found(format!(
                            "dataset.source {source:?} cannot be read: {e}"
                        ))
                    })?;
                let header = UploadDatasetRequest {
                    part: Some(Part::Header(spec.upload_header()?)),
                };
                let chunks: Vec<UploadDatasetRequest> = content
                    .chunks(UPLOAD_CHUNK_BYTES)
                    .map(|chunk| UploadDatasetRequest {
                        part: Some(Part::Chunk(chunk.to_vec())),
                    })
                    .collect();
                let response = ingestion
                    .upload_dataset(futures::stream::iter(std::iter::once(header).chain(chunks)))
                    .await
                    .map_err(peer("ingestion"))?
                    .into_inner();
                let note = if response.created {
                    "new version"
                } else {
                    "unchanged, reused"
                };
                (response.version.unwrap_or_default(), note)
            }
            None => {
                // The version the run was started for, else the newest.
                let request = GetDatasetVersionRequest {
                    dataset: spec.name.clone(),
                    version: sender.borrow().dataset_version,
                    ..Default::default()
                };
                (
                    ingestion
                        .get_dataset_version(request)
                        .await
                        .map_err(peer("ingestion"))?
                        .into_inner(),
                    "existing",
                )
            }
        };
        let report = version.report.clone().unwrap_or_default();
        let verdict = match &version.report {
            Some(r) if r.passed => ", validation passed",
            Some(_) => ", validation FAILED",
            None => "",
        };
        let message = format!(
            "{}: {} rows, {} columns ({note}{verdict})",
            version.id, version.row_count, version.column_count
        );
        self.update(sender, |run| {
            run.dataset = version.dataset.clone();
            run.dataset_version = version.version;
        })
        .await;
        // A validate step judges the report when there is one.
        if pipeline.validate.is_none()
            && spec.require_valid
            && version.report.is_some()
            && !report.passed
        {
            return Err(ApiError::failed_precondition(format!(
                "dataset {} failed validation: {}",
                version.id,
                report.failures.join("; ")
            )));
        }
        Ok(message)
    }

    async fn validate(
        &self,
        sender: &watch::Sender<PipelineRun>,
        pipeline: &Pipeline,
    ) -> Result<String, ApiError> {
        let spec = pipeline
            .validate
            .as_ref()
            .ok_or_else(|| ApiError::internal("a validate step without a validate section"))?;
        let (dataset, version) = {
            let run = sender.borrow();
            (run.dataset.clone(), run.dataset_version)
        };
        let record = self
            .clients
            .ingestion
            .clone()
            .get_dataset_version(GetDatasetVersionRequest {
                dataset: dataset.clone(),
                version,
                alias: String::new(),
            })
            .await
            .map_err(peer("ingestion"))?
            .into_inner();
        let report = record.report.unwrap_or_default();
        let rows = record.row_count;
        let share = |count: u64| {
            if rows == 0 {
                0.0
            } else {
                count as f64 / rows as f64
            }
        };
        let mut failures = Vec::new();
        if spec.require_passed && !report.passed {
            failures.push(format!("the report failed: {}", report.failures.join("; ")));
        }
        if rows < spec.min_rows {
            failures.push(format!(
                "{rows} rows, fewer than min_rows {}",
                spec.min_rows
            ));
        }
        let duplicates = share(report.duplicate_rows);
        if duplicates > spec.max_duplicate_share {
            failures.push(format!(
                "{:.1}% duplicate rows, over max_duplicate_share {}",
                duplicates * 100.0,
                spec.max_duplicate_share
            ));
        }
        for column in &report.columns {
            if column.null_share > spec.max_missing_share {
                failures.push(format!(
                    "column {:?} is {:.1}% missing, over max_missing_share {}",
                    column.name,
                    column.null_share * 100.0,
                    spec.max_missing_share
                ));
            }
        }
        let summary = format!(
            "{dataset}@{version}: {rows} rows, {} duplicate, {} type errors, report {}",
            report.duplicate_rows,
            report.type_error_count,
            if report.passed { "passed" } else { "failed" }
        );
        if failures.is_empty() {
            Ok(format!("valid: {summary}"))
        } else {
            Err(ApiError::failed_precondition(format!(
                "invalid data: {} ({summary})",
                failures.join("; ")
            )))
        }
    }

    async fn train(
        &self,
        sender: &watch::Sender<PipelineRun>,
        pipeline: &Pipeline,
        step: usize,
    ) -> Result<String, ApiError> {
        let name = &pipeline.steps[step].name;
        let candidate = pipeline
            .candidate(name)
            .ok_or_else(|| ApiError::internal(format!("train step {name} has no train section")))?;
        let spec = &candidate.spec;
        let (dataset, dataset_version, earlier) = {
            let run = sender.borrow();
            (
                run.dataset.clone(),
                run.dataset_version,
                run.steps[step].training_job_id.clone(),
            )
        };
        // The step's job; with one candidate there is nothing to choose, so the run's too.
        let single = pipeline.candidates.len() == 1;
        let attach = |run: &mut PipelineRun, job: &str| {
            run.steps[step].training_job_id = job.to_string();
            if single {
                run.training_job_id = job.to_string();
            }
        };
        let mut training = self.clients.training.clone();
        // The cache key: every setting of the train section, and the dataset version (versions
        // are immutable and content-addressed).
        let mut parts = candidate.digests.clone();
        parts.insert("dataset".into(), format!("{dataset}@{dataset_version}"));
        let key = mlops_core::storage::sha256_hex(
            serde_json::to_string(&parts)
                .expect("strings serialize")
                .as_bytes(),
        );
        let mut cache_note = String::new();
        if pipeline.cache && earlier.is_empty() {
            if let Some(hit) = self.cached_job(pipeline, name, &key).await? {
                let (job, source_run) = hit;
                let metrics = job.metrics.clone();
                self.update(sender, |run| {
                    attach(run, &job.id);
                    run.steps[step].metrics = metrics;
                })
                .await;
                return Ok(format!(
                    "cache hit: reused job {} of run {source_run} (same train section and \
                     dataset {dataset}@{dataset_version})",
                    job.id
                ));
            }
            cache_note = match self.store.latest_cache_parts(&pipeline.name, name).await? {
                Some(previous) => {
                    let changed: Vec<&str> = parts
                        .keys()
                        .chain(previous.keys())
                        .filter(|k| parts.get(*k) != previous.get(*k))
                        .map(String::as_str)
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    format!("cache miss ({} changed); ", changed.join(", "))
                }
                None => "cache miss (first run); ".into(),
            };
        }
        // A job from an earlier attempt, or from before a restart, is followed rather than
        // submitted again, unless it failed (a training service restart fails its jobs).
        let earlier = if earlier.is_empty() {
            None
        } else {
            self.training_job(earlier)
                .await?
                .filter(|job| job.state() != JobState::Failed)
        };
        let job = match earlier {
            Some(job) => job,
            None => {
                let job = training
                    .submit_training_job(SubmitTrainingJobRequest {
                        dataset,
                        dataset_version,
                        target_column: spec.target.clone(),
                        model_type: spec.model.clone(),
                        register_as: String::new(),
                        test_fraction: spec.test_fraction,
                        seed: spec.seed,
                        fit: Some(spec.fit_spec()),
                    })
                    .await
                    .map_err(peer("training"))?
                    .into_inner();
                self.update(sender, |run| attach(run, &job.id)).await;
                job
            }
        };
        let mut updates = training
            .watch_training_job(WatchTrainingJobRequest { id: job.id.clone() })
            .await
            .map_err(peer("training"))?
            .into_inner();
        let mut last = job;
        while let Some(update) = updates.next().await {
            // A broken stream says nothing about the job: the next attempt looks it up again.
            last = update.map_err(|status| {
                ApiError::unavailable(format!(
                    "lost the training job {}'s progress: {}",
                    last.id,
                    status.message()
                ))
            })?;
            let progress = format!(
                "job {}: {} ({:.0}%)",
                last.id,
                last.stage,
                last.progress * 100.0
            );
            let fraction = last.progress;
            self.update(sender, |run| {
                run.steps[step].message = progress;
                run.steps[step].progress = fraction;
            })
            .await;
        }
        match last.state() {
            JobState::Succeeded => {
                let metrics = last.metrics.clone();
                self.update(sender, |run| run.steps[step].metrics = metrics)
                    .await;
                let run_id = sender.borrow().id.clone();
                self.store
                    .put_cache(&pipeline.name, name, &key, &parts, &run_id)
                    .await?;
                Ok(format!(
                    "{cache_note}job {}: {} train rows, {} test rows",
                    last.id, last.train_rows, last.test_rows
                ))
            }
            JobState::Failed => Err(ApiError::failed_precondition(format!(
                "job {} failed: {}",
                last.id, last.error
            ))),
            other => Err(ApiError::unavailable(format!(
                "job {} stream ended while {}",
                last.id,
                other.as_str_name()
            ))),
        }
    }

    /// The succeeded training job an earlier run of this pipeline left for the key, if it is
    /// still there.
    async fn cached_job(
        &self,
        pipeline: &Pipeline,
        step: &str,
        key: &str,
    ) -> Result<Option<(TrainingJob, String)>, ApiError> {
        let Some(source_run) = self.store.cached(&pipeline.name, step, key).await? else {
            return Ok(None);
        };
        let job_id = match self.store.get(&source_run).await {
            // Runs recorded before steps kept their job kept it on the run.
            Ok(run) => run
                .steps
                .iter()
                .find(|s| s.name == step && !s.training_job_id.is_empty())
                .map_or(run.training_job_id, |s| s.training_job_id.clone()),
            Err(error) if error.kind == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        Ok(self
            .training_job(job_id)
            .await?
            .filter(|job| job.state() == JobState::Succeeded)
            .map(|job| (job, source_run)))
    }

    /// A training job by id; None when the training service no longer knows it.
    async fn training_job(&self, id: String) -> Result<Option<TrainingJob>, ApiError> {
        match self
            .clients
            .training
            .clone()
            .get_training_job(GetTrainingJobRequest { id })
            .await
        {
            Ok(job) => Ok(Some(job.into_inner())),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(peer("training")(status)),
        }
    }

    /// The version an alias of a model points at; None when the model or alias does not exist.
    pub(crate) async fn alias_holder(
        &self,
        model: &str,
        alias: &str,
    ) -> Result<Option<ModelVersion>, ApiError> {
        alias_holder(&mut self.clients.registry.clone(), model, alias).await
    }

    async fn evaluate(
        &self,
        sender: &watch::Sender<PipelineRun>,
        pipeline: &Pipeline,
    ) -> Result<String, ApiError> {
        let spec = &pipeline.evaluate;
        // Resolved once: every candidate and the champion are scored on the same version,
        // even if its alias moves meanwhile.
        let dataset = match &spec.dataset_ref {
            Some(dataset) => Some(self.resolve_dataset("evaluate.dataset", dataset).await?),
            None => None,
        };
        let (selection, metrics) = self
            .select_candidate(sender, pipeline, dataset.as_ref())
            .await?;
        let value = *metrics.get(&spec.metric).ok_or_else(|| {
            ApiError::failed_precondition(format!("the job reported no {} metric", spec.metric))
        })?;
        let mut failures = Vec::new();
        if let Some(min) = spec.min.filter(|min| value < *min) {
            failures.push(format!(
                "{} = {value:.4} is below the minimum {min}",
                spec.metric
            ));
        }
        if let Some(max) = spec.max.filter(|max| value > *max) {
            failures.push(format!(
                "{} = {value:.4} is above the maximum {max}",
                spec.metric
            ));
        }
        // Relative checks compare with the version behind the promote alias, on the same
        // evaluation data; the run keeps which version that was and its metrics.
        let alias = pipeline.champion_alias();
        let champion = match self.alias_holder(&pipeline.register.model, alias).await? {
            Some(mut champion) => {
                if let Some(dataset) = &dataset {
                    champion.metrics = self
                        .score(&champion.artifact_digest, dataset)
                        .await
                        .map_err(|e| {
                            ApiError::new(
                                e.kind,
                                format!(
                                    "scoring champion {}:{}: {}",
                                    champion.model_name, champion.version, e.message
                                ),
                            )
                        })?
                        .metrics;
                }
                Some(champion)
            }
            None => None,
        };
        let (champion_version, champion_metrics) = champion
            .as_ref()
            .map_or((0, HashMap::new()), |c| (c.version, c.metrics.clone()));
        self.update(sender, |run| {
            run.champion_version = champion_version;
            run.champion_metrics = champion_metrics;
        })
        .await;
        let mut passed = vec![format!("{} = {value:.4}", spec.metric)];
        for check in &spec.checks {
            let Some(ours) = metrics.get(&check.metric).copied() else {
                failures.push(format!(
                    "{}: the job reported no {}",
                    check.text, check.metric
                ));
                continue;
            };
            let bound = match (&check.bound, &champion) {
                (Bound::Value(bound), _) => *bound,
                (Bound::Champion { .. }, None) => {
                    passed.push(format!("{}: no champion yet", check.text));
                    continue;
                }
                (
                    Bound::Champion {
                        metric,
                        factor,
                        offset,
                    },
                    Some(champion),
                ) => match champion.metrics.get(metric) {
                    Some(theirs) => theirs * factor + offset,
                    None => {
                        failures.push(format!(
                            "{}: champion {}:{} has no {metric}",
                            check.text, champion.model_name, champion.version
                        ));
                        continue;
                    }
                },
            };
            let shown = format!("{} ({ours:.4} vs {bound:.4})", check.text);
            if check.op.holds(ours, bound) {
                passed.push(shown);
            } else {
                failures.push(format!("{shown} fails"));
            }
        }
        if !failures.is_empty() {
            return Err(ApiError::failed_precondition(format!(
                "{selection}gate failed: {}",
                failures.join("; ")
            )));
        }
        Ok(format!("{selection}gate passed: {}", passed.join("; ")))
    }

    /// Picks the train candidate with the best evaluation metric and makes its job and metrics
    /// the run's; says which, against the others, when there were several.
    async fn select_candidate(
        &self,
        sender: &watch::Sender<PipelineRun>,
        pipeline: &Pipeline,
        dataset: Option<&GetDatasetVersionRequest>,
    ) -> Result<(String, HashMap<String, f64>), ApiError> {
        let metric = &pipeline.evaluate.metric;
        let mut candidates: Vec<(String, String, HashMap<String, f64>)> = {
            let run = sender.borrow();
            run.steps
                .iter()
                .filter(|s| s.kind == StepKind::Train.as_str())
                .map(|s| (s.name.clone(), s.training_job_id.clone(), s.metrics.clone()))
                .collect()
        };
        // On the evaluation dataset, every candidate is scored on the same rows.
        let mut evaluated_on = "holdout".to_string();
        if let Some(dataset) = dataset {
            for (name, job, metrics) in &mut candidates {
                let digest = self
                    .training_job(job.clone())
                    .await?
                    .ok_or_else(|| {
                        ApiError::failed_precondition(format!(
                            "the training job {job} of step {name} is gone"
                        ))
                    })?
                    .artifact_digest;
                let scored = self.score(&digest, dataset).await?;
                evaluated_on = format!(
                    "{}@{} ({} rows)",
                    scored.dataset, scored.dataset_version, scored.rows
                );
                *metrics = scored.metrics;
            }
        }
        let score = |metrics: &HashMap<String, f64>| {
            // Higher is better after this; no metric (or NaN) loses to every number.
            match metrics.get(metric).copied().filter(|v| !v.is_nan()) {
                None => f64::NEG_INFINITY,
                Some(value) if pipeline.evaluate.higher_is_better() => value,
                Some(value) => -value,
            }
        };
        let best = candidates
            .iter()
            .filter(|(_, job, _)| !job.is_empty())
            .max_by(|a, b| {
                score(&a.2)
                    .total_cmp(&score(&b.2))
                    .then(std::cmp::Ordering::Greater)
            })
            .ok_or_else(|| ApiError::failed_precondition("no train step produced a model"))?
            .clone();
        let selection = if candidates.len() > 1 {
            let others: Vec<String> = candidates
                .iter()
                .filter(|c| c.0 != best.0)
                .map(|(name, _, m)| {
                    format!("{name} {:.4}", m.get(metric).copied().unwrap_or(f64::NAN))
                })
                .collect();
            format!(
                "selected {} ({metric} {:.4}; {}); ",
                best.0,
                best.2.get(metric).copied().unwrap_or(f64::NAN),
                others.join(", ")
            )
        } else {
            String::new()
        };
        let selection = if evaluated_on == "holdout" {
            selection
        } else {
            format!("on {evaluated_on}: {selection}")
        };
        let (job, metrics) = (best.1, best.2.clone());
        self.update(sender, |run| {
            run.training_job_id = job;
            run.metrics = best.2;
            run.evaluated_on = evaluated_on;
        })
        .await;
        Ok((selection, metrics))
    }

    async fn register(
        &self,
        sender: &watch::Sender<PipelineRun>,
        pipeline: &Pipeline,
    ) -> Result<String, ApiError> {
        let (job_id, run_id) = {
            let run = sender.borrow();
            (run.training_job_id.clone(), run.id.clone())
        };
        let job = self
            .clients
            .training
            .clone()
            .get_training_job(GetTrainingJobRequest { id: job_id })
            .await
            .map_err(peer("training"))?
            .into_inner();
        // The version this one is trained to replace: the current holder of the promote alias.
        let parent_version = match &pipeline.promote {
            Some(promote) => self
                .alias_holder(&pipeline.register.model, &promote.alias)
                .await
                .ok()
                .flatten()
                .map_or(0, |v| v.version),
            None => 0,
        };
        let version = self
            .clients
            .registry
            .clone()
            .create_model_version(CreateModelVersionRequest {
                model_name: pipeline.register.model.clone(),
                model_type: job.model_type.clone(),
                artifact_digest: job.artifact_digest.clone(),
                metrics: job.metrics.clone(),
                params: job.params.clone(),
                lineage: Some(Lineage {
                    dataset: job.dataset.clone(),
                    dataset_version: job.dataset_version,
                    dataset_digest: job.dataset_digest.clone(),
                    training_job_id: job.id.clone(),
                    pipeline_run_id: run_id,
                    parent_version,
                    ..Default::default()
                }),
                feature_names: job.feature_names.clone(),
                target: job.target_column.clone(),
                // One job, one version: a retried, resumed or recovered step, or a later run
                // that reuses the job from the cache, gets the version it already made.
                idempotency_key: format!("training-job/{}", job.id),
            })
            .await
            .map_err(peer("registry"))?
            .into_inner();
        let message = format!("registered {}:{}", version.model_name, version.version);
        self.update(sender, |run| {
            run.model_name = version.model_name;
            run.model_version = version.version;
        })
        .await;
        Ok(message)
    }

    async fn promote(
        &self,
        sender: &watch::Sender<PipelineRun>,
        pipeline: &Pipeline,
    ) -> Result<String, ApiError> {
        let (model, version, metrics) = {
            let run = sender.borrow();
            (
                run.model_name.clone(),
                run.model_version,
                run.metrics.clone(),
            )
        };
        let Some(promote) = &pipeline.promote else {
            return Ok("no promote section: no alias moved".into());
        };
        let alias = &promote.alias;
        let metric = &pipeline.evaluate.metric;
        let ours = metrics.get(metric).copied().unwrap_or(f64::NAN);
        // The decision holds only if nobody moved the alias meanwhile: compare-and-swap on it.
        let (reason, expected) = match self.alias_holder(&model, alias).await? {
            Some(champion) if champion.version == version => {
                // Moved by an earlier attempt whose answer was lost.
                self.update(sender, |run| run.promoted = true).await;
                return Ok(format!("{model}:{version} is already {alias}"));
            }
            Some(champion) => {
                // On the gate's evaluation data when the gate saw this champion.
                let recorded = {
                    let run = sender.borrow();
                    (run.champion_version == champion.version)
                        .then(|| run.champion_metrics.get(metric).copied())
                        .flatten()
                };
                let theirs = recorded
                    .or_else(|| champion.metrics.get(metric).copied())
                    .unwrap_or(f64::NAN);
                let better = if pipeline.evaluate.higher_is_better() {
                    ours > theirs
                } else {
                    ours < theirs
                };
                if !(better || theirs.is_nan()) {
                    return Ok(format!(
                        "kept {model}:{} as {alias}: its {metric} {theirs:.4} is not beaten by {ours:.4}",
                        champion.version
                    ));
                }
                let reason = format!(
                    "{metric} {ours:.4} beats {theirs:.4} of version {}",
                    champion.version
                );
                (reason, champion.version)
            }
            None => (format!("there was no {alias}"), 0),
        };
        self.clients
            .registry
            .clone()
            .set_model_alias(SetModelAliasRequest {
                model_name: model.clone(),
                alias: alias.clone(),
                version,
                expected_version: Some(expected),
            })
            .await
            .map_err(peer("registry"))?;
        self.update(sender, |run| run.promoted = true).await;
        Ok(format!("{model}:{version} is now {alias}: {reason}"))
    }

    /// Sends a share of the model's unversioned traffic to the new version (the canary alias
    /// and its share tag, which inference follows), waits for the duration and enough requests,
    /// takes the canary down whatever happened, and compares the new version's live error rate
    /// and latency with the champion's over the same time.
    async fn canary(
        &self,
        sender: &watch::Sender<PipelineRun>,
        pipeline: &Pipeline,
        step: usize,
    ) -> Result<String, ApiError> {
        use mlops_core::serving::{CANARY_ALIAS, CANARY_SHARE_TAG};
        let spec = pipeline
            .canary
            .as_ref()
            .ok_or_else(|| ApiError::internal("a canary step without a canary section"))?;
        let (model, version, run_id) = {
            let run = sender.borrow();
            (run.model_name.clone(), run.model_version, run.id.clone())
        };
        let alias = pipeline.champion_alias();
        // One run's canary per model at a time, whichever version it is.
        {
            let mut owners = self.canary_owners.lock().expect("canaries lock");
            match owners.get(&model) {
                Some(owner) if *owner != run_id => {
                    return Err(ApiError::failed_precondition(format!(
                        "run {owner} is running a canary of {model}: one canary per model at \
                         a time"
                    )));
                }
                _ => {
                    owners.insert(model.clone(), run_id.clone());
                }
            }
        }
        let _owned = CanaryOwnership {
            owners: self.canary_owners.clone(),
            model: model.clone(),
            run: run_id,
        };
        let champion = match self.alias_holder(&model, alias).await? {
            None => {
                return Ok(format!(
                    "no {alias} yet: nothing to compare {model}:{version} with, canary skipped"
                ));
            }
            Some(champion) if champion.version == version => {
                return Ok(format!(
                    "{model}:{version} is already {alias}: canary skipped"
                ));
            }
            Some(champion) => champion.version,
        };
        let before = (
            self.served(&model, champion).await?,
            self.served(&model, version).await?,
        );
        let mut registry = self.clients.registry.clone();
        // The share first: inference reads it when the alias appears.
        registry
            .set_model_version_tag(SetModelVersionTagRequest {
                model_name: model.clone(),
                version,
                key: CANARY_SHARE_TAG.into(),
                value: spec.share.to_string(),
            })
            .await
            .map_err(peer("registry"))?;
        // Armed before the alias is set: a cancelled run drops this step mid-way, and the
        // canary still comes down.
        let mut take_down = CanaryTakeDown {
            registry: registry.clone(),
            model: model.clone(),
            version,
            armed: true,
        };
        let busy = |holder: u32| {
            ApiError::failed_precondition(format!(
                "another canary of {model} is live ({model}:{holder}, not set by a running \
                 pipeline): one canary per model at a time; if it is stale, delete the alias \
                 {model}@{CANARY_ALIAS}"
            ))
        };
        match self.alias_holder(&model, CANARY_ALIAS).await? {
            // Set by an earlier attempt of this run's step (a retry, a restart): no other
            // running pipeline owns the model's canary, as claimed above.
            Some(holder) if holder.version == version => {}
            Some(holder) => {
                take_down.armed = false;
                return Err(busy(holder.version));
            }
            None => {
                let set = registry
                    .set_model_alias(SetModelAliasRequest {
                        model_name: model.clone(),
                        alias: CANARY_ALIAS.into(),
                        version,
                        // Only if nobody else holds it: another run's canary stays its own.
                        expected_version: Some(0),
                    })
                    .await;
                match set {
                    Ok(_) => {}
                    Err(status) if status.code() == tonic::Code::Aborted => {
                        take_down.armed = false;
                        let holder = self.alias_holder(&model, CANARY_ALIAS).await?;
                        return Err(busy(holder.map_or(0, |h| h.version)));
                    }
                    Err(status) => return Err(peer("registry")(status)),
                }
            }
        }
        let started = tokio::time::Instant::now();
        let watched = async {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let answered = self
                    .served(&model, version)
                    .await?
                    .since(&before.1)
                    .requests();
                let elapsed = started.elapsed();
                self.update(sender, |run| {
                    let step = &mut run.steps[step];
                    step.message = format!(
                        "{:.0}% of the traffic to {model}:{version}: {answered} requests in {}s",
                        spec.share * 100.0,
                        elapsed.as_secs()
                    );
                    step.progress = (elapsed.as_secs_f64() / f64::from(spec.duration_seconds))
                        .min(answered as f64 / spec.min_requests as f64)
                        .min(1.0);
                })
                .await;
                if elapsed >= Duration::from_secs(spec.duration_seconds.into())
                    && answered >= spec.min_requests
                {
                    return Ok(());
                }
                if elapsed >= Duration::from_secs(spec.timeout_seconds.into()) {
                    return Err(ApiError::failed_precondition(format!(
                        "canary: {model}:{version} answered {answered} of the {} requests it \
                         needs in {}s (is there traffic for {model}?)",
                        spec.min_requests, spec.timeout_seconds
                    )));
                }
            }
        };
        let watched: Result<(), ApiError> = watched.await;
        // Taken down whatever happened, so traffic goes back to the champion alone.
        let removed = take_down_canary(&mut registry, &model, version).await;
        take_down.armed = removed.is_err();
        watched?;
        removed?;
        let ours = self.served(&model, version).await?.since(&before.1);
        let theirs = self.served(&model, champion).await?.since(&before.0);
        let seconds = started.elapsed().as_secs();
        let summary = format!(
            "{:.0}% of the traffic for {seconds}s: {model}:{version} {}; {model}:{champion} ({alias}) {}",
            spec.share * 100.0,
            ours.describe(),
            theirs.describe()
        );
        let mut failures = Vec::new();
        if ours.error_rate() > theirs.error_rate() + spec.max_error_rate_increase {
            failures.push(format!(
                "error rate {:.2}% is over the champion's {:.2}% + {:.2} points",
                ours.error_rate() * 100.0,
                theirs.error_rate() * 100.0,
                spec.max_error_rate_increase * 100.0
            ));
        }
        match (ours.mean_ms(), theirs.mean_ms()) {
            (Some(mine), Some(champions)) if mine > champions * spec.max_latency_ratio => {
                failures.push(format!(
                    "mean latency {mine:.3} ms is over {} x the champion's {champions:.3} ms",
                    spec.max_latency_ratio
                ));
            }
            _ => {}
        }
        if failures.is_empty() {
            Ok(format!("canary passed: {summary}"))
        } else {
            Err(ApiError::failed_precondition(format!(
                "canary failed: {} ({summary})",
                failures.join("; ")
            )))
        }
    }

    /// The dataset version a reference means now (an alias or "latest" resolved to its
    /// number); NOT_FOUND naming `field` when there is none.
    async fn resolve_dataset(
        &self,
        field: &str,
        dataset: &GetDatasetVersionRequest,
    ) -> Result<GetDatasetVersionRequest, ApiError> {
        match self
            .clients
            .ingestion
            .clone()
            .get_dataset_version(dataset.clone())
            .await
        {
            Ok(found) => Ok(GetDatasetVersionRequest {
                dataset: dataset.dataset.clone(),
                version: found.into_inner().version,
                alias: String::new(),
            }),
            Err(status) if status.code() == tonic::Code::NotFound => Err(ApiError::not_found(
                format!("{field}: {}", status.message()),
            )),
            Err(status) => Err(peer("ingestion")(status)),
        }
    }

    /// Every metric of a trained model on a dataset version, computed by the training service.
    async fn score(
        &self,
        artifact_digest: &str,
        dataset: &GetDatasetVersionRequest,
    ) -> Result<EvaluateModelResponse, ApiError> {
        Ok(self
            .clients
            .training
            .clone()
            .evaluate_model(EvaluateModelRequest {
                artifact_digest: artifact_digest.to_string(),
                dataset: dataset.dataset.clone(),
                dataset_version: dataset.version,
                dataset_alias: dataset.alias.clone(),
            })
            .await
            .map_err(peer("training"))?
            .into_inner())
    }

    /// What inference has answered with a version so far (zero while it is not loaded).
    async fn served(&self, model: &str, version: u32) -> Result<Served, ApiError> {
        match self
            .clients
            .inference
            .clone()
            .model_statistics(mlops_proto::inference::ModelStatisticsRequest {
                name: model.to_string(),
                version: version.to_string(),
            })
            .await
        {
            Ok(response) => {
                let stats = response
                    .into_inner()
                    .model_stats
                    .into_iter()
                    .next()
                    .and_then(|m| m.inference_stats)
                    .unwrap_or_default();
                let success = stats.success.unwrap_or_default();
                let fail = stats.fail.unwrap_or_default();
                Ok(Served {
                    succeeded: success.count,
                    succeeded_ns: success.ns,
                    failed: fail.count,
                })
            }
            Err(status) if status.code() == tonic::Code::NotFound => Ok(Served::default()),
            Err(status) => Err(peer("inference")(status)),
        }
    }

    async fn smoke_test(
        &self,
        sender: &watch::Sender<PipelineRun>,
        pipeline: &Pipeline,
    ) -> Result<String, ApiError> {
        let (model, version, run_id) = {
            let run = sender.borrow();
            (run.model_name.clone(), run.model_version, run.id.clone())
        };
        let features = self
            .clients
            .registry
            .clone()
            .get_model_version(GetModelVersionRequest {
                model_name: model.clone(),
                version,
                alias: String::new(),
            })
            .await
            .map_err(peer("registry"))?
            .into_inner()
            .feature_names;
        let rows = match &pipeline.dataset.source {
            Some(source) => {
                let path = self.sources_dir.join(source);
                let limit = pipeline.smoke_test.as_ref().map_or(3, |s| s.rows);
                let features = features.clone();
                tokio::task::spawn_blocking(move || sample_rows(&path, &features, limit))
                    .await
                    .map_err(|e| ApiError::internal(format!("sampling task: {e}")))??
            }
            None => vec![vec![0.0; features.len()]],
        };
        let raw = fp64_to_raw(rows.iter().flatten().copied());
        let response = self
            .clients
            .inference
            .clone()
            .model_infer(ModelInferRequest {
                model_name: model.clone(),
                model_version: version.to_string(),
                id: run_id,
                inputs: vec![InferInputTensor {
                    name: "input".into(),
                    datatype: "FP64".into(),
                    shape: vec![rows.len() as i64, features.len() as i64],
                    ..Default::default()
                }],
                raw_input_contents: vec![raw],
                ..Default::default()
            })
            .await
            .map_err(peer("inference"))?
            .into_inner();
        let raw = response.raw_output_contents.first();
        // A classifier answers labels (BYTES), a regressor numbers.
        let predictions: Vec<String> = match (response.outputs.first(), raw) {
            (Some(output), Some(raw)) if output.datatype == "BYTES" => bytes_elements(raw)
                .unwrap_or_default()
                .into_iter()
                .map(|e| String::from_utf8_lossy(e).into_owned())
                .collect(),
            (_, Some(raw)) => fp64_from_raw(raw)
                .into_iter()
                .map(|p| {
                    if p.is_finite() {
                        format!("{p:.2}")
                    } else {
                        "NaN".into()
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        if predictions.len() != rows.len() || predictions.iter().any(|p| p == "NaN") {
            return Err(ApiError::new(
                ErrorKind::FailedPrecondition,
                format!(
                    "{model}:{version} answered {} values for {} rows",
                    predictions.len(),
                    rows.len()
                ),
            ));
        }
        Ok(format!(
            "{model}:{version} predicted {}",
            predictions.join(", ")
        ))
    }
}

/// The first `limit` rows of a CSV source, columns in the model's feature order.
fn sample_rows(
    path: &std::path::Path,
    features: &[String],
    limit: usize,
) -> Result<Vec<Vec<f64>>, ApiError> {
    let invalid = |e: &dyn std::fmt::Display| {
        ApiError::failed_precondition(format!("reading the source for the smoke test: {e}"))
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| invalid(&e))?;
    let header = reader.headers().map_err(|e| invalid(&e))?.clone();
    let indices: Vec<usize> = features
        .iter()
        .map(|f| {
            header
                .iter()
                .position(|h| h == f)
                .ok_or_else(|| invalid(&format!("no column {f:?}")))
        })
        .collect::<Result<_, _>>()?;
    let mut rows = Vec::new();
    for record in reader.records().take(limit) {
        let record = record.map_err(|e| invalid(&e))?;
        let row = indices
            .iter()
            .map(|i| {
                record
                    .get(*i)
                    .unwrap_or_default()
                    .parse::<f64>()
                    .map_err(|e| invalid(&e))
            })
            .collect::<Result<Vec<f64>, _>>()?;
        rows.push(row);
    }
    Ok(rows)
}

/// Requests a version answered, from inference's statistics.
#[derive(Debug, Default, Clone, Copy)]
struct Served {
    succeeded: u64,
    succeeded_ns: u64,
    failed: u64,
}

impl Served {
    /// What happened after `earlier` (counters restart with the inference process: then the
    /// difference counts from zero).
    fn since(self, earlier: &Served) -> Served {
        if self.succeeded < earlier.succeeded || self.failed < earlier.failed {
            return self;
        }
        Served {
            succeeded: self.succeeded - earlier.succeeded,
            succeeded_ns: self.succeeded_ns.saturating_sub(earlier.succeeded_ns),
            failed: self.failed - earlier.failed,
        }
    }

    fn requests(&self) -> u64 {
        self.succeeded + self.failed
    }

    fn error_rate(&self) -> f64 {
        if self.requests() == 0 {
            0.0
        } else {
            self.failed as f64 / self.requests() as f64
        }
    }

    fn mean_ms(&self) -> Option<f64> {
        (self.succeeded > 0).then(|| self.succeeded_ns as f64 / self.succeeded as f64 / 1e6)
    }

    fn describe(&self) -> String {
        format!(
            "{} requests, {:.2}% errors, {}",
            self.requests(),
            self.error_rate() * 100.0,
            self.mean_ms()
                .map_or("no latency".into(), |ms| format!("{ms:.3} ms mean"))
        )
    }
}

/// Deletes the model's canary alias if it still points at `version` (another run's canary is
/// not ours to take down); an alias already gone is fine.
async fn take_down_canary(
    registry: &mut RegistryServiceClient<Channel>,
    model: &str,
    version: u32,
) -> Result<(), ApiError> {
    let holder = alias_holder(registry, model, mlops_core::serving::CANARY_ALIAS).await?;
    if holder.is_none_or(|holder| holder.version != version) {
        return Ok(());
    }
    match registry
        .delete_model_alias(DeleteModelAliasRequest {
            model_name: model.to_string(),
            alias: mlops_core::serving::CANARY_ALIAS.into(),
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
        Err(status) => Err(peer("registry")(status)),
    }
}

/// The version an alias of a model points at; None when the model or alias does not exist.
async fn alias_holder(
    registry: &mut RegistryServiceClient<Channel>,
    model: &str,
    alias: &str,
) -> Result<Option<ModelVersion>, ApiError> {
    match registry
        .get_model_version(GetModelVersionRequest {
            model_name: model.to_string(),
            version: 0,
            alias: alias.to_string(),
        })
        .await
    {
        Ok(version) => Ok(Some(version.into_inner())),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => Err(peer("registry")(status)),
    }
}

/// Gives up a run's claim on a model's canary when its canary step ends, however it ends.
struct CanaryOwnership {
    owners: Arc<Mutex<HashMap<String, String>>>,
    model: String,
    run: String,
}

impl Drop for CanaryOwnership {
    fn drop(&mut self) {
        let mut owners = self.owners.lock().expect("canaries lock");
        if owners.get(&self.model) == Some(&self.run) {
            owners.remove(&self.model);
        }
    }
}

/// Takes the canary down when dropped armed: a step abandoned mid-canary (a cancel) must not
/// leave traffic split.
struct CanaryTakeDown {
    registry: RegistryServiceClient<Channel>,
    model: String,
    version: u32,
    armed: bool,
}

impl Drop for CanaryTakeDown {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (mut registry, model, version) = (
            self.registry.clone(),
            std::mem::take(&mut self.model),
            self.version,
        );
        tokio::spawn(async move {
            if let Err(error) = take_down_canary(&mut registry, &model, version).await {
                tracing::error!(%model, %error, "cannot take the canary down");
            }
        });
    }
}

/// Lines a step's log keeps; older ones go first.
const STEP_LOG_LINES: usize = 200;

/// Appends a line to the step's log, stamped with the UTC time.
fn log(step: &mut StepState, line: String) {
    step.log
        .push(format!("{} {line}", mlops_core::utc_text(now_ms())));
    if step.log.len() > STEP_LOG_LINES {
        let excess = step.log.len() - STEP_LOG_LINES;
        step.log.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlops_core::client::{self, ClientOptions};
    use mlops_core::db::Location;

    const QUICKSTART: &str = include_str!("../../../examples/pipelines/quickstart.yaml");

    /// A runner whose peers never answer (the runs here need only be started, not executed),
    /// with the quickstart's source file.
    async fn runner(dir: &std::path::Path) -> Runner {
        std::fs::write(dir.join("diabetes.csv"), "x,target\n1,2\n").unwrap();
        let store = Store::open(&Location::Sqlite(dir.join("orchestrator.db")))
            .await
            .unwrap();
        let channel = || client::channel("http://127.0.0.1:9", &ClientOptions::default()).unwrap();
        let clients = Clients {
            ingestion: IngestionServiceClient::new(channel()),
            training: TrainingServiceClient::new(channel()),
            registry: RegistryServiceClient::new(channel()),
            inference: GrpcInferenceServiceClient::new(channel()),
        };
        Runner::new(store, clients, dir.to_path_buf())
    }

    async fn start_quickstart(runner: &Runner) -> Result<PipelineRun, ApiError> {
        let pipeline = Pipeline::parse(QUICKSTART).unwrap();
        runner.start(pipeline, QUICKSTART, "", 0).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_listed_from_the_store_is_already_watchable() {
        let dir = tempfile::tempdir().unwrap();
        let runner = runner(dir.path()).await;
        for _ in 0..5 {
            // Looks as soon as the store holds a run it has not seen: a watcher listing it
            // then must get its changes, not only the state it was stored in.
            let watcher = {
                let runner = runner.clone();
                let known = runner.store().list().await.unwrap();
                tokio::spawn(async move {
                    loop {
                        let runs = runner.store().list().await.unwrap();
                        if let Some(new) = runs.iter().find(|r| !known.iter().any(|k| k.id == r.id))
                        {
                            return runner.subscribe(&new.id).is_some();
                        }
                        tokio::task::yield_now().await;
                    }
                })
            };
            start_quickstart(&runner).await.unwrap();
            assert!(watcher.await.unwrap(), "a stored run was not live");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_start_cut_short_by_its_deadline_leaves_no_run_that_never_executes() {
        let dir = tempfile::tempdir().unwrap();
        let runner = runner(dir.path()).await;
        // Deadlines that end the call at every point of a start, the store's write included.
        for micros in (0..12_000).step_by(300) {
            let start = start_quickstart(&runner);
            let _ = tokio::time::timeout(Duration::from_micros(micros), start).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stored = runner.store().list().await.unwrap();
        let live: Vec<PipelineRun> = runner
            .live
            .lock()
            .unwrap()
            .values()
            .map(|sender| sender.borrow().clone())
            .collect();
        for run in &live {
            assert_ne!(run.state(), JobState::Pending, "never executes: {run:?}");
            assert!(
                stored.iter().any(|s| s.id == run.id),
                "not stored: {}",
                run.id
            );
        }
        // Finished runs leave the live ones; every other stored run is executing.
        for run in stored.iter().filter(|s| !live.iter().any(|l| l.id == s.id)) {
            assert!(
                matches!(run.state(), JobState::Succeeded | JobState::Failed),
                "stored but not executing: {run:?}"
            );
        }
    }
}
