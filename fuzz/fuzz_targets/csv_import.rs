//! Any bytes as an uploaded CSV: an error or a table, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlops_ingestion::{CsvLimits, CsvOptions, parse_csv};

fuzz_target!(|data: &[u8]| {
    let limits = CsvLimits { max_rows: 10_000, max_columns: 256 };
    if let Ok(table) = parse_csv(data, &CsvOptions::default(), &[], limits) {
        assert!(table.rows > 0 && !table.columns.is_empty());
        assert!(table.columns.iter().all(|c| c.data.len() as u64 == table.rows));
    }
});
