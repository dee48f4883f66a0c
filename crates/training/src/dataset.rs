//! A stored Parquet dataset version -> named columns for the ML library: numbers (ints,
//! floats, booleans as 0/1, nulls as NaN) and text (nulls as missing).

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int32Type, Int64Type, TimestampMillisecondType,
};
use arrow_array::{Array, ArrowPrimitiveType, GenericStringArray, OffsetSizeTrait, PrimitiveArray};
use arrow_schema::DataType;
use std::path::PathBuf;

use mlops_core::ApiError;
use mlops_core::storage::ArtifactStore;
use mlops_ml::frame::{Column, Frame, Values};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

#[derive(Debug)]
pub struct Table {
    pub features: Frame,
    pub target: Values,
}

/// Where training reads dataset versions from, and how much of one it may hold.
#[derive(Clone)]
pub struct Datasets {
    pub artifacts: ArtifactStore,
    /// Copies of versions kept remotely or encrypted are spooled here (anonymous files).
    pub spool_dir: PathBuf,
    pub max_bytes: u64,
}

impl Datasets {
    /// The stored version `digest` as a table, its content checked against the digest first.
    pub async fn read(
        &self,
        digest: &str,
        target: &str,
        features: &[String],
    ) -> Result<Table, ApiError> {
        let file = self
            .artifacts
            .open_file(digest, &self.spool_dir, self.max_bytes)
            .await?;
        let (target, features, max_bytes) = (target.to_owned(), features.to_vec(), self.max_bytes);
        tokio::task::spawn_blocking(move || load(file, &target, &features, max_bytes))
            .await
            .map_err(|e| ApiError::internal(format!("reading dataset: {e}")))?
    }
}

/// Rows decoded at a time: whatever a version's size, the reader itself holds one batch of
/// the chosen columns, and the table grows by exactly what it keeps.
const BATCH_ROWS: usize = 8192;

/// Bytes that matched their digest but do not read as our Parquet: the stored data is bad.
fn corrupt(e: &dyn std::fmt::Display) -> ApiError {
    ApiError::data_loss(format!("reading dataset: {e}"))
}

/// What the loaded table takes in memory, refused as soon as it would pass the limit.
struct Budget {
    limit: u64,
    used: u64,
    rows: u64,
    columns: usize,
}

impl Budget {
    fn charge(&mut self, bytes: u64) -> Result<(), ApiError> {
        self.used = self.used.saturating_add(bytes);
        if self.used <= self.limit {
            return Ok(());
        }
        Err(self.exhausted())
    }

    /// An empty column with room for `capacity` values, or the limit's error if the machine
    /// cannot give it (within the limit is not always within the memory there is).
    fn reserve<T>(&self, capacity: usize) -> Result<Vec<T>, ApiError> {
        let mut values = Vec::new();
        values
            .try_reserve_exact(capacity)
            .map_err(|_| self.exhausted())?;
        Ok(values)
    }

    fn exhausted(&self) -> ApiError {
        ApiError::resource_exhausted(format!(
            "the dataset needs at least {} bytes of memory to train on ({} rows of {} columns), \
             over training.max_dataset_bytes = {}: choose fewer columns with fit.features, or \
             raise the limit",
            self.used, self.rows, self.columns, self.limit
        ))
    }
}

/// A feature named twice would be read once while the job records it twice.
pub fn check_unique_features(features: &[String]) -> Result<(), ApiError> {
    match features
        .iter()
        .enumerate()
        .find(|(i, f)| features[..*i].contains(f))
    {
        Some((_, twice)) => Err(ApiError::invalid_argument(format!(
            "fit.features: {twice:?} is listed more than once"
        ))),
        None => Ok(()),
    }
}

/// Reads the target and the features (`features`, or all other columns in schema order) from
/// a stored version, in record batches of the chosen columns only, while the table stays
/// within `memory_limit` bytes.
pub fn load(
    parquet: std::fs::File,
    target: &str,
    features: &[String],
    memory_limit: u64,
) -> Result<Table, ApiError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(parquet).map_err(|e| corrupt(&e))?;
    let names: Vec<String> = builder
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
    check_unique_features(features)?;
    if features.iter().any(|f| f == target) {
        return Err(ApiError::invalid_argument(format!(
            "fit.features: the target {target:?} cannot also be a feature"
        )));
    }
    let chosen: Vec<usize> = (0..names.len())
        .filter(|&i| names[i] == target || features.is_empty() || features.contains(&names[i]))
        .collect();
    // The row groups' rows are what the reader yields: a footer that says otherwise is corrupt.
    let metadata = builder.metadata();
    let rows = metadata
        .row_groups()
        .iter()
        .try_fold(0u64, |sum, g| {
            u64::try_from(g.num_rows())
                .ok()
                .and_then(|n| sum.checked_add(n))
        })
        .filter(|&sum| i64::try_from(sum).ok() == Some(metadata.file_metadata().num_rows()))
        .ok_or_else(|| corrupt(&"the row counts in the file's footer disagree"))?;
    let mut budget = Budget {
        limit: memory_limit,
        used: 0,
        rows,
        columns: chosen.len(),
    };
    // Each value's fixed part, known before a byte is decoded; text is charged as it arrives.
    let mut columns = Vec::with_capacity(chosen.len());
    for &i in &chosen {
        let field = &builder.schema().fields()[i];
        let text = matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8);
        let width = if text {
            std::mem::size_of::<Option<String>>()
        } else {
            std::mem::size_of::<f64>()
        };
        budget.charge(rows.saturating_mul(width as u64))?;
        let capacity = usize::try_from(rows).map_err(|e| corrupt(&e))?;
        columns.push(if text {
            Values::Categorical(budget.reserve(capacity)?)
        } else {
            Values::Numeric(budget.reserve(capacity)?)
        });
    }
    let projection = ProjectionMask::roots(builder.parquet_schema(), chosen.iter().copied());
    let reader = builder
        .with_projection(projection)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| corrupt(&e))?;
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(&e))?;
        for (values, array) in columns.iter_mut().zip(batch.columns()) {
            append(values, array.as_ref(), &mut budget)?;
        }
    }
    let mut named: Vec<(String, Values)> = chosen
        .iter()
        .map(|&i| names[i].clone())
        .zip(columns)
        .collect();
    let target_at = named.iter().position(|(n, _)| n == target).expect("known");
    let (_, target_values) = named.remove(target_at);
    if !features.is_empty() {
        // The caller's order, not the file's.
        named.sort_by_key(|(n, _)| features.iter().position(|f| f == n));
    }
    let chosen: Vec<Column> = named
        .into_iter()
        .map(|(name, values)| Column { name, values })
        .collect();
    Ok(Table {
        features: Frame::new(chosen).map_err(|e| ApiError::invalid_argument(e.to_string()))?,
        target: target_values,
    })
}

fn append(values: &mut Values, array: &dyn Array, budget: &mut Budget) -> Result<(), ApiError> {
    let mismatch = || corrupt(&"a column changes type between row groups");
    match values {
        Values::Numeric(out) => match array.data_type() {
            DataType::Float64 => numbers(out, array.as_primitive::<Float64Type>(), |v| v),
            DataType::Float32 => numbers(out, array.as_primitive::<Float32Type>(), f64::from),
            DataType::Int64 => numbers(out, array.as_primitive::<Int64Type>(), |v| v as f64),
            DataType::Int32 => numbers(out, array.as_primitive::<Int32Type>(), f64::from),
            // Epoch milliseconds: a number like any other feature.
            DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, _) => {
                numbers(out, array.as_primitive::<TimestampMillisecondType>(), |v| {
                    v as f64
                })
            }
            DataType::Boolean => out.extend(
                array
                    .as_boolean()
                    .iter()
                    .map(|v| v.map_or(f64::NAN, |b| f64::from(u8::from(b)))),
            ),
            DataType::Utf8 | DataType::LargeUtf8 => return Err(mismatch()),
            other => return Err(corrupt(&format!("unsupported column type {other}"))),
        },
        Values::Categorical(out) => {
            let bytes = match array.data_type() {
                DataType::Utf8 => texts(out, array.as_string::<i32>()),
                DataType::LargeUtf8 => texts(out, array.as_string::<i64>()),
                _ => return Err(mismatch()),
            };
            budget.charge(bytes)?;
        }
    }
    Ok(())
}

fn numbers<T: ArrowPrimitiveType>(
    out: &mut Vec<f64>,
    array: &PrimitiveArray<T>,
    to_f64: impl Fn(T::Native) -> f64,
) {
    out.extend(array.iter().map(|v| v.map_or(f64::NAN, &to_f64)));
}

/// Appends the texts (nulls as missing) and returns the heap they took: each non-empty text is
/// an allocation of its length, which the allocator rounds up to 16 bytes with 8 of its own,
/// and 32 at least.
fn texts<O: OffsetSizeTrait>(out: &mut Vec<Option<String>>, array: &GenericStringArray<O>) -> u64 {
    let mut bytes = 0;
    out.extend(array.iter().map(|v| {
        v.map(|text| {
            if !text.is_empty() {
                bytes += (text.len() as u64 + 8).next_multiple_of(16).max(32);
            }
            text.to_string()
        })
    }));
    bytes
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
    use mlops_core::ErrorKind;
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::*;

    const ROWS: usize = 20_000;

    /// A version of `ROWS` rows in row groups of 3,000: id, flag, x (NaN-free floats with
    /// nulls), city (text with nulls), label.
    fn stored_version() -> std::fs::File {
        let x: Float64Array = (0..ROWS)
            .map(|i| (i % 7 != 0).then_some(i as f64 / 2.0))
            .collect();
        let city: StringArray = (0..ROWS)
            .map(|i| (i % 5 != 0).then(|| format!("city-{}", i % 13)))
            .collect();
        let batch = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from_iter_values(0..ROWS as i64)) as _,
            ),
            (
                "flag",
                Arc::new(BooleanArray::from_iter((0..ROWS).map(|i| Some(i % 2 == 0)))) as _,
            ),
            ("x", Arc::new(x) as _),
            ("city", Arc::new(city) as _),
            (
                "label",
                Arc::new(Int64Array::from_iter_values(
                    (0..ROWS as i64).map(|i| i % 3),
                )) as _,
            ),
        ])
        .unwrap();
        let mut file = tempfile::tempfile().unwrap();
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(3_000))
            .build();
        let mut writer =
            ArrowWriter::try_new(file.try_clone().unwrap(), batch.schema(), Some(properties))
                .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        use std::io::Seek;
        file.rewind().unwrap();
        file
    }

    fn numbers(values: &Values) -> &[f64] {
        match values {
            Values::Numeric(v) => v,
            Values::Categorical(_) => panic!("expected numbers"),
        }
    }

    #[test]
    fn reads_the_chosen_columns_across_row_groups_in_the_callers_order() {
        let features = ["city".to_string(), "x".to_string()];
        let table = load(stored_version(), "label", &features, u64::MAX).unwrap();
        assert_eq!(table.features.names(), features);
        assert_eq!(table.features.rows(), ROWS);
        let label = numbers(&table.target);
        let x = numbers(&table.features.columns()[1].values);
        let Values::Categorical(city) = &table.features.columns()[0].values else {
            panic!("city is text");
        };
        for i in [0, 1, 2_999, 3_000, 8_191, 8_192, 19_999] {
            assert_eq!(label[i], (i % 3) as f64, "label at {i}");
            if i % 7 == 0 {
                assert!(x[i].is_nan(), "null x at {i}");
            } else {
                assert_eq!(x[i], i as f64 / 2.0, "x at {i}");
            }
            let expected = (i % 5 != 0).then(|| format!("city-{}", i % 13));
            assert_eq!(city[i], expected, "city at {i}");
        }

        let twice = ["x".to_string(), "id".to_string(), "x".to_string()];
        let refused = load(stored_version(), "label", &twice, u64::MAX).unwrap_err();
        assert_eq!(refused.kind, ErrorKind::InvalidArgument);
        assert!(
            refused.message.contains("\"x\" is listed more than once"),
            "{}",
            refused.message
        );

        // No features named: every other column, in the file's order, booleans as 0/1.
        let all = load(stored_version(), "x", &[], u64::MAX).unwrap();
        assert_eq!(all.features.names(), ["id", "flag", "city", "label"]);
        assert_eq!(
            numbers(&all.features.columns()[1].values)[..3],
            [1.0, 0.0, 1.0]
        );
    }

    #[test]
    fn a_table_over_the_memory_limit_is_refused_naming_the_setting() {
        let numbers_only = ["x".to_string()];
        // label and x: 8 bytes a value each.
        let exact = 2 * 8 * ROWS as u64;
        assert!(load(stored_version(), "label", &numbers_only, exact).is_ok());
        let over = load(stored_version(), "label", &numbers_only, exact - 1).unwrap_err();
        assert_eq!(over.kind, ErrorKind::ResourceExhausted);
        assert!(
            over.message.contains("training.max_dataset_bytes")
                && over.message.contains("20000 rows of 2 columns"),
            "{}",
            over.message
        );

        // Texts count with their length: room for the values' fixed parts is not enough.
        let with_text = ["city".to_string()];
        let fixed = ((8 + std::mem::size_of::<Option<String>>()) * ROWS) as u64;
        let refused = load(stored_version(), "label", &with_text, fixed).unwrap_err();
        assert_eq!(
            refused.kind,
            ErrorKind::ResourceExhausted,
            "{}",
            refused.message
        );
    }
}
