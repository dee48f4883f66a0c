//! Triton's statistics and model-repository extensions over our registry: per-version counters
//! that cost a few atomic adds per request, and load/unload by registered name and version only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mlops_core::auth::{Principal, ResourceKind, authorize, authorize_visible};
use mlops_core::ids::validate_name;
use mlops_core::{ApiError, now_ms};
use mlops_proto::inference::model_repository_parameter::ParameterChoice;
use mlops_proto::inference::repository_index_response::ModelIndex;
use mlops_proto::inference::*;
use mlops_proto::v1::ListRegisteredModelsRequest;

use crate::models::Models;

/// How long each phase of one successful request took.
pub struct Phases {
    /// The decoded input rows, when the request is sampled for the prediction log.
    pub logged_inputs: Option<serde_json::Value>,
    pub rows: u64,
    pub input: Duration,
    pub infer: Duration,
    pub output: Duration,
}

#[derive(Default)]
struct Counter {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Counter {
    fn add(&self, elapsed: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.ns
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> StatisticDuration {
        StatisticDuration {
            count: self.count.load(Ordering::Relaxed),
            ns: self.ns.load(Ordering::Relaxed),
        }
    }
}

#[derive(Default)]
pub struct Stats {
    last_inference_ms: AtomicU64,
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    success: Counter,
    fail: Counter,
    compute_input: Counter,
    compute_infer: Counter,
    compute_output: Counter,
}

impl Stats {
    pub fn record<T>(&self, outcome: &Result<(T, Phases), ApiError>, elapsed: Duration) {
        self.last_inference_ms
            .store(now_ms().max(0) as u64, Ordering::Relaxed);
        match outcome {
            Ok((_, phases)) => {
                self.success.add(elapsed);
                self.inference_count
                    .fetch_add(phases.rows, Ordering::Relaxed);
                self.execution_count.fetch_add(1, Ordering::Relaxed);
                self.compute_input.add(phases.input);
                self.compute_infer.add(phases.infer);
                self.compute_output.add(phases.output);
            }
            Err(_) => self.fail.add(elapsed),
        }
    }

    fn snapshot(&self, name: &str, version: u32) -> ModelStatistics {
        ModelStatistics {
            name: name.into(),
            version: version.to_string(),
            last_inference: self.last_inference_ms.load(Ordering::Relaxed),
            inference_count: self.inference_count.load(Ordering::Relaxed),
            execution_count: self.execution_count.load(Ordering::Relaxed),
            inference_stats: Some(InferStatistics {
                success: Some(self.success.snapshot()),
                fail: Some(self.fail.snapshot()),
                // Requests are never queued: past the in-flight limit they are refused.
                queue: Some(StatisticDuration::default()),
                compute_input: Some(self.compute_input.snapshot()),
                compute_infer: Some(self.compute_infer.snapshot()),
                compute_output: Some(self.compute_output.snapshot()),
            }),
            batch_stats: Vec::new(),
        }
    }
}

/// Triton's enum for an OIP datatype name.
fn triton_type(datatype: &str) -> DataType {
    match datatype {
        "BOOL" => DataType::TypeBool,
        "UINT8" => DataType::TypeUint8,
        "UINT16" => DataType::TypeUint16,
        "UINT32" => DataType::TypeUint32,
        "UINT64" => DataType::TypeUint64,
        "INT8" => DataType::TypeInt8,
        "INT16" => DataType::TypeInt16,
        "INT32" => DataType::TypeInt32,
        "INT64" => DataType::TypeInt64,
        "FP16" => DataType::TypeFp16,
        "FP32" => DataType::TypeFp32,
        "FP64" => DataType::TypeFp64,
        "BYTES" => DataType::TypeString,
        "BF16" => DataType::TypeBf16,
        _ => DataType::TypeInvalid,
    }
}

/// A metadata shape without its batch dimension, as Triton's `dims` (a per-row scalar is [1]).
fn dims(shape: &[i64]) -> Vec<i64> {
    match shape.get(1..) {
        Some(rest) if !rest.is_empty() => rest.to_vec(),
        _ => vec![1],
    }
}

impl Models {
    /// The model's configuration in Triton's terms, from the same facts as its metadata.
    pub async fn config(
        &self,
        caller: Option<&Principal>,
        name: &str,
        version: &str,
    ) -> Result<ModelConfigResponse, ApiError> {
        let metadata = self.metadata(caller, name, version).await?;
        let batching = self.batching();
        Ok(ModelConfigResponse {
            config: Some(ModelConfig {
                name: metadata.name,
                platform: metadata.platform,
                backend: "mlops".into(),
                // Any number of rows per request; batches are cut at max_rows.
                max_batch_size: i32::try_from(batching.max_rows).unwrap_or(i32::MAX),
                input: metadata
                    .inputs
                    .iter()
                    .map(|t| ModelInput {
                        name: t.name.clone(),
                        data_type: triton_type(&t.datatype) as i32,
                        dims: dims(&t.shape),
                    })
                    .collect(),
                output: metadata
                    .outputs
                    .iter()
                    .map(|t| ModelOutput {
                        name: t.name.clone(),
                        data_type: triton_type(&t.datatype) as i32,
                        dims: dims(&t.shape),
                    })
                    .collect(),
                scheduling_choice: (batching.max_delay_us > 0).then(|| {
                    model_config::SchedulingChoice::DynamicBatching(ModelDynamicBatching {
                        preferred_batch_size: Vec::new(),
                        max_queue_delay_microseconds: batching.max_delay_us,
                    })
                }),
            }),
        })
    }

    /// Statistics of loaded versions: all, one model's, or one version's.
    pub fn statistics(
        &self,
        caller: Option<&Principal>,
        name: &str,
        version: &str,
    ) -> Result<ModelStatisticsResponse, ApiError> {
        if !name.is_empty() {
            validate_name("name", name)?;
            authorize(caller, ResourceKind::Model, name)?;
        }
        let mut models =
            authorize_visible(caller, ResourceKind::Model, self.loaded_models(), |m| {
                &m.name
            })?;
        models.retain(|m| {
            (name.is_empty() || m.name == name)
                && (version.is_empty() || m.version.to_string() == version)
        });
        if !name.is_empty() && models.is_empty() {
            return Err(ApiError::not_found(format!(
                "model {name:?}{} is not loaded",
                if version.is_empty() {
                    String::new()
                } else {
                    format!(" version {version}")
                }
            )));
        }
        models.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        Ok(ModelStatisticsResponse {
            model_stats: models
                .iter()
                .map(|m| m.stats.snapshot(&m.name, m.version))
                .collect(),
        })
    }

    /// Every registered model the caller may see: its loaded versions READY, the others
    /// UNAVAILABLE with the reason.
    pub async fn repository_index(
        &self,
        caller: Option<&Principal>,
        ready_only: bool,
    ) -> Result<RepositoryIndexResponse, ApiError> {
        let registered = self
            .registry()
            .list_registered_models(ListRegisteredModelsRequest {})
            .await
            .map_err(|s| ApiError::from_status("registry", &s))?
            .into_inner()
            .models;
        let registered = authorize_visible(caller, ResourceKind::Model, registered, |m| &m.name)?;
        let loaded = self.loaded_models();
        let unloaded = self.unloaded.read().expect("unloaded lock").clone();
        let mut models = Vec::new();
        for model in registered {
            let mut versions: Vec<u32> = loaded
                .iter()
                .filter(|l| l.name == model.name)
                .map(|l| l.version)
                .collect();
            versions.sort_unstable();
            for version in &versions {
                models.push(ModelIndex {
                    name: model.name.clone(),
                    version: version.to_string(),
                    state: "READY".into(),
                    reason: String::new(),
                });
            }
            if versions.is_empty() && !ready_only {
                let reason = if unloaded.contains(&model.name) {
                    "unloaded by an operator"
                } else {
                    "not loaded yet: loads on its first request"
                };
                models.push(ModelIndex {
                    name: model.name.clone(),
                    version: String::new(),
                    state: "UNAVAILABLE".into(),
                    reason: reason.into(),
                });
            }
        }
        Ok(RepositoryIndexResponse { models })
    }

    /// Loads a registered model (its served version, or the `version` parameter) and lets
    /// requests reach it again after an unload.
    pub async fn repository_load(
        &self,
        caller: Option<&Principal>,
        request: &RepositoryModelLoadRequest,
    ) -> Result<(), ApiError> {
        let name = &request.model_name;
        validate_name("model_name", name)?;
        authorize(caller, ResourceKind::Model, name)?;
        let mut version = String::new();
        for (key, value) in &request.parameters {
            match (key.as_str(), &value.parameter_choice) {
                ("version", Some(ParameterChoice::StringParam(v))) => version = v.clone(),
                ("version", Some(ParameterChoice::Int64Param(v))) => version = v.to_string(),
                _ => {
                    return Err(ApiError::invalid_argument(format!(
                        "parameter {key:?} is not supported: models load by registered name and \
                         `version` only, never from a path or an inline configuration"
                    )));
                }
            }
        }
        // Load first: a load that fails leaves an operator's unload in force.
        let loaded = self.resolve_loaded(name, &version).await.map(drop);
        if loaded.is_ok() {
            self.unloaded.write().expect("unloaded lock").remove(name);
        }
        tracing::info!(model = %name, ok = loaded.is_ok(), "repository load");
        loaded
    }

    /// Unloads every version of a model: requests for it are refused until it is loaded
    /// again; requests in flight finish on the version they hold.
    pub fn repository_unload(
        &self,
        caller: Option<&Principal>,
        request: &RepositoryModelUnloadRequest,
    ) -> Result<(), ApiError> {
        let name = &request.model_name;
        validate_name("model_name", name)?;
        authorize(caller, ResourceKind::Model, name)?;
        self.unloaded
            .write()
            .expect("unloaded lock")
            .insert(name.clone());
        self.forget(name);
        tracing::info!(model = %name, "repository unload");
        Ok(())
    }
}
