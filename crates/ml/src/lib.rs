//! Pure ML on `ndarray`: estimators, metrics, the train/test split and the model bundle.
//! No I/O and no async, so every function is testable against scikit-learn fixtures.

pub mod bundle;
pub mod linear;
pub mod metrics;
pub mod split;

pub use bundle::ModelBundle;
pub use linear::LinearRegression;
pub use metrics::RegressionMetrics;

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
