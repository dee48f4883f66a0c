//! A small columnar table: what preprocessing reads and writes before the estimator sees a
//! plain `f64` matrix. Numeric columns mark a missing value with NaN; categorical columns with
//! `None`.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::MlError;

#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Numeric(Vec<f64>),
    Categorical(Vec<Option<String>>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Values::Numeric(v) => v.len(),
            Values::Categorical(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn kind(&self) -> ColumnKind {
        match self {
            Values::Numeric(_) => ColumnKind::Numeric,
            Values::Categorical(_) => ColumnKind::Categorical,
        }
    }

    /// The values at `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> Values {
        match self {
            Values::Numeric(v) => Values::Numeric(rows.iter().map(|&i| v[i]).collect()),
            Values::Categorical(v) => {
                Values::Categorical(rows.iter().map(|&i| v[i].clone()).collect())
            }
        }
    }

    fn is_missing(&self, row: usize) -> bool {
        match self {
            Values::Numeric(v) => v[row].is_nan(),
            Values::Categorical(v) => v[row].is_none(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    Numeric,
    Categorical,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub values: Values,
}

impl Column {
    pub fn numeric(name: impl Into<String>, values: Vec<f64>) -> Self {
        Self {
            name: name.into(),
            values: Values::Numeric(values),
        }
    }

    pub fn categorical(name: impl Into<String>, values: Vec<Option<String>>) -> Self {
        Self {
            name: name.into(),
            values: Values::Categorical(values),
        }
    }
}

/// Columns of equal length with unique names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    columns: Vec<Column>,
}

impl Frame {
    pub fn new(columns: Vec<Column>) -> Result<Self, MlError> {
        if let Some(first) = columns.first() {
            let rows = first.values.len();
            if let Some(c) = columns.iter().find(|c| c.values.len() != rows) {
                return Err(MlError::Shape(format!(
                    "column {:?} has {} rows, column {:?} has {rows}",
                    c.name,
                    c.values.len(),
                    first.name
                )));
            }
        }
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].iter().any(|o| o.name == c.name) {
                return Err(MlError::Input(format!("column {:?} appears twice", c.name)));
            }
        }
        Ok(Self { columns })
    }

    /// A frame of numeric columns named `names`, one per matrix column.
    pub fn from_matrix(names: &[String], x: ndarray::ArrayView2<f64>) -> Result<Self, MlError> {
        if names.len() != x.ncols() {
            return Err(MlError::Shape(format!(
                "{} names for {} columns",
                names.len(),
                x.ncols()
            )));
        }
        Self::new(
            names
                .iter()
                .zip(x.columns())
                .map(|(n, c)| Column::numeric(n.clone(), c.to_vec()))
                .collect(),
        )
    }

    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.values.len())
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    pub fn into_columns(self) -> Vec<Column> {
        self.columns
    }

    pub fn names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn select_rows(&self, rows: &[usize]) -> Frame {
        Frame {
            columns: self
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    values: c.values.select(rows),
                })
                .collect(),
        }
    }

    /// Rows with no missing value in any column.
    pub fn complete_rows(&self) -> Vec<usize> {
        self.complete_rows_in(&self.names())
    }

    /// Rows with no missing value in the named columns.
    pub fn complete_rows_in(&self, names: &[String]) -> Vec<usize> {
        let columns: Vec<&Column> = self
            .columns
            .iter()
            .filter(|c| names.contains(&c.name))
            .collect();
        (0..self.rows())
            .filter(|&i| columns.iter().all(|c| !c.values.is_missing(i)))
            .collect()
    }

    /// The row-major feature matrix. Every column must be numeric and every value finite:
    /// estimators never see a missing value silently.
    pub fn to_matrix(&self) -> Result<Array2<f64>, MlError> {
        let mut x = Array2::zeros((self.rows(), self.columns.len()));
        for (j, c) in self.columns.iter().enumerate() {
            let Values::Numeric(values) = &c.values else {
                return Err(MlError::Input(format!(
                    "column {:?} is categorical: add a one_hot step to encode it",
                    c.name
                )));
            };
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(MlError::Input(format!(
                    "column {:?} has a missing or non-finite value ({}) at row {}: add an impute \
                     step or drop such rows",
                    c.name, values[i], i
                )));
            }
            x.column_mut(j)
                .assign(&ndarray::ArrayView1::from(&values[..]));
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_ragged_and_duplicate_columns() {
        assert!(
            Frame::new(vec![
                Column::numeric("a", vec![1.0]),
                Column::numeric("b", vec![])
            ])
            .is_err()
        );
        assert!(
            Frame::new(vec![
                Column::numeric("a", vec![1.0]),
                Column::numeric("a", vec![2.0])
            ])
            .is_err()
        );
    }

    #[test]
    fn matrix_names_the_offending_column_and_row() {
        let f = Frame::new(vec![
            Column::numeric("a", vec![1.0, f64::NAN]),
            Column::categorical("c", vec![Some("x".into()), None]),
        ])
        .unwrap();
        assert_eq!(f.complete_rows(), vec![0]);
        let err = f.to_matrix().unwrap_err().to_string();
        assert!(err.contains("\"a\"") && err.contains("row 1"), "{err}");
        let only_c = f.select_rows(&[0]);
        assert_eq!(only_c.rows(), 1);
    }
}
