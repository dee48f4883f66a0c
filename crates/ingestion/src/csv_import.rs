//! CSV -> typed, nullable columns -> (masking, report, profile) -> Parquet. Every rejection
//! names the line and column.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::sync::Arc;

use crate::spill::DuplicateCounter;

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
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
    Int(Nullable<i64>),
    Float(Nullable<f64>),
    Bool(Nullable<bool>),
    Str(Texts),
    /// Milliseconds since the epoch, UTC.
    Time(Nullable<i64>),
}

impl Data {
    /// `nulls` missing values, with room for `capacity` values in all (a chunk's rows: the
    /// vector is not regrown value by value).
    fn empty(ty: ColumnType, nulls: usize, capacity: usize) -> Self {
        match ty {
            ColumnType::Int64 => Data::Int(Nullable::with_nulls(nulls, capacity)),
            ColumnType::Float64 => Data::Float(Nullable::with_nulls(nulls, capacity)),
            ColumnType::Bool => Data::Bool(Nullable::with_nulls(nulls, capacity)),
            ColumnType::String => Data::Str(Texts::with_nulls(nulls, capacity)),
            ColumnType::Timestamp => Data::Time(Nullable::with_nulls(nulls, capacity)),
        }
    }

    /// Where the column stands, to go back to with `rewind` (values were only pushed since).
    fn mark(&self) -> Mark {
        match self {
            Data::Int(v) | Data::Time(v) => v.mark(),
            Data::Float(v) => v.mark(),
            Data::Bool(v) => v.mark(),
            Data::Str(v) => v.mark(),
        }
    }

    fn rewind(&mut self, mark: Mark) {
        match self {
            Data::Int(v) | Data::Time(v) => v.rewind(mark),
            Data::Float(v) => v.rewind(mark),
            Data::Bool(v) => v.rewind(mark),
            Data::Str(v) => v.rewind(mark),
        }
    }

    /// Pushes a run of values of the column's settled type, the type decided once for the run
    /// (missing for a null marker): false at the first one that is not missing and does not
    /// parse as that type (a finite number, for numbers), the ones before it pushed.
    fn push_settled_all<'t>(
        &mut self,
        values: impl Iterator<Item = &'t str>,
        nulls: &NullMarkers,
    ) -> bool {
        match self {
            Data::Float(v) => {
                v.push_parsed(values, nulls, |t| parse_f64(t).filter(|x| x.is_finite()))
            }
            Data::Int(v) => v.push_parsed(values, nulls, parse_i64),
            Data::Bool(v) => v.push_parsed(values, nulls, parse_bool),
            Data::Time(v) => v.push_parsed(values, nulls, parse_timestamp),
            Data::Str(v) => {
                values.for_each(|t| v.push((!nulls.matches(t)).then_some(t)));
                true
            }
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

    pub fn null_count(&self) -> usize {
        match self {
            Data::Int(v) | Data::Time(v) => v.null_count(),
            Data::Float(v) => v.null_count(),
            Data::Bool(v) => v.null_count(),
            Data::Str(v) => v.null_count(),
        }
    }

    pub fn is_null(&self, row: usize) -> bool {
        match self {
            Data::Int(v) | Data::Time(v) => v.get(row).is_none(),
            Data::Float(v) => v.get(row).is_none(),
            Data::Bool(v) => v.get(row).is_none(),
            Data::Str(v) => v.get(row).is_none(),
        }
    }

    /// The value as a number (booleans 0/1, timestamps in ms), if numeric.
    pub fn number(&self, row: usize) -> Option<f64> {
        match self {
            Data::Int(v) | Data::Time(v) => v.get(row).map(|x| x as f64),
            Data::Float(v) => v.get(row),
            Data::Bool(v) => v.get(row).map(|b| f64::from(u8::from(b))),
            Data::Str(_) => None,
        }
    }

    /// Every value as a number (missing: NaN), if numeric; for a whole column at once, which
    /// `number` would look up row by row.
    pub fn numbers(&self) -> Option<Cow<'_, [f64]>> {
        let (mut numbers, missing): (Vec<f64>, _) = match self {
            // The values themselves, unless one is missing.
            Data::Float(v) if v.missing.0.is_empty() => return Some(Cow::Borrowed(&v.values)),
            Data::Int(v) | Data::Time(v) => {
                (v.values.iter().map(|&x| x as f64).collect(), &v.missing)
            }
            Data::Float(v) => (v.values.clone(), &v.missing),
            Data::Bool(v) => (
                v.values.iter().map(|&b| f64::from(u8::from(b))).collect(),
                &v.missing,
            ),
            Data::Str(_) => return None,
        };
        for (number, missing) in numbers.iter_mut().zip(&missing.0) {
            if *missing {
                *number = f64::NAN;
            }
        }
        Some(Cow::Owned(numbers))
    }

    /// The value as text, as it would be written back.
    pub fn text(&self, row: usize) -> Option<String> {
        match self {
            Data::Int(v) | Data::Time(v) => v.get(row).map(|x| x.to_string()),
            Data::Float(v) => v.get(row).map(|x| x.to_string()),
            Data::Bool(v) => v.get(row).map(|b| b.to_string()),
            Data::Str(v) => v.get(row).map(str::to_string),
        }
    }

    /// The column as an Arrow array; None if its text is more than Arrow's 32-bit offsets
    /// reach (2 GiB).
    pub(crate) fn into_array(self) -> Option<ArrayRef> {
        let array: ArrayRef = match self {
            Data::Int(v) => {
                let (values, nulls) = v.into_parts();
                Arc::new(Int64Array::new(values.into(), nulls))
            }
            Data::Float(v) => {
                let (values, nulls) = v.into_parts();
                Arc::new(Float64Array::new(values.into(), nulls))
            }
            Data::Bool(v) => Arc::new(v.iter().collect::<BooleanArray>()),
            Data::Str(v) => Arc::new(v.into_array()?),
            Data::Time(v) => {
                let (values, nulls) = v.into_parts();
                Arc::new(TimestampMillisecondArray::new(values.into(), nulls).with_timezone("UTC"))
            }
        };
        Some(array)
    }

    /// Appends a chunk of the same type.
    #[cfg(test)]
    pub(crate) fn append(&mut self, more: Data) {
        match (self, more) {
            (Data::Int(a), Data::Int(b)) | (Data::Time(a), Data::Time(b)) => {
                b.iter().for_each(|x| a.push(x))
            }
            (Data::Float(a), Data::Float(b)) => b.iter().for_each(|x| a.push(x)),
            (Data::Bool(a), Data::Bool(b)) => b.iter().for_each(|x| a.push(x)),
            (Data::Str(a), Data::Str(b)) => b.iter().for_each(|x| a.push(x)),
            (a, b) => unreachable!(
                "chunks of one column share a type ({:?} then {:?})",
                a.column_type(),
                b.column_type()
            ),
        }
    }
}

/// How long a column's parts were, to cut it back to (values, missing flags, text bytes).
#[derive(Debug, Clone, Copy)]
struct Mark {
    values: usize,
    missing: usize,
    text: usize,
}

/// Which values of a column are missing: nothing is kept until one is (the usual case), then
/// a flag per value.
#[derive(Debug, Clone, PartialEq, Default)]
struct Missing(Vec<bool>);

impl Missing {
    /// Records whether the value after the first `len` is missing.
    fn push(&mut self, len: usize, missing: bool) {
        if !self.0.is_empty() {
            self.0.push(missing);
        } else if missing {
            self.0.resize(len, false);
            self.0.push(true);
        }
    }

    fn get(&self, row: usize) -> bool {
        self.0.get(row).copied().unwrap_or(false)
    }

    /// Flags kept (0 while none is missing), for `Mark`.
    fn kept(&self) -> usize {
        self.0.len()
    }

    /// Back to `kept` flags, as `kept` said they were.
    fn rewind(&mut self, kept: usize) {
        self.0.truncate(kept);
    }

    fn count(&self) -> usize {
        self.0.iter().filter(|&&m| m).count()
    }

    /// A flag per value, for as many values as the column holds.
    fn iter(&self) -> impl Iterator<Item = bool> + '_ {
        self.0.iter().copied().chain(std::iter::repeat(false))
    }

    /// Arrow's validity bitmap, if any value is missing.
    fn validity(&self) -> Option<NullBuffer> {
        (!self.0.is_empty()).then(|| self.0.iter().map(|&m| !m).collect())
    }
}

/// Values of one type, and which of them are missing, as Arrow keeps them: the values end to
/// end (a default where one is missing) and the missing flags apart, so a chunk becomes an
/// Arrow array without a copy, at half the memory of `Vec<Option<f64>>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Nullable<T> {
    values: Vec<T>,
    missing: Missing,
}

impl<T: Copy + Default> Nullable<T> {
    /// `nulls` missing values, with room for `capacity` values in all.
    fn with_nulls(nulls: usize, capacity: usize) -> Self {
        let mut column = Self {
            values: Vec::with_capacity(capacity.max(nulls)),
            missing: Missing::default(),
        };
        (0..nulls).for_each(|_| column.push(None));
        column
    }

    pub fn push(&mut self, value: Option<T>) {
        self.missing.push(self.values.len(), value.is_none());
        self.values.push(value.unwrap_or_default());
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn get(&self, row: usize) -> Option<T> {
        let value = self.values[row];
        (!self.missing.get(row)).then_some(value)
    }

    pub fn iter(&self) -> impl Iterator<Item = Option<T>> + '_ {
        self.values
            .iter()
            .zip(self.missing.iter())
            .map(|(&x, m)| (!m).then_some(x))
    }

    pub fn null_count(&self) -> usize {
        self.missing.count()
    }

    /// Changes every value that is there, in place.
    pub fn update(&mut self, mut change: impl FnMut(&mut T)) {
        for (value, missing) in self.values.iter_mut().zip(self.missing.iter()) {
            if !missing {
                change(value);
            }
        }
    }

    /// The same rows as another type, missing where these are.
    pub fn map<U>(&self, convert: impl Fn(T) -> U) -> Nullable<U> {
        Nullable {
            values: self.values.iter().map(|&x| convert(x)).collect(),
            missing: self.missing.clone(),
        }
    }

    fn mark(&self) -> Mark {
        Mark {
            values: self.values.len(),
            missing: self.missing.kept(),
            text: 0,
        }
    }

    fn rewind(&mut self, mark: Mark) {
        self.values.truncate(mark.values);
        self.missing.rewind(mark.missing);
    }

    /// Pushes each value, or a missing one for a null marker; false at the first value that
    /// does not parse (the ones before it pushed).
    fn push_parsed<'t>(
        &mut self,
        values: impl Iterator<Item = &'t str>,
        nulls: &NullMarkers,
        parse: impl Fn(&str) -> Option<T>,
    ) -> bool {
        for text in values {
            if nulls.matches(text) {
                self.push(None);
            } else if let Some(x) = parse(text) {
                self.push(Some(x));
            } else {
                return false;
            }
        }
        true
    }

    /// The values and, if any is missing, Arrow's validity bitmap.
    fn into_parts(self) -> (Vec<T>, Option<NullBuffer>) {
        let nulls = self.missing.validity();
        (self.values, nulls)
    }
}

impl<T: Copy + Default> FromIterator<Option<T>> for Nullable<T> {
    fn from_iter<I: IntoIterator<Item = Option<T>>>(values: I) -> Self {
        let mut column = Self::default();
        values.into_iter().for_each(|x| column.push(x));
        column
    }
}

/// Text values end to end in one string, as Arrow keeps them: a chunk's text costs a few
/// allocations, not one per value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Texts {
    text: String,
    /// Where each value ends in `text`.
    ends: Vec<usize>,
    missing: Missing,
}

impl Texts {
    /// `nulls` missing values, with room for `capacity` values in all.
    fn with_nulls(nulls: usize, capacity: usize) -> Self {
        let mut texts = Self {
            text: String::new(),
            ends: Vec::with_capacity(capacity.max(nulls)),
            missing: Missing::default(),
        };
        (0..nulls).for_each(|_| texts.push(None));
        texts
    }

    pub fn push(&mut self, value: Option<&str>) {
        self.missing.push(self.ends.len(), value.is_none());
        self.text.push_str(value.unwrap_or_default());
        self.ends.push(self.text.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    fn mark(&self) -> Mark {
        Mark {
            values: self.ends.len(),
            missing: self.missing.kept(),
            text: self.text.len(),
        }
    }

    fn rewind(&mut self, mark: Mark) {
        self.ends.truncate(mark.values);
        self.text.truncate(mark.text);
        self.missing.rewind(mark.missing);
    }

    pub fn get(&self, row: usize) -> Option<&str> {
        let start = row.checked_sub(1).map_or(0, |before| self.ends[before]);
        let end = self.ends[row];
        (!self.missing.get(row)).then(|| &self.text[start..end])
    }

    pub fn null_count(&self) -> usize {
        self.missing.count()
    }

    pub fn iter(&self) -> impl Iterator<Item = Option<&str>> {
        (0..self.len()).map(|row| self.get(row))
    }

    /// Arrow's array of the same values, without copying the text; None past 2 GiB of text.
    fn into_array(self) -> Option<StringArray> {
        let offsets = std::iter::once(0)
            .chain(self.ends)
            .map(|end| i32::try_from(end).ok())
            .collect::<Option<Vec<i32>>>()?;
        let nulls = self.missing.validity();
        // Valid by construction: offsets rise from 0 and end on `char` boundaries of `text`.
        Some(StringArray::new(
            OffsetBuffer::new(offsets.into()),
            self.text.into_bytes().into(),
            nulls,
        ))
    }
}

impl<S: AsRef<str>> FromIterator<Option<S>> for Texts {
    fn from_iter<I: IntoIterator<Item = Option<S>>>(values: I) -> Self {
        let mut texts = Self::default();
        for value in values {
            texts.push(value.as_ref().map(AsRef::as_ref));
        }
        texts
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
            let mut tally = Tallier::new(&hints, limits.max_rows, dir.path());
            let mut keep = |work: Work| {
                let Chunk {
                    columns: chunk,
                    meta,
                } = work.parse()?;
                tally.add(meta)?;
                if columns.is_empty() {
                    columns = chunk;
                } else {
                    for (column, more) in columns.iter_mut().zip(chunk) {
                        column.data.append(more.data);
                    }
                }
                Ok(())
            };
            let result = source(&mut Output::new(limits, chunk_values, &hints, &mut keep));
            match result.and_then(|()| tally.finish()) {
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

/// The texts that mean a missing value, checked by length first: almost every value differs
/// from every marker in length, and is passed over without comparing bytes.
pub(crate) struct NullMarkers {
    /// Bit n set: a marker is n bytes long (bit 63: 63 or more).
    lengths: u64,
    markers: Vec<String>,
}

impl NullMarkers {
    pub(crate) fn new(markers: &[String]) -> Self {
        Self {
            lengths: markers.iter().fold(0, |bits, m| bits | length_bit(m)),
            markers: markers.to_vec(),
        }
    }

    #[inline]
    fn matches(&self, text: &str) -> bool {
        // The first byte before the rest: "true" and "gold" are as long as "null", and a
        // call to compare them cost a fiftieth of an import.
        self.lengths & length_bit(text) != 0
            && self
                .markers
                .iter()
                .any(|m| m.as_bytes().first() == text.as_bytes().first() && m == text)
    }
}

fn length_bit(text: &str) -> u64 {
    1 << text.len().min(63)
}

#[derive(Clone)]
pub(crate) struct Builder {
    name: String,
    declared: Option<ColumnType>,
    /// The type earlier chunks settled on, for an inferred column (later values must fit it).
    hint: Option<ColumnType>,
    /// None until the first non-missing value decides an inferred column's type.
    data: Option<Data>,
    pending_nulls: usize,
    /// Rows per chunk, to size the column once.
    capacity: usize,
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

/// A number as `str::parse` reads it (the same texts accepted, the same values), faster: the
/// floats of a numeric file are most of its parsing.
#[inline]
fn parse_f64(text: &str) -> Option<f64> {
    fast_float2::parse(text).ok()
}

/// An integer as `str::parse` reads it (the same texts accepted, the same values), faster: up
/// to 18 digits cannot overflow, so they are summed without a check per digit (a fifteenth of
/// an import's time went on those checks). Longer ones are left to `str::parse`.
#[inline]
fn parse_i64(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        digits => (false, digits),
    };
    if digits.is_empty() || digits.len() > 18 {
        return text.parse().ok();
    }
    let mut n: i64 = 0;
    for &digit in digits {
        let value = digit.wrapping_sub(b'0');
        if value > 9 {
            return None;
        }
        n = n * 10 + i64::from(value);
    }
    Some(if negative { -n } else { n })
}

fn infer(text: &str) -> ColumnType {
    if parse_bool(text).is_some() {
        ColumnType::Bool
    } else if parse_i64(text).is_some() {
        ColumnType::Int64
    } else if parse_f64(text).is_some() {
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
            if let Some(x) = parse_i64(text) {
                v.push(Some(x));
                return Parsed::Ok;
            }
            match parse_f64(text) {
                Some(x) if widen && x.is_finite() => {
                    let mut floats = v.map(|i| i as f64);
                    floats.push(Some(x));
                    *data = Data::Float(floats);
                    Parsed::Ok
                }
                Some(_) if widen => Parsed::NotFinite,
                _ => Parsed::Mismatch(ColumnType::Int64.describe()),
            }
        }
        Data::Float(v) => match parse_f64(text) {
            Some(x) if x.is_finite() => {
                v.push(Some(x));
                Parsed::Ok
            }
            Some(_) => Parsed::NotFinite,
            None => Parsed::Mismatch(ColumnType::Float64.describe()),
        },
        Data::Bool(v) => match parse_bool(text) {
            Some(b) => {
                v.push(Some(b));
                Parsed::Ok
            }
            None => Parsed::Mismatch(ColumnType::Bool.describe()),
        },
        Data::Str(v) => {
            v.push(Some(text));
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
        capacity: usize,
    ) -> Self {
        Self {
            name,
            declared,
            hint,
            data: None,
            pending_nulls: 0,
            capacity,
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

    /// A value (trimmed by the caller) into the column.
    #[inline]
    pub(crate) fn push(
        &mut self,
        text: &str,
        line: u64,
        nulls: &NullMarkers,
        errors: &mut TypeErrors,
    ) -> Result<(), CsvError> {
        // The usual case, small enough to inline into the row loop: a value of the type the
        // column settled on. Everything else (a missing value, the first value, a mismatch)
        // takes the full path below, which parses again from scratch.
        if let Some(data) = &mut self.data
            && data.push_settled_all(std::iter::once(text), nulls)
        {
            return Ok(());
        }
        self.push_any(text, line, nulls, errors)
    }

    #[inline(never)]
    fn push_any(
        &mut self,
        text: &str,
        line: u64,
        nulls: &NullMarkers,
        errors: &mut TypeErrors,
    ) -> Result<(), CsvError> {
        if nulls.matches(text) {
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
                self.capacity,
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

    /// Readies the column for a run of values of the type it already has (declared, or
    /// settled by an earlier value or chunk), and says where it stands, to go back to; None
    /// while the type is still to be inferred.
    fn ready(&mut self) -> Option<Mark> {
        if self.data.is_none() {
            // As the first value would: its type, after the missing values before it.
            let ty = self.declared.or(self.hint)?;
            self.data = Some(Data::empty(ty, self.pending_nulls, self.capacity));
        }
        self.data.as_ref().map(Data::mark)
    }

    fn rewind(&mut self, mark: Mark) {
        if let Some(data) = &mut self.data {
            data.rewind(mark);
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
                0,
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

/// Rows parsed from a source, with what the import counts about them in order.
pub(crate) struct Chunk {
    pub columns: Vec<ParsedColumn>,
    pub meta: ChunkMeta,
}

/// What is tallied about a chunk's rows (before masking), in the order of the source.
pub(crate) struct ChunkMeta {
    pub types: Vec<ColumnType>,
    /// One hash per row, of its values: duplicates are counted by hash.
    pub row_hashes: Vec<u64>,
    pub errors: TypeErrors,
}

impl Chunk {
    fn new(columns: Vec<ParsedColumn>, row_hashes: Vec<u64>, errors: TypeErrors) -> Self {
        let types = columns.iter().map(|c| c.data.column_type()).collect();
        Self {
            columns,
            meta: ChunkMeta {
                types,
                row_hashes,
                errors,
            },
        }
    }
}

/// What a source hands on, in order: rows it parsed, or (CSV) whole records for a worker to
/// parse, so the parsing of a large file is spread over the cores.
pub(crate) enum Work {
    Parsed(Chunk),
    /// The first block, which settles the columns' types for the others.
    FirstCsv {
        block: Block,
        builders: Vec<Builder>,
        layout: Arc<Layout>,
    },
    Csv {
        block: Block,
        layout: Arc<Layout>,
    },
}

impl Work {
    /// The rows, parsing a CSV block first.
    pub(crate) fn parse(self) -> Result<Chunk, CsvError> {
        match self {
            Work::Parsed(chunk) => Ok(chunk),
            Work::FirstCsv {
                block,
                mut builders,
                layout,
            } => {
                // Settled however this ends (a panic included), so no block waits forever.
                let settle = Settle(&layout);
                let chunk = parse_block(&block, &layout.options, &mut builders);
                if chunk.is_ok() {
                    let _ = layout.settled.set(Some(builders));
                }
                drop(settle);
                layout.spares.give(block.bytes);
                chunk
            }
            Work::Csv { block, layout } => {
                // The import fails on the first block's error, which comes first in order.
                let settled = layout.settled.wait().as_ref();
                let mut builders = settled
                    .ok_or_else(|| CsvError::Io("the first block was not parsed".into()))?
                    .clone();
                let chunk = parse_block(&block, &layout.options, &mut builders);
                layout.spares.give(block.bytes);
                chunk
            }
        }
    }
}

/// How the CSV blocks are parsed: every block after the first starts from the columns'
/// builders as the first left them (empty, with the types it settled), which the first
/// block's worker sets while the reader cuts the next blocks.
pub(crate) struct Layout {
    /// None if the first block failed.
    settled: std::sync::OnceLock<Option<Vec<Builder>>>,
    options: CsvOptions,
    spares: Arc<Spares>,
}

/// Settles a layout as failed unless it was settled before this is dropped.
struct Settle<'a>(&'a Layout);

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        let _ = self.0.settled.set(None);
    }
}

/// Block buffers whose records were parsed, for the splitter to fill again: filling a fresh
/// one costs a page fault every 4 KiB, more than copying the records into it.
#[derive(Default)]
struct Spares(std::sync::Mutex<Vec<Vec<u8>>>);

impl Spares {
    fn give(&self, mut bytes: Vec<u8>) {
        bytes.clear();
        if let Ok(mut spares) = self.0.lock() {
            spares.push(bytes);
        }
    }

    /// An empty buffer with room for `capacity` bytes.
    fn take(&self, capacity: usize) -> Vec<u8> {
        let mut bytes = self
            .0
            .lock()
            .ok()
            .and_then(|mut spares| spares.pop())
            .unwrap_or_default();
        bytes.reserve(capacity);
        bytes
    }
}

/// Where a source's work goes, counted against the row limit. A parsed source's rows are
/// handed on in chunks of a fixed number of rows, the same for every format (a CSV block holds
/// as many records), so the same data always gives the same Parquet bytes.
pub(crate) struct Output<'a> {
    limits: CsvLimits,
    chunk_values: usize,
    /// Types settled by an earlier attempt, by column position.
    hints: &'a [Option<ColumnType>],
    rows_in_chunk: usize,
    row_hashes: Vec<u64>,
    errors: TypeErrors,
    emit: &'a mut dyn FnMut(Work) -> Result<(), CsvError>,
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
        emit: &'a mut dyn FnMut(Work) -> Result<(), CsvError>,
    ) -> Self {
        Self {
            limits,
            chunk_values,
            hints,
            rows_in_chunk: 0,
            row_hashes: Vec::new(),
            errors: (Vec::new(), 0),
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
        let capacity = self.chunk_rows(names.len());
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let declared = rules
                    .iter()
                    .find(|r| &r.name == name)
                    .and_then(|r| r.data_type);
                Builder::new(
                    name.clone(),
                    declared,
                    self.hints.get(i).copied().flatten(),
                    capacity,
                )
            })
            .collect()
    }

    /// Counts a row (by the hash of its values) for duplicates and the row limit.
    pub(crate) fn count_row(&mut self, hash: u64) {
        self.row_hashes.push(hash);
    }

    /// Ends a row pushed into the builders; a full chunk is handed on.
    pub(crate) fn end_row(&mut self, hash: u64, builders: &mut [Builder]) -> Result<(), CsvError> {
        self.count_row(hash);
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

    /// Hands on parsed columns: the rows counted since the last chunk.
    pub(crate) fn emit_chunk(&mut self, columns: Vec<ParsedColumn>) -> Result<(), CsvError> {
        let row_hashes = std::mem::take(&mut self.row_hashes);
        let errors = std::mem::take(&mut self.errors);
        (self.emit)(Work::Parsed(Chunk::new(columns, row_hashes, errors)))
    }
}

/// Tallies the chunks of one attempt in the source's order: rows, duplicate rows, type
/// errors, and the column types, which the first chunk settles.
pub(crate) struct Tallier {
    /// The attempt's hints, by column position.
    hints: Vec<Option<ColumnType>>,
    settled: Option<Vec<ColumnType>>,
    rows: u64,
    max_rows: u64,
    duplicates: DuplicateCounter,
    errors: TypeErrors,
}

impl Tallier {
    pub(crate) fn new(
        hints: &[Option<ColumnType>],
        max_rows: u64,
        spill_dir: &std::path::Path,
    ) -> Self {
        Self {
            hints: hints.to_vec(),
            settled: None,
            rows: 0,
            max_rows,
            duplicates: DuplicateCounter::new(spill_dir),
            errors: (Vec::new(), 0),
        }
    }

    /// The next chunk. A chunk whose types differ from the first's restarts the import
    /// (`Retype`) with the wider types.
    pub(crate) fn add(&mut self, meta: ChunkMeta) -> Result<(), CsvError> {
        match &self.settled {
            None => self.settled = Some(meta.types),
            Some(settled) if *settled != meta.types => {
                // An integer column met a number, or a column missing throughout the first
                // chunk met its first value: start over with the wider types.
                let hints = settled
                    .iter()
                    .zip(&meta.types)
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
        self.rows += meta.row_hashes.len() as u64;
        // Counted here, in order, so an error in earlier rows is the one reported; a reader
        // stops one chunk later at most (the writer's error stops it).
        if self.rows > self.max_rows {
            return Err(CsvError::TooLarge {
                what: "rows",
                limit: self.max_rows,
            });
        }
        for hash in meta.row_hashes {
            self.duplicates
                .push(hash)
                .map_err(|e| CsvError::Io(e.to_string()))?;
        }
        let (kept, count) = meta.errors;
        let room = MAX_TYPE_ERRORS.saturating_sub(self.errors.0.len());
        self.errors.0.extend(kept.into_iter().take(room));
        self.errors.1 += count;
        Ok(())
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

/// Whole CSV records, cut from the input without parsing their fields.
pub(crate) struct Block {
    bytes: Vec<u8>,
    /// The line the block starts on.
    first_line: u64,
    records: usize,
    /// Whether the splitter cut it at line breaks alone: it holds no quote and no lone `\r`.
    by_lines: bool,
}

/// Cuts CSV text into blocks of whole records. While no quote character has appeared, a record
/// is a line that is not blank (found with memchr, far faster than parsing); from the first
/// quote on, csv_core finds the records, since a quoted field may hold line breaks. Blank lines
/// are no records, as for csv_core.
struct Splitter<R> {
    input: R,
    delimiter: u8,
    quote: u8,
    /// Set once quoting may occur.
    core: Option<csv_core::Reader>,
    /// Fields csv_core writes, which the splitter does not need.
    scratch: (Vec<u8>, Vec<usize>),
    /// The current line's length so far (across reads) and its first byte.
    line_length: usize,
    line_first: u8,
    /// The line of the next byte.
    line: u64,
    /// The last block's size: the next one is allocated at once (not regrown while read).
    last_block: usize,
    /// Whether the input's first bytes were looked at (for a byte order mark).
    started: bool,
    /// Whether the last read ended with a \r (lone unless the next starts with \n).
    pending_cr: bool,
    spares: Arc<Spares>,
}

impl<R: std::io::BufRead> Splitter<R> {
    fn new(input: R, options: &CsvOptions) -> Self {
        Self {
            input,
            delimiter: options.delimiter,
            quote: options.quote,
            core: None,
            scratch: (vec![0; 1 << 16], vec![0; 1 << 10]),
            line_length: 0,
            line_first: 0,
            line: 1,
            last_block: 0,
            started: false,
            pending_cr: false,
            spares: Arc::default(),
        }
    }

    /// The next `records` records, or fewer at the end of the input; None when no record is
    /// left.
    fn next_block(&mut self, records: usize) -> Result<Option<Block>, CsvError> {
        let first_line = self.line;
        let by_lines = self.core.is_none();
        let mut bytes = self.spares.take(self.last_block + self.last_block / 8);
        // Where the record in progress starts in `bytes`.
        let mut record_start = 0;
        let mut found = 0;
        while found < records {
            let line = self.line;
            let buffer = self.input.fill_buf().map_err(|e| CsvError::Malformed {
                line,
                message: e.to_string(),
            })?;
            if buffer.is_empty() {
                found += usize::from(self.last_record());
                break;
            }
            if !self.started {
                self.started = true;
                if buffer.starts_with(BOM) {
                    // As the csv crate does: a byte order mark starting the input is not data.
                    self.input.consume(BOM.len());
                    continue;
                }
            }
            if self.core.is_none() && quoting_starts(buffer, self.quote, self.pending_cr) {
                // Quoting starts (or a lone \r, which ends a record too): csv_core first reads
                // the record in progress, which a lone \r ending the last read may have ended.
                let mut core = csv_core::ReaderBuilder::new()
                    .delimiter(self.delimiter)
                    .quote(self.quote)
                    .build();
                let (scratch, ends) = &mut self.scratch;
                let (_, ended, _) =
                    scan_records(&mut core, scratch, ends, &bytes[record_start..], usize::MAX);
                self.core = Some(core);
                if ended > 0 {
                    found += ended;
                    record_start = bytes.len();
                    continue;
                }
            }
            let (used, more, end, lines) = match &mut self.core {
                Some(core) => {
                    let (scratch, ends) = &mut self.scratch;
                    let (used, more, end) =
                        scan_records(core, scratch, ends, buffer, records - found);
                    let lines = memchr::memchr_iter(b'\n', &buffer[..used]).count();
                    (used, more, end, lines)
                }
                None => scan_lines(
                    &mut self.line_length,
                    &mut self.line_first,
                    buffer,
                    records - found,
                ),
            };
            if let Some(end) = end {
                record_start = bytes.len() + end;
            }
            self.pending_cr = used == buffer.len() && buffer.ends_with(b"\r");
            bytes.extend_from_slice(&buffer[..used]);
            self.line += lines as u64;
            self.input.consume(used);
            found += more;
        }
        self.last_block = bytes.len();
        Ok((found > 0).then_some(Block {
            bytes,
            first_line,
            records: found,
            by_lines: by_lines && self.core.is_none(),
        }))
    }

    /// At the end of the input: whether a last record lacks its line break.
    fn last_record(&mut self) -> bool {
        match &mut self.core {
            Some(core) => {
                let (scratch, ends) = &mut self.scratch;
                scan_records(core, scratch, ends, &[], 1).1 == 1
            }
            None => {
                let record = holds_record(self.line_length, self.line_first);
                self.line_length = 0;
                record
            }
        }
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Whether bytes not yet cut hold a quote or a lone `\r`, in one pass. A `\r` ending them is
/// judged with the next bytes (`pending_cr`: the last ones ended with one).
fn quoting_starts(bytes: &[u8], quote: u8, pending_cr: bool) -> bool {
    if pending_cr && !bytes.starts_with(b"\n") {
        return true;
    }
    let judged = bytes.strip_suffix(b"\r").unwrap_or(bytes).len();
    memchr::memchr2_iter(quote, b'\r', bytes)
        .any(|at| bytes[at] == quote || (at < judged && bytes.get(at + 1) != Some(&b'\n')))
}

/// Whether a line (without its \n) of this length and first byte is a record: an empty one,
/// or a lone \r of a CRLF, is not.
fn holds_record(length: usize, first: u8) -> bool {
    length > 1 || (length == 1 && first != b'\r')
}

/// Up to `want` non-blank lines of `buffer`: the bytes used, the lines found, where the last
/// one ends, and the line breaks passed (blank lines included).
fn scan_lines(
    line_length: &mut usize,
    line_first: &mut u8,
    buffer: &[u8],
    want: usize,
) -> (usize, usize, Option<usize>, usize) {
    let (mut start, mut found, mut end, mut passed) = (0, 0, None, 0);
    for (index, newline) in memchr::memchr_iter(b'\n', buffer).enumerate() {
        passed = index + 1;
        let length = *line_length + (newline - start);
        let first = if *line_length > 0 {
            *line_first
        } else {
            buffer[start]
        };
        *line_length = 0;
        start = newline + 1;
        if holds_record(length, first) {
            found += 1;
            end = Some(start);
            if found == want {
                return (start, found, end, passed);
            }
        }
    }
    if start < buffer.len() {
        if *line_length == 0 {
            *line_first = buffer[start];
        }
        *line_length += buffer.len() - start;
    }
    (buffer.len(), found, end, passed)
}

/// Up to `want` records of `buffer` by csv_core (an empty buffer ends the input): the bytes
/// used, the records found, and where the last one ends.
fn scan_records(
    core: &mut csv_core::Reader,
    scratch: &mut [u8],
    ends: &mut [usize],
    buffer: &[u8],
    want: usize,
) -> (usize, usize, Option<usize>) {
    let (mut used, mut found, mut end) = (0, 0, None);
    loop {
        let (result, read, _, _) = core.read_record(&buffer[used..], scratch, ends);
        used += read;
        match result {
            csv_core::ReadRecordResult::InputEmpty | csv_core::ReadRecordResult::End => {
                return (used, found, end);
            }
            // The fields are not kept: the same buffers take the rest.
            csv_core::ReadRecordResult::OutputFull | csv_core::ReadRecordResult::OutputEndsFull => {
            }
            csv_core::ReadRecordResult::Record => {
                found += 1;
                end = Some(used);
                if found == want {
                    return (used, found, end);
                }
            }
        }
    }
}

/// A csv reader of records cut from the input. Fields are trimmed where they are used
/// (`str::trim`): the csv crate's own trimming copies every record. The crate takes a byte
/// order mark starting what it reads for one and drops it, but only the input's start may have
/// one (the splitter drops it): a first read shorter than a mark keeps any other as data.
fn csv_reader<'b>(
    bytes: &'b [u8],
    options: &CsvOptions,
) -> csv::Reader<std::io::Chain<&'b [u8], &'b [u8]>> {
    let (head, rest) = bytes.split_at(bytes.len().min(2));
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(options.delimiter)
        .quote(options.quote)
        .from_reader(head.chain(rest))
}

/// Parses a block's records into the builders' columns.
fn parse_block(
    block: &Block,
    options: &CsvOptions,
    builders: &mut [Builder],
) -> Result<Chunk, CsvError> {
    let mut rows = Rows {
        builders,
        nulls: NullMarkers::new(&options.null_markers),
        delimiter: options.delimiter,
        joined: Vec::new(),
        row_hashes: Vec::with_capacity(block.records),
        errors: (Vec::new(), 0),
    };
    // The splitter knows a block it cut by lines is plain; another may be too.
    if (block.by_lines && plain_delimiter(options.delimiter)) || is_plain(&block.bytes, options) {
        parse_plain(block, options.delimiter, &mut rows)?;
    } else {
        let mut reader = csv_reader(&block.bytes, options);
        let mut lines = Lines::new(&block.bytes, block.first_line);
        let mut record = csv::StringRecord::new();
        loop {
            let line = lines.at(reader.position());
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => return Err(malformed(line, &e, |at| lines.at(at))),
            }
            let line = record.position().map_or(line, |at| lines.at(at));
            rows.take(line, record.len(), record.iter(), None)?;
        }
    }
    let Rows {
        builders,
        row_hashes,
        errors,
        ..
    } = rows;
    Ok(Chunk::new(
        builders.iter_mut().map(Builder::take_chunk).collect(),
        row_hashes,
        errors,
    ))
}

/// The lines of a block's records, counted from its bytes: the csv crate counts the `\n` of a
/// CRLF with the record after it, and so numbers the records of a CRLF file a line or more
/// short after an empty line. A record's position may point at that `\n` (or the `\r` before
/// it); no record starts with a line break, so the line is that of the first byte after them.
struct Lines<'b> {
    bytes: &'b [u8],
    first_line: u64,
    /// Line breaks are counted up to here.
    counted: usize,
    line: u64,
}

impl<'b> Lines<'b> {
    fn new(bytes: &'b [u8], first_line: u64) -> Self {
        Self {
            bytes,
            first_line,
            counted: 0,
            line: first_line,
        }
    }

    fn at(&mut self, position: &csv::Position) -> u64 {
        let mut start = usize::try_from(position.byte())
            .map_or(self.bytes.len(), |at| at.min(self.bytes.len()));
        while matches!(self.bytes.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        if start < self.counted {
            // Positions only move forward; counted again from the start if one did not.
            (self.counted, self.line) = (0, self.first_line);
        }
        self.line += memchr::memchr_iter(b'\n', &self.bytes[self.counted..start]).count() as u64;
        self.counted = start;
        self.line
    }
}

/// Whether a block can be split into fields by its delimiters alone: no quote character, no
/// line break but `\n` (or `\r\n`), an ASCII delimiter. Then csv_core's reading and copying is
/// not needed, and the result is the same.
fn is_plain(bytes: &[u8], options: &CsvOptions) -> bool {
    plain_delimiter(options.delimiter) && !quoting_starts(bytes, options.quote, false)
}

/// Whether fields can be cut at this delimiter byte in UTF-8 text without breaking a line.
fn plain_delimiter(delimiter: u8) -> bool {
    delimiter.is_ascii() && !matches!(delimiter, b'\n' | b'\r')
}

/// A plain block's records: one per line that is not empty, fields between delimiters, found in
/// one pass over the block and parsed a tile of rows at a time.
fn parse_plain(block: &Block, delimiter: u8, rows: &mut Rows) -> Result<(), CsvError> {
    let bytes = &block.bytes[..];
    // Invalid UTF-8 is reported after the rows before its line, as a reader going line by
    // line would.
    let (text, invalid) = match std::str::from_utf8(bytes) {
        Ok(text) => (text, None),
        Err(e) => {
            let bad = e.valid_up_to();
            let line_start = memchr::memrchr(b'\n', &bytes[..bad]).map_or(0, |at| at + 1);
            let line = block.first_line + memchr::memchr_iter(b'\n', &bytes[..bad]).count() as u64;
            let field = 1 + memchr::memchr_iter(delimiter, &bytes[line_start..bad]).count();
            let valid = std::str::from_utf8(&bytes[..line_start]).expect("valid up to here");
            let error = CsvError::Malformed {
                line,
                message: format!("field {field} is not valid UTF-8"),
            };
            (valid, Some(error))
        }
    };
    let bytes = text.as_bytes();
    let mut tile = Tile::new(text, rows.builders.len(), block.records);
    let mut line = block.first_line;
    let (mut line_start, mut field_start) = (0, 0);
    for at in Separators::new(delimiter, b'\n', bytes) {
        if bytes[at] == delimiter {
            tile.fields.push(field_start..at);
        } else {
            tile.end_line(rows, line_start..at, field_start..at, line)?;
            line += 1;
            line_start = at + 1;
        }
        field_start = at + 1;
    }
    if field_start < bytes.len() || tile.fields.len() > tile.row_start {
        tile.end_line(
            rows,
            line_start..bytes.len(),
            field_start..bytes.len(),
            line,
        )?;
    }
    tile.parse(rows)?;
    invalid.map_or(Ok(()), Err)
}

/// Where two bytes occur, in order: `memchr2_iter`'s answer, found eight bytes at a time in
/// plain integer arithmetic. Fields are short (a CSV's are 10-20 bytes), and a call of memchr's
/// vector search per field cost more than this pass, which finds every field of a word at once
/// (the search for a block's fields took 40% less time).
struct Separators<'b> {
    bytes: &'b [u8],
    /// The two bytes, repeated in each byte of a word.
    first: u64,
    second: u64,
    /// The word's start, and its bytes that are one of the two (high bit of each), not yet
    /// given.
    word: usize,
    found: u64,
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

impl<'b> Separators<'b> {
    fn new(first: u8, second: u8, bytes: &'b [u8]) -> Self {
        let mut separators = Self {
            bytes,
            first: LOW_BITS * u64::from(first),
            second: LOW_BITS * u64::from(second),
            word: 0,
            found: 0,
        };
        separators.found = separators.word_at(0);
        separators
    }

    /// The bytes of the word at `at` (padded past the end with bytes that are neither)
    /// that are one of the two.
    #[inline]
    fn word_at(&self, at: usize) -> u64 {
        let word = match self.bytes.get(at..at + 8) {
            Some(word) => u64::from_le_bytes(word.try_into().expect("eight bytes")),
            None => {
                let rest = self.bytes.get(at..).unwrap_or_default();
                let (first, second) = (self.first as u8, self.second as u8);
                let neither = (0..=2).find(|&b| b != first && b != second);
                let mut padded = [neither.expect("one of three is neither of two"); 8];
                padded[..rest.len()].copy_from_slice(rest);
                u64::from_le_bytes(padded)
            }
        };
        zero_bytes(word ^ self.first) | zero_bytes(word ^ self.second)
    }
}

/// The high bit of each byte of `word` that is zero: a byte's low seven bits plus 0x7f carry
/// into its high bit unless they are all zero, and the high bit itself must be clear too.
#[inline]
fn zero_bytes(word: u64) -> u64 {
    !(((word & !HIGH_BITS).wrapping_add(!HIGH_BITS)) | word) & HIGH_BITS
}

impl Iterator for Separators<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.found == 0 {
            self.word += 8;
            if self.word >= self.bytes.len() {
                return None;
            }
            self.found = self.word_at(self.word);
        }
        let at = self.word + (self.found.trailing_zeros() / 8) as usize;
        // The lowest one given.
        self.found &= self.found - 1;
        Some(at)
    }
}

/// Rows of a plain block parsed at once: their fields are found row by row, then parsed column
/// by column, each column's values in one loop for its type (no choosing per value), while
/// the tile's text is still in the core's cache. Fewer rows when there are many columns, so a
/// tile holds at most `TILE_VALUES` values.
const TILE_ROWS: usize = 1024;
const TILE_VALUES: usize = 1 << 15;

/// A tile of a plain block's records, found but not yet parsed.
struct Tile<'t> {
    text: &'t str,
    width: usize,
    /// Each record's fields (trimmed), `width` per record, and the fields of the line in
    /// progress from `row_start` on.
    fields: Vec<std::ops::Range<usize>>,
    row_start: usize,
    records: Vec<TileRecord>,
    /// Records per tile.
    rows: usize,
}

struct TileRecord {
    text: std::ops::Range<usize>,
    line: u64,
    /// Whether a value had space around it: then the record's text is not its values joined.
    trimmed: bool,
}

impl<'t> Tile<'t> {
    /// A tile for a block of `records` records of `width` fields.
    fn new(text: &'t str, width: usize, records: usize) -> Self {
        let rows = (TILE_VALUES / width.max(1))
            .clamp(1, TILE_ROWS)
            .min(records.max(1));
        Self {
            text,
            width,
            fields: Vec::with_capacity(rows * width),
            row_start: 0,
            records: Vec::with_capacity(rows),
            rows,
        }
    }

    /// Ends a line (`record`, its last field `last`). As a reader going row by row would: a
    /// `\r` ending it is no part of it, an empty line or a line of blanks is no record, and a
    /// record of another width is an error after the records before it.
    fn end_line(
        &mut self,
        rows: &mut Rows,
        mut record: std::ops::Range<usize>,
        mut last: std::ops::Range<usize>,
        line: u64,
    ) -> Result<(), CsvError> {
        if self.text[last.clone()].ends_with('\r') {
            (record.end, last.end) = (record.end - 1, last.end - 1);
        }
        let count = self.fields.len() - self.row_start + 1;
        let first = self.fields.get(self.row_start).unwrap_or(&last).clone();
        // An empty line is no record (the csv crate skips those itself).
        let row = if count == 1 && last.is_empty() {
            Ok(false)
        } else {
            is_row(count, self.width, &self.text[first], line)
        };
        match row {
            Ok(true) => {}
            Ok(false) => {
                self.fields.truncate(self.row_start);
                return Ok(());
            }
            Err(ragged) => {
                // Its error comes after the records before it.
                self.fields.truncate(self.row_start);
                self.parse(rows)?;
                return Err(ragged);
            }
        }
        self.fields.push(last);
        let mut trimmed = false;
        for field in &mut self.fields[self.row_start..] {
            let text = &self.text[field.clone()];
            let value = trim(text);
            if value.len() != text.len() {
                trimmed = true;
                let start = field.start + (text.len() - text.trim_start().len());
                *field = start..start + value.len();
            }
        }
        self.records.push(TileRecord {
            text: record,
            line,
            trimmed,
        });
        self.row_start = self.fields.len();
        if self.records.len() == self.rows {
            self.parse(rows)?;
        }
        Ok(())
    }

    /// Parses the tile's records into the builders, column by column. A value that is not
    /// plainly of its column's type (the first of an inferred column, a type error, a number
    /// in an inferred integer column) sends the whole tile back through the row-by-row path,
    /// which decides it and reports errors in the order of the rows.
    fn parse(&mut self, rows: &mut Rows) -> Result<(), CsvError> {
        if self.records.is_empty() {
            return Ok(());
        }
        let (text, width) = (self.text, self.width);
        let value = |field: &std::ops::Range<usize>| &text[field.clone()];
        let marks: Option<Vec<Mark>> = rows.builders.iter_mut().map(Builder::ready).collect();
        let by_columns = marks.is_some_and(|marks| {
            let nulls = &rows.nulls;
            let parsed = rows
                .builders
                .iter_mut()
                .enumerate()
                .all(|(column, builder)| {
                    let values = self.fields[column..].iter().step_by(width).map(value);
                    builder
                        .data
                        .as_mut()
                        .is_some_and(|data| data.push_settled_all(values, nulls))
                });
            if !parsed {
                rows.builders
                    .iter_mut()
                    .zip(marks)
                    .for_each(|(builder, mark)| builder.rewind(mark));
            }
            parsed
        });
        for (record, fields) in self.records.iter().zip(self.fields.chunks_exact(width)) {
            // The fields are trimmed already: a trimmed record is hashed by its values.
            let whole = (!record.trimmed).then(|| &text[record.text.clone()]);
            let values = fields.iter().map(value);
            if by_columns {
                rows.push_hash(whole, values);
            } else {
                rows.take(record.line, width, values, whole)?;
            }
        }
        self.records.clear();
        self.fields.clear();
        self.row_start = 0;
        Ok(())
    }
}

/// Whether a record of `count` fields, the first of them `first`, is a row of `width` columns:
/// a line of blanks is not one (with one column, a blank is a value), and a record of another
/// width is an error.
fn is_row(count: usize, width: usize, first: &str, line: u64) -> Result<bool, CsvError> {
    if count == 1 && width > 1 && trim(first).is_empty() {
        return Ok(false);
    }
    if count != width {
        return Err(CsvError::Ragged {
            line,
            found: count,
            expected: width,
        });
    }
    Ok(true)
}

/// Rows going into the builders, with their hashes and type errors.
struct Rows<'a> {
    builders: &'a mut [Builder],
    nulls: NullMarkers,
    delimiter: u8,
    /// A row's values joined, to hash them.
    joined: Vec<u8>,
    row_hashes: Vec<u64>,
    errors: TypeErrors,
}

impl Rows<'_> {
    /// A record's fields into the builders. `record`: the record's text, when its fields are
    /// that text cut at the delimiters (a plain line).
    fn take<'f, F>(
        &mut self,
        line: u64,
        count: usize,
        fields: F,
        record: Option<&str>,
    ) -> Result<(), CsvError>
    where
        F: Iterator<Item = &'f str> + Clone,
    {
        let first = fields.clone().next().unwrap_or_default();
        if !is_row(count, self.builders.len(), first, line)? {
            return Ok(());
        }
        let mut trimmed = false;
        for (builder, field) in self.builders.iter_mut().zip(fields.clone()) {
            let value = trim(field);
            trimmed |= value.len() != field.len();
            builder.push(value, line, &self.nulls, &mut self.errors)?;
        }
        self.push_hash(record.filter(|_| !trimmed), fields.map(trim));
        Ok(())
    }

    /// Records a row's hash: of `record`, the row's text when its values joined are that text
    /// (a plain record with nothing trimmed), hashed where it is; else of the values joined.
    fn push_hash<'f>(
        &mut self,
        record: Option<&str>,
        values: impl Iterator<Item = &'f str> + Clone,
    ) {
        let hash = match record {
            Some(record) => hash_bytes(record.as_bytes()),
            None => self.joined_hash(values),
        };
        self.row_hashes.push(hash);
    }

    /// The hash of a row's values joined by the delimiter, which is the hash of a plain
    /// record's text: the same values hash the same however they were quoted or spaced.
    fn joined_hash<'f>(&mut self, values: impl Iterator<Item = &'f str> + Clone) -> u64 {
        let delimiter = self.delimiter;
        if values.clone().any(|v| v.as_bytes().contains(&delimiter)) {
            // Joined, such values would be ambiguous; a row holding one cannot equal a row
            // whose values hold none, so it may hash them another way.
            let mut hasher = row_hasher();
            values.for_each(|v| v.hash(&mut hasher));
            return hasher.finish();
        }
        self.joined.clear();
        for (index, value) in values.enumerate() {
            if index > 0 {
                self.joined.push(delimiter);
            }
            self.joined.extend_from_slice(value.as_bytes());
        }
        hash_bytes(&self.joined)
    }
}

fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut hasher = row_hasher();
    hasher.write(bytes);
    hasher.finish()
}

/// `str::trim`, with the common case (no space around the value) decided by two bytes.
fn trim(value: &str) -> &str {
    match value.as_bytes() {
        [first, .., last] if first.is_ascii_graphic() && last.is_ascii_graphic() => value,
        _ => value.trim(),
    }
}

/// Reads a CSV into typed, nullable columns. A column's type is declared, or inferred from
/// its first non-missing value (booleans, integers, numbers, timestamps, else text); integers
/// widen to numbers, but a later value of another type is an error naming the line.
///
/// The first block of records is parsed here, and settles the types the others start from;
/// the rest are handed on whole, to be parsed in parallel.
pub(crate) fn read_csv(
    input: impl std::io::BufRead,
    options: &CsvOptions,
    rules: &[ColumnRule],
    out: &mut Output,
) -> Result<(), CsvError> {
    let limits = out.limits();
    let mut splitter = Splitter::new(input, options);
    let Some(head) = splitter.next_block(1)? else {
        return Err(CsvError::NoHeader);
    };
    let mut record = csv::StringRecord::new();
    let header_line = head.first_line;
    match csv_reader(&head.bytes, options).read_record(&mut record) {
        Ok(true) => {}
        Ok(false) => return Err(CsvError::NoHeader),
        Err(e) => return Err(malformed(header_line, &e, |_| header_line)),
    }
    if record.is_empty() || (record.len() == 1 && record[0].trim().is_empty()) {
        return Err(CsvError::NoHeader);
    }
    if record.len() > limits.max_columns {
        return Err(CsvError::TooLarge {
            what: "columns",
            limit: limits.max_columns as u64,
        });
    }
    let names: Vec<String> = if options.has_header {
        record.iter().map(|name| name.trim().to_string()).collect()
    } else {
        (1..=record.len()).map(|i| format!("c{i}")).collect()
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
    let builders = out.builders(&names, rules);
    let chunk_rows = out.chunk_rows(names.len());
    let first = if options.has_header {
        splitter.next_block(chunk_rows)?
    } else {
        // Without a header, the first line is the first row.
        let mut first = head;
        if let Some(rest) = splitter.next_block(chunk_rows - 1)? {
            first.bytes.extend_from_slice(&rest.bytes);
            first.records += rest.records;
            first.by_lines &= rest.by_lines;
        }
        Some(first)
    };
    let Some(first) = first else {
        return Ok(());
    };
    let layout = Arc::new(Layout {
        settled: std::sync::OnceLock::new(),
        options: options.clone(),
        spares: splitter.spares.clone(),
    });
    (out.emit)(Work::FirstCsv {
        block: first,
        builders,
        layout: layout.clone(),
    })?;
    while let Some(block) = splitter.next_block(chunk_rows)? {
        (out.emit)(Work::Csv {
            block,
            layout: layout.clone(),
        })?;
    }
    Ok(())
}

/// The csv crate's error, with the line counted from the start of the input: `line` where the
/// reader stood, or `line_at` the error's own position.
fn malformed(
    line: u64,
    error: &csv::Error,
    mut line_at: impl FnMut(&csv::Position) -> u64,
) -> CsvError {
    match error.kind() {
        csv::ErrorKind::Utf8 { pos, err } => CsvError::Malformed {
            line: pos.as_ref().map_or(line, &mut line_at),
            message: format!("field {} is not valid UTF-8", err.field() + 1),
        },
        csv::ErrorKind::Io(e) => CsvError::Malformed {
            line,
            message: e.to_string(),
        },
        _ => CsvError::Malformed {
            line,
            message: error.to_string(),
        },
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
    fn packed_texts_keep_each_value_and_its_absence() {
        let values = [Some("a"), None, Some(""), Some("héllo"), None];
        let texts: Texts = values.iter().copied().collect();
        assert_eq!(texts.len(), 5);
        assert_eq!(texts.iter().collect::<Vec<_>>(), values);
        let data = Data::Str(texts);
        assert_eq!(data.null_count(), 2);
        assert_eq!(data.text(3).as_deref(), Some("héllo"));
        let array = data.into_array().unwrap();
        assert_eq!(
            array.as_ref(),
            &StringArray::from(values.to_vec()) as &dyn arrow_array::Array
        );
    }

    #[test]
    fn nullable_values_become_the_arrow_arrays_of_their_options() {
        let cases: [&[Option<f64>]; 5] = [
            &[],
            &[Some(1.5), Some(-2.0), Some(3.0)],
            &[None, Some(1.5), None],
            &[Some(1.5), Some(2.5), None],
            &[None, None],
        ];
        for values in cases {
            let column: Nullable<f64> = values.iter().copied().collect();
            assert_eq!(column.len(), values.len());
            assert_eq!(column.iter().collect::<Vec<_>>(), values);
            let data = Data::Float(column.clone());
            assert_eq!(
                data.null_count(),
                values.iter().filter(|x| x.is_none()).count()
            );
            let numbers = data.numbers().expect("numeric");
            for (row, value) in values.iter().enumerate() {
                assert_eq!(data.is_null(row), value.is_none());
                assert_eq!(data.number(row), *value);
                assert_eq!(numbers[row].is_nan(), value.is_none());
            }
            assert_eq!(
                data.into_array().unwrap().as_ref(),
                &Float64Array::from(values.to_vec()) as &dyn arrow_array::Array
            );
            // Masking changes the values that are there, and widening keeps the missing ones.
            let mut rounded = column.clone();
            rounded.update(|x| *x = x.round());
            let expected: Vec<_> = values.iter().map(|x| x.map(f64::round)).collect();
            assert_eq!(rounded.iter().collect::<Vec<_>>(), expected);
            let ints: Nullable<i64> = values.iter().map(|x| x.map(|x| x as i64)).collect();
            let widened: Vec<_> = values.iter().map(|x| x.map(|x| x as i64 as f64)).collect();
            assert_eq!(ints.map(|i| i as f64).iter().collect::<Vec<_>>(), widened);
            let times = Data::Time(ints.clone()).into_array().unwrap();
            let expected = TimestampMillisecondArray::from(ints.iter().collect::<Vec<_>>())
                .with_timezone("UTC");
            assert_eq!(times.as_ref(), &expected as &dyn arrow_array::Array);
        }
    }

    /// Records over several tiles, and the same with a quote in the first record, which sends
    /// every record through the csv crate, row by row.
    fn plain_and_quoted(records: &[String]) -> (String, String) {
        let body = records.join("\r\n");
        let plain = format!("n,score,flag,day,name\r\n{body}");
        let quoted = plain.replacen("name 0", "\"name 0\"", 1);
        assert_ne!(plain, quoted);
        (plain, quoted)
    }

    /// Where a table's kept type errors are: line and column.
    fn error_places(table: &ParsedTable) -> Vec<(u64, &str)> {
        let errors = table.tally.type_errors.iter();
        errors.map(|e| (e.line, e.column.as_str())).collect()
    }

    #[test]
    fn tiles_parse_as_the_row_by_row_reader_does() {
        // Spaces around values, missing values, CRLF, an empty line and a line of blanks (after
        // record 1000: the records after it are on line i + 4), an
        // integer column meeting its first number three tiles in, and type errors in declared
        // columns which, taken column by column, would come out of the rows' order.
        let records: Vec<String> = (0..3500)
            .map(|i| {
                let n = if i == 3100 {
                    "2.5".into()
                } else {
                    i.to_string()
                };
                let score = match i {
                    1500 => "high".to_string(),
                    _ if i % 7 == 0 => "NA".into(),
                    _ => format!(" {i}.25 "),
                };
                let flag = match i {
                    1400 => "maybe",
                    _ if i % 2 == 0 => "true",
                    _ => "FALSE",
                };
                let day = if i % 11 == 0 { "" } else { "2024-02-29" };
                let blank = if i == 1000 { "\r\n\r\n   " } else { "" };
                format!("{n},{score},{flag},{day},name {i}{blank}")
            })
            .collect();
        let (plain, quoted) = plain_and_quoted(&records);
        let rules = [
            ColumnRule {
                name: "score".into(),
                data_type: Some(ColumnType::Float64),
                ..Default::default()
            },
            ColumnRule {
                name: "flag".into(),
                data_type: Some(ColumnType::Bool),
                ..Default::default()
            },
        ];
        let read = |text: &str| {
            ParsedTable::csv(text, &CsvOptions::default(), &rules, CsvLimits::default())
                .expect("reads")
        };
        let (by_tiles, by_rows) = (read(&plain), read(&quoted));
        assert_eq!(by_tiles, by_rows);
        assert_eq!(by_tiles.tally.rows, 3500);
        assert_eq!(by_tiles.columns[0].data.column_type(), ColumnType::Float64);
        assert_eq!(error_places(&by_tiles), [(1404, "flag"), (1504, "score")]);
        assert_eq!(by_tiles.columns[1].data.null_count(), 3500 / 7 + 1);

        // The first error in the rows' order is the one reported, whichever column it is in
        // and whatever follows it in the tile (another error, a ragged record).
        let mut bad = records.clone();
        bad[1300] = bad[1300].replacen("1300,", "x,", 1);
        bad[1200] = bad[1200].replace("name 1200", "name 1200,extra");
        let failed = |text: &str| {
            ParsedTable::csv(text, &CsvOptions::default(), &[], CsvLimits::default()).unwrap_err()
        };
        let (plain, quoted) = plain_and_quoted(&bad);
        let ragged = CsvError::Ragged {
            line: 1204,
            found: 6,
            expected: 5,
        };
        assert_eq!(failed(&plain), ragged);
        assert_eq!(failed(&quoted), ragged);
        bad[1200] = records[1200].clone();
        bad[1250] = bad[1250].replace("2024-02-29", "soon");
        let (plain, quoted) = plain_and_quoted(&bad);
        let changed = failed(&plain);
        assert!(
            matches!(changed, CsvError::TypeChanged { line: 1254, .. }),
            "{changed}"
        );
        assert_eq!(changed, failed(&quoted));
    }

    #[test]
    fn tiles_of_declared_columns_start_and_go_back_as_rows_do() {
        // Every column declared, so the first tile is parsed by columns too: the integers
        // start missing (their column is made by the tile, after those), and in the second
        // tile the names' first missing value is followed by a type error in a later column,
        // which sends the tile back: text and missing flags cut back to where it began.
        let records: Vec<String> = (0..2500)
            .map(|i| {
                let n = if i < 5 {
                    "NA".to_string()
                } else {
                    i.to_string()
                };
                let score = if i == 1800 {
                    "high".to_string()
                } else {
                    format!("{i}.5")
                };
                // Spaces around the names (but the first, which the quoted copy quotes).
                let name = match i {
                    0 => "name 0".to_string(),
                    1500 => String::new(),
                    _ => format!(" name {i} "),
                };
                format!("{name},{n},{score},n,true,2024-01-01")
            })
            .collect();
        let body = records.join("\n");
        let plain = format!("name,n,score,flag,ok,day\n{body}");
        let quoted = plain.replacen("name 0", "\"name 0\"", 1);
        let declared = [
            ("name", ColumnType::String),
            ("n", ColumnType::Int64),
            ("score", ColumnType::Float64),
            ("flag", ColumnType::String),
            ("ok", ColumnType::Bool),
            ("day", ColumnType::Timestamp),
        ];
        let rules: Vec<ColumnRule> = declared
            .iter()
            .map(|(name, ty)| ColumnRule {
                name: (*name).into(),
                data_type: Some(*ty),
                ..Default::default()
            })
            .collect();
        let read = |text: &str| {
            ParsedTable::csv(text, &CsvOptions::default(), &rules, CsvLimits::default())
                .expect("reads")
        };
        let (by_tiles, by_rows) = (read(&plain), read(&quoted));
        assert_eq!(by_tiles, by_rows);
        assert_eq!(by_tiles.columns[1].data.null_count(), 5);
        assert_eq!(by_tiles.columns[0].data.null_count(), 1);
        assert_eq!(by_tiles.columns[1].data.number(5), Some(5.0));
        assert_eq!(
            by_tiles.columns[0].data.text(1800).as_deref(),
            Some("name 1800")
        );
        assert_eq!(error_places(&by_tiles), [(1802, "score")]);
    }

    #[test]
    fn a_run_of_settled_values_takes_what_one_value_at_a_time_takes() {
        // What the column path accepts, the row path takes the same way; what it refuses, it
        // leaves untouched for the row path to decide.
        let nulls = NullMarkers::new(&CsvOptions::default().null_markers);
        let texts = [
            "1",
            "-2",
            "+3",
            "2.5",
            "1e3",
            "inf",
            "-inf",
            "NaN",
            "nan",
            "true",
            "FALSE",
            "yes",
            "2024-02-29",
            "2024-02-30",
            "2024-01-01T10:00:00Z",
            "",
            "NA",
            "null",
            "x",
        ];
        for ty in [
            ColumnType::Int64,
            ColumnType::Float64,
            ColumnType::Bool,
            ColumnType::String,
            ColumnType::Timestamp,
        ] {
            for text in texts {
                for declared in [Some(ty), None] {
                    let mut one = Builder::new("c".into(), declared, Some(ty), 4);
                    let mut run = one.clone();
                    let mark = run.ready().expect("the type is known");
                    let mut errors = (Vec::new(), 0);
                    let taken = one.push_any(text, 1, &nulls, &mut errors);
                    let settled = run
                        .data
                        .as_mut()
                        .expect("made by ready")
                        .push_settled_all(std::iter::once(text), &nulls);
                    if settled {
                        assert!(taken.is_ok() && errors.1 == 0, "{ty:?} {text:?}");
                        // A missing first value is only counted until the column is made.
                        assert_eq!(one.take_chunk(), run.take_chunk(), "{ty:?} {text:?}");
                    } else {
                        assert_eq!(run.data.as_ref().map(Data::len), Some(mark.values));
                        assert!(
                            taken.is_err()
                                || errors.1 == 1
                                || one.data.as_ref().map(Data::column_type) != Some(ty),
                            "{ty:?} {text:?}: refused by the run, taken plainly one at a time"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn separators_are_found_where_memchr_finds_them() {
        // Every length up to a few words, so each position of a partial last word is met;
        // bytes near the two (0x2b, 0x0b), high bytes, zero, and the two side by side.
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as u8
        };
        for (a, b) in [
            (b',', b'\n'),
            (b';', b'\n'),
            (b'\t', b'\n'),
            (0xff, 0xfe),
            (0, 1),
        ] {
            for length in 0..300 {
                let bytes: Vec<u8> = (0..length)
                    .map(|_| {
                        let pick = next();
                        [a, b, a ^ 0x80, b ^ 1, 0x80, 0xff, 0, pick][usize::from(pick % 8)]
                    })
                    .collect();
                let expected: Vec<usize> = memchr::memchr2_iter(a, b, &bytes).collect();
                let found: Vec<usize> = Separators::new(a, b, &bytes).collect();
                assert_eq!(found, expected, "{a} {b} {bytes:?}");
            }
        }
    }

    #[test]
    fn integers_read_as_str_parse_reads_them() {
        for text in [
            "0",
            "-0",
            "+0",
            "7",
            "-7",
            "+42",
            "007",
            "123456789012345678",
            "-123456789012345678",
            "999999999999999999",
            "1234567890123456789",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
            "",
            "-",
            "+",
            "--1",
            "+-1",
            "1-",
            "1.0",
            "1e3",
            " 1",
            "1 ",
            "0x10",
            "١",
            "12a",
            "a12",
            "１２",
        ] {
            assert_eq!(parse_i64(text), text.parse::<i64>().ok(), "{text:?}");
        }
    }

    #[test]
    fn numbers_read_as_str_parse_reads_them() {
        let same = |text: &str| {
            let ours = parse_f64(text).map(f64::to_bits);
            let std = text.parse::<f64>().ok().map(f64::to_bits);
            let both_nan = parse_f64(text).is_some_and(f64::is_nan)
                && text.parse::<f64>().is_ok_and(f64::is_nan);
            assert!(ours == std || both_nan, "{text:?}: {ours:?} vs {std:?}");
        };
        for text in [
            "+1.5",
            "-0",
            "1.",
            ".5",
            ".",
            "1e5",
            "1E+5",
            "1e",
            "e5",
            "inf",
            "-Infinity",
            "NaN",
            "+nan",
            "1_0",
            " 1",
            "1 ",
            "0x10",
            "1.5f",
            "",
            "-",
            "+",
            "1e400",
            "1e-400",
            "00001.5",
            "1.7976931348623157e309",
            "4.9e-324",
            "2.2250738585072011e-308",
            "١",
            "9007199254740993",
            "0.1000000000000000055511151231257827",
        ] {
            same(text);
        }
        // Long mantissas, as a generated file writes them, and their shortest forms.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let x = f64::from_bits(state);
            if x.is_finite() {
                same(&x.to_string());
                same(&format!("{x:e}"));
            }
            let scaled = (state % 1_000_000) as f64 / 997.0 - 300.0;
            same(&format!("{scaled:.16}"));
            same(&format!("{scaled:.3}"));
        }
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
    fn rows_are_duplicates_by_their_values_however_they_are_written() {
        // Rows 2, 3 and 7 repeat row 1 (spaced, quoted, CRLF); row 6 repeats row 4. Row 5 is
        // not row 4: both join to "q,y,z", but their values differ.
        let csv = "a,b\np,x\n p , x\n\"p\",x\nq,\"y,z\"\n\"q,y\",z\nq,\"y,z\"\np,x\r\n";
        let read = |chunk_values| {
            ParsedTable::read(chunk_values, CsvLimits::default(), |out| {
                read_csv(csv.as_bytes(), &CsvOptions::default(), &[], out)
            })
            .unwrap()
            .tally
            .duplicate_rows
        };
        // One block read by the csv crate; and blocks of two rows, the plain ones cut by hand.
        assert_eq!(read(CHUNK_VALUES), 4);
        assert_eq!(read(4), 4);
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

    /// The CSV read through a buffer of `buffer` bytes, in chunks of `chunk_values` values.
    fn read_through(
        text: &str,
        options: &CsvOptions,
        chunk_values: usize,
        buffer: usize,
    ) -> Result<ParsedTable, CsvError> {
        ParsedTable::read(chunk_values, CsvLimits::default(), |out| {
            let input = std::io::BufReader::with_capacity(buffer, text.as_bytes());
            read_csv(input, options, &[], out)
        })
    }

    #[test]
    fn blocks_hold_whole_records_however_the_input_arrives() {
        // Quotes appear late (lines are cut by memchr until then, by csv_core after), quoted
        // fields hold line breaks and delimiters; CRLF endings, blank lines, no last line break.
        let mut text = String::from("id,note,x\r\n");
        for i in 0..40 {
            if i == 17 {
                text.push_str("\r\n\n");
            }
            if i >= 25 && i % 3 == 0 {
                text.push_str(&format!("{i},\"two\nlines, {i}\",{i}.5\r\n"));
            } else {
                text.push_str(&format!("{i},plain {i},{i}.5\r\n"));
            }
        }
        text.push_str("40,last,1");
        let options = CsvOptions::default();
        let whole = read_through(&text, &options, CHUNK_VALUES, 1 << 16).unwrap();
        assert_eq!(whole.tally.rows, 41);
        assert_eq!(
            whole.columns[1].data.text(27),
            Some("two\nlines, 27".to_string())
        );
        assert_eq!(whole.columns[2].data.number(40), Some(1.0));
        for (rows_per_chunk, buffer) in [(3, 7), (2, 1), (5, 64), (1, 3)] {
            let split = read_through(&text, &options, rows_per_chunk * 3, buffer).unwrap();
            assert_eq!(
                split, whole,
                "{rows_per_chunk} rows per chunk, {buffer} byte reads"
            );
        }
        // Lines are the file's, past multi-line records and blocks: a ragged row at the end.
        let ragged = format!("{text}\n41,short\n");
        let line = ragged.matches('\n').count() as u64;
        for (chunk_values, buffer) in [(CHUNK_VALUES, 1 << 16), (6, 5)] {
            assert_eq!(
                read_through(&ragged, &options, chunk_values, buffer).unwrap_err(),
                CsvError::Ragged {
                    line,
                    found: 2,
                    expected: 3
                }
            );
        }
        // Without a header the first line is a row, in the first block as in one.
        let headless = CsvOptions {
            has_header: false,
            ..Default::default()
        };
        let text = "1,a\n2,\"b\nc\"\n3,d\n4,e\n5,f\n";
        let whole = read_through(text, &headless, CHUNK_VALUES, 1 << 16).unwrap();
        assert_eq!(whole.tally.rows, 5);
        assert_eq!(read_through(text, &headless, 4, 2).unwrap(), whole);
        // Invalid UTF-8 is named by its line, not the block's.
        let mut bytes = b"a,b\n1,2\n3,4\n5,".to_vec();
        bytes.extend([0xff, b'\n']);
        let error = ParsedTable::read(4, CsvLimits::default(), |out| {
            read_csv(&bytes[..], &options, &[], out)
        })
        .unwrap_err();
        assert_eq!(
            error,
            CsvError::Malformed {
                line: 4,
                message: "field 2 is not valid UTF-8".into()
            }
        );
    }

    #[test]
    fn lone_carriage_returns_byte_order_marks_and_the_row_limit_read_as_the_csv_crate_does() {
        let options = CsvOptions::default();
        for text in [
            "a,b\r1,2\r3,4\r",
            "a,b\r1,2\n3,4\n",
            "\u{feff}a,b\n1,2\r\n3,4",
        ] {
            for (chunk_values, buffer) in [(CHUNK_VALUES, 1 << 16), (2, 3)] {
                let table = read_through(text, &options, chunk_values, buffer).unwrap();
                assert_eq!(table.tally.rows, 2, "{text:?}");
                assert_eq!(table.columns[0].name, "a");
                assert_eq!(table.columns[1].data.number(1), Some(4.0), "{text:?}");
            }
        }
        let headless = CsvOptions {
            has_header: false,
            ..Default::default()
        };
        let table = read_through("\u{feff}1,2\n3,4\n", &headless, CHUNK_VALUES, 64).unwrap();
        assert_eq!(types(&table), vec![ColumnType::Int64, ColumnType::Int64]);
        // A mark past the start is data, also starting a block, and lines stay the file's.
        let table = read_through("a,b\n1,x\n2,\u{feff}y\n", &options, 4, 64).unwrap();
        assert_eq!(table.columns[1].data.text(1), Some("\u{feff}y".to_string()));
        let text = "a,b\nx,1\n\u{feff}\"y\",2\nz,3\n";
        let table = read_through(text, &options, 2, 64).unwrap();
        assert_eq!(
            table.columns[0].data.text(1),
            Some("\u{feff}\"y\"".to_string())
        );
        assert!(matches!(
            read_through("a,b\n1,2\n\u{feff}x,\"y\",z\n", &options, 2, 64),
            Err(CsvError::Ragged { line: 3, .. })
        ));
        // CRLF read in pieces that split \r from \n stays on the fast path.
        for buffer in [1, 2, 3, 5] {
            let text = "a,b\r\n1,2\r\n3,4\r\n";
            let input = std::io::BufReader::with_capacity(buffer, text.as_bytes());
            let mut splitter = Splitter::new(input, &options);
            assert_eq!(splitter.next_block(10).unwrap().unwrap().records, 3);
            assert!(splitter.core.is_none(), "{buffer} byte reads");
        }
        // The limit counts rows, not lines, after the errors of earlier rows.
        let one = CsvLimits {
            max_rows: 1,
            ..Default::default()
        };
        let read = |text: &str| {
            ParsedTable::read(CHUNK_VALUES, one, |out| {
                read_csv(text.as_bytes(), &options, &[], out)
            })
        };
        assert_eq!(read("a,b\n1,2\n \n").unwrap().tally.rows, 1);
        assert!(matches!(
            read("a,b\n1,2\n3\n"),
            Err(CsvError::Ragged { line: 3, .. })
        ));
        assert!(matches!(
            read("a,b\n1,2\n3,4\n"),
            Err(CsvError::TooLarge { what: "rows", .. })
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
