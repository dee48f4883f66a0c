//! Preprocessing: steps declared as [`StepSpec`] are fitted on the training rows into
//! [`FittedStep`]s, which the bundle carries so inference applies exactly the same transform.
//!
//! Each step names its columns or, when it names none, takes every column it applies to
//! (numeric columns for numeric transforms, categorical ones for `one_hot`). Definitions follow
//! scikit-learn: `SimpleImputer`, `StandardScaler`, `MinMaxScaler`, `RobustScaler`,
//! `OneHotEncoder`, `FunctionTransformer(np.log1p)`, `PowerTransformer` (Yeo-Johnson),
//! `PolynomialFeatures`, `KBinsDiscretizer(encode="ordinal")`, `VarianceThreshold`,
//! `SelectKBest(f_regression | f_classif)` and `SelectFromModel(Lasso)`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::frame::{Column, ColumnKind, Frame, Values};
use crate::linear::ElasticNet;
use crate::stats::{brent_minimize, mean_std, quantile_sorted, sorted_finite};
use crate::{MlError, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImputeStrategy {
    Mean,
    Median,
    MostFrequent,
    Constant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnknownCategory {
    #[default]
    Error,
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BinStrategy {
    #[default]
    Uniform,
    Quantile,
}

/// A preprocessing step as a user declares it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepSpec {
    Impute {
        strategy: ImputeStrategy,
        /// For `constant`: a number for numeric columns, text for categorical ones.
        #[serde(default)]
        fill_value: Option<serde_json::Value>,
        #[serde(default)]
        columns: Option<Vec<String>>,
    },
    /// Drops the training rows that have a missing value in these columns (first steps of a
    /// training spec only: at inference a missing value is an error, never a dropped row).
    DropMissingRows {
        #[serde(default)]
        columns: Option<Vec<String>>,
    },
    /// Drops the columns that have a missing value in the training rows.
    DropMissingColumns {
        #[serde(default)]
        columns: Option<Vec<String>>,
    },
    StandardScale {
        #[serde(default)]
        columns: Option<Vec<String>>,
    },
    MinMaxScale {
        #[serde(default)]
        columns: Option<Vec<String>>,
        #[serde(default)]
        min: Option<f64>,
        #[serde(default)]
        max: Option<f64>,
    },
    RobustScale {
        #[serde(default)]
        columns: Option<Vec<String>>,
    },
    OneHot {
        #[serde(default)]
        columns: Option<Vec<String>>,
        #[serde(default)]
        handle_unknown: UnknownCategory,
    },
    /// `log(1 + x)`; values must be above -1.
    Log {
        #[serde(default)]
        columns: Option<Vec<String>>,
    },
    /// Yeo-Johnson power transform with the likelihood-maximising lambda, then standardised.
    YeoJohnson {
        #[serde(default)]
        columns: Option<Vec<String>>,
    },
    Polynomial {
        #[serde(default)]
        columns: Option<Vec<String>>,
        #[serde(default)]
        degree: Option<u32>,
        #[serde(default)]
        interaction_only: bool,
    },
    Bin {
        #[serde(default)]
        columns: Option<Vec<String>>,
        #[serde(default)]
        bins: Option<usize>,
        #[serde(default)]
        strategy: BinStrategy,
    },
    VarianceThreshold {
        #[serde(default)]
        threshold: f64,
    },
    /// Keeps the `k` features with the highest univariate F statistic against the target.
    SelectKBest { k: usize },
    /// Keeps the features a lasso fit gives a coefficient of magnitude >= `threshold`.
    SelectFromLasso {
        alpha: f64,
        #[serde(default)]
        threshold: Option<f64>,
    },
}

impl StepSpec {
    /// Parses a step from its kind and `key=value` options (values are numbers, booleans,
    /// comma-separated lists for `columns`, or text), with errors naming the bad field.
    pub fn from_options(
        kind: &str,
        columns: &[String],
        options: &BTreeMap<String, String>,
    ) -> Result<Self, MlError> {
        let mut object = serde_json::Map::new();
        object.insert("kind".into(), kind.into());
        if !columns.is_empty() {
            object.insert("columns".into(), columns.to_vec().into());
        }
        for (key, text) in options {
            object.insert(key.clone(), option_value(text));
        }
        serde_json::from_value(serde_json::Value::Object(object))
            .map_err(|e| MlError::Input(format!("preprocessing step {kind:?}: {e}")))
    }
}

/// `"2"` -> 2, `"true"` -> true, anything else stays text.
pub fn option_value(text: &str) -> serde_json::Value {
    if let Ok(n) = text.parse::<i64>() {
        return n.into();
    }
    if let Ok(x) = text.parse::<f64>()
        && x.is_finite()
    {
        return x.into();
    }
    match text {
        "true" => true.into(),
        "false" => false.into(),
        "none" | "null" => serde_json::Value::Null,
        _ => text.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Fill {
    Number(f64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImputedColumn {
    pub column: String,
    pub value: Fill,
}

/// `y = (x - center) / scale` per column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaledColumn {
    pub column: String,
    pub center: f64,
    pub scale: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodedColumn {
    pub column: String,
    pub categories: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerColumn {
    pub column: String,
    pub lambda: f64,
    pub mean: f64,
    pub std: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinnedColumn {
    pub column: String,
    /// Bin edges, `bins + 1` of them; a value goes to the bin whose inner edges bound it.
    pub edges: Vec<f64>,
}

/// A fitted step: the state learned from the training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FittedStep {
    Impute {
        columns: Vec<ImputedColumn>,
    },
    DropColumns {
        columns: Vec<String>,
    },
    Scale {
        method: String,
        columns: Vec<ScaledColumn>,
    },
    OneHot {
        columns: Vec<EncodedColumn>,
        handle_unknown: UnknownCategory,
    },
    Log {
        columns: Vec<String>,
    },
    YeoJohnson {
        columns: Vec<PowerColumn>,
    },
    Polynomial {
        columns: Vec<String>,
        degree: u32,
        interaction_only: bool,
    },
    Bin {
        columns: Vec<BinnedColumn>,
    },
}

/// The fitted steps in order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Preprocessor {
    pub steps: Vec<FittedStep>,
}

impl Preprocessor {
    /// Fits the steps in order, each on the output of the one before, and returns that output:
    /// the frame is consumed, so no step's input outlives the step.
    pub fn fit(
        specs: &[StepSpec],
        frame: Frame,
        target: &Target,
    ) -> Result<(Self, Frame), MlError> {
        let mut current = frame;
        let mut steps = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            let fitted = fit_step(spec, &current, target).map_err(|e| {
                MlError::Input(format!(
                    "preprocessing step {} ({}): {e}",
                    index + 1,
                    kind(spec)
                ))
            })?;
            current = fitted.transform(current)?;
            steps.push(fitted);
        }
        Ok((Self { steps }, current))
    }

    pub fn transform(&self, frame: Frame) -> Result<Frame, MlError> {
        self.steps
            .iter()
            .try_fold(frame, |current, step| step.transform(current))
    }
}

fn kind(spec: &StepSpec) -> String {
    serde_json::to_value(spec)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

/// The columns a step works on: the named ones (which must exist and be of `kind`), or all of
/// that kind.
fn pick(
    frame: &Frame,
    named: &Option<Vec<String>>,
    kind: Option<ColumnKind>,
) -> Result<Vec<String>, MlError> {
    match named {
        Some(names) => {
            for name in names {
                let column = frame.column(name).ok_or_else(|| {
                    MlError::Input(format!(
                        "column {name:?} does not exist (columns: {})",
                        frame.names().join(", ")
                    ))
                })?;
                if let Some(k) = kind
                    && column.values.kind() != k
                {
                    return Err(MlError::Input(format!(
                        "column {name:?} is {:?}, this step takes {k:?} columns",
                        column.values.kind()
                    )));
                }
            }
            Ok(names.clone())
        }
        None => Ok(frame
            .columns()
            .iter()
            .filter(|c| kind.is_none_or(|k| c.values.kind() == k))
            .map(|c| c.name.clone())
            .collect()),
    }
}

fn numeric<'a>(frame: &'a Frame, name: &str) -> &'a [f64] {
    match frame.column(name).map(|c| &c.values) {
        Some(Values::Numeric(v)) => v,
        _ => &[],
    }
}

fn non_missing(values: &[f64], name: &str) -> Result<Vec<f64>, MlError> {
    let sorted = sorted_finite(values);
    if sorted.is_empty() {
        return Err(MlError::Input(format!(
            "column {name:?} has no value to fit on"
        )));
    }
    if sorted.iter().any(|v| v.is_infinite()) {
        return Err(MlError::Input(format!(
            "column {name:?} has an infinite value"
        )));
    }
    Ok(sorted)
}

fn fit_step(spec: &StepSpec, frame: &Frame, target: &Target) -> Result<FittedStep, MlError> {
    Ok(match spec {
        StepSpec::Impute {
            strategy,
            fill_value,
            columns,
        } => {
            let names = pick(frame, columns, None)?;
            let mut imputed = Vec::new();
            for name in names {
                let values = &frame.column(&name).expect("picked").values;
                let value = impute_value(*strategy, fill_value.as_ref(), values, &name)?;
                imputed.push(ImputedColumn {
                    column: name,
                    value,
                });
            }
            FittedStep::Impute { columns: imputed }
        }
        StepSpec::DropMissingRows { .. } => {
            return Err(MlError::Input(
                "drop_missing_rows removes training rows, so it must come before every other step"
                    .into(),
            ));
        }
        StepSpec::DropMissingColumns { columns } => {
            let names = pick(frame, columns, None)?;
            let dropped: Vec<String> = names
                .into_iter()
                .filter(|name| match &frame.column(name).expect("picked").values {
                    Values::Numeric(v) => v.iter().any(|x| x.is_nan()),
                    Values::Categorical(v) => v.iter().any(Option::is_none),
                })
                .collect();
            FittedStep::DropColumns { columns: dropped }
        }
        StepSpec::StandardScale { columns } => scale(frame, columns, "standard", |name, v| {
            let (mean, std) = mean_std(&non_missing(v, name)?);
            Ok((mean, if std == 0.0 { 1.0 } else { std }))
        })?,
        StepSpec::MinMaxScale { columns, min, max } => {
            let (lo, hi) = (min.unwrap_or(0.0), max.unwrap_or(1.0));
            if lo.is_nan() || hi.is_nan() || lo >= hi {
                return Err(MlError::Input(format!(
                    "min ({lo}) must be below max ({hi})"
                )));
            }
            scale(frame, columns, "min_max", |name, v| {
                let sorted = non_missing(v, name)?;
                let (data_min, data_max) = (sorted[0], sorted[sorted.len() - 1]);
                let range = if data_max > data_min {
                    data_max - data_min
                } else {
                    1.0
                };
                let scale = range / (hi - lo);
                Ok((data_min - lo * scale, scale))
            })?
        }
        StepSpec::RobustScale { columns } => scale(frame, columns, "robust", |name, v| {
            let sorted = non_missing(v, name)?;
            let iqr = quantile_sorted(&sorted, 0.75) - quantile_sorted(&sorted, 0.25);
            Ok((
                quantile_sorted(&sorted, 0.5),
                if iqr == 0.0 { 1.0 } else { iqr },
            ))
        })?,
        StepSpec::OneHot {
            columns,
            handle_unknown,
        } => {
            let names = pick(frame, columns, Some(ColumnKind::Categorical))?;
            let mut encoded = Vec::new();
            for name in names {
                let Values::Categorical(values) = &frame.column(&name).expect("picked").values
                else {
                    unreachable!("picked categorical columns")
                };
                if values.iter().any(Option::is_none) {
                    return Err(MlError::Input(format!(
                        "column {name:?} has missing values: impute them before one_hot"
                    )));
                }
                let mut categories: Vec<String> = values.iter().flatten().cloned().collect();
                categories.sort_unstable();
                categories.dedup();
                encoded.push(EncodedColumn {
                    column: name,
                    categories,
                });
            }
            FittedStep::OneHot {
                columns: encoded,
                handle_unknown: *handle_unknown,
            }
        }
        StepSpec::Log { columns } => FittedStep::Log {
            columns: pick(frame, columns, Some(ColumnKind::Numeric))?,
        },
        StepSpec::YeoJohnson { columns } => {
            let mut fitted = Vec::new();
            for name in pick(frame, columns, Some(ColumnKind::Numeric))? {
                let values = non_missing(numeric(frame, &name), &name)?;
                let lambda = yeo_johnson_lambda(&values);
                let transformed: Vec<f64> =
                    values.iter().map(|&x| yeo_johnson(x, lambda)).collect();
                let (mean, std) = mean_std(&transformed);
                fitted.push(PowerColumn {
                    column: name,
                    lambda,
                    mean,
                    std: if std == 0.0 { 1.0 } else { std },
                });
            }
            FittedStep::YeoJohnson { columns: fitted }
        }
        StepSpec::Polynomial {
            columns,
            degree,
            interaction_only,
        } => {
            let degree = degree.unwrap_or(2);
            if !(1..=5).contains(&degree) {
                return Err(MlError::Input(format!(
                    "degree must be 1 to 5, got {degree}"
                )));
            }
            let columns = pick(frame, columns, Some(ColumnKind::Numeric))?;
            let terms = polynomial_terms(columns.len(), degree, *interaction_only).len();
            if terms > 10_000 {
                return Err(MlError::Input(format!(
                    "{} columns at degree {degree} make {terms} features (limit 10000)",
                    columns.len()
                )));
            }
            FittedStep::Polynomial {
                columns,
                degree,
                interaction_only: *interaction_only,
            }
        }
        StepSpec::Bin {
            columns,
            bins,
            strategy,
        } => {
            let bins = bins.unwrap_or(5);
            if bins < 2 {
                return Err(MlError::Input(format!(
                    "bins must be at least 2, got {bins}"
                )));
            }
            let mut fitted = Vec::new();
            for name in pick(frame, columns, Some(ColumnKind::Numeric))? {
                let sorted = non_missing(numeric(frame, &name), &name)?;
                fitted.push(BinnedColumn {
                    edges: bin_edges(&sorted, bins, *strategy),
                    column: name,
                });
            }
            FittedStep::Bin { columns: fitted }
        }
        StepSpec::VarianceThreshold { threshold } => {
            if threshold.is_nan() || *threshold < 0.0 {
                return Err(MlError::Input(format!(
                    "threshold must be >= 0, got {threshold}"
                )));
            }
            let x = frame.to_matrix()?;
            let names = frame.names();
            let dropped: Vec<String> = (0..x.ncols())
                .filter(|&j| {
                    let column = x.column(j);
                    let (_, std) = mean_std(column.as_slice().unwrap_or(&column.to_vec()));
                    let peak_to_peak = column.fold(f64::NEG_INFINITY, |a, &b| a.max(b))
                        - column.fold(f64::INFINITY, |a, &b| a.min(b));
                    std * std <= *threshold || peak_to_peak == 0.0
                })
                .map(|j| names[j].clone())
                .collect();
            keep_some(frame, dropped)?
        }
        StepSpec::SelectKBest { k } => {
            let x = frame.to_matrix()?;
            if *k == 0 || *k > x.ncols() {
                return Err(MlError::Input(format!(
                    "k must be 1 to the number of features ({}), got {k}",
                    x.ncols()
                )));
            }
            let scores = crate::selection::f_scores(x.view(), target);
            // Highest scores win; among equal scores the later column, as scikit-learn's
            // stable argsort does. NaN scores rank lowest.
            let mut order: Vec<usize> = (0..x.ncols()).collect();
            order.sort_by(|&a, &b| {
                let (sa, sb) = (scores[a], scores[b]);
                let key = |s: f64| if s.is_nan() { f64::NEG_INFINITY } else { s };
                key(sa).total_cmp(&key(sb)).then(a.cmp(&b))
            });
            let names = frame.names();
            let dropped = order[..x.ncols() - k]
                .iter()
                .map(|&j| names[j].clone())
                .collect();
            keep_some(frame, dropped)?
        }
        StepSpec::SelectFromLasso { alpha, threshold } => {
            let Target::Regression(y) = target else {
                return Err(MlError::Input(
                    "select_from_lasso needs a numeric (regression) target".into(),
                ));
            };
            let x = frame.to_matrix()?;
            let lasso = ElasticNet::fit(x.view(), y.view(), *alpha, 1.0, 1e-4, 1000)?;
            let threshold = threshold.unwrap_or(1e-5);
            let names = frame.names();
            let dropped = lasso
                .coefficients
                .iter()
                .enumerate()
                .filter(|(_, c)| c.abs() < threshold)
                .map(|(j, _)| names[j].clone())
                .collect();
            keep_some(frame, dropped)?
        }
    })
}

fn keep_some(frame: &Frame, dropped: Vec<String>) -> Result<FittedStep, MlError> {
    if dropped.len() == frame.columns().len() {
        return Err(MlError::Input("it would remove every feature".into()));
    }
    Ok(FittedStep::DropColumns { columns: dropped })
}

fn scale(
    frame: &Frame,
    columns: &Option<Vec<String>>,
    method: &str,
    fit: impl Fn(&str, &[f64]) -> Result<(f64, f64), MlError>,
) -> Result<FittedStep, MlError> {
    let mut scaled = Vec::new();
    for name in pick(frame, columns, Some(ColumnKind::Numeric))? {
        let (center, scale) = fit(&name, numeric(frame, &name))?;
        scaled.push(ScaledColumn {
            column: name,
            center,
            scale,
        });
    }
    Ok(FittedStep::Scale {
        method: method.into(),
        columns: scaled,
    })
}

fn impute_value(
    strategy: ImputeStrategy,
    fill_value: Option<&serde_json::Value>,
    values: &Values,
    name: &str,
) -> Result<Fill, MlError> {
    match (strategy, values) {
        (ImputeStrategy::Constant, Values::Numeric(_)) => match fill_value {
            Some(serde_json::Value::Number(n)) => Ok(Fill::Number(n.as_f64().unwrap_or(0.0))),
            None => Ok(Fill::Number(0.0)),
            Some(other) => Err(MlError::Input(format!(
                "fill_value {other} is not a number, column {name:?} is numeric"
            ))),
        },
        (ImputeStrategy::Constant, Values::Categorical(_)) => match fill_value {
            Some(serde_json::Value::String(s)) => Ok(Fill::Text(s.clone())),
            Some(other) => Ok(Fill::Text(other.to_string())),
            None => Ok(Fill::Text("missing_value".into())),
        },
        (ImputeStrategy::Mean, Values::Numeric(v)) => {
            Ok(Fill::Number(mean_std(&non_missing(v, name)?).0))
        }
        (ImputeStrategy::Median, Values::Numeric(v)) => {
            Ok(Fill::Number(quantile_sorted(&non_missing(v, name)?, 0.5)))
        }
        (ImputeStrategy::MostFrequent, Values::Numeric(v)) => {
            let sorted = non_missing(v, name)?;
            Ok(Fill::Number(*most_frequent(&sorted)))
        }
        (ImputeStrategy::MostFrequent, Values::Categorical(v)) => {
            let mut present: Vec<&String> = v.iter().flatten().collect();
            if present.is_empty() {
                return Err(MlError::Input(format!(
                    "column {name:?} has no value to fit on"
                )));
            }
            present.sort_unstable();
            Ok(Fill::Text(most_frequent(&present).to_string()))
        }
        (strategy, Values::Categorical(_)) => Err(MlError::Input(format!(
            "strategy {strategy:?} needs numbers, column {name:?} is categorical (use \
             most_frequent or constant)"
        ))),
    }
}

/// The most frequent value of a sorted slice; ties go to the smallest, as scikit-learn's.
fn most_frequent<T: PartialEq>(sorted: &[T]) -> &T {
    let (mut best, mut best_count) = (&sorted[0], 0);
    let mut start = 0;
    for i in 1..=sorted.len() {
        if i == sorted.len() || sorted[i] != sorted[start] {
            if i - start > best_count {
                best = &sorted[start];
                best_count = i - start;
            }
            start = i;
        }
    }
    best
}

// Written with ln_1p and exp_m1, not as ((x + 1)^lambda - 1) / lambda: near lambda = 0 (or 2)
// that subtraction cancels, and a fitted lambda of 1e-12 lost five digits both ways.
fn yeo_johnson(x: f64, lambda: f64) -> f64 {
    let eps = f64::EPSILON;
    if x >= 0.0 {
        if lambda.abs() < eps {
            x.ln_1p()
        } else {
            (lambda * x.ln_1p()).exp_m1() / lambda
        }
    } else if (lambda - 2.0).abs() > eps {
        -((2.0 - lambda) * (-x).ln_1p()).exp_m1() / (2.0 - lambda)
    } else {
        -(-x).ln_1p()
    }
}

fn yeo_johnson_inverse(y: f64, lambda: f64) -> f64 {
    let eps = f64::EPSILON;
    if y >= 0.0 {
        if lambda.abs() < eps {
            y.exp_m1()
        } else {
            ((y * lambda).ln_1p() / lambda).exp_m1()
        }
    } else if (lambda - 2.0).abs() > eps {
        -((-(2.0 - lambda) * y).ln_1p() / (2.0 - lambda)).exp_m1()
    } else {
        -(-y).exp_m1()
    }
}

/// The lambda maximising the Yeo-Johnson log-likelihood, found as scikit-learn finds it
/// (Brent's method from the bracket (-2, 2)).
fn yeo_johnson_lambda(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let log_sum: f64 = values.iter().map(|&x| x.signum() * x.abs().ln_1p()).sum();
    let negative_log_likelihood = |lambda: f64| {
        let transformed: Vec<f64> = values.iter().map(|&x| yeo_johnson(x, lambda)).collect();
        let (_, std) = mean_std(&transformed);
        let var = std * std;
        if var < f64::MIN_POSITIVE || !var.is_finite() {
            return f64::INFINITY;
        }
        -(-n / 2.0 * var.ln() + (lambda - 1.0) * log_sum)
    };
    brent_minimize(negative_log_likelihood, -2.0, 2.0, 1.48e-8)
}

/// Exponent tuples of the polynomial terms in scikit-learn's order: degree 1 terms, then
/// degree 2 (combinations with replacement in lexicographic order), and so on.
fn polynomial_terms(features: usize, degree: u32, interaction_only: bool) -> Vec<Vec<usize>> {
    let mut terms = Vec::new();
    let mut current: Vec<Vec<usize>> = (0..features).map(|j| vec![j]).collect();
    terms.extend(current.iter().cloned());
    for _ in 1..degree {
        let mut next = Vec::new();
        for term in &current {
            let last = *term.last().expect("terms are non-empty");
            let start = if interaction_only { last + 1 } else { last };
            for j in start..features {
                let mut t = term.clone();
                t.push(j);
                next.push(t);
            }
        }
        terms.extend(next.iter().cloned());
        current = next;
        if terms.len() > 100_000 {
            break;
        }
    }
    terms
}

fn bin_edges(sorted: &[f64], bins: usize, strategy: BinStrategy) -> Vec<f64> {
    let (lo, hi) = (sorted[0], sorted[sorted.len() - 1]);
    let mut edges: Vec<f64> = match strategy {
        BinStrategy::Uniform => (0..=bins)
            .map(|i| lo + (hi - lo) * i as f64 / bins as f64)
            .collect(),
        BinStrategy::Quantile => (0..=bins)
            .map(|i| quantile_sorted(sorted, i as f64 / bins as f64))
            .collect(),
    };
    if strategy == BinStrategy::Quantile {
        // scikit-learn drops bins narrower than 1e-8.
        let mut kept = vec![edges[0]];
        for &e in &edges[1..] {
            if e - kept[kept.len() - 1] > 1e-8 {
                kept.push(e);
            }
        }
        if kept.len() < 2 {
            kept.push(hi);
        }
        edges = kept;
    }
    edges
}

fn bin_index(edges: &[f64], x: f64) -> f64 {
    let inner = &edges[1..edges.len() - 1];
    // searchsorted(inner, x, side="right"), clipped to the last bin.
    let index = inner.partition_point(|&e| e <= x);
    index.min(edges.len() - 2) as f64
}

impl FittedStep {
    /// The input columns this step needs, with their kinds.
    fn check_present(frame: &Frame, name: &str, kind: ColumnKind) -> Result<(), MlError> {
        match frame.column(name) {
            Some(c) if c.values.kind() == kind => Ok(()),
            Some(c) => Err(MlError::Input(format!(
                "column {name:?} must be {kind:?}, it is {:?}",
                c.values.kind()
            ))),
            None => Err(MlError::Input(format!("column {name:?} is missing"))),
        }
    }

    pub fn transform(&self, frame: Frame) -> Result<Frame, MlError> {
        match self {
            FittedStep::Impute { columns } => {
                let mut cols = frame.into_columns();
                for imputed in columns {
                    let column = cols
                        .iter_mut()
                        .find(|c| c.name == imputed.column)
                        .ok_or_else(|| {
                            MlError::Input(format!("column {:?} is missing", imputed.column))
                        })?;
                    match (&mut column.values, &imputed.value) {
                        (Values::Numeric(v), Fill::Number(fill)) => {
                            v.iter_mut().filter(|x| x.is_nan()).for_each(|x| *x = *fill)
                        }
                        (Values::Categorical(v), Fill::Text(fill)) => v
                            .iter_mut()
                            .filter(|x| x.is_none())
                            .for_each(|x| *x = Some(fill.clone())),
                        _ => {
                            return Err(MlError::Input(format!(
                                "column {:?} changed kind since training",
                                imputed.column
                            )));
                        }
                    }
                }
                Frame::new(cols)
            }
            FittedStep::DropColumns { columns } => Frame::new(
                frame
                    .into_columns()
                    .into_iter()
                    .filter(|c| !columns.contains(&c.name))
                    .collect(),
            ),
            FittedStep::Scale { columns, .. } => map_numeric(
                frame,
                columns
                    .iter()
                    .map(|s| (s.column.as_str(), move |x: f64| (x - s.center) / s.scale)),
            ),
            FittedStep::Log { columns } => {
                for name in columns {
                    Self::check_present(&frame, name, ColumnKind::Numeric)?;
                    if let Some(x) = numeric(&frame, name).iter().find(|&&x| x <= -1.0) {
                        return Err(MlError::Input(format!(
                            "column {name:?} has {x}, log needs values above -1"
                        )));
                    }
                }
                map_numeric(frame, columns.iter().map(|n| (n.as_str(), f64::ln_1p)))
            }
            FittedStep::YeoJohnson { columns } => map_numeric(
                frame,
                columns.iter().map(|p| {
                    (p.column.as_str(), move |x: f64| {
                        (yeo_johnson(x, p.lambda) - p.mean) / p.std
                    })
                }),
            ),
            FittedStep::Bin { columns } => map_numeric(
                frame,
                columns.iter().map(|b| {
                    (b.column.as_str(), move |x: f64| {
                        if x.is_nan() {
                            x
                        } else {
                            bin_index(&b.edges, x)
                        }
                    })
                }),
            ),
            FittedStep::OneHot {
                columns,
                handle_unknown,
            } => {
                if let Some(missing) = columns.iter().find(|e| frame.column(&e.column).is_none()) {
                    return Err(MlError::Input(format!(
                        "column {:?} is missing",
                        missing.column
                    )));
                }
                let mut out = Vec::new();
                for column in frame.into_columns() {
                    let Some(encoding) = columns.iter().find(|e| e.column == column.name) else {
                        out.push(column);
                        continue;
                    };
                    let Values::Categorical(values) = column.values else {
                        return Err(MlError::Input(format!(
                            "column {:?} must be categorical",
                            column.name
                        )));
                    };
                    let mut indicators = vec![vec![0.0; values.len()]; encoding.categories.len()];
                    for (row, value) in values.iter().enumerate() {
                        let Some(value) = value else {
                            return Err(MlError::Input(format!(
                                "column {:?} has a missing value at row {row}",
                                column.name
                            )));
                        };
                        match encoding.categories.binary_search(value) {
                            Ok(k) => indicators[k][row] = 1.0,
                            Err(_) if *handle_unknown == UnknownCategory::Ignore => {}
                            Err(_) => {
                                return Err(MlError::Input(format!(
                                    "column {:?} has the category {value:?} at row {row}, \
                                     unseen in training (known: {})",
                                    column.name,
                                    encoding.categories.join(", ")
                                )));
                            }
                        }
                    }
                    for (category, values) in encoding.categories.iter().zip(indicators) {
                        out.push(Column::numeric(
                            format!("{}_{category}", column.name),
                            values,
                        ));
                    }
                }
                Frame::new(out)
            }
            FittedStep::Polynomial {
                columns,
                degree,
                interaction_only,
            } => {
                for name in columns {
                    Self::check_present(&frame, name, ColumnKind::Numeric)?;
                }
                let inputs: Vec<Vec<f64>> = columns
                    .iter()
                    .map(|n| numeric(&frame, n).to_vec())
                    .collect();
                let rows = frame.rows();
                let mut out: Vec<Column> = frame
                    .into_columns()
                    .into_iter()
                    .filter(|c| !columns.contains(&c.name))
                    .collect();
                for term in polynomial_terms(columns.len(), *degree, *interaction_only) {
                    let name = term_name(columns, &term);
                    let values = (0..rows)
                        .map(|i| term.iter().map(|&j| inputs[j][i]).product())
                        .collect();
                    out.push(Column::numeric(name, values));
                }
                Frame::new(out)
            }
        }
    }

    /// Undoes a scaling or power step (for checks and for reading coefficients in input units).
    pub fn inverse_value(&self, column: &str, y: f64) -> Option<f64> {
        match self {
            FittedStep::Scale { columns, .. } => columns
                .iter()
                .find(|s| s.column == column)
                .map(|s| y * s.scale + s.center),
            FittedStep::YeoJohnson { columns } => columns
                .iter()
                .find(|p| p.column == column)
                .map(|p| yeo_johnson_inverse(y * p.std + p.mean, p.lambda)),
            _ => None,
        }
    }
}

/// `x0^2 x1`-style names, as scikit-learn's `get_feature_names_out` writes them.
fn term_name(columns: &[String], term: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < term.len() {
        let j = term[i];
        let power = term[i..].iter().take_while(|&&k| k == j).count();
        parts.push(if power == 1 {
            columns[j].clone()
        } else {
            format!("{}^{power}", columns[j])
        });
        i += power;
    }
    parts.join(" ")
}

fn map_numeric<'a, F: Fn(f64) -> f64>(
    frame: Frame,
    maps: impl Iterator<Item = (&'a str, F)>,
) -> Result<Frame, MlError> {
    let mut cols = frame.into_columns();
    for (name, f) in maps {
        let column = cols
            .iter_mut()
            .find(|c| c.name == name)
            .ok_or_else(|| MlError::Input(format!("column {name:?} is missing")))?;
        let Values::Numeric(values) = &mut column.values else {
            return Err(MlError::Input(format!("column {name:?} must be numeric")));
        };
        values.iter_mut().for_each(|x| *x = f(*x));
    }
    Frame::new(cols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame() -> Frame {
        Frame::new(vec![
            Column::numeric("a", vec![1.0, f64::NAN, 3.0, 10.0]),
            Column::categorical(
                "c",
                vec![Some("x".into()), Some("y".into()), None, Some("x".into())],
            ),
        ])
        .unwrap()
    }

    fn no_target() -> Target {
        Target::Regression(ndarray::Array1::zeros(4))
    }

    #[test]
    fn imputes_then_one_hot_encodes() {
        let specs = vec![
            StepSpec::Impute {
                strategy: ImputeStrategy::Median,
                fill_value: None,
                columns: Some(vec!["a".into()]),
            },
            StepSpec::Impute {
                strategy: ImputeStrategy::MostFrequent,
                fill_value: None,
                columns: Some(vec!["c".into()]),
            },
            StepSpec::OneHot {
                columns: None,
                handle_unknown: UnknownCategory::Error,
            },
        ];
        let (fitted, out) = Preprocessor::fit(&specs, frame(), &no_target()).unwrap();
        assert_eq!(out.names(), vec!["a", "c_x", "c_y"]);
        let x = out.to_matrix().unwrap();
        assert_eq!(x.column(0).to_vec(), vec![1.0, 3.0, 3.0, 10.0]);
        assert_eq!(x.column(1).to_vec(), vec![1.0, 0.0, 1.0, 1.0]);
        let unseen = Frame::new(vec![
            Column::numeric("a", vec![1.0]),
            Column::categorical("c", vec![Some("z".into())]),
        ])
        .unwrap();
        let err = fitted.transform(unseen).unwrap_err().to_string();
        assert!(err.contains("\"z\"") && err.contains("unseen"), "{err}");
    }

    #[test]
    fn specs_parse_from_options_and_name_unknown_fields() {
        let options = BTreeMap::from([("degree".to_string(), "3".to_string())]);
        let spec = StepSpec::from_options("polynomial", &[], &options).unwrap();
        assert_eq!(
            spec,
            StepSpec::Polynomial {
                columns: None,
                degree: Some(3),
                interaction_only: false
            }
        );
        let bad = BTreeMap::from([("degre".to_string(), "3".to_string())]);
        let err = StepSpec::from_options("polynomial", &[], &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("degre"), "{err}");
        assert!(StepSpec::from_options("whiten", &[], &BTreeMap::new()).is_err());
    }

    #[test]
    fn polynomial_terms_follow_scikit_learn_order() {
        let f = Frame::new(vec![
            Column::numeric("a", vec![2.0]),
            Column::numeric("b", vec![3.0]),
        ])
        .unwrap();
        let spec = [StepSpec::Polynomial {
            columns: None,
            degree: Some(2),
            interaction_only: false,
        }];
        let (_, out) = Preprocessor::fit(&spec, f, &no_target()).unwrap();
        assert_eq!(out.names(), vec!["a", "b", "a^2", "a b", "b^2"]);
        assert_eq!(
            out.to_matrix().unwrap().row(0).to_vec(),
            vec![2.0, 3.0, 4.0, 6.0, 9.0]
        );
    }

    proptest! {
        #[test]
        fn scalers_and_power_transform_invert(
            values in proptest::collection::vec(-1e6f64..1e6, 2..40),
            which in 0usize..4,
        ) {
            let f = Frame::new(vec![Column::numeric("v", values.clone())]).unwrap();
            let spec = match which {
                0 => StepSpec::StandardScale { columns: None },
                1 => StepSpec::MinMaxScale { columns: None, min: Some(-1.0), max: Some(2.0) },
                2 => StepSpec::RobustScale { columns: None },
                _ => StepSpec::YeoJohnson { columns: None },
            };
            // Yeo-Johnson is only well-conditioned on moderate magnitudes.
            let values: Vec<f64> = if which == 3 { values.iter().map(|v| v / 1e5).collect() } else { values };
            let f = if which == 3 { Frame::new(vec![Column::numeric("v", values.clone())]).unwrap() } else { f };
            let (fitted, out) = Preprocessor::fit(&[spec], f, &Target::Regression(ndarray::Array1::zeros(values.len()))).unwrap();
            let Values::Numeric(scaled) = &out.columns()[0].values else { unreachable!() };
            for (orig, y) in values.iter().zip(scaled) {
                let back = fitted.steps[0].inverse_value("v", *y).unwrap();
                prop_assert!((back - orig).abs() <= 1e-6 * orig.abs().max(1.0), "{} -> {} -> {}", orig, y, back);
            }
        }
    }
}
