use std::net::SocketAddr;

use mlops_core::auth::AuthSettings;
use mlops_core::config::{EndpointSettings, LimitSettings, StorageSettings, TelemetrySettings};
use mlops_core::tls::TlsSettings;
use serde::{Deserialize, Serialize};

/// The sections of `mlops.toml` this service reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub training: TrainingSettings,
    pub endpoints: EndpointSettings,
    pub storage: StorageSettings,
    pub telemetry: TelemetrySettings,
    pub auth: AuthSettings,
    pub limits: LimitSettings,
    pub tls: TlsSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingSettings {
    pub listen: SocketAddr,
    /// Jobs fitting at the same time; later ones wait as PENDING.
    pub max_concurrent_jobs: usize,
    /// The most memory a job's dataset may take once loaded (a number is 8 bytes, a text 24
    /// plus its allocation, 32 bytes or more); a bigger one fails the job with
    /// RESOURCE_EXHAUSTED instead of the process running out of memory. Fitting needs a few
    /// times this more.
    pub max_dataset_bytes: u64,
}

impl Default for TrainingSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50053)),
            max_concurrent_jobs: 2,
            max_dataset_bytes: 4 << 30,
        }
    }
}
