//! CSV -> validated columns -> Parquet. Every rejection names the line and column.

use std::io::Read;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use mlops_core::ApiError;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CsvError {
    #[error("the CSV is empty: expected a header line of column names")]
    NoHeader,
    #[error("line 1, column {index}: empty column name")]
    EmptyColumnName { index: usize },
    #[error("line 1: column {name:?} appears twice")]
    DuplicateColumn { name: String },
    #[error("the CSV has a header but no data rows")]
    NoRows,
    #[error("line {line}: {found} fields, but the header has {expected}")]
    Ragged {
        line: u64,
        found: usize,
        expected: usize,
    },
    #[error("line {line}, column {column:?}: missing value")]
    Missing { line: u64, column: String },
    #[error("line {line}, column {column:?}: {value:?} is not a finite number")]
    NotNumeric {
        line: u64,
        column: String,
        value: String,
    },
    #[error("line {line}: {message}")]
    Malformed { line: u64, message: String },
    #[error("more than {limit} {what}: raise ingestion.max_{what} to accept it")]
    TooLarge { what: &'static str, limit: u64 },
}

/// Bounds on what one upload may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvLimits {
    pub max_rows: u64,
    pub max_columns: usize,
}

impl Default for CsvLimits {
    fn default() -> Self {
        Self {
            max_rows: 10_000_000,
            max_columns: 10_000,
        }
    }
}

impl From<CsvError> for ApiError {
    fn from(error: CsvError) -> Self {
        if let CsvError::TooLarge { .. } = error {
            return ApiError::resource_exhausted(format!("CSV too large: {error}"));
        }
        ApiError::invalid_argument(format!("invalid CSV: {error}"))
    }
}

/// The parsed table, already encoded as Parquet.
#[derive(Debug)]
pub struct ImportedTable {
    pub columns: Vec<(String, DataType)>,
    pub rows: u64,
    pub parquet: Vec<u8>,
}

struct Column {
    name: String,
    floats: Vec<f64>,
    /// Kept while every value so far is an integer; `None` once one is not.
    ints: Option<Vec<i64>>,
    /// A text column: its first value was not a number.
    texts: Option<Vec<String>>,
}

/// Parses a headed CSV. A column is numeric when its first value is a number (integer-only
/// columns become Int64, others Float64), and then every value must be a finite number; it is
/// text (Utf8) when its first value is not a number.
pub fn import_csv(input: impl Read, limits: CsvLimits) -> Result<ImportedTable, CsvError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let header = reader.headers().map_err(|e| malformed(1, &e))?.clone();
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return Err(CsvError::NoHeader);
    }
    if header.len() > limits.max_columns {
        return Err(CsvError::TooLarge {
            what: "columns",
            limit: limits.max_columns as u64,
        });
    }
    let mut columns: Vec<Column> = Vec::with_capacity(header.len());
    for (index, name) in header.iter().enumerate() {
        if name.is_empty() {
            return Err(CsvError::EmptyColumnName { index: index + 1 });
        }
        if columns.iter().any(|c| c.name == name) {
            return Err(CsvError::DuplicateColumn {
                name: name.to_string(),
            });
        }
        columns.push(Column {
            name: name.to_string(),
            floats: Vec::new(),
            ints: Some(Vec::new()),
            texts: None,
        });
    }

    let mut record = csv::StringRecord::new();
    let mut rows = 0u64;
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(malformed(line, &e)),
        }
        let line = record.position().map_or(line, |p| p.line());
        // A blank line at the end of a file is not a row.
        if record.len() == 1 && record[0].is_empty() && columns.len() > 1 {
            continue;
        }
        if record.len() != columns.len() {
            return Err(CsvError::Ragged {
                line,
                found: record.len(),
                expected: columns.len(),
            });
        }
        for (column, value) in columns.iter_mut().zip(record.iter()) {
            push_value(column, value, line)?;
        }
        rows += 1;
        if rows > limits.max_rows {
            return Err(CsvError::TooLarge {
                what: "rows",
                limit: limits.max_rows,
            });
        }
    }
    if rows == 0 {
        return Err(CsvError::NoRows);
    }

    let fields_and_arrays: Vec<(Field, ArrayRef)> = columns
        .into_iter()
        .map(|c| match (c.texts, c.ints) {
            (Some(texts), _) => (
                Field::new(&c.name, DataType::Utf8, false),
                Arc::new(StringArray::from(texts)) as ArrayRef,
            ),
            (None, Some(ints)) => (
                Field::new(&c.name, DataType::Int64, false),
                Arc::new(Int64Array::from(ints)) as ArrayRef,
            ),
            (None, None) => (
                Field::new(&c.name, DataType::Float64, false),
                Arc::new(Float64Array::from(c.floats)) as ArrayRef,
            ),
        })
        .collect();
    let schema = Arc::new(Schema::new(
        fields_and_arrays
            .iter()
            .map(|(f, _)| f.clone())
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        fields_and_arrays.into_iter().map(|(_, a)| a).collect(),
    )
    .map_err(|e| CsvError::Malformed {
        line: 0,
        message: e.to_string(),
    })?;
    let parquet = write_parquet(&batch);
    Ok(ImportedTable {
        columns: schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect(),
        rows,
        parquet,
    })
}

fn push_value(column: &mut Column, value: &str, line: u64) -> Result<(), CsvError> {
    if value.is_empty() {
        return Err(CsvError::Missing {
            line,
            column: column.name.clone(),
        });
    }
    if column.floats.is_empty()
        && column.texts.is_none()
        && column.ints.as_ref().is_some_and(Vec::is_empty)
        && value.parse::<f64>().is_err()
    {
        column.texts = Some(Vec::new());
    }
    if let Some(texts) = column.texts.as_mut() {
        texts.push(value.to_string());
        return Ok(());
    }
    if let Some(ints) = column.ints.as_mut()
        && let Ok(int) = value.parse::<i64>()
    {
        ints.push(int);
        column.floats.push(int as f64);
        return Ok(());
    }
    match value.parse::<f64>() {
        Ok(float) if float.is_finite() => {
            column.ints = None;
            column.floats.push(float);
            Ok(())
        }
        _ => Err(CsvError::NotNumeric {
            line,
            column: column.name.clone(),
            value: value.chars().take(64).collect(),
        }),
    }
}

fn malformed(line: u64, error: &csv::Error) -> CsvError {
    CsvError::Malformed {
        line,
        message: error.to_string(),
    }
}

fn write_parquet(batch: &RecordBatch) -> Vec<u8> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    // Writing to memory cannot fail for a batch that matches its own schema.
    let mut writer =
        ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).expect("parquet writer");
    writer.write(batch).expect("parquet write");
    writer.close().expect("parquet close");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(text: &str) -> Result<ImportedTable, CsvError> {
        import_csv(text.as_bytes(), CsvLimits::default())
    }

    #[test]
    fn infers_int_and_float_columns() {
        let table = import("a,b,y\n1,2.5,3\n4,5,6\n").unwrap();
        assert_eq!(table.rows, 2);
        assert_eq!(
            table.columns,
            vec![
                ("a".into(), DataType::Int64),
                ("b".into(), DataType::Float64),
                ("y".into(), DataType::Int64)
            ]
        );
        assert_eq!(&table.parquet[..4], b"PAR1");
        // Same content, same bytes: versions can be deduplicated by digest.
        assert_eq!(
            import("a,b,y\n1,2.5,3\n4,5,6\n").unwrap().parquet,
            table.parquet
        );
    }

    #[test]
    fn rejections_name_line_and_column() {
        assert_eq!(import("").unwrap_err(), CsvError::NoHeader);
        assert_eq!(import("a,y\n").unwrap_err(), CsvError::NoRows);
        assert_eq!(
            import("a,a\n1,2\n").unwrap_err(),
            CsvError::DuplicateColumn { name: "a".into() }
        );
        assert_eq!(
            import("a,y\n1,2\n3\n").unwrap_err(),
            CsvError::Ragged {
                line: 3,
                found: 1,
                expected: 2
            }
        );
        assert_eq!(
            import("a,y\n1,2\n3,\n").unwrap_err(),
            CsvError::Missing {
                line: 3,
                column: "y".into()
            }
        );
        let text = import("a,label\n1,cat\n2,dog\n").unwrap();
        assert_eq!(text.columns[1], ("label".into(), DataType::Utf8));
        let error = import("a,y\n1,2\n3,4\nx,5\n").unwrap_err();
        assert_eq!(
            error,
            CsvError::NotNumeric {
                line: 4,
                column: "a".into(),
                value: "x".into()
            }
        );
        assert!(error.to_string().contains("line 4, column \"a\""));
        assert!(matches!(
            import("a,y\n1,NaN\n").unwrap_err(),
            CsvError::NotNumeric { .. }
        ));
        let tight = CsvLimits {
            max_rows: 1,
            max_columns: 2,
        };
        assert!(matches!(
            import_csv("a,y\n1,2\n3,4\n".as_bytes(), tight),
            Err(CsvError::TooLarge { what: "rows", .. })
        ));
        assert!(matches!(
            import_csv("a,b,y\n1,2,3\n".as_bytes(), tight),
            Err(CsvError::TooLarge {
                what: "columns",
                ..
            })
        ));
    }
}
