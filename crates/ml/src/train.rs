//! Training end to end: split, optional grid search with cross-validation chosen by a named
//! metric, refit of the best candidate on all training rows, evaluation on the held-out rows,
//! and the bundle. Also permutation importance, which works for any bundle.

use std::collections::BTreeMap;

use ndarray::{Array1, Array2, Axis};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::bundle::{InputField, ModelBundle, TrainingInfo};
use crate::drift::Profile;
use crate::frame::{Column, Frame, Values};
use crate::metrics::{ClassificationMetrics, RegressionMetrics};
use crate::model::{self, Estimator, ModelKind, Params, Prediction, Task};
use crate::preprocess::{Preprocessor, StepSpec};
use crate::selection::{
    complement, k_fold, stratified_k_fold, stratified_train_test_split, train_test_split,
};
use crate::{MlError, Target};

/// Most candidates a grid may expand to.
pub const MAX_CANDIDATES: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct TrainSpec {
    pub model: ModelKind,
    pub params: Params,
    /// Hyperparameter -> values to try; the candidates are the cartesian product.
    pub grid: BTreeMap<String, Vec<serde_json::Value>>,
    pub preprocessing: Vec<StepSpec>,
    /// Cross-validation folds over the training rows; 0 = none (5 when a grid is given).
    pub cv_folds: usize,
    /// The metric that picks the best candidate; default `r2` or `accuracy`.
    pub selection_metric: Option<String>,
    pub test_fraction: f64,
    pub seed: u64,
}

impl TrainSpec {
    pub fn new(model: ModelKind) -> Self {
        Self {
            model,
            params: Params::new(),
            grid: BTreeMap::new(),
            preprocessing: Vec::new(),
            cv_folds: 0,
            selection_metric: None,
            test_fraction: 0.2,
            seed: 42,
        }
    }
}

/// A preprocessing step as text: its kind, columns and `key=value` options.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepText {
    pub kind: String,
    pub columns: Vec<String>,
    pub options: BTreeMap<String, String>,
}

impl TrainSpec {
    /// Builds and checks a spec from text values (as the gRPC API and pipeline files carry
    /// them): every hyperparameter, grid value and step is validated here, before any fit.
    pub fn from_text(
        model: &str,
        params: &BTreeMap<String, String>,
        grid: &BTreeMap<String, Vec<String>>,
        steps: &[StepText],
        cv_folds: usize,
        selection_metric: &str,
    ) -> Result<Self, MlError> {
        let model = ModelKind::parse(model)?;
        let mut spec = Self::new(model);
        spec.params = params
            .iter()
            .map(|(k, v)| (k.clone(), crate::preprocess::option_value(v)))
            .collect();
        spec.grid = grid
            .iter()
            .map(|(k, values)| {
                (
                    k.clone(),
                    values
                        .iter()
                        .map(|v| crate::preprocess::option_value(v))
                        .collect(),
                )
            })
            .collect();
        spec.preprocessing = steps
            .iter()
            .map(|s| StepSpec::from_options(&s.kind, &s.columns, &s.options))
            .collect::<Result<_, _>>()?;
        spec.cv_folds = cv_folds;
        if !selection_metric.is_empty() {
            check_metric(model.task(), selection_metric)?;
            spec.selection_metric = Some(selection_metric.to_string());
        }
        for candidate in candidates(&spec.params, &spec.grid)? {
            model::check_params(model, &candidate)?;
        }
        Ok(spec)
    }
}

/// A parameter value as text: numbers and booleans bare, `none` for null.
pub fn value_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "none".into(),
        other => other.to_string(),
    }
}

/// Progress while training.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// One fold of one grid candidate was scored.
    Fold {
        candidate: usize,
        fold: usize,
        score: f64,
    },
    /// The final fit finished an epoch (gradient descent).
    Epoch { epoch: usize, loss: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CandidateScore {
    pub params: Params,
    pub fold_scores: Vec<f64>,
    pub mean: f64,
    pub std: f64,
}

#[derive(Debug, Clone)]
pub struct TrainOutput {
    pub bundle: ModelBundle,
    pub test_metrics: BTreeMap<String, f64>,
    pub selection_metric: String,
    pub candidates: Vec<CandidateScore>,
    pub best_params: Params,
    pub loss_per_epoch: Vec<f64>,
    pub warnings: Vec<String>,
    pub train_rows: usize,
    pub test_rows: usize,
    /// Permutation importance of each input on (up to 5,000) held-out rows, by the selection
    /// metric.
    pub importance: Vec<Importance>,
}

/// Held-out rows used for permutation importance at most, and its repeats.
const IMPORTANCE_ROWS: usize = 5000;
const IMPORTANCE_REPEATS: usize = 5;

const REGRESSION_METRICS: [&str; 5] = ["mse", "rmse", "mae", "r2", "explained_variance"];
const CLASSIFICATION_METRICS: [&str; 12] = [
    "accuracy",
    "precision",
    "recall",
    "f1",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "roc_auc",
    "log_loss",
];

/// Whether a larger value of the metric is better.
pub fn greater_is_better(metric: &str) -> bool {
    !matches!(metric, "mse" | "rmse" | "mae" | "log_loss")
}

pub fn check_metric(task: Task, metric: &str) -> Result<(), MlError> {
    let known: &[&str] = match task {
        Task::Regression => &REGRESSION_METRICS,
        Task::Classification => &CLASSIFICATION_METRICS,
    };
    if known.contains(&metric) {
        Ok(())
    } else {
        Err(MlError::Input(format!(
            "selection_metric {metric:?} is not a {task:?} metric (known: {})",
            known.join(", ")
        )))
    }
}

/// The target column as the task needs it, plus class names for a classifier (numeric labels
/// sorted as numbers, text labels as text).
pub fn build_target(task: Task, values: &Values) -> Result<(Target, Vec<String>), MlError> {
    match (task, values) {
        (Task::Regression, Values::Numeric(v)) => {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(MlError::Input(format!(
                    "the target is missing or not finite at row {i}"
                )));
            }
            Ok((Target::Regression(Array1::from(v.clone())), Vec::new()))
        }
        (Task::Regression, Values::Categorical(_)) => Err(MlError::Input(
            "the target is text: a regressor needs a numeric target (use a classifier)".into(),
        )),
        (Task::Classification, values) => {
            let texts: Vec<String> = match values {
                Values::Numeric(v) => {
                    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                        return Err(MlError::Input(format!(
                            "the target is missing or not finite at row {i}"
                        )));
                    }
                    v.iter().map(|x| x.to_string()).collect()
                }
                Values::Categorical(v) => {
                    if let Some(i) = v.iter().position(Option::is_none) {
                        return Err(MlError::Input(format!("the target is missing at row {i}")));
                    }
                    v.iter().flatten().cloned().collect()
                }
            };
            let mut classes = texts.clone();
            classes.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => x.total_cmp(&y),
                _ => a.cmp(b),
            });
            classes.dedup();
            if classes.len() < 2 {
                return Err(MlError::Input(format!(
                    "the target has a single class ({}): a classifier needs at least two",
                    classes.first().map_or("none", String::as_str)
                )));
            }
            let labels = texts
                .iter()
                .map(|t| {
                    classes
                        .iter()
                        .position(|c| c == t)
                        .expect("collected above")
                })
                .collect();
            let count = classes.len();
            Ok((
                Target::Classification {
                    labels,
                    classes: count,
                },
                classes,
            ))
        }
    }
}

impl Target {
    pub fn rows(&self) -> usize {
        match self {
            Target::Regression(y) => y.len(),
            Target::Classification { labels, .. } => labels.len(),
        }
    }

    pub fn select(&self, rows: &[usize]) -> Target {
        match self {
            Target::Regression(y) => Target::Regression(y.select(Axis(0), rows)),
            Target::Classification { labels, classes } => Target::Classification {
                labels: rows.iter().map(|&i| labels[i]).collect(),
                classes: *classes,
            },
        }
    }
}

/// All metrics of a prediction against the truth.
pub fn evaluate(
    target: &Target,
    prediction: &Prediction,
) -> Result<BTreeMap<String, f64>, MlError> {
    Ok(match (target, prediction) {
        (Target::Regression(y), Prediction::Values(p)) => {
            RegressionMetrics::compute(y.view(), p.view())
                .named()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect()
        }
        (Target::Classification { labels, .. }, Prediction::Probabilities(p)) => {
            ClassificationMetrics::compute(labels, p.view())
                .named()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        }
        _ => return Err(MlError::Input("prediction does not match the task".into())),
    })
}

struct FittedPipeline {
    preprocessor: Preprocessor,
    features: Vec<String>,
    estimator: Estimator,
    x_train: Array2<f64>,
    report: model::FitReport,
}

fn fit_pipeline(
    spec: &TrainSpec,
    params: &Params,
    inputs: Frame,
    target: &Target,
    on_epoch: &mut dyn FnMut(usize, f64),
) -> Result<FittedPipeline, MlError> {
    let (preprocessor, transformed) = Preprocessor::fit(&spec.preprocessing, inputs, target)?;
    let features = transformed.names();
    let x_train = transformed.to_matrix()?;
    // Only the matrix goes on: the estimator's work space should not sit beside a frame copy.
    drop(transformed);
    let (estimator, report) = model::fit(
        spec.model,
        params,
        x_train.view(),
        target,
        spec.seed,
        on_epoch,
    )?;
    Ok(FittedPipeline {
        preprocessor,
        features,
        estimator,
        x_train,
        report,
    })
}

fn predict(fitted: &FittedPipeline, inputs: Frame, classes: usize) -> Result<Prediction, MlError> {
    let x = fitted.preprocessor.transform(inputs)?.to_matrix()?;
    fitted.estimator.predict(x.view(), classes)
}

/// Expands the grid over the base parameters, in key order.
pub fn candidates(
    base: &Params,
    grid: &BTreeMap<String, Vec<serde_json::Value>>,
) -> Result<Vec<Params>, MlError> {
    let mut out = vec![base.clone()];
    for (name, values) in grid {
        if values.is_empty() {
            return Err(MlError::Input(format!(
                "grid parameter {name:?} has no values"
            )));
        }
        if out.len().saturating_mul(values.len()) > MAX_CANDIDATES {
            return Err(MlError::Input(format!(
                "the grid expands to more than {MAX_CANDIDATES} candidates"
            )));
        }
        out = out
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.insert(name.clone(), v.clone());
                    q
                })
            })
            .collect();
    }
    Ok(out)
}

/// Consumes `inputs`: once the rows are split, only the training and held-out rows are kept,
/// so a job's peak is not the whole table plus its copies.
pub fn train(
    spec: &TrainSpec,
    inputs: Frame,
    target_name: &str,
    target_values: &Values,
    on_event: &mut dyn FnMut(Event),
) -> Result<TrainOutput, MlError> {
    let task = spec.model.task();
    let metric = spec.selection_metric.clone().unwrap_or_else(|| match task {
        Task::Regression => "r2".into(),
        Task::Classification => "accuracy".into(),
    });
    check_metric(task, &metric)?;
    let candidate_params = candidates(&spec.params, &spec.grid)?;
    for params in &candidate_params {
        model::check_params(spec.model, params)?;
    }
    if inputs.columns().is_empty() {
        return Err(MlError::Input("there are no feature columns".into()));
    }
    if target_values.len() != inputs.rows() {
        return Err(MlError::Shape(format!(
            "{} target values for {} rows",
            target_values.len(),
            inputs.rows()
        )));
    }
    // Leading drop_missing_rows steps filter the training data; the rest is the pipeline.
    let leading = spec
        .preprocessing
        .iter()
        .take_while(|s| matches!(s, StepSpec::DropMissingRows { .. }))
        .count();
    let filtered_target;
    let (inputs, target_values) = if leading == 0 {
        (inputs, target_values)
    } else {
        let mut keep: Vec<usize> = (0..inputs.rows()).collect();
        for step in &spec.preprocessing[..leading] {
            let StepSpec::DropMissingRows { columns } = step else {
                unreachable!("counted above")
            };
            let names = columns.clone().unwrap_or_else(|| inputs.names());
            if let Some(unknown) = names.iter().find(|n| inputs.column(n).is_none()) {
                return Err(MlError::Input(format!(
                    "drop_missing_rows: column {unknown:?} does not exist"
                )));
            }
            let complete = inputs.complete_rows_in(&names);
            keep.retain(|i| complete.binary_search(i).is_ok());
        }
        filtered_target = target_values.select(&keep);
        (inputs.select_rows(&keep), &filtered_target)
    };
    let spec = &TrainSpec {
        preprocessing: spec.preprocessing[leading..].to_vec(),
        ..spec.clone()
    };
    let (target, classes) = build_target(task, target_values)?;
    let (train_rows, test_rows) = match &target {
        Target::Classification { labels, .. } => {
            stratified_train_test_split(labels, spec.test_fraction, spec.seed)?
        }
        Target::Regression(_) => train_test_split(inputs.rows(), spec.test_fraction, spec.seed)?,
    };
    let train_inputs = inputs.select_rows(&train_rows);
    let test_inputs = inputs.select_rows(&test_rows);
    let input_fields: Vec<InputField> = inputs
        .columns()
        .iter()
        .map(|c| InputField {
            name: c.name.clone(),
            kind: c.values.kind(),
        })
        .collect();
    drop(inputs);
    let train_target = target.select(&train_rows);
    if let Target::Classification { labels, classes: k } = &train_target {
        let mut seen = vec![false; *k];
        labels.iter().for_each(|&l| seen[l] = true);
        if seen.iter().filter(|s| **s).count() < 2 {
            return Err(MlError::Input(
                "the training rows hold a single class: a classifier needs at least two".into(),
            ));
        }
    }

    let folds = match (spec.cv_folds, spec.grid.is_empty()) {
        (0, true) => 0,
        (0, false) => 5,
        (k, _) => k,
    };
    let mut scored = Vec::new();
    let mut best = 0;
    if folds > 0 {
        let fold_tests = match &train_target {
            Target::Classification { labels, .. } => stratified_k_fold(labels, folds)?,
            Target::Regression(_) => k_fold(train_rows.len(), folds, None)?,
        };
        for (c, params) in candidate_params.iter().enumerate() {
            let mut fold_scores = Vec::with_capacity(folds);
            for (f, test) in fold_tests.iter().enumerate() {
                let fit_rows = complement(train_rows.len(), test);
                let fitted = fit_pipeline(
                    spec,
                    params,
                    train_inputs.select_rows(&fit_rows),
                    &train_target.select(&fit_rows),
                    &mut |_, _| {},
                )
                .map_err(|e| MlError::Fit(format!("candidate {params:?}, fold {}: {e}", f + 1)))?;
                let prediction = predict(&fitted, train_inputs.select_rows(test), classes.len())?;
                let score = evaluate(&train_target.select(test), &prediction)?[&metric];
                on_event(Event::Fold {
                    candidate: c,
                    fold: f,
                    score,
                });
                fold_scores.push(score);
            }
            let mean = fold_scores.iter().sum::<f64>() / folds as f64;
            let std =
                (fold_scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / folds as f64).sqrt();
            scored.push(CandidateScore {
                params: params.clone(),
                fold_scores,
                mean,
                std,
            });
        }
        // The best mean; ties go to the earlier candidate. NaN never wins.
        let better = |a: f64, b: f64| {
            if greater_is_better(&metric) {
                a > b
            } else {
                a < b
            }
        };
        for (c, s) in scored.iter().enumerate() {
            if !s.mean.is_nan() && (scored[best].mean.is_nan() || better(s.mean, scored[best].mean))
            {
                best = c;
            }
        }
    }
    let best_params = candidate_params[best].clone();
    let profile = Profile::of(&train_inputs);
    let fitted = fit_pipeline(
        spec,
        &best_params,
        train_inputs,
        &train_target,
        &mut |epoch, loss| on_event(Event::Epoch { epoch, loss }),
    )?;
    // Permutation importance scores the first held-out rows.
    let sample = test_rows.len().min(IMPORTANCE_ROWS);
    let sample_inputs = test_inputs.select_rows(&(0..sample).collect::<Vec<_>>());
    let prediction = predict(&fitted, test_inputs, classes.len())?;
    let test_metrics = evaluate(&target.select(&test_rows), &prediction)?;
    let baseline = fitted
        .x_train
        .mean_axis(Axis(0))
        .map(|m| m.to_vec())
        .unwrap_or_default();
    let bundle = ModelBundle {
        format_version: crate::bundle::FORMAT_VERSION,
        model_type: spec.model.name().into(),
        task,
        inputs: input_fields,
        target: target_name.into(),
        classes,
        preprocessing: fitted.preprocessor,
        features: fitted.features,
        estimator: fitted.estimator,
        baseline,
        training: TrainingInfo {
            params: best_params.clone(),
            rows: train_rows.len() as u64,
            seed: spec.seed,
            dataset_digest: String::new(),
            metrics: test_metrics.clone(),
        },
        profile: Some(profile),
    };
    let sample_target = target_values.select(&test_rows[..sample]);
    let importance = permutation_importance(
        &bundle,
        &sample_inputs,
        &sample_target,
        &metric,
        IMPORTANCE_REPEATS,
        spec.seed,
    )?;
    Ok(TrainOutput {
        importance,
        bundle,
        test_metrics,
        selection_metric: metric,
        candidates: scored,
        best_params,
        loss_per_epoch: fitted.report.loss_per_epoch,
        warnings: fitted.report.warnings,
        train_rows: train_rows.len(),
        test_rows: test_rows.len(),
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct Importance {
    pub input: String,
    /// Mean drop in the metric's goodness when the input is shuffled; larger matters more.
    pub mean: f64,
    pub std: f64,
}

/// Permutation importance of each input (scikit-learn's `permutation_importance`): shuffle one
/// input column at a time, `repeats` times with a seeded generator, and measure how much worse
/// the metric gets.
pub fn permutation_importance(
    bundle: &ModelBundle,
    inputs: &Frame,
    target_values: &Values,
    metric: &str,
    repeats: usize,
    seed: u64,
) -> Result<Vec<Importance>, MlError> {
    check_metric(bundle.task, metric)?;
    if repeats == 0 {
        return Err(MlError::Input("repeats must be at least 1".into()));
    }
    let target = match bundle.task {
        Task::Regression => build_target(Task::Regression, target_values)?.0,
        Task::Classification => {
            let texts: Vec<String> = match target_values {
                Values::Numeric(v) => v.iter().map(|x| x.to_string()).collect(),
                Values::Categorical(v) => v.iter().map(|x| x.clone().unwrap_or_default()).collect(),
            };
            let labels = texts
                .iter()
                .map(|t| {
                    bundle.classes.iter().position(|c| c == t).ok_or_else(|| {
                        MlError::Input(format!(
                            "target label {t:?} is not one of the model's classes"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
            Target::Classification {
                labels,
                classes: bundle.classes.len(),
            }
        }
    };
    let sign = if greater_is_better(metric) { 1.0 } else { -1.0 };
    let reference = evaluate(&target, &bundle.predict_frame(inputs.clone())?)?[metric];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for (j, column) in inputs.columns().iter().enumerate() {
        let mut drops = Vec::with_capacity(repeats);
        for _ in 0..repeats {
            let mut order: Vec<usize> = (0..inputs.rows()).collect();
            order.shuffle(&mut rng);
            let mut columns = inputs.columns().to_vec();
            columns[j] = Column {
                name: column.name.clone(),
                values: column.values.select(&order),
            };
            let score = evaluate(&target, &bundle.predict_frame(Frame::new(columns)?)?)?[metric];
            drops.push(sign * (reference - score));
        }
        let mean = drops.iter().sum::<f64>() / repeats as f64;
        let std = (drops.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / repeats as f64).sqrt();
        out.push(Importance {
            input: column.name.clone(),
            mean,
            std,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> (Frame, Values) {
        let n = 60;
        let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() * 3.0).collect();
        let b: Vec<f64> = (0..n).map(|i| ((i * 7) % 11) as f64).collect();
        let noise: Vec<f64> = (0..n).map(|i| ((i * 13) % 5) as f64 * 0.01).collect();
        let y: Vec<f64> = (0..n)
            .map(|i| 2.0 * a[i] - 0.5 * b[i] + 1.0 + noise[i])
            .collect();
        (
            Frame::new(vec![Column::numeric("a", a), Column::numeric("b", b)]).unwrap(),
            Values::Numeric(y),
        )
    }

    #[test]
    fn grid_search_picks_the_weakest_penalty_on_clean_data_and_is_reproducible() {
        let (x, y) = data();
        let mut spec = TrainSpec::new(ModelKind::Ridge);
        spec.grid
            .insert("alpha".into(), vec![100.0.into(), 0.01.into(), 10.0.into()]);
        spec.cv_folds = 3;
        spec.preprocessing = vec![StepSpec::StandardScale { columns: None }];
        let mut folds = 0;
        let out = train(&spec, x.clone(), "y", &y, &mut |e| {
            if matches!(e, Event::Fold { .. }) {
                folds += 1
            }
        })
        .unwrap();
        assert_eq!(folds, 9);
        assert_eq!(out.best_params["alpha"], serde_json::json!(0.01));
        assert_eq!(out.candidates.len(), 3);
        assert!(out.test_metrics["r2"] > 0.99);
        let again = train(&spec, x.clone(), "y", &y, &mut |_| {}).unwrap();
        assert_eq!(again.bundle.to_json(), out.bundle.to_json());
        let back = ModelBundle::from_json(&out.bundle.to_json()).unwrap();
        let Prediction::Values(p) = back.predict_frame(x.clone()).unwrap() else {
            panic!()
        };
        assert_eq!(p.len(), 60);
        // Contributions sum to prediction - base.
        let c = back.contributions_frame(x.clone()).unwrap();
        for i in 0..60 {
            let total: f64 = c.values.row(i).sum() + c.base;
            assert!((total - p[i]).abs() < 1e-9);
        }
        let importance = permutation_importance(&back, &x, &y, "r2", 3, 1).unwrap();
        assert!(importance[0].mean > importance[1].mean, "{importance:?}");
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        let (x, y) = data();
        let mut spec = TrainSpec::new(ModelKind::Ridge);
        spec.params.insert("alpah".into(), 1.0.into());
        let err = train(&spec, x.clone(), "y", &y, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("alpah"), "{err}");

        let mut spec = TrainSpec::new(ModelKind::Ridge);
        spec.grid.insert("alpha".into(), vec![]);
        let err = train(&spec, x.clone(), "y", &y, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("no values"), "{err}");

        let mut spec = TrainSpec::new(ModelKind::Ridge);
        spec.cv_folds = 500;
        let err = train(&spec, x.clone(), "y", &y, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("cv_folds"), "{err}");

        let spec = TrainSpec::new(ModelKind::Logistic);
        let err = train(
            &spec,
            x.clone(),
            "y",
            &Values::Numeric(vec![1.0; 60]),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("single class"), "{err}");

        let mut with_nan = x.clone().into_columns();
        with_nan[0] = Column::numeric(
            "a",
            (0..60)
                .map(|i| if i == 5 { f64::NAN } else { 1.0 })
                .collect(),
        );
        let err = train(
            &TrainSpec::new(ModelKind::Linear),
            Frame::new(with_nan).unwrap(),
            "y",
            &y,
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("impute"), "{err}");

        let mut spec = TrainSpec::new(ModelKind::Ridge);
        spec.selection_metric = Some("accuracy".into());
        assert!(train(&spec, x.clone(), "y", &y, &mut |_| {}).is_err());
    }

    #[test]
    fn gradient_descent_streams_its_loss_curve() {
        let (x, y) = data();
        let mut spec = TrainSpec::new(ModelKind::GradientDescent);
        spec.preprocessing = vec![StepSpec::StandardScale { columns: None }];
        spec.params.insert("learning_rate".into(), 0.1.into());
        spec.params.insert("epochs".into(), 200.into());
        let mut epochs = Vec::new();
        let out = train(&spec, x.clone(), "y", &y, &mut |e| {
            if let Event::Epoch { loss, .. } = e {
                epochs.push(loss)
            }
        })
        .unwrap();
        assert_eq!(epochs, out.loss_per_epoch);
        assert!(epochs.windows(2).all(|w| w[1] <= w[0]));
        assert!(out.test_metrics["r2"] > 0.99);
    }

    #[test]
    fn leading_drop_missing_rows_filters_training_rows_only() {
        let (x, y) = data();
        let mut columns = x.clone().into_columns();
        columns[0] = Column::numeric(
            "a",
            (0..60)
                .map(|i| {
                    if i % 10 == 0 {
                        f64::NAN
                    } else {
                        (i as f64 * 0.37).sin() * 3.0
                    }
                })
                .collect(),
        );
        let with_gaps = Frame::new(columns).unwrap();
        let mut spec = TrainSpec::new(ModelKind::Linear);
        spec.preprocessing = vec![StepSpec::DropMissingRows { columns: None }];
        let out = train(&spec, with_gaps.clone(), "y", &y, &mut |_| {}).unwrap();
        assert_eq!(out.train_rows + out.test_rows, 54);
        assert!(out.bundle.preprocessing.steps.is_empty());
        spec.preprocessing
            .insert(0, StepSpec::StandardScale { columns: None });
        let err = train(&spec, with_gaps, "y", &y, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("must come before"), "{err}");
    }

    #[test]
    fn least_squares_refuses_more_features_than_rows() {
        let x = Frame::new(
            (0..5)
                .map(|j| {
                    Column::numeric(
                        format!("f{j}"),
                        (0..5).map(|i| ((i * j) % 7) as f64).collect(),
                    )
                })
                .collect(),
        )
        .unwrap();
        let y = Values::Numeric((0..5).map(f64::from).collect());
        let err = train(&TrainSpec::new(ModelKind::Linear), x, "y", &y, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("features but only"), "{err}");
    }
}
