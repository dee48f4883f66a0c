//! CSV -> typed, nullable columns -> (masking, report, profile) -> Parquet. Every rejection
//! names the line and column.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
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
    #[error("line {line}, column {column:?}: {value:?} is not a finite number")]
    NotNumeric {
        line: u64,
        column: String,
        value: String,
    },
    #[error(
        "line {line}, column {column:?}: {value:?} is not {expected}, which the column's earlier values are (declare the column's type to keep such values as type errors)"
    )]
    TypeChanged {
        line: u64,
        column: String,
        value: String,
        expected: &'static str,
    },
    #[error("line {line}: {message}")]
    Malformed { line: u64, message: String },
    #[error("more than {limit} {what}: raise ingestion.max_{what} to accept it")]
    TooLarge { what: &'static str, limit: u64 },
    #[error("{0}")]
    Spec(String),
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
        match error {
            CsvError::TooLarge { .. } => {
                ApiError::resource_exhausted(format!("CSV too large: {error}"))
            }
            CsvError::Spec(_) => ApiError::invalid_argument(error.to_string()),
            _ => ApiError::invalid_argument(format!("invalid CSV: {error}")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Int64,
    Float64,
    Bool,
    String,
    Timestamp,
}

impl ColumnType {
    fn describe(self) -> &'static str {
        match self {
            ColumnType::Int64 => "an integer",
            ColumnType::Float64 => "a number",
            ColumnType::Bool => "a boolean (true/false)",
            ColumnType::String => "text",
            ColumnType::Timestamp => "a timestamp (RFC 3339, YYYY-MM-DD or YYYY-MM-DD HH:MM:SS)",
        }
    }

    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::String => DataType::Utf8,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CsvOptions {
    pub delimiter: u8,
    pub has_header: bool,
    pub quote: u8,
    pub null_markers: Vec<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: b',',
            has_header: true,
            quote: b'"',
            null_markers: ["", "NA", "N/A", "null", "NULL"].map(String::from).to_vec(),
        }
    }
}

/// A declared column: its type (None = inferred) and the constraints the report checks.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ColumnRule {
    pub name: String,
    pub data_type: Option<ColumnType>,
    pub not_null: bool,
    pub unique: bool,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub allowed: Vec<String>,
}

/// The parsed columns, before masking and encoding.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Str(Vec<Option<String>>),
    /// Milliseconds since the epoch, UTC.
    Time(Vec<Option<i64>>),
}

impl Data {
    fn empty(ty: ColumnType, nulls: usize) -> Self {
        match ty {
            ColumnType::Int64 => Data::Int(vec![None; nulls]),
            ColumnType::Float64 => Data::Float(vec![None; nulls]),
            ColumnType::Bool => Data::Bool(vec![None; nulls]),
            ColumnType::String => Data::Str(vec![None; nulls]),
            ColumnType::Timestamp => Data::Time(vec![None; nulls]),
        }
    }

    pub fn column_type(&self) -> ColumnType {
        match self {
            Data::Int(_) => ColumnType::Int64,
            Data::Float(_) => ColumnType::Float64,
            Data::Bool(_) => ColumnType::Bool,
            Data::Str(_) => ColumnType::String,
            Data::Time(_) => ColumnType::Timestamp,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Data::Int(v) | Data::Time(v) => v.len(),
            Data::Float(v) => v.len(),
            Data::Bool(v) => v.len(),
            Data::Str(v) => v.len(),
        }
    }

    pub fn is_null(&self, row: usize) -> bool {
        match self {
            Data::Int(v) | Data::Time(v) => v[row].is_none(),
            Data::Float(v) => v[row].is_none(),
            Data::Bool(v) => v[row].is_none(),
            Data::Str(v) => v[row].is_none(),
        }
    }

    /// The value as a number (booleans 0/1, timestamps in ms), if numeric.
    pub fn number(&self, row: usize) -> Option<f64> {
        match self {
            Data::Int(v) | Data::Time(v) => v[row].map(|x| x as f64),
            Data::Float(v) => v[row],
            Data::Bool(v) => v[row].map(|b| f64::from(u8::from(b))),
            Data::Str(_) => None,
        }
    }

    /// The value as text, as it would be written back.
    pub fn text(&self, row: usize) -> Option<String> {
        match self {
            Data::Int(v) | Data::Time(v) => v[row].map(|x| x.to_string()),
            Data::Float(v) => v[row].map(|x| x.to_string()),
            Data::Bool(v) => v[row].map(|b| b.to_string()),
            Data::Str(v) => v[row].clone(),
        }
    }

    pub(crate) fn array(&self) -> ArrayRef {
        match self {
            Data::Int(v) => Arc::new(Int64Array::from(v.clone())),
            Data::Float(v) => Arc::new(Float64Array::from(v.clone())),
            Data::Bool(v) => Arc::new(BooleanArray::from(v.clone())),
            Data::Str(v) => Arc::new(StringArray::from(v.clone())),
            Data::Time(v) => {
                Arc::new(TimestampMillisecondArray::from(v.clone()).with_timezone("UTC"))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParsedColumn {
    pub name: String,
    pub data: Data,
}

/// A value that did not parse as its column's declared type (kept as a null).
#[derive(Debug, Clone, PartialEq)]
pub struct TypeErrorAt {
    pub line: u64,
    pub column: String,
    pub value: String,
    pub expected: &'static str,
}

/// Type errors kept by value; the rest are only counted.
pub const MAX_TYPE_ERRORS: usize = 20;

#[derive(Debug, Clone, PartialEq)]
pub struct ParsedTable {
    pub columns: Vec<ParsedColumn>,
    pub rows: u64,
    pub duplicate_rows: u64,
    pub type_errors: Vec<TypeErrorAt>,
    pub type_error_count: u64,
}

pub(crate) struct Builder {
    name: String,
    declared: Option<ColumnType>,
    /// None until the first non-missing value decides an inferred column's type.
    data: Option<Data>,
    pending_nulls: usize,
}

fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff]` (UTC) or `YYYY-MM-DD` (midnight UTC), as epoch ms.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

fn infer(text: &str) -> ColumnType {
    if parse_bool(text).is_some() {
        ColumnType::Bool
    } else if text.parse::<i64>().is_ok() {
        ColumnType::Int64
    } else if text.parse::<f64>().is_ok() {
        ColumnType::Float64
    } else if parse_timestamp(text).is_some() {
        ColumnType::Timestamp
    } else {
        ColumnType::String
    }
}

enum Parsed {
    Ok,
    /// Did not parse as the column's type.
    Mismatch(&'static str),
    NotFinite,
}

fn push(data: &mut Data, text: &str, widen: bool) -> Parsed {
    match data {
        Data::Int(v) => {
            if let Ok(x) = text.parse::<i64>() {
                v.push(Some(x));
                return Parsed::Ok;
            }
            match text.parse::<f64>() {
                Ok(x) if widen && x.is_finite() => {
                    let mut floats: Vec<Option<f64>> =
                        v.iter().map(|i| i.map(|i| i as f64)).collect();
                    floats.push(Some(x));
                    *data = Data::Float(floats);
                    Parsed::Ok
                }
                Ok(_) if widen => Parsed::NotFinite,
                _ => Parsed::Mismatch(ColumnType::Int64.describe()),
            }
        }
        Data::Float(v) => match text.parse::<f64>() {
            Ok(x) if x.is_finite() => {
                v.push(Some(x));
                Parsed::Ok
            }
            Ok(_) => Parsed::NotFinite,
            Err(_) => Parsed::Mismatch(ColumnType::Float64.describe()),
        },
        Data::Bool(v) => match parse_bool(text) {
            Some(b) => {
                v.push(Some(b));
                Parsed::Ok
            }
            None => Parsed::Mismatch(ColumnType::Bool.describe()),
        },
        Data::Str(v) => {
            v.push(Some(text.to_string()));
            Parsed::Ok
        }
        Data::Time(v) => match parse_timestamp(text) {
            Some(t) => {
                v.push(Some(t));
                Parsed::Ok
            }
            None => Parsed::Mismatch(ColumnType::Timestamp.describe()),
        },
    }
}

fn push_null(data: &mut Data) {
    match data {
        Data::Int(v) | Data::Time(v) => v.push(None),
        Data::Float(v) => v.push(None),
        Data::Bool(v) => v.push(None),
        Data::Str(v) => v.push(None),
    }
}

impl Builder {
    pub(crate) fn new(name: String, declared: Option<ColumnType>) -> Self {
        Self {
            name,
            declared,
            data: None,
            pending_nulls: 0,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// A missing value (JSON null, an absent key).
    pub(crate) fn push_missing(&mut self) {
        match &mut self.data {
            Some(data) => push_null(data),
            None => self.pending_nulls += 1,
        }
    }

    pub(crate) fn push(
        &mut self,
        text: &str,
        line: u64,
        options: &CsvOptions,
        errors: &mut TypeErrors,
    ) -> Result<(), CsvError> {
        if options.null_markers.iter().any(|m| m == text) {
            match &mut self.data {
                Some(data) => push_null(data),
                None => self.pending_nulls += 1,
            }
            return Ok(());
        }
        let data = self.data.get_or_insert_with(|| {
            Data::empty(
                self.declared.unwrap_or_else(|| infer(text)),
                self.pending_nulls,
            )
        });
        let declared = self.declared.is_some();
        match push(data, text, !declared) {
            Parsed::Ok => Ok(()),
            Parsed::NotFinite if !declared => Err(CsvError::NotNumeric {
                line,
                column: self.name.clone(),
                value: text.chars().take(64).collect(),
            }),
            Parsed::Mismatch(expected) if !declared => {
                let expected = match data {
                    Data::Int(_) | Data::Float(_) => {
                        return Err(CsvError::NotNumeric {
                            line,
                            column: self.name.clone(),
                            value: text.chars().take(64).collect(),
                        });
                    }
                    _ => expected,
                };
                Err(CsvError::TypeChanged {
                    line,
                    column: self.name.clone(),
                    value: text.chars().take(64).collect(),
                    expected,
                })
            }
            Parsed::NotFinite | Parsed::Mismatch(_) => {
                push_null(data);
                errors.1 += 1;
                if errors.0.len() < MAX_TYPE_ERRORS {
                    errors.0.push(TypeErrorAt {
                        line,
                        column: self.name.clone(),
                        value: text.chars().take(64).collect(),
                        expected: data.column_type().describe(),
                    });
                }
                Ok(())
            }
        }
    }

    pub(crate) fn finish(self) -> ParsedColumn {
        let data = self.data.unwrap_or_else(|| {
            // Every value missing: a column of the declared type, else text.
            Data::empty(
                self.declared.unwrap_or(ColumnType::String),
                self.pending_nulls,
            )
        });
        ParsedColumn {
            name: self.name,
            data,
        }
    }
}

/// Parses a CSV into typed, nullable columns. A column's type is declared, or inferred from
/// its first non-missing value (booleans, integers, numbers, timestamps, else text); integers
/// widen to numbers, but a later value of another type is an error naming the line.
pub(crate) type TypeErrors = (Vec<TypeErrorAt>, u64);

/// Rows counted against the limit, and those identical to an earlier row (by a hash of their
/// values), for every source format.
#[derive(Default)]
pub(crate) struct RowTally {
    pub(crate) rows: u64,
    pub(crate) duplicates: u64,
    seen: HashSet<u64>,
}

impl RowTally {
    pub(crate) fn add(&mut self, row_hash: u64, limits: CsvLimits) -> Result<(), CsvError> {
        if !self.seen.insert(row_hash) {
            self.duplicates += 1;
        }
        self.rows += 1;
        if self.rows > limits.max_rows {
            return Err(CsvError::TooLarge {
                what: "rows",
                limit: limits.max_rows,
            });
        }
        Ok(())
    }
}

pub fn parse_csv(
    input: impl Read,
    options: &CsvOptions,
    rules: &[ColumnRule],
    limits: CsvLimits,
) -> Result<ParsedTable, CsvError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(options.delimiter)
        .quote(options.quote)
        .trim(csv::Trim::All)
        .from_reader(input);
    let mut record = csv::StringRecord::new();
    let first = match reader.read_record(&mut record) {
        Ok(true) => record.clone(),
        Ok(false) => return Err(CsvError::NoHeader),
        Err(e) => return Err(malformed(1, &e)),
    };
    if first.is_empty() || (first.len() == 1 && first[0].is_empty()) {
        return Err(CsvError::NoHeader);
    }
    if first.len() > limits.max_columns {
        return Err(CsvError::TooLarge {
            what: "columns",
            limit: limits.max_columns as u64,
        });
    }
    let names: Vec<String> = if options.has_header {
        first.iter().map(String::from).collect()
    } else {
        (1..=first.len()).map(|i| format!("c{i}")).collect()
    };
    let mut builders: Vec<Builder> = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(CsvError::EmptyColumnName { index: index + 1 });
        }
        if builders.iter().any(|b| &b.name == name) {
            return Err(CsvError::DuplicateColumn { name: name.clone() });
        }
        builders.push(Builder {
            name: name.clone(),
            declared: rules
                .iter()
                .find(|r| &r.name == name)
                .and_then(|r| r.data_type),
            data: None,
            pending_nulls: 0,
        });
    }
    if let Some(unknown) = rules.iter().find(|r| !names.contains(&r.name)) {
        return Err(CsvError::Spec(format!(
            "columns: {:?} is not a column of the CSV (columns: {})",
            unknown.name,
            names.join(", ")
        )));
    }

    let mut errors = (Vec::new(), 0u64);
    let mut tally = RowTally::default();
    let mut take = |record: &csv::StringRecord, line: u64, builders: &mut Vec<Builder>| {
        if record.len() != builders.len() {
            return Err(CsvError::Ragged {
                line,
                found: record.len(),
                expected: builders.len(),
            });
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for (builder, value) in builders.iter_mut().zip(record.iter()) {
            value.hash(&mut hasher);
            builder.push(value, line, options, &mut errors)?;
        }
        Ok(hasher.finish())
    };
    if !options.has_header {
        let hash = take(&first, 1, &mut builders)?;
        tally.add(hash, limits)?;
    }
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(malformed(line, &e)),
        }
        let line = record.position().map_or(line, |p| p.line());
        // A blank line is not a row.
        if record.len() == 1 && record[0].is_empty() && builders.len() > 1 {
            continue;
        }
        let hash = take(&record, line, &mut builders)?;
        tally.add(hash, limits)?;
    }
    if tally.rows == 0 {
        return Err(CsvError::NoRows);
    }
    Ok(ParsedTable {
        columns: builders.into_iter().map(Builder::finish).collect(),
        rows: tally.rows,
        duplicate_rows: tally.duplicates,
        type_errors: errors.0,
        type_error_count: errors.1,
    })
}

fn malformed(line: u64, error: &csv::Error) -> CsvError {
    CsvError::Malformed {
        line,
        message: error.to_string(),
    }
}

/// The columns as Parquet (snappy); the same columns always give the same bytes.
pub fn write_parquet(columns: &[ParsedColumn]) -> Result<Vec<u8>, ApiError> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| Field::new(&c.name, c.data.column_type().arrow(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.iter().map(|c| c.data.array()).collect(),
    )
    .map_err(|e| ApiError::internal(format!("building the record batch: {e}")))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props))
        .map_err(|e| ApiError::internal(format!("parquet writer: {e}")))?;
    writer
        .write(&batch)
        .map_err(|e| ApiError::internal(format!("parquet write: {e}")))?;
    writer
        .close()
        .map_err(|e| ApiError::internal(format!("parquet close: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(text: &str) -> Result<ParsedTable, CsvError> {
        parse_csv(
            text.as_bytes(),
            &CsvOptions::default(),
            &[],
            CsvLimits::default(),
        )
    }

    fn types(table: &ParsedTable) -> Vec<ColumnType> {
        table.columns.iter().map(|c| c.data.column_type()).collect()
    }

    #[test]
    fn infers_types_and_keeps_nulls() {
        let table = import(
            "a,b,y,flag,when,label\n1,2.5,3,true,2024-01-02,cat\n4,5,,false,2024-01-03T10:00:00Z,NA\n",
        )
        .unwrap();
        assert_eq!(table.rows, 2);
        assert_eq!(
            types(&table),
            vec![
                ColumnType::Int64,
                ColumnType::Float64,
                ColumnType::Int64,
                ColumnType::Bool,
                ColumnType::Timestamp,
                ColumnType::String
            ]
        );
        assert!(table.columns[2].data.is_null(1));
        assert!(table.columns[5].data.is_null(1));
        assert_eq!(table.columns[4].data.number(0), Some(1_704_153_600_000.0));
        let parquet = write_parquet(&table.columns).unwrap();
        assert_eq!(&parquet[..4], b"PAR1");
        // Same content, same bytes: versions can be deduplicated by digest.
        let again = import(
            "a,b,y,flag,when,label\n1,2.5,3,true,2024-01-02,cat\n4,5,,false,2024-01-03T10:00:00Z,NA\n",
        )
        .unwrap();
        assert_eq!(write_parquet(&again.columns).unwrap(), parquet);
    }

    #[test]
    fn options_and_declared_types() {
        let options = CsvOptions {
            delimiter: b';',
            has_header: false,
            null_markers: vec!["-".into()],
            ..Default::default()
        };
        let rules = [ColumnRule {
            name: "c2".into(),
            data_type: Some(ColumnType::Float64),
            ..Default::default()
        }];
        let table = parse_csv(
            "1;x\n2;-\n3;4.5\n".as_bytes(),
            &options,
            &rules,
            CsvLimits::default(),
        )
        .unwrap();
        assert_eq!(table.rows, 3);
        assert_eq!(table.columns[0].name, "c1");
        // The declared type wins: "x" is a type error (line 1), kept as a null.
        assert_eq!(table.type_error_count, 1);
        assert_eq!(table.type_errors[0].line, 1);
        assert_eq!(table.type_errors[0].value, "x");
        assert!(table.columns[1].data.is_null(0) && table.columns[1].data.is_null(1));
        assert_eq!(table.columns[1].data.number(2), Some(4.5));
        let unknown = [ColumnRule {
            name: "zz".into(),
            ..Default::default()
        }];
        assert!(matches!(
            parse_csv(
                "a\n1\n".as_bytes(),
                &CsvOptions::default(),
                &unknown,
                CsvLimits::default()
            ),
            Err(CsvError::Spec(_))
        ));
    }

    #[test]
    fn counts_duplicate_rows() {
        let table = import("a,b\n1,x\n2,y\n1,x\n1,x\n").unwrap();
        assert_eq!(table.duplicate_rows, 2);
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
        let changed = import("a,when\n1,2024-01-01\n2,soon\n").unwrap_err();
        assert!(
            matches!(changed, CsvError::TypeChanged { line: 3, .. }),
            "{changed}"
        );
        let tight = CsvLimits {
            max_rows: 1,
            max_columns: 2,
        };
        assert!(matches!(
            parse_csv(
                "a,y\n1,2\n3,4\n".as_bytes(),
                &CsvOptions::default(),
                &[],
                tight
            ),
            Err(CsvError::TooLarge { what: "rows", .. })
        ));
        assert!(matches!(
            parse_csv(
                "a,b,y\n1,2,3\n".as_bytes(),
                &CsvOptions::default(),
                &[],
                tight
            ),
            Err(CsvError::TooLarge {
                what: "columns",
                ..
            })
        ));
    }
}
