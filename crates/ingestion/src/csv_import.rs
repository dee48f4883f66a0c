//! CSV -> typed, nullable columns -> (masking, report, profile) -> Parquet. Every rejection
//! names the line and column.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::sync::Arc;

use crate::spill::DuplicateCounter;

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, TimeUnit};
use mlops_core::ApiError;

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
    #[error("spooling to the data directory: {0}")]
    Io(String),
    /// Not an error of the data: a column's type widened after its first chunk was written, so
    /// the import starts over with these types.
    #[error("column types changed after the first chunk")]
    Retype(Vec<Option<ColumnType>>),
}

/// Bounds on what one upload may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvLimits {
    pub max_rows: u64,
    pub max_columns: usize,
    /// Longest line (bytes between line breaks) read: a 2 GB single line is refused by its
    /// line number before it is buffered.
    pub max_line_bytes: u64,
}

impl Default for CsvLimits {
    fn default() -> Self {
        Self {
            max_rows: 10_000_000,
            max_columns: 10_000,
            max_line_bytes: 64 << 20,
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
            CsvError::Io(_) | CsvError::Retype(_) => ApiError::internal(error.to_string()),
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

    pub(crate) fn into_array(self) -> ArrayRef {
        match self {
            Data::Int(v) => Arc::new(Int64Array::from(v)),
            Data::Float(v) => Arc::new(Float64Array::from(v)),
            Data::Bool(v) => Arc::new(BooleanArray::from(v)),
            Data::Str(v) => Arc::new(StringArray::from(v)),
            Data::Time(v) => Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC")),
        }
    }

    /// Appends a chunk of the same type.
    #[cfg(test)]
    pub(crate) fn append(&mut self, more: Data) {
        match (self, more) {
            (Data::Int(a), Data::Int(b)) | (Data::Time(a), Data::Time(b)) => a.extend(b),
            (Data::Float(a), Data::Float(b)) => a.extend(b),
            (Data::Bool(a), Data::Bool(b)) => a.extend(b),
            (Data::Str(a), Data::Str(b)) => a.extend(b),
            (a, b) => unreachable!(
                "chunks of one column share a type ({:?} then {:?})",
                a.column_type(),
                b.column_type()
            ),
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

/// A whole source read into memory, for tests.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedTable {
    pub columns: Vec<ParsedColumn>,
    pub tally: Tally,
}

#[cfg(test)]
impl ParsedTable {
    /// Runs a source over an Output that keeps every chunk (restarting on a retype, as an
    /// import does), with `chunk_values` values per chunk.
    pub(crate) fn read(
        chunk_values: usize,
        limits: CsvLimits,
        source: impl Fn(&mut Output) -> Result<(), CsvError>,
    ) -> Result<Self, CsvError> {
        let dir = tempfile::tempdir().map_err(|e| CsvError::Io(e.to_string()))?;
        let mut hints = Vec::new();
        loop {
            let mut columns: Vec<ParsedColumn> = Vec::new();
            let mut keep = |chunk: Vec<ParsedColumn>| {
                if columns.is_empty() {
                    columns = chunk;
                } else {
                    for (column, more) in columns.iter_mut().zip(chunk) {
                        column.data.append(more.data);
                    }
                }
                Ok(())
            };
            let mut out = Output::new(limits, chunk_values, &hints, dir.path(), &mut keep);
            let result = source(&mut out).and_then(|()| out.finish());
            match result {
                Err(CsvError::Retype(new)) => hints = new,
                Err(e) => return Err(e),
                Ok(tally) => return Ok(Self { columns, tally }),
            }
        }
    }

    pub(crate) fn csv(
        text: &str,
        options: &CsvOptions,
        rules: &[ColumnRule],
        limits: CsvLimits,
    ) -> Result<Self, CsvError> {
        Self::read(CHUNK_VALUES, limits, |out| {
            read_csv(text.as_bytes(), options, rules, out)
        })
    }
}

pub(crate) struct Builder {
    name: String,
    declared: Option<ColumnType>,
    /// The type earlier chunks settled on, for an inferred column (later values must fit it).
    hint: Option<ColumnType>,
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
    // Every accepted form starts with YYYY-MM-DD: anything else is rejected without trying
    // four parsers, and a bare date goes straight to the one that takes it.
    let bytes = text.as_bytes();
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    if bytes.len() == 10 {
        // By hand: chrono would parse its format string for every value.
        let number = |range: std::ops::Range<usize>| -> Option<u32> {
            let digits = &bytes[range];
            digits.iter().all(u8::is_ascii_digit).then(|| {
                digits
                    .iter()
                    .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
            })
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        return chrono::NaiveDate::from_ymd_opt(year as i32, month, day)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp_millis());
    }
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
    pub(crate) fn new(
        name: String,
        declared: Option<ColumnType>,
        hint: Option<ColumnType>,
    ) -> Self {
        Self {
            name,
            declared,
            hint,
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
                self.declared.or(self.hint).unwrap_or_else(|| infer(text)),
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

    /// The values since the last chunk, as a column; the builder starts the next chunk with
    /// the type this one settled on.
    pub(crate) fn take_chunk(&mut self) -> ParsedColumn {
        let had_values = self.data.is_some();
        let data = self.data.take().unwrap_or_else(|| {
            // Every value missing: a column of the declared or settled type, else text.
            Data::empty(
                self.declared.or(self.hint).unwrap_or(ColumnType::String),
                self.pending_nulls,
            )
        });
        if self.declared.is_none() && had_values {
            self.hint = Some(data.column_type());
        }
        self.pending_nulls = 0;
        ParsedColumn {
            name: self.name.clone(),
            data,
        }
    }
}

pub(crate) type TypeErrors = (Vec<TypeErrorAt>, u64);

/// About this many values go in one chunk (fewer rows when there are many columns), so the
/// memory an import takes does not grow with the length or the width of the data.
pub const CHUNK_VALUES: usize = 1 << 21;
const MAX_CHUNK_ROWS: usize = 65_536;

/// Where a source's rows go: counted against the limit and for duplicates, and handed on in
/// chunks of a fixed number of rows, the same for every source format, so the same data always
/// gives the same Parquet bytes.
pub(crate) struct Output<'a> {
    limits: CsvLimits,
    chunk_values: usize,
    /// Types settled by an earlier attempt, by column position.
    hints: &'a [Option<ColumnType>],
    rows_in_chunk: usize,
    rows: u64,
    duplicates: DuplicateCounter,
    errors: TypeErrors,
    /// The first chunk's types: a later chunk that differs restarts the import.
    settled: Option<Vec<ColumnType>>,
    emit: &'a mut dyn FnMut(Vec<ParsedColumn>) -> Result<(), CsvError>,
}

/// What a source read, besides the chunks it emitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    pub rows: u64,
    pub duplicate_rows: u64,
    pub type_errors: Vec<TypeErrorAt>,
    pub type_error_count: u64,
}

impl<'a> Output<'a> {
    pub(crate) fn new(
        limits: CsvLimits,
        chunk_values: usize,
        hints: &'a [Option<ColumnType>],
        spill_dir: &std::path::Path,
        emit: &'a mut dyn FnMut(Vec<ParsedColumn>) -> Result<(), CsvError>,
    ) -> Self {
        Self {
            limits,
            chunk_values,
            hints,
            rows_in_chunk: 0,
            rows: 0,
            duplicates: DuplicateCounter::new(spill_dir),
            errors: (Vec::new(), 0),
            settled: None,
            emit,
        }
    }

    pub(crate) fn limits(&self) -> CsvLimits {
        self.limits
    }

    pub(crate) fn errors(&mut self) -> &mut TypeErrors {
        &mut self.errors
    }

    /// Rows per chunk for this many columns.
    pub(crate) fn chunk_rows(&self, columns: usize) -> usize {
        (self.chunk_values / columns.max(1)).clamp(1, MAX_CHUNK_ROWS)
    }

    /// Builders for the columns, with their declared types and any settled ones.
    pub(crate) fn builders(&self, names: &[String], rules: &[ColumnRule]) -> Vec<Builder> {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let declared = rules
                    .iter()
                    .find(|r| &r.name == name)
                    .and_then(|r| r.data_type);
                Builder::new(name.clone(), declared, self.hints.get(i).copied().flatten())
            })
            .collect()
    }

    /// Counts a row (by the hash of its values) against the limit and for duplicates.
    pub(crate) fn count_row(&mut self, hash: u64) -> Result<(), CsvError> {
        self.rows += 1;
        if self.rows > self.limits.max_rows {
            return Err(CsvError::TooLarge {
                what: "rows",
                limit: self.limits.max_rows,
            });
        }
        self.duplicates
            .push(hash)
            .map_err(|e| CsvError::Io(e.to_string()))
    }

    /// Ends a row pushed into the builders; a full chunk is handed on.
    pub(crate) fn end_row(&mut self, hash: u64, builders: &mut [Builder]) -> Result<(), CsvError> {
        self.count_row(hash)?;
        self.rows_in_chunk += 1;
        if self.rows_in_chunk == self.chunk_rows(builders.len()) {
            self.flush(builders)?;
        }
        Ok(())
    }

    /// Hands on the rows the builders hold.
    pub(crate) fn flush(&mut self, builders: &mut [Builder]) -> Result<(), CsvError> {
        if self.rows_in_chunk == 0 {
            return Ok(());
        }
        self.rows_in_chunk = 0;
        self.emit_chunk(builders.iter_mut().map(Builder::take_chunk).collect())
    }

    pub(crate) fn emit_chunk(&mut self, columns: Vec<ParsedColumn>) -> Result<(), CsvError> {
        let types: Vec<ColumnType> = columns.iter().map(|c| c.data.column_type()).collect();
        match &self.settled {
            None => self.settled = Some(types),
            Some(settled) if *settled != types => {
                // An integer column met a number, or a column missing throughout the first
                // chunk met its first value: start over with the wider types.
                let hints = settled
                    .iter()
                    .zip(&types)
                    .enumerate()
                    .map(|(i, (old, new))| {
                        if old == new {
                            self.hints.get(i).copied().flatten()
                        } else {
                            Some(*new)
                        }
                    })
                    .collect();
                return Err(CsvError::Retype(hints));
            }
            Some(_) => {}
        }
        (self.emit)(columns)
    }

    pub(crate) fn finish(self) -> Result<Tally, CsvError> {
        if self.rows == 0 {
            return Err(CsvError::NoRows);
        }
        Ok(Tally {
            rows: self.rows,
            duplicate_rows: self
                .duplicates
                .duplicates()
                .map_err(|e| CsvError::Io(e.to_string()))?,
            type_errors: self.errors.0,
            type_error_count: self.errors.1,
        })
    }
}

/// A fast, fixed-seed hasher for row and value hashes (duplicates are counted by hash).
pub(crate) fn row_hasher() -> impl Hasher {
    use std::hash::BuildHasher;
    foldhash::quality::FixedState::with_seed(0x006d_6c6f_7073).build_hasher()
}

/// Reads a CSV into typed, nullable columns. A column's type is declared, or inferred from
/// its first non-missing value (booleans, integers, numbers, timestamps, else text); integers
/// widen to numbers, but a later value of another type is an error naming the line.
pub(crate) fn read_csv(
    input: impl Read,
    options: &CsvOptions,
    rules: &[ColumnRule],
    out: &mut Output,
) -> Result<(), CsvError> {
    let limits = out.limits();
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
    let mut seen = HashSet::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(CsvError::EmptyColumnName { index: index + 1 });
        }
        if !seen.insert(name.as_str()) {
            return Err(CsvError::DuplicateColumn { name: name.clone() });
        }
    }
    if let Some(unknown) = rules.iter().find(|r| !names.contains(&r.name)) {
        return Err(CsvError::Spec(format!(
            "columns: {:?} is not a column of the CSV (columns: {})",
            unknown.name,
            names.join(", ")
        )));
    }
    let mut builders = out.builders(&names, rules);

    let take = |record: &csv::StringRecord,
                line: u64,
                builders: &mut Vec<Builder>,
                out: &mut Output|
     -> Result<(), CsvError> {
        if record.len() != builders.len() {
            return Err(CsvError::Ragged {
                line,
                found: record.len(),
                expected: builders.len(),
            });
        }
        let mut hasher = row_hasher();
        for (builder, value) in builders.iter_mut().zip(record.iter()) {
            value.hash(&mut hasher);
            builder.push(value, line, options, out.errors())?;
        }
        out.end_row(hasher.finish(), builders)
    };
    if !options.has_header {
        take(&first, 1, &mut builders, out)?;
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
        take(&record, line, &mut builders, out)?;
    }
    out.flush(&mut builders)
}

fn malformed(line: u64, error: &csv::Error) -> CsvError {
    CsvError::Malformed {
        line,
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(text: &str) -> Result<ParsedTable, CsvError> {
        ParsedTable::csv(text, &CsvOptions::default(), &[], CsvLimits::default())
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
        assert_eq!(table.tally.rows, 2);
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
        let table =
            ParsedTable::csv("1;x\n2;-\n3;4.5\n", &options, &rules, CsvLimits::default()).unwrap();
        assert_eq!(table.tally.rows, 3);
        assert_eq!(table.columns[0].name, "c1");
        // The declared type wins: "x" is a type error (line 1), kept as a null.
        assert_eq!(table.tally.type_error_count, 1);
        assert_eq!(table.tally.type_errors[0].line, 1);
        assert_eq!(table.tally.type_errors[0].value, "x");
        assert!(table.columns[1].data.is_null(0) && table.columns[1].data.is_null(1));
        assert_eq!(table.columns[1].data.number(2), Some(4.5));
        let unknown = [ColumnRule {
            name: "zz".into(),
            ..Default::default()
        }];
        assert!(matches!(
            ParsedTable::csv(
                "a\n1\n",
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
        assert_eq!(table.tally.duplicate_rows, 2);
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
            ..Default::default()
        };
        assert!(matches!(
            ParsedTable::csv("a,y\n1,2\n3,4\n", &CsvOptions::default(), &[], tight),
            Err(CsvError::TooLarge { what: "rows", .. })
        ));
        assert!(matches!(
            ParsedTable::csv("a,b,y\n1,2,3\n", &CsvOptions::default(), &[], tight),
            Err(CsvError::TooLarge {
                what: "columns",
                ..
            })
        ));
    }

    #[test]
    fn types_settle_across_chunks_and_widen_by_starting_over() {
        // Two rows per chunk: "a" is integers for two chunks, then a number; "b" is missing
        // throughout the first chunk; "c" keeps the first chunk's integer type.
        let text = "a,b,c\n1,,1\n2,,2\n3,x,3\n4,y,4\n5.5,z,5\n";
        let table = ParsedTable::read(6, CsvLimits::default(), |out| {
            read_csv(text.as_bytes(), &CsvOptions::default(), &[], out)
        })
        .unwrap();
        assert_eq!(
            types(&table),
            vec![ColumnType::Float64, ColumnType::String, ColumnType::Int64]
        );
        assert_eq!(table.tally.rows, 5);
        assert_eq!(table.columns[0].data.number(4), Some(5.5));
        assert!(table.columns[1].data.is_null(0) && table.columns[1].data.is_null(1));
        // A value of another type in a later chunk is still an error naming the line.
        let changed = ParsedTable::read(6, CsvLimits::default(), |out| {
            read_csv(
                "a,b\ntrue,1\nfalse,2\ntrue,3\nmaybe,4\n".as_bytes(),
                &CsvOptions::default(),
                &[],
                out,
            )
        })
        .unwrap_err();
        assert!(
            matches!(changed, CsvError::TypeChanged { line: 5, .. }),
            "{changed}"
        );
    }
}
