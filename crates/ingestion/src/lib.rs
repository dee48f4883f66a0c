//! The ingestion service: CSV in (typed, nullable columns), private columns masked, a
//! validation report and a profile per version, immutable content-addressed Parquet versions
//! out.

mod app;
mod csv_import;
mod grpc;
mod preview;
mod quality;
mod settings;
mod sources;
mod store;

pub use app::{Application, serve};
pub use csv_import::{ColumnRule, CsvError, CsvLimits, CsvOptions, ParsedTable, parse_csv};
pub use settings::{IngestionSettings, Settings};
