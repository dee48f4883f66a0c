use std::net::SocketAddr;

use mlops_core::auth::AuthSettings;
use mlops_core::config::{LimitSettings, StorageSettings, TelemetrySettings};
use mlops_core::tls::TlsSettings;
use serde::{Deserialize, Serialize};

/// The sections of `mlops.toml` this service reads; other sections are left to other services.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub ingestion: IngestionSettings,
    pub storage: StorageSettings,
    pub telemetry: TelemetrySettings,
    pub auth: AuthSettings,
    pub limits: LimitSettings,
    pub tls: TlsSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestionSettings {
    pub listen: SocketAddr,
    /// Largest CSV upload accepted, in bytes; larger ones get RESOURCE_EXHAUSTED.
    pub max_upload_bytes: u64,
    /// Most data rows and columns one upload may hold.
    pub max_rows: u64,
    pub max_columns: usize,
    /// Longest line a CSV or JSON Lines source may have, in bytes (a 2 GB single line is
    /// refused by its number before it is buffered).
    pub max_line_bytes: u64,
    /// The secret key of `hash` masking (HMAC-SHA256), 16 bytes or more; usually given as
    /// MLOPS__INGESTION__MASKING_KEY. Without it, `hash` masking is refused.
    pub masking_key: String,
    /// Most bytes a gzip or zstd upload may decompress to; more is RESOURCE_EXHAUSTED (a
    /// compression bomb never fills the disk or memory).
    pub max_decompressed_bytes: u64,
    /// The only directory uploads may name by URI (`header.uri`); empty turns URIs off.
    pub import_root: String,
    /// The S3 locations (`s3://bucket/prefix/`) uploads may name by URI; empty turns S3 URIs
    /// off. Read with `storage.s3`'s endpoint and region and the AWS_* credentials.
    pub import_s3_prefixes: Vec<String>,
}

impl Default for IngestionSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50052)),
            max_upload_bytes: 1 << 30,
            max_rows: 10_000_000,
            max_columns: 10_000,
            max_line_bytes: 64 << 20,
            masking_key: String::new(),
            max_decompressed_bytes: 8 << 30,
            import_root: String::new(),
            import_s3_prefixes: Vec::new(),
        }
    }
}
