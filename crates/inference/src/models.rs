//! Which model a request means, loaded once from the registry and the artifact store.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use mlops_core::auth::{Principal, ResourceKind, authorize};
use mlops_core::client::Channel;
use mlops_core::ids::validate_name;
use mlops_core::serving::{CANARY_ALIAS, CANARY_SHARE_TAG, DEFAULT_CANARY_SHARE};
use mlops_core::storage::ArtifactStore;
use mlops_core::{ApiError, CancellationToken, ErrorKind};
use mlops_ml::ModelBundle;
use mlops_ml::frame::{ColumnKind, Values};
use mlops_ml::model::{Prediction, Task};
use mlops_proto::inference::model_infer_response::InferOutputTensor;
use mlops_proto::inference::model_metadata_response::TensorMetadata;
use mlops_proto::inference::{
    ModelDriftResponse, ModelInferRequest, ModelInferResponse, ModelMetadataResponse,
};
use mlops_proto::v1::registry_service_client::RegistryServiceClient;
use mlops_proto::v1::{
    GetModelVersionRequest, GetRegisteredModelRequest, RegistryEvent, RegistryEventKind,
    WatchRegistryRequest,
};

use crate::onnx::OnnxModel;
use crate::prediction_log::{PredictionLog, Record};
use crate::tensor::{self, INPUT_NAME, OUTPUT_NAME};
use mlops_core::tensor::PROBABILITIES_NAME;
use ndarray::Array2;

pub struct LoadedModel {
    pub name: String,
    pub version: u32,
    pub runner: Arc<Runner>,
    /// Triton-style counters, lock-free on the hot path.
    pub stats: crate::repository::Stats,
    /// Started on first use when dynamic batching is on.
    batcher: std::sync::OnceLock<tokio::sync::mpsc::Sender<crate::batching::Job>>,
    /// Prometheus handles labelled once at load, not per request.
    meters: Meters,
    /// Live input windows, for bundles with a training profile.
    pub(crate) drift: Option<crate::drift::Monitor>,
}

struct Meters {
    answered: metrics::Counter,
    duration: metrics::Histogram,
    compute: metrics::Histogram,
    rows: metrics::Histogram,
}

impl Meters {
    fn new(name: &str, version: u32) -> Self {
        let labels = [
            ("model", name.to_string()),
            ("version", version.to_string()),
        ];
        Self {
            answered: metrics::counter!("mlops_inference_requests_total", "outcome" => "success", "model" => name.to_string(), "version" => version.to_string()),
            duration: metrics::histogram!("mlops_inference_duration_seconds", &labels),
            compute: metrics::histogram!("mlops_inference_compute_seconds", &labels),
            rows: metrics::histogram!("mlops_inference_batch_rows", &labels),
        }
    }
}

/// A sampled request's inputs are logged only up to this many values (outputs likewise).
const MAX_LOGGED_VALUES: usize = 10_000;

/// One output tensor: its metadata and raw little-endian bytes.
pub type Output = (InferOutputTensor, Vec<u8>);

/// Runs rows through a model: `predictions` for a bundle, the graph's outputs for ONNX.
pub fn predict(runner: &Runner, input: &Array2<f64>) -> Result<Vec<Output>, ApiError> {
    match runner {
        Runner::Bundle(bundle) => {
            let prediction = bundle.predict(input.view()).map_err(|e| {
                ApiError::invalid_argument(format!("input tensor {INPUT_NAME:?}: {e}"))
            })?;
            Ok(encode_prediction(bundle, prediction))
        }
        Runner::Onnx(onnx) => onnx.predict(input),
    }
}

fn encode_prediction(bundle: &ModelBundle, prediction: Prediction) -> Vec<Output> {
    match prediction {
        Prediction::Values(values) => vec![tensor::encode_output(
            values.as_slice().expect("contiguous predictions"),
        )],
        Prediction::Probabilities(proba) => tensor::encode_classes(&proba, &bundle.classes).into(),
    }
}

/// A bundle with categorical inputs, on one tensor per input: no batching (batches are
/// matrices), the same outputs and explanations.
fn run_frame(
    bundle: &ModelBundle,
    monitor: Option<&crate::drift::Monitor>,
    request: &ModelInferRequest,
    explain: bool,
    log_inputs: bool,
) -> Result<(Vec<Output>, usize, Option<serde_json::Value>), ApiError> {
    let frame = tensor::decode_frame(request, &bundle.inputs)?;
    if let Some(monitor) = monitor {
        monitor.record_frame(bundle, &frame);
    }
    let rows = frame.rows();
    let logged = log_inputs.then(|| {
        if rows * frame.columns().len() > MAX_LOGGED_VALUES {
            return serde_json::json!({ "omitted_rows": rows });
        }
        let columns: serde_json::Map<String, serde_json::Value> = frame
            .columns()
            .iter()
            .map(|c| {
                let values = match &c.values {
                    Values::Numeric(v) => serde_json::json!(v),
                    Values::Categorical(v) => serde_json::json!(v),
                };
                (c.name.clone(), values)
            })
            .collect();
        serde_json::Value::Object(columns)
    });
    // Preprocess once; the prediction and the explanation share the features.
    let invalid = |e: mlops_ml::MlError| ApiError::invalid_argument(e.to_string());
    let features = bundle.features_of(frame).map_err(invalid)?;
    let prediction = bundle
        .estimator
        .predict(features.view(), bundle.classes.len())
        .map_err(invalid)?;
    let mut outputs = encode_prediction(bundle, prediction);
    if explain {
        let shares = bundle
            .contributions_of(features.view())
            .map_err(|e| ApiError::invalid_argument(format!("parameter \"explain\": {e}")))?;
        outputs.extend(tensor::encode_explanation(&shares.values, shares.base));
    }
    Ok((outputs, rows, logged))
}

/// What runs a version's predictions.
pub enum Runner {
    /// A platform bundle: `input` FP64 `[N, features]` in; `predictions` FP64 `[N]` out for a
    /// regressor, labels (BYTES) and `probabilities` for a classifier.
    Bundle(Box<ModelBundle>),
    /// An imported ONNX model: its own tensor names, FP32 in, its graph's outputs out.
    Onnx(OnnxModel),
}

impl LoadedModel {
    fn input_name(&self) -> &str {
        match &*self.runner {
            Runner::Bundle(_) => INPUT_NAME,
            Runner::Onnx(model) => &model.input.name,
        }
    }

    fn features(&self) -> usize {
        match &*self.runner {
            Runner::Bundle(bundle) => bundle.feature_count(),
            Runner::Onnx(model) => model.features(),
        }
    }

    /// Output tensors as (name, datatype, shape) for metadata.
    fn outputs(&self) -> Vec<TensorMetadata> {
        match &*self.runner {
            Runner::Bundle(bundle) if bundle.task == Task::Classification => vec![
                TensorMetadata {
                    name: OUTPUT_NAME.into(),
                    datatype: "BYTES".into(),
                    shape: vec![-1],
                },
                TensorMetadata {
                    name: PROBABILITIES_NAME.into(),
                    datatype: "FP64".into(),
                    shape: vec![-1, bundle.classes.len() as i64],
                },
            ],
            Runner::Bundle(_) => vec![TensorMetadata {
                name: OUTPUT_NAME.into(),
                datatype: "FP64".into(),
                shape: vec![-1],
            }],
            Runner::Onnx(model) => model
                .outputs
                .iter()
                .map(|o| TensorMetadata {
                    name: o.name.clone(),
                    datatype: o.datatype.clone(),
                    shape: o.shape.clone(),
                })
                .collect(),
        }
    }
}

/// Loaded models by (name, version); versions are immutable, so entries never go stale.
type LoadedModels = HashMap<(String, u32), Arc<LoadedModel>>;

/// A share of a model's unversioned requests sent to the version behind the canary alias
/// (`mlops_core::serving`).
#[derive(Debug)]
struct Canary {
    version: u32,
    share: f64,
    /// Unversioned requests seen since the canary started: every request whose count crosses
    /// a multiple of 1/share goes to the canary, so its share is exact, not sampled.
    seen: std::sync::atomic::AtomicU64,
}

impl Canary {
    fn takes_next(&self) -> bool {
        let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as f64;
        ((n + 1.0) * self.share).floor() > (n * self.share).floor()
    }
}

#[derive(Clone)]
pub struct Models {
    registry: RegistryServiceClient<Channel>,
    artifacts: ArtifactStore,
    default_alias: String,
    /// Models with a canary, kept current by the registry's event stream like `serving`.
    canaries: Arc<RwLock<HashMap<String, Arc<Canary>>>>,
    /// Counts canary events, so a lookup that raced one is not kept.
    canary_epoch: Arc<std::sync::atomic::AtomicU64>,
    loaded: Arc<RwLock<LoadedModels>>,
    /// The version an unversioned request gets, per model: kept current by the registry's
    /// event stream, so the hot path never asks the registry.
    serving: Arc<RwLock<HashMap<String, u32>>>,
    /// Models an operator unloaded (RepositoryModelUnload): refused until loaded again.
    pub(crate) unloaded: Arc<RwLock<std::collections::HashSet<String>>>,
    log: PredictionLog,
    drift: crate::drift::DriftSettings,
    batching: crate::batching::BatchingSettings,
    /// Counts route-moving events, so a route looked up meanwhile is not cached stale.
    route_epoch: Arc<std::sync::atomic::AtomicU64>,
}

impl Models {
    pub fn new(
        registry: Channel,
        artifacts: ArtifactStore,
        default_alias: String,
        log: PredictionLog,
        batching: crate::batching::BatchingSettings,
        drift: crate::drift::DriftSettings,
    ) -> Self {
        Self {
            registry: RegistryServiceClient::new(registry),
            artifacts,
            default_alias,
            canaries: Arc::default(),
            canary_epoch: Arc::default(),
            loaded: Arc::default(),
            serving: Arc::default(),
            unloaded: Arc::default(),
            log,
            batching,
            drift,
            route_epoch: Arc::default(),
        }
    }

    /// Follows the registry's events until `shutdown`: when the default alias moves (or, for a
    /// model without it, a version is added), loads the new version in the background and only
    /// then switches unversioned requests to it. Requests already holding the old version
    /// finish on it. A broken stream resumes from the last event seen, so none is missed; if
    /// it broke before the first event, cached routes are dropped and looked up again.
    pub async fn follow_registry(self, shutdown: CancellationToken) {
        let mut after_seq = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            let request = WatchRegistryRequest {
                after_seq: after_seq.unwrap_or_default(),
                model_name: String::new(),
                from_now: after_seq.is_none(),
            };
            let mut registry = self.registry.clone();
            let stream = tokio::select! {
                _ = shutdown.cancelled() => return,
                stream = registry.watch_registry(request) => stream,
            };
            match stream {
                Ok(stream) => {
                    backoff = Duration::from_millis(100);
                    let mut events = stream.into_inner();
                    loop {
                        let event = tokio::select! {
                            _ = shutdown.cancelled() => return,
                            event = events.message() => event,
                        };
                        match event {
                            Ok(Some(event)) => {
                                after_seq = Some(event.seq);
                                self.apply(&event).await;
                            }
                            Ok(None) | Err(_) => break,
                        }
                    }
                }
                Err(status) => {
                    tracing::debug!(%status, "registry watch unavailable; retrying");
                }
            }
            // Events may be missed only before the first one arrives: start over clean then.
            if after_seq.is_none() {
                self.serving.write().expect("routes lock").clear();
                self.canaries.write().expect("canaries lock").clear();
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn apply(&self, event: &RegistryEvent) {
        use RegistryEventKind::*;
        let kind = event.kind();
        if matches!(kind, VersionDeleted) {
            self.loaded
                .write()
                .expect("model cache lock")
                .remove(&(event.model_name.clone(), event.version));
        }
        let moves_canary = match kind {
            AliasSet | AliasDeleted => event.key == CANARY_ALIAS,
            TagSet | TagDeleted => event.key == CANARY_SHARE_TAG,
            _ => false,
        };
        if moves_canary {
            // Under the canaries lock, so a lookup in flight sees it before keeping its answer.
            {
                let mut canaries = self.canaries.write().expect("canaries lock");
                self.canary_epoch
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // Gone is gone, and a moved canary no longer serves its old version, whatever
                // the lookup below finds (or fails to).
                let stale = canaries.get(&event.model_name).is_some_and(|canary| {
                    kind == AliasDeleted || (kind == AliasSet && canary.version != event.version)
                });
                if stale {
                    canaries.remove(&event.model_name);
                    tracing::info!(model = %event.model_name, "canary off");
                }
            }
            let routed = self
                .serving
                .read()
                .expect("routes lock")
                .contains_key(&event.model_name);
            if routed && kind != AliasDeleted {
                self.refresh_canary(&event.model_name).await;
            }
            return;
        }
        let moves_route = match kind {
            AliasSet | AliasDeleted => event.key == self.default_alias,
            VersionCreated | VersionDeleted | VersionArchived | VersionRestored => true,
            _ => false,
        };
        if !moves_route {
            return;
        }
        // Under the routes lock, so a lookup in flight sees it before caching (see `route`).
        let routed = {
            let serving = self.serving.read().expect("routes lock");
            self.route_epoch
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            serving.contains_key(&event.model_name)
        };
        if !routed {
            return;
        }
        match self.target(&event.model_name).await {
            Ok(version) => match self.loaded_version(&event.model_name, version).await {
                Ok(_) => {
                    let previous = self
                        .serving
                        .write()
                        .expect("routes lock")
                        .insert(event.model_name.clone(), version);
                    if previous != Some(version) {
                        tracing::info!(model = %event.model_name, version, ?previous, "serving switched");
                    }
                }
                Err(error) => {
                    // Keep serving the old version rather than fail requests.
                    tracing::error!(model = %event.model_name, version, %error, "new version not loadable; keeping the old one");
                }
            },
            Err(_) => {
                self.serving
                    .write()
                    .expect("routes lock")
                    .remove(&event.model_name);
            }
        }
    }

    /// Looks up and caches the route of a model not routed yet. An event that moves routes
    /// while the lookup is in flight would be missed by the cache, so the lookup is retried
    /// when one arrived meanwhile.
    async fn route(&self, name: &str) -> Result<u32, ApiError> {
        for _ in 0..3 {
            let epoch = self.route_epoch.load(std::sync::atomic::Ordering::SeqCst);
            let version = self.target(name).await?;
            let cached = {
                let mut serving = self.serving.write().expect("routes lock");
                let current = self.route_epoch.load(std::sync::atomic::Ordering::SeqCst) == epoch;
                if current {
                    serving.insert(name.to_string(), version);
                }
                current
            };
            if cached {
                self.refresh_canary(name).await;
                return Ok(version);
            }
        }
        // Routes keep moving: answer from a fresh lookup without caching it.
        self.target(name).await
    }

    /// The version unversioned requests should get, asked of the registry: the default
    /// alias's, else the latest that is not archived.
    async fn target(&self, name: &str) -> Result<u32, ApiError> {
        let model = self.registered_model(name).await?;
        if let Some(version) = model.aliases.get(&self.default_alias) {
            return Ok(*version);
        }
        Ok(self.version_record(name, 0).await?.version)
    }

    /// Looks up the model's canary (its version, loaded before it takes traffic, and share); a
    /// registry that cannot answer leaves the canary as it was.
    async fn refresh_canary(&self, name: &str) {
        for _ in 0..3 {
            let epoch = self.canary_epoch.load(std::sync::atomic::Ordering::SeqCst);
            if self.lookup_canary(name, epoch).await {
                return;
            }
        }
        tracing::warn!(model = %name, "canary events keep coming: the canary stays as it was");
    }

    /// One lookup; false when a canary event arrived meanwhile (its answer may be stale).
    async fn lookup_canary(&self, name: &str, epoch: u64) -> bool {
        let lookup = async {
            let model = self.registered_model(name).await?;
            let Some(version) = model.aliases.get(CANARY_ALIAS).copied() else {
                return Ok(None);
            };
            let share = self
                .version_record(name, version)
                .await?
                .tags
                .get(CANARY_SHARE_TAG)
                .and_then(|t| t.parse::<f64>().ok())
                .filter(|s| *s > 0.0 && *s <= 1.0)
                .unwrap_or(DEFAULT_CANARY_SHARE);
            self.loaded_version(name, version).await?;
            Ok::<_, ApiError>(Some((version, share)))
        };
        let found = lookup.await;
        let mut canaries = self.canaries.write().expect("canaries lock");
        if self.canary_epoch.load(std::sync::atomic::Ordering::SeqCst) != epoch {
            return false;
        }
        match found {
            Ok(Some((version, share))) => {
                tracing::info!(model = %name, version, share, "canary on");
                canaries.insert(
                    name.to_string(),
                    Arc::new(Canary {
                        version,
                        share,
                        seen: Default::default(),
                    }),
                );
            }
            Ok(None) => {
                if canaries.remove(name).is_some() {
                    tracing::info!(model = %name, "canary off");
                }
            }
            Err(error) => tracing::warn!(model = %name, %error, "cannot look up the canary"),
        }
        true
    }

    /// A version from the cache, loading it on first use.
    async fn loaded_version(&self, name: &str, version: u32) -> Result<Arc<LoadedModel>, ApiError> {
        let key = (name.to_string(), version);
        if let Some(model) = self.loaded.read().expect("model cache lock").get(&key) {
            return Ok(model.clone());
        }
        let model = Arc::new(self.load(name, version).await?);
        let mut loaded = self.loaded.write().expect("model cache lock");
        loaded.insert(key, model.clone());
        metrics::gauge!("mlops_inference_loaded_models").set(loaded.len() as f64);
        Ok(model)
    }

    /// `version` "" means the default alias's version, or the latest when the alias is unset.
    pub async fn resolve(
        &self,
        caller: Option<&Principal>,
        name: &str,
        version: &str,
    ) -> Result<Arc<LoadedModel>, ApiError> {
        validate_name("model name", name)?;
        authorize(caller, ResourceKind::Model, name)?;
        if self.unloaded.read().expect("unloaded lock").contains(name) {
            return Err(ApiError::failed_precondition(format!(
                "model {name:?} is unloaded: load it again with RepositoryModelLoad"
            )));
        }
        self.resolve_loaded(name, version).await
    }

    /// `resolve` without the access and unload checks (RepositoryModelLoad makes its own).
    pub(crate) async fn resolve_loaded(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Arc<LoadedModel>, ApiError> {
        let version = if version.is_empty() {
            let routed = self.serving.read().expect("routes lock").get(name).copied();
            let version = match routed {
                Some(version) => version,
                None => self.route(name).await?,
            };
            let canary = self
                .canaries
                .read()
                .expect("canaries lock")
                .get(name)
                .cloned();
            match canary {
                Some(canary) if canary.takes_next() => canary.version,
                _ => version,
            }
        } else {
            version
                .parse::<u32>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| {
                    ApiError::invalid_argument(format!(
                        "model version {version:?} is not a version number"
                    ))
                })?
        };
        self.loaded_version(name, version).await
    }

    async fn registered_model(
        &self,
        name: &str,
    ) -> Result<mlops_proto::v1::RegisteredModel, ApiError> {
        Ok(self
            .registry
            .clone()
            .get_registered_model(GetRegisteredModelRequest { name: name.into() })
            .await
            .map_err(|s| ApiError::from_status("registry", &s))?
            .into_inner())
    }

    /// A version's registry record (version 0: the latest).
    async fn version_record(
        &self,
        name: &str,
        version: u32,
    ) -> Result<mlops_proto::v1::ModelVersion, ApiError> {
        Ok(self
            .registry
            .clone()
            .get_model_version(GetModelVersionRequest {
                model_name: name.into(),
                version,
                alias: String::new(),
            })
            .await
            .map_err(|s| ApiError::from_status("registry", &s))?
            .into_inner())
    }

    async fn load(&self, name: &str, version: u32) -> Result<LoadedModel, ApiError> {
        let record = self.version_record(name, version).await?;
        let bytes = self.artifacts.get(&record.artifact_digest).await?;
        let unservable = |why: String| {
            ApiError::failed_precondition(format!(
                "model {name:?} version {version} cannot be served: {why}"
            ))
        };
        let runner = if record.format == "onnx" {
            let signature = record.signature.unwrap_or_default();
            // Planning is CPU work: off the async workers.
            let planned = tokio::task::spawn_blocking(move || OnnxModel::load(&bytes, &signature))
                .await
                .map_err(|e| ApiError::internal(format!("planning the ONNX model: {e}")))?;
            Runner::Onnx(planned.map_err(unservable)?)
        } else {
            Runner::Bundle(Box::new(
                ModelBundle::from_json(&bytes).map_err(|e| unservable(e.to_string()))?,
            ))
        };
        tracing::info!(model = name, version, format = %record.format, "model loaded");
        Ok(LoadedModel {
            name: name.into(),
            version,
            stats: Default::default(),
            batcher: Default::default(),
            meters: Meters::new(name, version),
            drift: match &runner {
                Runner::Bundle(bundle) => crate::drift::Monitor::new(bundle, &self.drift),
                Runner::Onnx(_) => None,
            },
            runner: Arc::new(runner),
        })
    }

    pub async fn infer(
        &self,
        caller: Option<&Principal>,
        request: ModelInferRequest,
    ) -> Result<ModelInferResponse, ApiError> {
        let started = Instant::now();
        match self.infer_inner(caller, request).await {
            Ok((response, model)) => {
                model.meters.answered.increment(1);
                model
                    .meters
                    .duration
                    .record(started.elapsed().as_secs_f64());
                Ok(response)
            }
            Err(error) => {
                // No model labels: names from failed lookups are client text, and would make
                // the label set unbounded.
                let outcome = if error.kind == ErrorKind::Internal {
                    "error"
                } else {
                    "rejected"
                };
                metrics::counter!("mlops_inference_requests_total", "outcome" => outcome, "model" => "", "version" => "").increment(1);
                metrics::histogram!("mlops_inference_duration_seconds", "model" => "", "version" => "")
                    .record(started.elapsed().as_secs_f64());
                Err(error)
            }
        }
    }

    async fn infer_inner(
        &self,
        caller: Option<&Principal>,
        request: ModelInferRequest,
    ) -> Result<(ModelInferResponse, Arc<LoadedModel>), ApiError> {
        let model = self
            .resolve(caller, &request.model_name, &request.model_version)
            .await?;
        let started = Instant::now();
        let id = self.log.sampled().then(|| request.id.clone());
        let mut outcome = self.run(&model, request, id.is_some()).await;
        model.stats.record(&outcome, started.elapsed());
        if let Ok((_, phases)) = &outcome {
            model.meters.compute.record(phases.infer.as_secs_f64());
            model.meters.rows.record(phases.rows as f64);
        }
        if let (Some(id), Ok((response, phases))) = (id, &mut outcome) {
            self.log.record(Record {
                model: model.name.clone(),
                version: model.version,
                id,
                latency: started.elapsed(),
                inputs: phases.logged_inputs.take().unwrap_or_default(),
                outputs: response
                    .outputs
                    .iter()
                    .zip(&response.raw_output_contents)
                    .map(|(o, raw)| {
                        let value = if raw.len() / 8 > MAX_LOGGED_VALUES {
                            serde_json::json!({ "omitted_bytes": raw.len() })
                        } else {
                            tensor::raw_to_json(&o.datatype, raw)
                        };
                        (o.name.clone(), value)
                    })
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
            });
        }
        outcome.map(|(response, _)| (response, model))
    }

    /// Runs a request on a resolved model; also returns the phase timings for the statistics.
    async fn run(
        &self,
        model: &LoadedModel,
        request: ModelInferRequest,
        log_inputs: bool,
    ) -> Result<(ModelInferResponse, crate::repository::Phases), ApiError> {
        let started = Instant::now();
        if let Runner::Bundle(bundle) = &*model.runner
            && !bundle.numeric_inputs()
        {
            let explain = wants_explanation(&request)?;
            let (outputs, rows, logged_inputs) =
                run_frame(bundle, model.drift.as_ref(), &request, explain, log_inputs)?;
            let inferred = Instant::now();
            return self.respond(
                model,
                request,
                outputs,
                rows,
                logged_inputs,
                started,
                inferred,
                inferred,
            );
        }
        let input = match &*model.runner {
            // One tensor per feature, named like the features.
            Runner::Bundle(bundle)
                if !matches!(request.inputs.as_slice(), [one] if one.name == INPUT_NAME)
                    && request
                        .inputs
                        .iter()
                        .any(|i| bundle.inputs.iter().any(|f| f.name == i.name)) =>
            {
                tensor::decode_columns(&request, &bundle.inputs)?
            }
            _ => tensor::decode_input(&request, model.input_name(), model.features())?,
        };
        if let Some(monitor) = &model.drift {
            monitor.record_matrix(&input);
        }
        let decoded = Instant::now();
        let rows = input.nrows();
        // Big requests are logged without their inputs: the log's memory stays bounded.
        let logged_inputs = log_inputs.then(|| {
            if input.len() > MAX_LOGGED_VALUES {
                return serde_json::json!({ "omitted_rows": input.nrows() });
            }
            serde_json::Value::from(
                input
                    .outer_iter()
                    .map(|row| row.to_vec())
                    .collect::<Vec<_>>(),
            )
        });
        let explain = wants_explanation(&request)?;
        let outputs = match (&*model.runner, explain) {
            (Runner::Bundle(bundle), true) => {
                let mut outputs = predict(&model.runner, &input)?;
                let shares = bundle.contributions(input.view()).map_err(|e| {
                    ApiError::invalid_argument(format!("parameter \"explain\": {e}"))
                })?;
                outputs.extend(tensor::encode_explanation(&shares.values, shares.base));
                outputs
            }
            (Runner::Onnx(_), true) => {
                return Err(ApiError::invalid_argument(
                    "parameter \"explain\": explanations need a platform bundle; this version is ONNX",
                ));
            }
            // Requests checked one by one above; from here they may share a batch.
            _ if self.batching.max_delay_us > 0 => {
                let batcher = model
                    .batcher
                    .get_or_init(|| crate::batching::start(model.runner.clone(), &self.batching));
                crate::batching::submit(batcher, input).await?
            }
            _ => predict(&model.runner, &input)?,
        };
        let inferred = Instant::now();
        self.respond(
            model,
            request,
            outputs,
            rows,
            logged_inputs,
            started,
            decoded,
            inferred,
        )
    }

    /// The response with only the outputs asked for, and the phase timings.
    #[allow(clippy::too_many_arguments)]
    fn respond(
        &self,
        model: &LoadedModel,
        request: ModelInferRequest,
        mut outputs: Vec<Output>,
        rows: usize,
        logged_inputs: Option<serde_json::Value>,
        started: Instant,
        decoded: Instant,
        inferred: Instant,
    ) -> Result<(ModelInferResponse, crate::repository::Phases), ApiError> {
        // Only the outputs asked for, when some are named.
        if !request.outputs.is_empty() {
            for wanted in &request.outputs {
                if !outputs.iter().any(|(o, _)| o.name == wanted.name) {
                    let known: Vec<&str> = outputs.iter().map(|(o, _)| o.name.as_str()).collect();
                    return Err(ApiError::invalid_argument(format!(
                        "unknown output tensor {:?}: the model produces {known:?}",
                        wanted.name
                    )));
                }
            }
            outputs.retain(|(o, _)| request.outputs.iter().any(|w| w.name == o.name));
        }
        metrics::counter!("mlops_inference_rows_total").increment(rows as u64);
        let (outputs, raw_output_contents) = outputs.into_iter().unzip();
        let response = ModelInferResponse {
            model_name: model.name.clone(),
            model_version: model.version.to_string(),
            id: request.id,
            parameters: HashMap::new(),
            outputs,
            raw_output_contents,
        };
        let phases = crate::repository::Phases {
            logged_inputs,
            rows: rows as u64,
            input: decoded - started,
            infer: inferred - decoded,
            output: inferred.elapsed(),
        };
        Ok((response, phases))
    }

    /// Every loaded model version, for statistics and the repository index.
    pub(crate) fn loaded_models(&self) -> Vec<Arc<LoadedModel>> {
        self.loaded
            .read()
            .expect("model cache lock")
            .values()
            .cloned()
            .collect()
    }

    /// Forgets every loaded version of `name` and its route; requests in flight keep theirs.
    pub(crate) fn forget(&self, name: &str) {
        let mut loaded = self.loaded.write().expect("model cache lock");
        loaded.retain(|(model, _), _| model != name);
        metrics::gauge!("mlops_inference_loaded_models").set(loaded.len() as f64);
        drop(loaded);
        self.serving.write().expect("routes lock").remove(name);
    }

    pub(crate) fn batching(&self) -> &crate::batching::BatchingSettings {
        &self.batching
    }

    pub(crate) fn registry(&self) -> RegistryServiceClient<Channel> {
        self.registry.clone()
    }

    /// Drift of a version's live inputs against its training profile.
    pub async fn drift(
        &self,
        caller: Option<&Principal>,
        name: &str,
        version: &str,
    ) -> Result<ModelDriftResponse, ApiError> {
        let model = self.resolve(caller, name, version).await?;
        let Runner::Bundle(bundle) = &*model.runner else {
            return Err(ApiError::failed_precondition(format!(
                "{name}:{} is an ONNX model: drift needs a bundle with a training profile",
                model.version
            )));
        };
        let Some(monitor) = &model.drift else {
            return Err(ApiError::failed_precondition(if bundle.profile.is_none() {
                format!(
                    "{name}:{} carries no training profile (retrain it to get one)",
                    model.version
                )
            } else {
                "drift monitoring is off (inference.drift.window = 0)".to_string()
            }));
        };
        Ok(drift_response(&model, &monitor.report(bundle)))
    }

    /// Recomputes the drift gauges of every monitored version every `interval` until shutdown.
    pub async fn publish_drift(self, shutdown: CancellationToken) {
        let interval = Duration::from_secs(self.drift.interval_seconds.max(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            for model in self.loaded_models() {
                let (Runner::Bundle(bundle), Some(monitor)) = (&*model.runner, &model.drift) else {
                    continue;
                };
                let report = monitor.report(bundle);
                let response = drift_response(&model, &report);
                let version = model.version.to_string();
                for f in &report {
                    let labels = [
                        ("model", model.name.clone()),
                        ("version", version.clone()),
                        ("feature", f.feature.clone()),
                    ];
                    metrics::gauge!("mlops_inference_drift_score", &labels).set(f.statistic);
                    metrics::gauge!("mlops_inference_drift_psi", &labels).set(f.psi);
                    metrics::gauge!("mlops_inference_drift_detected", &labels)
                        .set(f64::from(u8::from(f.drifted)));
                }
                metrics::gauge!("mlops_inference_drift_share", "model" => model.name.clone(), "version" => version)
                    .set(response.drifted_share);
            }
        }
    }

    pub async fn metadata(
        &self,
        caller: Option<&Principal>,
        name: &str,
        version: &str,
    ) -> Result<ModelMetadataResponse, ApiError> {
        let model = self.resolve(caller, name, version).await?;
        let (platform, datatype) = match &*model.runner {
            Runner::Bundle(bundle) => (format!("mlops_{}", bundle.model_type), "FP64"),
            Runner::Onnx(_) => ("onnx_tract".to_string(), "FP32"),
        };
        let inputs = match &*model.runner {
            // Categorical inputs: one tensor per input, text as BYTES.
            Runner::Bundle(bundle) if !bundle.numeric_inputs() => bundle
                .inputs
                .iter()
                .map(|i| TensorMetadata {
                    name: i.name.clone(),
                    datatype: match i.kind {
                        ColumnKind::Numeric => "FP64",
                        ColumnKind::Categorical => "BYTES",
                    }
                    .into(),
                    shape: vec![-1],
                })
                .collect(),
            _ => vec![TensorMetadata {
                name: model.input_name().into(),
                datatype: datatype.into(),
                shape: vec![-1, model.features() as i64],
            }],
        };
        Ok(ModelMetadataResponse {
            name: model.name.clone(),
            versions: vec![model.version.to_string()],
            platform,
            inputs,
            outputs: model.outputs(),
        })
    }
}

/// Whether the request asks for per-feature contributions (`parameters {"explain": true}`).
fn wants_explanation(request: &ModelInferRequest) -> Result<bool, ApiError> {
    use mlops_proto::inference::infer_parameter::ParameterChoice;
    match request
        .parameters
        .get("explain")
        .and_then(|p| p.parameter_choice.as_ref())
    {
        None => Ok(false),
        Some(ParameterChoice::BoolParam(explain)) => Ok(*explain),
        Some(ParameterChoice::StringParam(text)) if text == "true" || text == "false" => {
            Ok(text == "true")
        }
        Some(_) => Err(ApiError::invalid_argument(
            "parameter \"explain\" must be a boolean",
        )),
    }
}

fn drift_response(
    model: &LoadedModel,
    report: &[mlops_ml::drift::FeatureDrift],
) -> ModelDriftResponse {
    let drifted = report.iter().filter(|f| f.drifted).count();
    let drifted_share = if report.is_empty() {
        0.0
    } else {
        drifted as f64 / report.len() as f64
    };
    ModelDriftResponse {
        model_name: model.name.clone(),
        model_version: model.version.to_string(),
        features: report
            .iter()
            .map(|f| mlops_proto::inference::FeatureDrift {
                feature: f.feature.clone(),
                method: f.method.clone(),
                statistic: f.statistic,
                p_value: f.p_value,
                psi: f.psi,
                threshold: f.threshold,
                drifted: f.drifted,
                samples: f.samples as u64,
            })
            .collect(),
        drifted_share,
        // Evidently's dataset drift rule: at least half the features drifted.
        dataset_drift: !report.is_empty() && drifted_share >= 0.5,
    }
}
