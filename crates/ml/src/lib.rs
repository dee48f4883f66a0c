//! Pure ML on `ndarray`: preprocessing, estimators, model selection, metrics, the model bundle
//! and explanations. No I/O and no async, so every function is testable against scikit-learn
//! fixtures.

pub mod bundle;
pub mod drift;
pub mod frame;
pub mod linear;
pub mod logistic;
pub mod metrics;
pub mod model;
mod optim;
pub mod preprocess;
pub mod selection;
mod stats;
pub mod train;
pub mod tree;

pub use bundle::ModelBundle;
pub use linear::LinearRegression;
pub use metrics::{ClassificationMetrics, RegressionMetrics};

/// What a model learns to predict.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Regression(ndarray::Array1<f64>),
    /// Class indices in `0..classes`.
    Classification {
        labels: Vec<usize>,
        classes: usize,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MlError {
    #[error("shape mismatch: {0}")]
    Shape(String),
    #[error("cannot fit: {0}")]
    Fit(String),
    #[error("invalid model bundle: {0}")]
    Bundle(String),
    #[error("invalid input: {0}")]
    Input(String),
}

/// Estimators never see a missing or infinite feature silently: the first one is named.
pub(crate) fn check_finite_features(x: ndarray::ArrayView2<f64>) -> Result<(), MlError> {
    match x.indexed_iter().find(|(_, v)| !v.is_finite()) {
        Some(((i, j), v)) => Err(MlError::Fit(format!(
            "feature {j} at row {i} is {v}: features must be finite numbers (add an impute step)"
        ))),
        None => Ok(()),
    }
}

impl MlError {
    /// The reason alone, without the kind's prefix: for messages that name the field.
    pub fn reason(&self) -> &str {
        match self {
            MlError::Shape(r) | MlError::Fit(r) | MlError::Bundle(r) | MlError::Input(r) => r,
        }
    }
}
