//! The shared runtime every service is built on: settings, telemetry, the error taxonomy,
//! `serve()`, the SQL pool, the artifact store and name/id helpers.

pub mod auth;
pub mod client;
pub mod config;
pub mod db;
pub mod error;
pub mod ids;
pub mod server;
pub mod serving;
pub mod storage;
pub mod telemetry;
pub mod tensor;
pub mod tls;
pub mod watch;

pub use error::{ApiError, ErrorKind};
pub use tokio_util::sync::CancellationToken;

/// Milliseconds since the Unix epoch, the one timestamp format of every contract.
/// A time in milliseconds since the epoch as RFC 3339 UTC with milliseconds
/// (`2026-11-28T01:00:03.000Z`); out of chrono's range, the number itself.
pub fn utc_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or(ms.to_string(), |t| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    })
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
