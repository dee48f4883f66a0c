use std::net::SocketAddr;
use std::path::PathBuf;

use mlops_core::auth::AuthSettings;
use mlops_core::config::{EndpointSettings, LimitSettings, StorageSettings, TelemetrySettings};
use mlops_core::tls::TlsSettings;
use serde::{Deserialize, Serialize};

/// The sections of `mlops.toml` this service reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub orchestrator: OrchestratorSettings,
    pub endpoints: EndpointSettings,
    pub storage: StorageSettings,
    pub telemetry: TelemetrySettings,
    pub auth: AuthSettings,
    pub limits: LimitSettings,
    pub tls: TlsSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrchestratorSettings {
    pub listen: SocketAddr,
    /// Where pipeline `dataset.source` names are looked up; empty means `<data_dir>/sources`.
    pub sources_dir: PathBuf,
    /// How often registered pipelines' triggers are checked (and so how late a schedule may
    /// fire, and how soon a new dataset version or drift is noticed), in milliseconds.
    pub trigger_poll_ms: u64,
}

impl Default for OrchestratorSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            sources_dir: PathBuf::new(),
            trigger_poll_ms: 5000,
        }
    }
}

impl Settings {
    pub fn sources_dir(&self) -> PathBuf {
        if self.orchestrator.sources_dir.as_os_str().is_empty() {
            self.storage.data_dir.join("sources")
        } else {
            self.orchestrator.sources_dir.clone()
        }
    }
}
