//! The first rows of a stored version as text, for `PreviewDatasetVersion`.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use mlops_core::ApiError;
use mlops_proto::v1::PreviewRow;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn text(array: &ArrayRef, row: usize) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::Float64 => array.as_primitive::<Float64Type>().value(row).to_string(),
        DataType::Boolean => array.as_boolean().value(row).to_string(),
        DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        DataType::Timestamp(_, _) => {
            let ms = array.as_primitive::<TimestampMillisecondType>().value(row);
            mlops_core::utc_text(ms)
        }
        other => format!("<{other}>"),
    })
}

/// Up to `limit` rows, reading no more batches than needed.
pub fn first_rows(
    parquet: impl parquet::file::reader::ChunkReader + 'static,
    limit: usize,
) -> Result<Vec<PreviewRow>, ApiError> {
    let corrupt =
        |e: &dyn std::fmt::Display| ApiError::data_loss(format!("reading the version: {e}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(parquet)
        .map_err(|e| corrupt(&e))?
        .with_batch_size(limit)
        .with_limit(limit)
        .build()
        .map_err(|e| corrupt(&e))?;
    let mut rows = Vec::with_capacity(limit);
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(&e))?;
        for r in 0..batch.num_rows() {
            let mut row = PreviewRow::default();
            for (c, column) in batch.columns().iter().enumerate() {
                match text(column, r) {
                    Some(value) => row.values.push(value),
                    None => {
                        row.values.push(String::new());
                        row.missing.push(c as u32);
                    }
                }
            }
            rows.push(row);
            if rows.len() == limit {
                return Ok(rows);
            }
        }
    }
    Ok(rows)
}
