//! Any bytes as an uploaded CSV: an error or a table, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlops_ingestion::{CsvLimits, import_csv};

fuzz_target!(|data: &[u8]| {
    let limits = CsvLimits { max_rows: 10_000, max_columns: 256 };
    if let Ok(table) = import_csv(data, limits) {
        assert!(table.rows > 0 && !table.columns.is_empty());
        assert_eq!(&table.parquet[..4], b"PAR1");
    }
});
