//! A stored Parquet dataset version -> named columns for the ML library: numbers (ints,
//! floats, booleans as 0/1, nulls as NaN) and text (nulls as missing).

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int32Type, Int64Type, TimestampMillisecondType,
};
use arrow_schema::DataType;
use bytes::Bytes;
use mlops_core::ApiError;
use mlops_ml::frame::{Column, Frame, Values};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub struct Table {
    pub features: Frame,
    pub target: Values,
}

fn corrupt(e: &dyn std::fmt::Display) -> ApiError {
    ApiError::internal(format!("reading dataset: {e}"))
}

/// Splits the columns into features (`features`, or all but the target, in schema order) and
/// the target.
pub fn load(parquet: Bytes, target: &str, features: &[String]) -> Result<Table, ApiError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(parquet).map_err(|e| corrupt(&e))?;
    let names: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let known = |n: &str| names.iter().any(|c| c == n);
    if !known(target) {
        return Err(ApiError::invalid_argument(format!(
            "target_column {target:?} is not a column (columns: {})",
            names.join(", ")
        )));
    }
    if let Some(missing) = features.iter().find(|f| !known(f)) {
        return Err(ApiError::invalid_argument(format!(
            "fit.features: {missing:?} is not a column (columns: {})",
            names.join(", ")
        )));
    }
    if features.iter().any(|f| f == target) {
        return Err(ApiError::invalid_argument(format!(
            "fit.features: the target {target:?} cannot also be a feature"
        )));
    }
    let mut columns: Vec<Option<Values>> = vec![None; names.len()];
    for batch in reader.build().map_err(|e| corrupt(&e))? {
        let batch = batch.map_err(|e| corrupt(&e))?;
        for (slot, array) in columns.iter_mut().zip(batch.columns()) {
            append(slot, array.as_ref())?;
        }
    }
    let mut named: Vec<(String, Values)> = names
        .into_iter()
        .zip(columns)
        .map(|(n, v)| (n, v.unwrap_or(Values::Numeric(Vec::new()))))
        .collect();
    let target_at = named.iter().position(|(n, _)| n == target).expect("known");
    let (_, target_values) = named.remove(target_at);
    let chosen: Vec<Column> = if features.is_empty() {
        named
            .into_iter()
            .map(|(name, values)| Column { name, values })
            .collect()
    } else {
        features
            .iter()
            .map(|f| {
                let (name, values) = named.iter().find(|(n, _)| n == f).expect("known").clone();
                Column { name, values }
            })
            .collect()
    };
    Ok(Table {
        features: Frame::new(chosen).map_err(|e| ApiError::invalid_argument(e.to_string()))?,
        target: target_values,
    })
}

fn append(slot: &mut Option<Values>, array: &dyn Array) -> Result<(), ApiError> {
    let numeric = |i: usize, v: f64| if array.is_null(i) { f64::NAN } else { v };
    let new: Values = match array.data_type() {
        DataType::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            Values::Numeric((0..a.len()).map(|i| numeric(i, a.value(i))).collect())
        }
        DataType::Float32 => {
            let a = array.as_primitive::<Float32Type>();
            Values::Numeric(
                (0..a.len())
                    .map(|i| numeric(i, f64::from(a.value(i))))
                    .collect(),
            )
        }
        DataType::Int64 => {
            let a = array.as_primitive::<Int64Type>();
            Values::Numeric(
                (0..a.len())
                    .map(|i| numeric(i, a.value(i) as f64))
                    .collect(),
            )
        }
        DataType::Int32 => {
            let a = array.as_primitive::<Int32Type>();
            Values::Numeric(
                (0..a.len())
                    .map(|i| numeric(i, f64::from(a.value(i))))
                    .collect(),
            )
        }
        DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, _) => {
            // Epoch milliseconds: a number like any other feature.
            let a = array.as_primitive::<TimestampMillisecondType>();
            Values::Numeric(
                (0..a.len())
                    .map(|i| numeric(i, a.value(i) as f64))
                    .collect(),
            )
        }
        DataType::Boolean => {
            let a = array.as_boolean();
            Values::Numeric(
                (0..a.len())
                    .map(|i| numeric(i, f64::from(u8::from(a.value(i)))))
                    .collect(),
            )
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            Values::Categorical(
                (0..a.len())
                    .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
                    .collect(),
            )
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            Values::Categorical(
                (0..a.len())
                    .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
                    .collect(),
            )
        }
        other => return Err(corrupt(&format!("unsupported column type {other}"))),
    };
    match (slot.as_mut(), new) {
        (None, new) => *slot = Some(new),
        (Some(Values::Numeric(v)), Values::Numeric(n)) => v.extend(n),
        (Some(Values::Categorical(v)), Values::Categorical(n)) => v.extend(n),
        _ => return Err(corrupt(&"a column changes type between row groups")),
    }
    Ok(())
}
