//! The ingestion service: CSV in, validated numeric schema, immutable Parquet versions out.

mod app;
mod csv_import;
mod grpc;
mod settings;
mod store;

pub use app::{Application, serve};
pub use csv_import::{CsvError, CsvLimits, ImportedTable, import_csv};
pub use settings::{IngestionSettings, Settings};
