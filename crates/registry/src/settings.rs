use std::net::SocketAddr;

use mlops_core::auth::AuthSettings;
use mlops_core::config::{LimitSettings, StorageSettings, TelemetrySettings};
use mlops_core::tls::TlsSettings;
use serde::{Deserialize, Serialize};

/// The sections of `mlops.toml` this service reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub registry: RegistrySettings,
    pub storage: StorageSettings,
    pub telemetry: TelemetrySettings,
    pub auth: AuthSettings,
    pub limits: LimitSettings,
    pub tls: TlsSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySettings {
    pub listen: SocketAddr,
    /// The largest model file an import accepts.
    pub max_bundle_bytes: u64,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50054)),
            max_bundle_bytes: 512 << 20,
        }
    }
}
