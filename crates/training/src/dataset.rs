//! A stored Parquet dataset version -> a feature matrix and a target vector.

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use bytes::Bytes;
use mlops_core::ApiError;
use ndarray::{Array1, Array2};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub struct Table {
    pub feature_names: Vec<String>,
    pub features: Array2<f64>,
    pub target: Array1<f64>,
}

/// Splits the columns into features (all but the target, in schema order) and the target.
pub fn load(parquet: Bytes, target: &str) -> Result<Table, ApiError> {
    let corrupt = |e: &dyn std::fmt::Display| ApiError::internal(format!("reading dataset: {e}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(parquet).map_err(|e| corrupt(&e))?;
    let names: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let target_index = names.iter().position(|n| n == target).ok_or_else(|| {
        ApiError::invalid_argument(format!(
            "target_column {target:?} is not a column (columns: {})",
            names.join(", ")
        ))
    })?;
    let mut columns: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for batch in reader.build().map_err(|e| corrupt(&e))? {
        let batch = batch.map_err(|e| corrupt(&e))?;
        for (values, array) in columns.iter_mut().zip(batch.columns()) {
            if let Some(floats) = array.as_primitive_opt::<Float64Type>() {
                values.extend(floats.values().iter().copied());
            } else if let Some(ints) = array.as_primitive_opt::<Int64Type>() {
                values.extend(ints.values().iter().map(|v| *v as f64));
            } else {
                return Err(corrupt(&format!(
                    "unsupported column type {}",
                    array.data_type()
                )));
            }
        }
    }
    let rows = columns.first().map_or(0, Vec::len);
    let target_values = Array1::from(columns.remove(target_index));
    let mut feature_names = names;
    feature_names.remove(target_index);
    let features = Array2::from_shape_fn((rows, columns.len()), |(i, j)| columns[j][i]);
    Ok(Table {
        feature_names,
        features,
        target: target_values,
    })
}
