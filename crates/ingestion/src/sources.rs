//! Sources besides CSV: JSON Lines and Parquet, read into the same typed, nullable columns
//! (so the report, profile, masking and storage are the same for every source).

use std::hash::{Hash, Hasher};
use std::io::{BufRead, Read};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::csv_import::{
    Builder, ColumnRule, CsvError, CsvOptions, Data, NullMarkers, Output, ParsedColumn, row_hasher,
};

/// The formats an upload may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
    Parquet,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::JsonLines => "jsonl",
            Format::Parquet => "parquet",
        }
    }

    /// From the header's `format`, or (empty) from the data's first bytes: Parquet's magic,
    /// `{` for JSON Lines, else CSV.
    pub fn pick(declared: &str, head: &[u8]) -> Result<Self, CsvError> {
        Ok(match declared {
            "csv" => Format::Csv,
            "jsonl" | "ndjson" => Format::JsonLines,
            "parquet" => Format::Parquet,
            "" if head.starts_with(b"PAR1") => Format::Parquet,
            "" if head.trim_ascii_start().starts_with(b"{") => Format::JsonLines,
            "" => Format::Csv,
            other => {
                return Err(CsvError::Spec(format!(
                    "format {other:?} is not supported (csv, jsonl, parquet)"
                )));
            }
        })
    }
}

fn check_rules(rules: &[ColumnRule], names: &[String]) -> Result<(), CsvError> {
    match rules.iter().find(|r| !names.contains(&r.name)) {
        Some(unknown) => Err(CsvError::Spec(format!(
            "columns: {:?} is not a column of the data (columns: {})",
            unknown.name,
            names.join(", ")
        ))),
        None => Ok(()),
    }
}

/// JSON Lines: one flat object per line; the first object's keys are the columns. A later
/// unknown key, a nested value or a line that is not an object is an error naming the line.
pub(crate) fn read_jsonl(
    input: impl Read,
    rules: &[ColumnRule],
    out: &mut Output,
) -> Result<(), CsvError> {
    let nulls = NullMarkers::new(&CsvOptions::default().null_markers);
    let limits = out.limits();
    let reader = std::io::BufReader::new(input);
    let mut builders: Vec<Builder> = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line_number = index as u64 + 1;
        let line = line.map_err(|e| CsvError::Malformed {
            line: line_number,
            message: e.to_string(),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&line)
            .map_err(|e| CsvError::Malformed {
                line: line_number,
                message: format!("not a JSON object: {e}"),
            })?;
        if builders.is_empty() {
            if object.is_empty() {
                return Err(CsvError::NoHeader);
            }
            if object.len() > limits.max_columns {
                return Err(CsvError::TooLarge {
                    what: "columns",
                    limit: limits.max_columns as u64,
                });
            }
            let names: Vec<String> = object.keys().cloned().collect();
            check_rules(rules, &names)?;
            builders = out.builders(&names, rules);
        }
        if let Some(unknown) = object
            .keys()
            .find(|k| !builders.iter().any(|b| b.name() == *k))
        {
            return Err(CsvError::Malformed {
                line: line_number,
                message: format!("key {unknown:?} is not among the first line's keys"),
            });
        }
        let mut hasher = row_hasher();
        for builder in &mut builders {
            match object.get(builder.name()) {
                None | Some(serde_json::Value::Null) => {
                    0u8.hash(&mut hasher);
                    builder.push_missing();
                }
                Some(serde_json::Value::Array(_) | serde_json::Value::Object(_)) => {
                    return Err(CsvError::Malformed {
                        line: line_number,
                        message: format!(
                            "key {:?} holds a nested value; only flat objects are supported",
                            builder.name()
                        ),
                    });
                }
                Some(value) => {
                    let text = match value {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    text.hash(&mut hasher);
                    builder.push(&text, line_number, &nulls, out.errors())?;
                }
            }
        }
        out.end_row(hasher.finish(), &mut builders)?;
    }
    if builders.is_empty() {
        return Err(CsvError::NoHeader);
    }
    out.flush(&mut builders)
}

fn column_data(name: &str, array: &ArrayRef) -> Result<Data, CsvError> {
    let n = array.len();
    let valid = |i: usize| !array.is_null(i);
    let millis = |values: Vec<Option<i64>>, per_ms: i64, multiply: bool| {
        values
            .into_iter()
            .map(|v| {
                v.map(|x| {
                    if multiply {
                        x * per_ms
                    } else {
                        x.div_euclid(per_ms)
                    }
                })
            })
            .collect()
    };
    Ok(match array.data_type() {
        DataType::Int64 => {
            let a = array.as_primitive::<Int64Type>();
            Data::Int((0..n).map(|i| valid(i).then(|| a.value(i))).collect())
        }
        DataType::Int32 => {
            let a = array.as_primitive::<Int32Type>();
            Data::Int(
                (0..n)
                    .map(|i| valid(i).then(|| i64::from(a.value(i))))
                    .collect(),
            )
        }
        DataType::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            Data::Float((0..n).map(|i| valid(i).then(|| a.value(i))).collect())
        }
        DataType::Float32 => {
            let a = array.as_primitive::<Float32Type>();
            Data::Float(
                (0..n)
                    .map(|i| valid(i).then(|| f64::from(a.value(i))))
                    .collect(),
            )
        }
        DataType::Boolean => {
            let a = array.as_boolean();
            Data::Bool((0..n).map(|i| valid(i).then(|| a.value(i))).collect())
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            Data::Str((0..n).map(|i| valid(i).then(|| a.value(i))).collect())
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            Data::Str((0..n).map(|i| valid(i).then(|| a.value(i))).collect())
        }
        DataType::Date32 => {
            let a = array.as_primitive::<Date32Type>();
            Data::Time(
                (0..n)
                    .map(|i| valid(i).then(|| i64::from(a.value(i)) * 86_400_000))
                    .collect(),
            )
        }
        DataType::Timestamp(unit, _) => {
            let raw: Vec<Option<i64>> = match unit {
                TimeUnit::Second => {
                    let a = array.as_primitive::<TimestampSecondType>();
                    (0..n).map(|i| valid(i).then(|| a.value(i))).collect()
                }
                TimeUnit::Millisecond => {
                    let a = array.as_primitive::<TimestampMillisecondType>();
                    (0..n).map(|i| valid(i).then(|| a.value(i))).collect()
                }
                TimeUnit::Microsecond => {
                    let a = array.as_primitive::<TimestampMicrosecondType>();
                    (0..n).map(|i| valid(i).then(|| a.value(i))).collect()
                }
                TimeUnit::Nanosecond => {
                    let a = array.as_primitive::<TimestampNanosecondType>();
                    (0..n).map(|i| valid(i).then(|| a.value(i))).collect()
                }
            };
            Data::Time(
                match unit {
                    TimeUnit::Second => millis(raw, 1000, true),
                    TimeUnit::Millisecond => raw,
                    TimeUnit::Microsecond => millis(raw, 1000, false),
                    TimeUnit::Nanosecond => millis(raw, 1_000_000, false),
                }
                .into_iter()
                .collect(),
            )
        }
        other => {
            return Err(CsvError::Spec(format!(
                "column {name:?} has Parquet type {other}, which is not supported (integers, \
                 floats, booleans, strings, dates, timestamps)"
            )));
        }
    })
}

/// A Parquet file's columns, read in chunks. Declared types must match the file's (Parquet is
/// typed).
pub(crate) fn read_parquet(
    file: impl parquet::file::reader::ChunkReader + 'static,
    rules: &[ColumnRule],
    out: &mut Output,
) -> Result<(), CsvError> {
    let limits = out.limits();
    let invalid = |e: &dyn std::fmt::Display| CsvError::Malformed {
        line: 0,
        message: format!("not a readable Parquet file: {e}"),
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| invalid(&e))?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    if names.is_empty() {
        return Err(CsvError::NoHeader);
    }
    if names.len() > limits.max_columns {
        return Err(CsvError::TooLarge {
            what: "columns",
            limit: limits.max_columns as u64,
        });
    }
    check_rules(rules, &names)?;
    let batches = builder
        .with_batch_size(out.chunk_rows(names.len()))
        .build()
        .map_err(|e| invalid(&e))?;
    for (index, batch) in batches.enumerate() {
        let first = index == 0;
        let batch = batch.map_err(|e| invalid(&e))?;
        let columns = names
            .iter()
            .zip(batch.columns())
            .map(|(name, array)| {
                Ok(ParsedColumn {
                    name: name.clone(),
                    data: column_data(name, array)?,
                })
            })
            .collect::<Result<Vec<_>, CsvError>>()?;
        // A Parquet file has one schema: the first batch shows every column's type.
        for rule in rules.iter().filter(|_| first) {
            let column = columns
                .iter()
                .find(|c| c.name == rule.name)
                .expect("checked");
            if let Some(declared) = rule.data_type
                && declared != column.data.column_type()
            {
                return Err(CsvError::Spec(format!(
                    "columns: {:?} is declared {declared:?} but the Parquet column is {:?}",
                    rule.name,
                    column.data.column_type()
                )));
            }
        }
        for r in 0..batch.num_rows() {
            let mut hasher = row_hasher();
            for c in &columns {
                c.data.text(r).hash(&mut hasher);
            }
            out.count_row(hasher.finish());
        }
        out.emit_chunk(columns)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csv_import::{ColumnType, CsvLimits, ParsedTable};

    fn jsonl(text: &str) -> Result<ParsedTable, CsvError> {
        ParsedTable::read(1 << 20, CsvLimits::default(), |out| {
            read_jsonl(text.as_bytes(), &[], out)
        })
    }

    #[test]
    fn json_lines_become_typed_columns() {
        let text = "{\"a\": 1, \"b\": \"x\", \"c\": true}\n{\"a\": 2.5, \"b\": null}\n\n{\"a\": 3, \"b\": \"y\", \"c\": false}\n";
        let table = jsonl(text).unwrap();
        assert_eq!(table.tally.rows, 3);
        let types: Vec<ColumnType> = table.columns.iter().map(|c| c.data.column_type()).collect();
        assert_eq!(
            types,
            vec![ColumnType::Float64, ColumnType::String, ColumnType::Bool]
        );
        assert!(table.columns[1].data.is_null(1) && table.columns[2].data.is_null(1));
        let unknown = jsonl("{\"a\": 1}\n{\"z\": 2}\n").unwrap_err();
        assert!(unknown.to_string().contains("line 2"), "{unknown}");
        let nested = jsonl("{\"a\": [1]}\n").unwrap_err();
        assert!(nested.to_string().contains("nested"), "{nested}");
        let broken = jsonl("{\"a\": 1}\n{oops\n").unwrap_err();
        assert!(broken.to_string().contains("line 2"), "{broken}");
        assert_eq!(Format::pick("", b"PAR1....").unwrap(), Format::Parquet);
        assert_eq!(Format::pick("", b"  {\"a\"").unwrap(), Format::JsonLines);
        assert_eq!(Format::pick("", b"a,b").unwrap(), Format::Csv);
        assert!(Format::pick("xml", b"").is_err());
    }
}
