//! Settings: defaults in code, then an optional TOML file, then `MLOPS__SECTION__KEY`
//! environment variables. Every service reads the same file and takes the sections it needs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

#[derive(Debug, thiserror::Error)]
#[error("invalid settings: {0}")]
pub struct SettingsError(#[from] ::config::ConfigError);

/// Loads `T` from its defaults, then `file` (if given and present), then `env`
/// (pass `std::env::vars()` in binaries, a map in tests).
pub fn load<T>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, SettingsError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let env: HashMap<String, String> = env
        .into_iter()
        .filter(|(key, _)| key.starts_with("MLOPS__"))
        .collect();
    let mut builder =
        ::config::Config::builder().add_source(::config::Config::try_from(&T::default())?);
    if let Some(file) = file {
        builder = builder.add_source(::config::File::from(file).required(true));
    }
    builder = builder.add_source(
        ::config::Environment::with_prefix("MLOPS")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            // Lists given in the environment are comma-separated.
            .list_separator(",")
            .with_list_parse_key("ingestion.import_s3_prefixes")
            .source(Some(env.into_iter().collect())),
    );
    Ok(builder.build()?.try_deserialize()?)
}

/// The command line every service binary takes.
#[derive(Debug, clap::Parser)]
#[command(
    version,
    about = "An mlops service; settings come from defaults, a TOML file and MLOPS__SECTION__KEY variables"
)]
pub struct ServiceArgs {
    /// Settings file (TOML); default `./mlops.toml` when it exists.
    #[arg(long, env = "MLOPS_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The settings file: the one given, else `./mlops.toml` when it exists.
pub fn settings_file(given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| {
        let local = PathBuf::from("mlops.toml");
        local.exists().then_some(local)
    })
}

/// What a service binary's `main` calls: its arguments, its file, its environment.
pub fn load_for_process<T>() -> Result<T, SettingsError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let args = <ServiceArgs as clap::Parser>::parse();
    load(settings_file(args.config).as_deref(), std::env::vars())
}

/// Where blobs and metadata live.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// Root of everything a service writes: SQLite files, artifacts, temporary uploads.
    pub data_dir: PathBuf,
    /// Encryption at rest of artifacts; off unless a key is set.
    pub encryption: crate::storage::EncryptionSettings,
    /// `postgres://user:password@host/database` to keep every service's tables in PostgreSQL
    /// (a schema per service); empty: a SQLite file per service under `data_dir`.
    pub database_url: String,
    /// `s3://bucket/prefix` to keep artifacts in S3 or an S3-compatible store; empty:
    /// `<data_dir>/artifacts`. Credentials come from the usual AWS_* environment variables.
    pub artifact_url: String,
    pub s3: S3Settings,
}

/// For S3-compatible stores (MinIO, Ceph, ...): AWS itself needs none of these.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct S3Settings {
    /// e.g. `http://minio:9000`; empty: AWS.
    pub endpoint: String,
    /// Empty: AWS_REGION, else us-east-1.
    pub region: String,
    /// Allow a plain-HTTP endpoint.
    pub allow_http: bool,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".mlops"),
            encryption: Default::default(),
            database_url: String::new(),
            artifact_url: String::new(),
            s3: S3Settings::default(),
        }
    }
}

impl StorageSettings {
    pub fn artifacts_dir(&self) -> PathBuf {
        self.data_dir.join("artifacts")
    }
    /// Scratch space on the same filesystem as the artifacts, so a finished file is renamed,
    /// not copied, into place.
    pub fn tmp_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }
    /// `tmp_dir`, created private to this user: services spool plaintext there.
    pub async fn private_tmp_dir(&self) -> Result<PathBuf, crate::ApiError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.tmp_dir();
        tokio::fs::create_dir_all(&dir).await?;
        tokio::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).await?;
        Ok(dir)
    }
    /// Where one service keeps its tables: `<data_dir>/<service>.db`, or the schema
    /// `<service>` of the PostgreSQL database at `database_url`.
    pub fn database(&self, service: &'static str) -> crate::db::Location {
        if self.database_url.is_empty() {
            crate::db::Location::Sqlite(self.data_dir.join(format!("{service}.db")))
        } else {
            crate::db::Location::Postgres {
                url: self.database_url.clone(),
                schema: service,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    pub format: LogFormat,
    /// A `tracing` filter; `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

/// How services find each other: gRPC URLs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointSettings {
    pub ingestion: String,
    pub training: String,
    pub registry: String,
    pub inference: String,
}

impl Default for EndpointSettings {
    fn default() -> Self {
        Self {
            ingestion: "http://127.0.0.1:50052".into(),
            training: "http://127.0.0.1:50053".into(),
            registry: "http://127.0.0.1:50054".into(),
            inference: "http://127.0.0.1:8001".into(),
        }
    }
}

/// Every size, count and time limit a server enforces, in one place.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Largest gRPC message decoded, in bytes (RESOURCE_EXHAUSTED / OUT_OF_RANGE past it).
    pub max_message_bytes: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Deadline for a call to produce its response (streams then run on).
    pub request_timeout_seconds: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 * 1024 * 1024,
            max_concurrent_streams: 256,
            request_timeout_seconds: 300,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Sample {
        storage: StorageSettings,
        telemetry: TelemetrySettings,
    }

    #[test]
    fn defaults_then_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mlops.toml");
        std::fs::write(
            &file,
            "[storage]\ndata_dir = \"/from-file\"\n[telemetry]\nfilter = \"debug\"\n",
        )
        .unwrap();
        let env = [("MLOPS__TELEMETRY__FORMAT".to_string(), "json".to_string())];
        let settings: Sample = load(Some(&file), env).unwrap();
        assert_eq!(settings.storage.data_dir, PathBuf::from("/from-file"));
        assert_eq!(settings.telemetry.filter, "debug");
        assert_eq!(settings.telemetry.format, LogFormat::Json);

        let bare: Sample = load(None, []).unwrap();
        assert_eq!(bare.storage, StorageSettings::default());
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let env = [("MLOPS__STORAGE__DATA_DIRR".to_string(), "x".to_string())];
        let error = load::<Sample>(None, env).unwrap_err().to_string();
        assert!(error.contains("data_dirr"), "{error}");
    }
}
