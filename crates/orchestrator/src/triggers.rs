//! Registered pipelines and the triggers that start their runs: a cron schedule, a new version
//! of the pipeline's dataset, drift of the model it serves. One loop checks every registered
//! pipeline each `trigger_poll_ms`; what it decided is saved with the registration, so a
//! restart neither replays a firing nor forgets a version it has seen.
//!
//! At `max_concurrent` active runs a scheduled firing is skipped (and counted), as a cron job
//! with a forbid policy would; a new dataset version or drift waits for a free slot instead,
//! then starts one run on the newest version (or if the model still drifts).

use std::time::Duration;

use mlops_core::{ApiError, CancellationToken, ErrorKind, now_ms};
use mlops_proto::inference::ModelDriftRequest;
use mlops_proto::v1::{GetDatasetRequest, RegisteredPipeline};

use crate::pipeline::Pipeline;
use crate::runner::Runner;

#[derive(Clone)]
pub struct Triggers {
    runner: Runner,
    poll: Duration,
}

fn peer(service: &'static str) -> impl Fn(tonic::Status) -> ApiError {
    move |status| ApiError::from_status(service, &status)
}

impl Triggers {
    pub fn new(runner: Runner, poll: Duration) -> Self {
        Self { runner, poll }
    }

    /// Registers `pipeline` (already parsed and authorized); only dataset versions that arrive
    /// after this start runs.
    pub async fn register(
        &self,
        pipeline: &Pipeline,
        pipeline_yaml: &str,
        registered_by: &str,
    ) -> Result<RegisteredPipeline, ApiError> {
        let triggers = &pipeline.triggers;
        if !triggers.any() {
            return Err(ApiError::invalid_argument(
                "triggers: a registered pipeline needs at least one of triggers.schedule, \
                 triggers.new_dataset_version or triggers.drift",
            ));
        }
        let now = now_ms();
        let seen_dataset_version = if triggers.new_dataset_version {
            self.latest_version(&pipeline.dataset.name).await?
        } else {
            0
        };
        let registered = RegisteredPipeline {
            name: pipeline.name.clone(),
            pipeline_yaml: pipeline_yaml.to_string(),
            pipeline_digest: mlops_core::storage::sha256_hex(pipeline_yaml.as_bytes()),
            registered_by: registered_by.to_string(),
            registered_at_ms: now,
            schedule: triggers.schedule.clone().unwrap_or_default(),
            max_concurrent: triggers.max_concurrent,
            on_new_dataset_version: triggers.new_dataset_version,
            drift_share: triggers.drift.as_ref().map_or(0.0, |d| d.share),
            drift_min_interval_seconds: triggers
                .drift
                .as_ref()
                .map_or(0, |d| d.min_interval_seconds),
            next_scheduled_at_ms: triggers.next_scheduled(now).unwrap_or(0),
            seen_dataset_version,
            ..Default::default()
        };
        self.runner.store().register(&registered).await?;
        tracing::info!(pipeline = %registered.name, by = registered_by, "pipeline registered");
        Ok(registered)
    }

    /// Checks every registered pipeline's triggers each poll until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match self.runner.store().registered().await {
                Ok(registered) => {
                    for entry in registered {
                        self.check(entry).await;
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot read the registered pipelines"),
            }
        }
    }

    async fn check(&self, mut entry: RegisteredPipeline) {
        let before = entry.clone();
        match Pipeline::parse(&entry.pipeline_yaml) {
            Ok(pipeline) => self.fire_due(&mut entry, &pipeline).await,
            // Only a file this version no longer accepts gets here.
            Err(error) => entry.last_error = format!("the registered file: {}", error.message),
        }
        // Not saved (Ok(false)) when unregistered or registered again meanwhile: stale.
        if entry != before
            && let Err(error) = self.runner.store().update_registered(&entry).await
        {
            tracing::error!(pipeline = %entry.name, %error, "cannot record the trigger state");
        }
    }

    async fn fire_due(&self, entry: &mut RegisteredPipeline, pipeline: &Pipeline) {
        let triggers = &pipeline.triggers;
        let now = now_ms();
        let mut errors = Vec::new();
        if entry.next_scheduled_at_ms > 0 && now >= entry.next_scheduled_at_ms {
            let due = entry.next_scheduled_at_ms;
            // Firings missed while the orchestrator was down collapse into this one.
            entry.next_scheduled_at_ms = triggers.next_scheduled(now).unwrap_or(0);
            let when = chrono::DateTime::from_timestamp_millis(due)
                .map_or_else(String::new, |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            self.fire(entry, pipeline, format!("schedule {when}"), 0, |_| {})
                .await;
        }
        let slot_free = || self.runner.active(&pipeline.name) < triggers.max_concurrent as usize;
        if triggers.new_dataset_version && slot_free() {
            match self.latest_version(&pipeline.dataset.name).await {
                Ok(latest) if latest > entry.seen_dataset_version => {
                    let trigger = format!("new version {}@{latest}", pipeline.dataset.name);
                    self.fire(entry, pipeline, trigger, latest, |e| {
                        e.seen_dataset_version = latest;
                    })
                    .await;
                }
                Ok(_) => {}
                Err(error) => errors.push(format!("new_dataset_version: {}", error.message)),
            }
        }
        if let Some(drift) = &triggers.drift {
            let rested =
                now - entry.last_drift_run_at_ms >= i64::from(drift.min_interval_seconds) * 1000;
            if rested && slot_free() {
                match self.drift(pipeline, drift.share).await {
                    Ok(Some(trigger)) => {
                        self.fire(entry, pipeline, trigger, 0, |e| {
                            e.last_drift_run_at_ms = now;
                        })
                        .await;
                    }
                    Ok(None) => {}
                    Err(error) => errors.push(format!("drift: {}", error.message)),
                }
            }
        }
        entry.last_error = errors.join("; ");
    }

    /// Starts a run unless `max_concurrent` are active. `advance` moves the trigger's cursor
    /// (the version seen, the last drift run), which is saved before the run starts: a crash
    /// after that replays nothing (a firing starts at most one run), and a pipeline
    /// unregistered or registered again meanwhile starts nothing.
    async fn fire(
        &self,
        entry: &mut RegisteredPipeline,
        pipeline: &Pipeline,
        trigger: String,
        dataset_version: u32,
        advance: impl FnOnce(&mut RegisteredPipeline),
    ) {
        let active = self.runner.active(&pipeline.name);
        let limit = pipeline.triggers.max_concurrent;
        if active >= limit as usize {
            entry.skipped += 1;
            entry.last_event =
                format!("{trigger}: skipped, {active} runs active (max_concurrent {limit})");
            metrics::counter!("mlops_pipeline_triggers_skipped_total").increment(1);
            return;
        }
        let previous = entry.clone();
        let mut next = entry.clone();
        advance(&mut next);
        next.last_event = format!("{trigger}: starting a run");
        match self.runner.store().update_registered(&next).await {
            Ok(true) => *entry = next,
            Ok(false) => return,
            Err(error) => {
                entry.last_event = format!("{trigger}: cannot record it: {}", error.message);
                return;
            }
        }
        match self
            .runner
            .start(
                pipeline.clone(),
                &entry.pipeline_yaml,
                &trigger,
                dataset_version,
            )
            .await
        {
            Ok(run) => {
                tracing::info!(pipeline = %entry.name, run = %run.id, %trigger, "trigger started a run");
                entry.runs_started += 1;
                entry.last_event = format!("{trigger}: started run {}", run.id);
                entry.last_run_id = run.id;
                metrics::counter!("mlops_pipeline_triggered_runs_total").increment(1);
            }
            Err(error) => {
                // A passing failure (a service unavailable) gives the firing back, so the next
                // poll tries again; a lasting one (a missing source) would fail every time.
                if matches!(
                    error.kind,
                    ErrorKind::Unavailable | ErrorKind::Aborted | ErrorKind::Internal
                ) {
                    *entry = previous;
                }
                entry.last_event = format!("{trigger}: cannot start a run: {}", error.message);
            }
        }
    }

    /// The dataset's newest version; 0 while it has none.
    async fn latest_version(&self, dataset: &str) -> Result<u32, ApiError> {
        match self
            .runner
            .clients()
            .ingestion
            .clone()
            .get_dataset(GetDatasetRequest {
                name: dataset.to_string(),
            })
            .await
        {
            Ok(found) => Ok(found.into_inner().latest_version),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(0),
            Err(status) => Err(peer("ingestion")(status)),
        }
    }

    /// Why the served model calls for retraining, if it does: the share of its features whose
    /// live inputs drifted from the training profile reached `share`.
    async fn drift(&self, pipeline: &Pipeline, share: f64) -> Result<Option<String>, ApiError> {
        let model = &pipeline.register.model;
        let alias = pipeline.champion_alias();
        // Nothing served yet: nothing can drift.
        let Some(served) = self.runner.alias_holder(model, alias).await? else {
            return Ok(None);
        };
        let report = self
            .runner
            .clients()
            .inference
            .clone()
            .model_drift(ModelDriftRequest {
                name: model.clone(),
                version: served.version.to_string(),
            })
            .await
            .map_err(peer("inference"))?
            .into_inner();
        if report.features.is_empty() || report.drifted_share < share {
            return Ok(None);
        }
        let drifted: Vec<&str> = report
            .features
            .iter()
            .filter(|f| f.drifted)
            .map(|f| f.feature.as_str())
            .collect();
        Ok(Some(format!(
            "drift: {:.0}% of the features of {model}:{} drifted ({})",
            report.drifted_share * 100.0,
            served.version,
            drifted.join(", ")
        )))
    }
}
