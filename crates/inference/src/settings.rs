use std::net::SocketAddr;

use mlops_core::auth::AuthSettings;
use mlops_core::config::{EndpointSettings, LimitSettings, StorageSettings, TelemetrySettings};
use mlops_core::tls::TlsSettings;
use serde::{Deserialize, Serialize};

/// The sections of `mlops.toml` this service reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub inference: InferenceSettings,
    pub endpoints: EndpointSettings,
    pub storage: StorageSettings,
    pub telemetry: TelemetrySettings,
    pub auth: AuthSettings,
    pub limits: LimitSettings,
    pub tls: TlsSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InferenceSettings {
    /// Open Inference Protocol over gRPC (Triton's port).
    pub grpc_listen: SocketAddr,
    /// Open Inference Protocol over HTTP/JSON, plus `/metrics`.
    pub http_listen: SocketAddr,
    /// Largest request decoded, in bytes; larger ones get RESOURCE_EXHAUSTED (413 over HTTP).
    pub max_request_bytes: usize,
    /// The alias served when a request names no version; the latest version when unset.
    pub default_alias: String,
    /// Requests in flight at once, gRPC and HTTP together; more are refused at once with
    /// RESOURCE_EXHAUSTED (503 over HTTP) instead of queueing without bound.
    pub max_in_flight: usize,
    /// The sampled log of requests (off by default).
    pub prediction_log: crate::prediction_log::PredictionLogSettings,
    /// Dynamic batching (off by default).
    pub batching: crate::batching::BatchingSettings,
    /// Drift of live inputs against the training profile of bundles that carry one.
    pub drift: crate::drift::DriftSettings,
}

impl Default for InferenceSettings {
    fn default() -> Self {
        Self {
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 8001)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            max_request_bytes: 64 * 1024 * 1024,
            default_alias: "champion".into(),
            max_in_flight: 4096,
            prediction_log: Default::default(),
            batching: Default::default(),
            drift: Default::default(),
        }
    }
}
