//! What ingestion learns about a parsed table before storing it: private columns masked (the
//! original values never reach the store), the validation report (nulls, type errors,
//! duplicates, declared constraints, a verdict with reasons) and the profile (the baseline for
//! drift), all as the API's messages.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use chrono::{Datelike, TimeZone, Utc};
use hmac::{Hmac, Mac};
use mlops_core::ApiError;
use mlops_ml::drift::{CategoricalSummary, FeatureProfile, NumericSummary};
use mlops_proto::v1::{ColumnProfile, ColumnReport, MaskRule, TypeError, ValidationReport};
use sha2::Sha256;

use crate::csv_import::{ColumnRule, ColumnType, Data, ParsedColumn, Tally, row_hasher};
use crate::spill::DuplicateCounter;

pub const REDACTED: &str = "[REDACTED]";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateUnit {
    Day,
    Month,
    Year,
}

enum Mask {
    Drop,
    Redact,
    Hash,
    Round(i32),
    TruncateDate(DateUnit),
}

fn parse_rule(rule: &MaskRule, column: &ParsedColumn) -> Result<Mask, ApiError> {
    let invalid = |why: String| {
        ApiError::invalid_argument(format!("masking: column {:?}: {why}", rule.column))
    };
    let numeric = matches!(column.data, Data::Int(_) | Data::Float(_));
    Ok(match rule.action.as_str() {
        "drop" => Mask::Drop,
        "redact" => Mask::Redact,
        "hash" => Mask::Hash,
        "round" if numeric => Mask::Round(rule.parameter.parse().map_err(|_| {
            invalid(format!(
                "round takes the decimal digits to keep as parameter, got {:?}",
                rule.parameter
            ))
        })?),
        "round" => return Err(invalid("round applies to numeric columns".into())),
        "truncate_date" if matches!(column.data, Data::Time(_)) => {
            Mask::TruncateDate(match rule.parameter.as_str() {
                "day" => DateUnit::Day,
                "month" => DateUnit::Month,
                "year" => DateUnit::Year,
                other => {
                    return Err(invalid(format!(
                        "truncate_date takes day, month or year, got {other:?}"
                    )));
                }
            })
        }
        "truncate_date" => {
            return Err(invalid("truncate_date applies to timestamp columns".into()));
        }
        other => {
            return Err(invalid(format!(
                "unknown action {other:?} (drop, redact, hash, round, truncate_date)"
            )));
        }
    })
}

/// Checks the rules against the columns (before any work is done on the data).
pub fn check_masking(
    rules: &[MaskRule],
    columns: &[ParsedColumn],
    key: &[u8],
) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for rule in rules {
        let column = columns
            .iter()
            .find(|c| c.name == rule.column)
            .ok_or_else(|| {
                ApiError::invalid_argument(format!(
                    "masking: {:?} is not a column of the data",
                    rule.column
                ))
            })?;
        if !seen.insert(&rule.column) {
            return Err(ApiError::invalid_argument(format!(
                "masking: column {:?} has two rules",
                rule.column
            )));
        }
        if matches!(parse_rule(rule, column)?, Mask::Hash) && key.is_empty() {
            return Err(ApiError::failed_precondition(
                "masking: hash needs ingestion.masking_key (a secret of 16 bytes or more) to be configured",
            ));
        }
    }
    Ok(())
}

/// Applies the masking rules in place; dropped columns disappear.
pub fn apply_masking(
    rules: &[MaskRule],
    columns: &mut Vec<ParsedColumn>,
    key: &[u8],
) -> Result<(), ApiError> {
    check_masking(rules, columns, key)?;
    for rule in rules {
        let index = columns
            .iter()
            .position(|c| c.name == rule.column)
            .expect("checked");
        let mask = parse_rule(rule, &columns[index])?;
        let column = &mut columns[index];
        match mask {
            Mask::Drop => {
                columns.remove(index);
            }
            Mask::Redact => {
                let rows = column.data.len();
                column.data = Data::Str(
                    (0..rows)
                        .map(|r| (!column.data.is_null(r)).then(|| REDACTED.to_string()))
                        .collect(),
                );
            }
            Mask::Hash => {
                let rows = column.data.len();
                let hashed = (0..rows)
                    .map(|r| {
                        column.data.text(r).map(|text| {
                            let mut mac = Hmac::<Sha256>::new_from_slice(key)
                                .expect("HMAC takes a key of any length");
                            mac.update(text.as_bytes());
                            hex::encode(mac.finalize().into_bytes())
                        })
                    })
                    .collect();
                column.data = Data::Str(hashed);
            }
            Mask::Round(digits) => {
                let scale = 10f64.powi(digits);
                match &mut column.data {
                    Data::Float(v) => v.update(|x| *x = (*x * scale).round() / scale),
                    Data::Int(v) if digits < 0 => {
                        v.update(|x| *x = ((*x as f64 * scale).round() / scale) as i64)
                    }
                    _ => {}
                }
            }
            Mask::TruncateDate(unit) => {
                if let Data::Time(v) = &mut column.data {
                    v.update(|t| *t = truncate(*t, unit));
                }
            }
        }
    }
    Ok(())
}

fn truncate(ms: i64, unit: DateUnit) -> i64 {
    let Some(time) = Utc.timestamp_millis_opt(ms).single() else {
        return ms;
    };
    let (year, month, day) = match unit {
        DateUnit::Day => (time.year(), time.month(), time.day()),
        DateUnit::Month => (time.year(), time.month(), 1),
        DateUnit::Year => (time.year(), 1, 1),
    };
    Utc.with_ymd_and_hms(year, month, day, 0, 0, 0)
        .single()
        .map_or(ms, |t| t.timestamp_millis())
}

/// Per-column counts of the validation report, gathered chunk by chunk.
struct ColumnCounts {
    rule: Option<ColumnRule>,
    entry: ColumnReport,
    /// Hashes of a `unique` column's values, counted for repeats at the end.
    values: Option<DuplicateCounter>,
}

/// A chunk's counts for the report, taken before masking (so anywhere, in parallel) and added
/// in order.
pub struct ReportPart {
    columns: Vec<ColumnPart>,
}

#[derive(Default)]
struct ColumnPart {
    null_count: u64,
    out_of_range: u64,
    not_allowed: u64,
    /// Hashes of a `unique` column's values.
    value_hashes: Vec<u64>,
}

impl ReportPart {
    pub fn of(chunk: &[ParsedColumn], rules: &[ColumnRule]) -> Self {
        let columns = chunk
            .iter()
            .map(|column| {
                let data = &column.data;
                let rows = data.len();
                let mut part = ColumnPart {
                    null_count: data.null_count() as u64,
                    ..Default::default()
                };
                let Some(rule) = rules.iter().find(|r| r.name == column.name) else {
                    return part;
                };
                if rule.min.is_some() || rule.max.is_some() {
                    let (lo, hi) = (
                        rule.min.unwrap_or(f64::NEG_INFINITY),
                        rule.max.unwrap_or(f64::INFINITY),
                    );
                    part.out_of_range = (0..rows)
                        .filter_map(|r| data.number(r))
                        .filter(|x| *x < lo || *x > hi)
                        .count() as u64;
                }
                if !rule.allowed.is_empty() {
                    part.not_allowed = (0..rows)
                        .filter_map(|r| data.text(r))
                        .filter(|t| !rule.allowed.contains(t))
                        .count() as u64;
                }
                if rule.unique {
                    part.value_hashes = (0..rows)
                        .filter_map(|r| data.text(r))
                        .map(|text| {
                            let mut hasher = row_hasher();
                            text.hash(&mut hasher);
                            hasher.finish()
                        })
                        .collect();
                    // Sorted in the worker, as the row hashes are: the counter merges them.
                    radsort::sort(&mut part.value_hashes);
                }
                part
            })
            .collect();
        Self { columns }
    }
}

/// The validation report of the parsed (not yet masked) data, built one chunk at a time.
/// Values of masked columns never appear in it.
pub struct ReportBuilder {
    columns: Vec<ColumnCounts>,
}

impl ReportBuilder {
    pub fn new(names: &[&str], rules: &[ColumnRule], spill_dir: &std::path::Path) -> Self {
        let columns = names
            .iter()
            .map(|name| {
                let rule = rules.iter().find(|r| r.name == *name).cloned();
                ColumnCounts {
                    values: rule
                        .as_ref()
                        .filter(|r| r.unique)
                        .map(|_| DuplicateCounter::new(spill_dir)),
                    rule,
                    entry: ColumnReport {
                        name: name.to_string(),
                        ..Default::default()
                    },
                }
            })
            .collect();
        Self { columns }
    }

    /// Adds a chunk's counts, in the order of the data.
    pub fn add(&mut self, part: ReportPart) -> Result<(), ApiError> {
        for (counts, part) in self.columns.iter_mut().zip(part.columns) {
            counts.entry.null_count += part.null_count;
            counts.entry.out_of_range += part.out_of_range;
            counts.entry.not_allowed += part.not_allowed;
            if let Some(values) = &mut counts.values {
                for hash in part.value_hashes {
                    values.push(hash)?;
                }
            }
        }
        Ok(())
    }

    pub fn finish(self, tally: &Tally, masked: &[MaskRule]) -> Result<ValidationReport, ApiError> {
        let rows = tally.rows;
        let mut failures = Vec::new();
        let mut columns = Vec::with_capacity(self.columns.len());
        for counts in self.columns {
            let mut entry = counts.entry;
            entry.null_share = entry.null_count as f64 / rows.max(1) as f64;
            let name = &entry.name;
            if let Some(rule) = &counts.rule {
                if rule.not_null && entry.null_count > 0 {
                    failures.push(format!(
                        "column {name:?} is declared not_null but has {} missing values",
                        entry.null_count
                    ));
                }
                if entry.out_of_range > 0 {
                    failures.push(format!(
                        "column {name:?} has {} values outside [{}, {}]",
                        entry.out_of_range,
                        rule.min.unwrap_or(f64::NEG_INFINITY),
                        rule.max.unwrap_or(f64::INFINITY)
                    ));
                }
                if entry.not_allowed > 0 {
                    failures.push(format!(
                        "column {name:?} has {} values outside the allowed ones ({})",
                        entry.not_allowed,
                        rule.allowed.join(", ")
                    ));
                }
            }
            if let Some(values) = counts.values {
                entry.duplicates = values.duplicates()?;
                if entry.duplicates > 0 {
                    failures.push(format!(
                        "column {name:?} is declared unique but repeats {} values",
                        entry.duplicates
                    ));
                }
            }
            columns.push(entry);
        }
        if tally.type_error_count > 0 {
            failures.push(format!(
                "{} values do not parse as their column's declared type",
                tally.type_error_count
            ));
        }
        let is_masked = |name: &str| masked.iter().any(|m| m.column == name);
        Ok(ValidationReport {
            row_count: rows,
            columns,
            duplicate_rows: tally.duplicate_rows,
            type_errors: tally
                .type_errors
                .iter()
                .map(|e| TypeError {
                    line: e.line,
                    column: e.column.clone(),
                    value: if is_masked(&e.column) {
                        "<masked>".into()
                    } else {
                        e.value.clone()
                    },
                    expected: e.expected.into(),
                })
                .collect(),
            type_error_count: tally.type_error_count,
            passed: failures.is_empty(),
            failures,
        })
    }
}

enum Summary {
    Numeric(NumericSummary),
    Categorical(CategoricalSummary),
}

/// The profile of the stored (masked) columns, built one chunk at a time in bounded memory:
/// numbers, booleans as 0/1 and timestamps as epoch ms are numeric; text is categorical.
pub struct ProfileBuilder {
    columns: Vec<(String, Summary)>,
}

impl ProfileBuilder {
    /// The profile of one chunk, to merge with the next ones'.
    pub fn of(chunk: &[ParsedColumn]) -> Self {
        let columns = chunk
            .iter()
            .map(|c| {
                let summary = match c.data {
                    Data::Str(_) => Summary::Categorical(CategoricalSummary::default()),
                    _ => Summary::Numeric(NumericSummary::default()),
                };
                (c.name.clone(), summary)
            })
            .collect();
        let mut profile = Self { columns };
        profile.add(chunk);
        profile
    }

    /// Adds a profile of a later chunk of the same columns.
    pub fn merge(&mut self, other: ProfileBuilder) {
        for ((_, summary), (_, more)) in self.columns.iter_mut().zip(other.columns) {
            match (summary, more) {
                (Summary::Numeric(s), Summary::Numeric(more)) => s.merge(more),
                (Summary::Categorical(s), Summary::Categorical(more)) => s.merge(more),
                _ => unreachable!("a column keeps its type"),
            }
        }
    }

    fn add(&mut self, chunk: &[ParsedColumn]) {
        for ((_, summary), column) in self.columns.iter_mut().zip(chunk) {
            match (summary, &column.data) {
                (Summary::Categorical(s), Data::Str(v)) => {
                    v.iter().for_each(|x| s.push(x));
                }
                (Summary::Numeric(s), data) => {
                    s.push_batch(&data.numbers().expect("a numeric column"));
                }
                (Summary::Categorical(_), _) => unreachable!("a column keeps its type"),
            }
        }
    }

    pub fn finish(self) -> Vec<ColumnProfile> {
        self.columns
            .into_iter()
            .map(|(name, summary)| match summary {
                Summary::Numeric(s) => (name, s.finish()),
                Summary::Categorical(s) => (name, s.finish()),
            })
            .map(|(name, profile)| match profile {
                FeatureProfile::Numeric {
                    count,
                    missing,
                    mean,
                    std,
                    min,
                    max,
                    quantiles,
                    histogram_edges,
                    histogram_counts,
                } => ColumnProfile {
                    name,
                    kind: "numeric".into(),
                    count,
                    missing,
                    mean,
                    std,
                    min,
                    max,
                    quantiles,
                    histogram_edges,
                    histogram_counts,
                    ..Default::default()
                },
                FeatureProfile::Categorical {
                    count,
                    missing,
                    distinct,
                    top,
                    other,
                } => ColumnProfile {
                    name,
                    kind: "categorical".into(),
                    count,
                    missing,
                    distinct,
                    top: top.into_iter().collect(),
                    other,
                    ..Default::default()
                },
            })
            .collect()
    }
}

/// The proto data type of a column.
pub fn data_type(ty: ColumnType) -> mlops_proto::v1::DataType {
    use mlops_proto::v1::DataType;
    match ty {
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Bool => DataType::Bool,
        ColumnType::String => DataType::String,
        ColumnType::Timestamp => DataType::Timestamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csv_import::{CsvLimits, CsvOptions, ParsedTable};

    fn table(text: &str, rules: &[ColumnRule]) -> ParsedTable {
        ParsedTable::csv(text, &CsvOptions::default(), rules, CsvLimits::default()).unwrap()
    }

    fn report(table: &ParsedTable, rules: &[ColumnRule]) -> ValidationReport {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        let mut builder = ReportBuilder::new(&names, rules, dir.path());
        builder.add(ReportPart::of(&table.columns, rules)).unwrap();
        builder.finish(&table.tally, &[]).unwrap()
    }

    #[test]
    fn the_report_checks_declared_constraints() {
        let rules = vec![
            ColumnRule {
                name: "age".into(),
                not_null: true,
                min: Some(0.0),
                max: Some(120.0),
                ..Default::default()
            },
            ColumnRule {
                name: "id".into(),
                unique: true,
                ..Default::default()
            },
            ColumnRule {
                name: "tier".into(),
                allowed: vec!["gold".into(), "silver".into()],
                ..Default::default()
            },
        ];
        let t = table("id,age,tier\n1,30,gold\n2,,silver\n2,150,bronze\n", &rules);
        let r = report(&t, &rules);
        assert!(!r.passed);
        assert_eq!(r.failures.len(), 4, "{:?}", r.failures);
        let age = &r.columns[1];
        assert_eq!((age.null_count, age.out_of_range), (1, 1));
        assert_eq!(r.columns[0].duplicates, 1);
        assert_eq!(r.columns[2].not_allowed, 1);
        let clean = table("id,age,tier\n1,30,gold\n", &rules);
        assert!(report(&clean, &rules).passed);
    }

    #[test]
    fn masking_never_keeps_the_original_values() {
        let mut t = table(
            "name,email,salary,born\nann,a@x.io,51234.5,1990-05-17\nbob,b@x.io,72000,1985-11-02\n",
            &[],
        );
        let rules = vec![
            MaskRule {
                column: "name".into(),
                action: "drop".into(),
                parameter: String::new(),
            },
            MaskRule {
                column: "email".into(),
                action: "hash".into(),
                parameter: String::new(),
            },
            MaskRule {
                column: "salary".into(),
                action: "round".into(),
                parameter: "-3".into(),
            },
            MaskRule {
                column: "born".into(),
                action: "truncate_date".into(),
                parameter: "year".into(),
            },
        ];
        assert!(
            check_masking(&rules, &t.columns, b"").is_err(),
            "hash needs a key"
        );
        apply_masking(&rules, &mut t.columns, b"0123456789abcdef").unwrap();
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["email", "salary", "born"]);
        let email = t.columns[0].data.text(0).unwrap();
        assert_eq!(email.len(), 64);
        assert!(!email.contains("a@x.io"));
        // A keyed hash: the same value hashes the same, so joins still work.
        let mut again = table("email\na@x.io\n", &[]);
        apply_masking(&rules[1..2], &mut again.columns, b"0123456789abcdef").unwrap();
        assert_eq!(again.columns[0].data.text(0).unwrap(), email);
        assert_eq!(t.columns[1].data.number(0), Some(51000.0));
        assert_eq!(t.columns[2].data.text(0).unwrap(), "631152000000"); // 1990-01-01
        let bad = [MaskRule {
            column: "email".into(),
            action: "round".into(),
            parameter: "1".into(),
        }];
        assert!(check_masking(&bad, &t.columns, b"k").is_err());
    }
}
