//! Estimators by name with typed hyperparameters, and the fitted estimator a bundle carries.

use std::collections::BTreeMap;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::linear::{
    ElasticNet, GradientDescent, GradientDescentSettings, LinearRegression, ridge,
};
use crate::logistic::{LogisticRegression, LogisticSettings, probabilities};
use crate::tree::{DecisionTree, TreeSettings, TreeTarget};
use crate::{MlError, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Regression,
    Classification,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Ordinary least squares, exact (SVD) or through the normal equations.
    Linear,
    Ridge,
    Lasso,
    ElasticNet,
    /// Linear regression by (mini-batch) gradient descent on the MSE loss.
    GradientDescent,
    Logistic,
    DecisionTree,
    DecisionTreeClassifier,
}

impl ModelKind {
    pub const ALL: [ModelKind; 8] = [
        ModelKind::Linear,
        ModelKind::Ridge,
        ModelKind::Lasso,
        ModelKind::ElasticNet,
        ModelKind::GradientDescent,
        ModelKind::Logistic,
        ModelKind::DecisionTree,
        ModelKind::DecisionTreeClassifier,
    ];

    pub fn parse(name: &str) -> Result<Self, MlError> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| {
                MlError::Input(format!(
                    "unknown model {name:?} (known: {})",
                    Self::ALL.map(|k| k.name()).join(", ")
                ))
            })
    }

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Linear => "linear",
            ModelKind::Ridge => "ridge",
            ModelKind::Lasso => "lasso",
            ModelKind::ElasticNet => "elastic_net",
            ModelKind::GradientDescent => "gradient_descent",
            ModelKind::Logistic => "logistic",
            ModelKind::DecisionTree => "decision_tree",
            ModelKind::DecisionTreeClassifier => "decision_tree_classifier",
        }
    }

    pub fn task(self) -> Task {
        match self {
            ModelKind::Logistic | ModelKind::DecisionTreeClassifier => Task::Classification,
            _ => Task::Regression,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LinearSolver {
    #[default]
    Svd,
    NormalEquations,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LinearParams {
    #[serde(default)]
    solver: LinearSolver,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PenaltyParams {
    #[serde(default = "one")]
    alpha: f64,
    #[serde(default = "half")]
    l1_ratio: f64,
    #[serde(default = "tol_cd")]
    tol: f64,
    #[serde(default = "thousand")]
    max_iter: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GradientParams {
    #[serde(default = "learning_rate")]
    learning_rate: f64,
    #[serde(default = "thousand")]
    epochs: usize,
    #[serde(default)]
    batch_size: usize,
    #[serde(default = "tol_gd")]
    tol: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogisticParams {
    #[serde(default = "one", alias = "C")]
    c: f64,
    #[serde(default = "tol_cd")]
    tol: f64,
    #[serde(default = "hundred")]
    max_iter: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TreeParams {
    #[serde(default)]
    max_depth: Option<usize>,
    #[serde(default = "two")]
    min_samples_split: usize,
    #[serde(default = "one_usize")]
    min_samples_leaf: usize,
}

fn one() -> f64 {
    1.0
}
fn half() -> f64 {
    0.5
}
fn tol_cd() -> f64 {
    1e-4
}
fn tol_gd() -> f64 {
    1e-9
}
fn learning_rate() -> f64 {
    0.01
}
fn thousand() -> usize {
    1000
}
fn hundred() -> usize {
    100
}
fn two() -> usize {
    2
}
fn one_usize() -> usize {
    1
}

/// Hyperparameters as JSON values; typed per model when parsed, so an unknown or mistyped one
/// is an error that names it.
pub type Params = BTreeMap<String, serde_json::Value>;

fn parse<T: DeserializeOwned>(kind: ModelKind, params: &Params) -> Result<T, MlError> {
    let object: serde_json::Map<String, serde_json::Value> =
        params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| MlError::Input(format!("hyperparameters of {}: {e}", kind.name())))
}

/// Checks the hyperparameters without fitting.
pub fn check_params(kind: ModelKind, params: &Params) -> Result<(), MlError> {
    match kind {
        ModelKind::Linear => parse::<LinearParams>(kind, params).map(drop),
        ModelKind::Ridge | ModelKind::Lasso | ModelKind::ElasticNet => {
            parse::<PenaltyParams>(kind, params)?;
            if kind != ModelKind::ElasticNet && params.contains_key("l1_ratio") {
                return Err(MlError::Input(format!(
                    "hyperparameters of {}: unknown field `l1_ratio` (only elastic_net has it)",
                    kind.name()
                )));
            }
            if kind == ModelKind::Ridge
                && (params.contains_key("tol") || params.contains_key("max_iter"))
            {
                return Err(MlError::Input(
                    "hyperparameters of ridge: ridge is solved exactly, it takes only `alpha`"
                        .into(),
                ));
            }
            Ok(())
        }
        ModelKind::GradientDescent => parse::<GradientParams>(kind, params).map(drop),
        ModelKind::Logistic => parse::<LogisticParams>(kind, params).map(drop),
        ModelKind::DecisionTree | ModelKind::DecisionTreeClassifier => {
            parse::<TreeParams>(kind, params).map(drop)
        }
    }
}

/// A fitted estimator, as stored in the bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Estimator {
    Linear {
        coefficients: Vec<f64>,
        intercept: f64,
    },
    Logistic {
        /// One row for two classes, else one per class.
        coefficients: Vec<Vec<f64>>,
        intercepts: Vec<f64>,
    },
    Tree {
        tree: DecisionTree,
    },
}

/// What a fit produced besides the estimator.
#[derive(Debug, Clone, Default)]
pub struct FitReport {
    /// Training loss per epoch (gradient descent).
    pub loss_per_epoch: Vec<f64>,
    /// Non-fatal notes, such as an iterative solver stopping before convergence.
    pub warnings: Vec<String>,
}

/// Fits `kind` on a finite feature matrix. `on_epoch` sees each epoch's loss as it happens.
pub fn fit(
    kind: ModelKind,
    params: &Params,
    x: ArrayView2<f64>,
    target: &Target,
    seed: u64,
    on_epoch: &mut dyn FnMut(usize, f64),
) -> Result<(Estimator, FitReport), MlError> {
    check_params(kind, params)?;
    let mut report = FitReport::default();
    let regression_target = |t: &Target| -> Result<Array1<f64>, MlError> {
        match t {
            Target::Regression(y) => Ok(y.clone()),
            Target::Classification { .. } => Err(MlError::Input(format!(
                "{} is a regressor: the target must be numeric",
                kind.name()
            ))),
        }
    };
    let classes = |t: &Target| -> Result<(Vec<usize>, usize), MlError> {
        match t {
            Target::Classification { labels, classes } => Ok((labels.clone(), *classes)),
            Target::Regression(_) => Err(MlError::Input(format!(
                "{} is a classifier: the target must be classes",
                kind.name()
            ))),
        }
    };
    let linear = |coefficients: Array1<f64>, intercept: f64| Estimator::Linear {
        coefficients: coefficients.to_vec(),
        intercept,
    };
    let estimator = match kind {
        ModelKind::Linear => {
            let p: LinearParams = parse(kind, params)?;
            let y = regression_target(target)?;
            if x.ncols() > x.nrows() {
                return Err(MlError::Input(format!(
                    "{} features but only {} training rows: least squares would interpolate the \
                     data; use ridge or lasso, or fewer features",
                    x.ncols(),
                    x.nrows()
                )));
            }
            let model = match p.solver {
                LinearSolver::Svd => {
                    let fitted = LinearRegression::fit(x, y.view())?;
                    if fitted.rank < x.ncols() {
                        report.warnings.push(format!(
                            "the features have rank {} of {}: some columns are collinear or \
                             constant, so the minimum-norm solution was used",
                            fitted.rank,
                            x.ncols()
                        ));
                    }
                    fitted.model()
                }
                LinearSolver::NormalEquations => {
                    let mut stats = crate::linear::SufficientStats::new(x.ncols());
                    stats.update(x, y.view())?;
                    stats.ols()?
                }
            };
            linear(model.coefficients, model.intercept)
        }
        ModelKind::Ridge => {
            let p: PenaltyParams = parse(kind, params)?;
            let model = ridge(x, regression_target(target)?.view(), p.alpha)?;
            linear(model.coefficients, model.intercept)
        }
        ModelKind::Lasso | ModelKind::ElasticNet => {
            let p: PenaltyParams = parse(kind, params)?;
            let l1_ratio = if kind == ModelKind::Lasso {
                1.0
            } else {
                p.l1_ratio
            };
            let y = regression_target(target)?;
            let model = ElasticNet::fit(x, y.view(), p.alpha, l1_ratio, p.tol, p.max_iter)?;
            if !model.converged {
                report.warnings.push(format!(
                    "{} did not converge in {} iterations (tol {}): raise max_iter or scale the \
                     features",
                    kind.name(),
                    p.max_iter,
                    p.tol
                ));
            }
            linear(model.coefficients, model.intercept)
        }
        ModelKind::GradientDescent => {
            let p: GradientParams = parse(kind, params)?;
            let y = regression_target(target)?;
            let model = GradientDescent::fit_with(
                x,
                y.view(),
                &GradientDescentSettings {
                    learning_rate: p.learning_rate,
                    epochs: p.epochs,
                    batch_size: p.batch_size,
                    tol: p.tol,
                    seed,
                },
                on_epoch,
            )?;
            report.loss_per_epoch = model.loss_per_epoch.clone();
            linear(model.coefficients, model.intercept)
        }
        ModelKind::Logistic => {
            let p: LogisticParams = parse(kind, params)?;
            let (labels, classes) = classes(target)?;
            let model = LogisticRegression::fit(
                x,
                &labels,
                classes,
                &LogisticSettings {
                    c: p.c,
                    tol: p.tol,
                    max_iter: p.max_iter,
                },
            )?;
            if !model.converged {
                report.warnings.push(format!(
                    "logistic did not converge in {} iterations (tol {}): raise max_iter or \
                     standardize the features",
                    p.max_iter, p.tol
                ));
            }
            Estimator::Logistic {
                coefficients: model
                    .coefficients
                    .rows()
                    .into_iter()
                    .map(|r| r.to_vec())
                    .collect(),
                intercepts: model.intercepts,
            }
        }
        ModelKind::DecisionTree | ModelKind::DecisionTreeClassifier => {
            let p: TreeParams = parse(kind, params)?;
            let settings = TreeSettings {
                max_depth: p.max_depth,
                min_samples_split: p.min_samples_split,
                min_samples_leaf: p.min_samples_leaf,
            };
            let tree = if kind == ModelKind::DecisionTree {
                let y = regression_target(target)?;
                DecisionTree::fit(
                    x,
                    TreeTarget::Regression(y.as_slice().expect("owned")),
                    &settings,
                )?
            } else {
                let (labels, classes) = classes(target)?;
                DecisionTree::fit(
                    x,
                    TreeTarget::Classes {
                        labels: &labels,
                        classes,
                    },
                    &settings,
                )?
            };
            Estimator::Tree { tree }
        }
    };
    Ok((estimator, report))
}

/// A prediction: values (regression) or class probabilities.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    Values(Array1<f64>),
    Probabilities(Array2<f64>),
}

impl Estimator {
    pub fn features(&self) -> usize {
        match self {
            Estimator::Linear { coefficients, .. } => coefficients.len(),
            Estimator::Logistic { coefficients, .. } => coefficients.first().map_or(0, Vec::len),
            Estimator::Tree { tree } => tree.features,
        }
    }

    /// Checks a deserialised estimator against the task and class count.
    pub fn validate(&self, task: Task, classes: usize) -> Result<(), MlError> {
        let bad = |m: String| Err(MlError::Bundle(m));
        match (self, task) {
            (
                Estimator::Linear {
                    coefficients,
                    intercept,
                },
                Task::Regression,
            ) => {
                if coefficients
                    .iter()
                    .chain([intercept])
                    .any(|v| !v.is_finite())
                {
                    return bad("linear coefficients must be finite".into());
                }
            }
            (
                Estimator::Logistic {
                    coefficients,
                    intercepts,
                },
                Task::Classification,
            ) => {
                let rows = if classes == 2 { 1 } else { classes };
                if coefficients.len() != rows || intercepts.len() != rows {
                    return bad(format!(
                        "{classes} classes need {rows} coefficient rows and intercepts"
                    ));
                }
                let width = coefficients[0].len();
                if coefficients.iter().any(|r| r.len() != width) {
                    return bad("coefficient rows differ in length".into());
                }
            }
            (Estimator::Tree { tree }, task) => {
                tree.validate()?;
                let want = if task == Task::Regression { 1 } else { classes };
                if tree.outputs != want {
                    return bad(format!(
                        "tree has {} outputs, expected {want}",
                        tree.outputs
                    ));
                }
            }
            _ => return bad(format!("estimator does not fit a {task:?} task")),
        }
        Ok(())
    }

    pub fn predict(&self, x: ArrayView2<f64>, classes: usize) -> Result<Prediction, MlError> {
        if x.ncols() != self.features() {
            return Err(MlError::Shape(format!(
                "model takes {} features, input has {}",
                self.features(),
                x.ncols()
            )));
        }
        Ok(match self {
            Estimator::Linear {
                coefficients,
                intercept,
            } => Prediction::Values(x.dot(&ArrayView1::from(&coefficients[..])) + *intercept),
            Estimator::Logistic {
                coefficients,
                intercepts,
            } => {
                let rows = coefficients.len();
                let width = self.features();
                let w = Array2::from_shape_fn((rows, width), |(k, j)| coefficients[k][j]);
                Prediction::Probabilities(probabilities(&w, intercepts, classes, x)?)
            }
            Estimator::Tree { tree } => {
                let out = tree.predict(x)?;
                if tree.outputs == 1 && classes == 0 {
                    Prediction::Values(out.column(0).to_owned())
                } else {
                    Prediction::Probabilities(out)
                }
            }
        })
    }
}
