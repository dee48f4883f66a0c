//! The ingestion service: CSV in (typed, nullable columns), private columns masked, a
//! validation report and a profile per version, immutable content-addressed Parquet versions
//! out.

mod app;
mod csv_import;
mod grpc;
mod import;
mod preview;
mod quality;
mod settings;
mod sources;
mod spill;
mod store;

pub use app::{Application, serve};
pub use csv_import::{ColumnRule, CsvError, CsvLimits, CsvOptions};
pub use import::{ImportSpec, Imported, import};
pub use settings::{IngestionSettings, Settings};
