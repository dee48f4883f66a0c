//! The model bundle: everything inference needs to reproduce training's predictions, as
//! versioned, self-describing JSON: the input schema (names and kinds, in order), the fitted
//! preprocessing, the estimator, the classes of a classifier, the training-set feature means
//! that explanations are relative to, and how it was trained. No timestamps and only ordered
//! maps, so the same data and seed give a byte-identical bundle.
//!
//! Format 1 (a bare linear model over numeric features) is still read.

use std::collections::BTreeMap;

use ndarray::{Array1, Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::drift::Profile;
use crate::frame::{ColumnKind, Frame};
use crate::model::{Estimator, Prediction, Task};
use crate::preprocess::Preprocessor;
use crate::{LinearRegression, MlError};

pub const FORMAT_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputField {
    pub name: String,
    pub kind: ColumnKind,
}

/// How the model was trained; informational, never needed to predict.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingInfo {
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub rows: u64,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub dataset_digest: String,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelBundle {
    pub format_version: u32,
    /// The estimator's name (`linear`, `ridge`, `logistic`, ...).
    pub model_type: String,
    pub task: Task,
    pub inputs: Vec<InputField>,
    pub target: String,
    /// Class labels of a classifier, in probability-column order.
    #[serde(default)]
    pub classes: Vec<String>,
    pub preprocessing: Preprocessor,
    /// The estimator's feature names: the preprocessing's output columns.
    pub features: Vec<String>,
    pub estimator: Estimator,
    /// Mean of each feature over the training rows: the reference point of contributions.
    pub baseline: Vec<f64>,
    pub training: TrainingInfo,
    /// The inputs' distributions over the training rows: the reference for drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FormatOne {
    format_version: u32,
    model_type: String,
    feature_names: Vec<String>,
    target: String,
    coefficients: Vec<f64>,
    intercept: f64,
}

/// Per-feature contributions of each row and the value they are relative to.
#[derive(Debug, Clone, PartialEq)]
pub struct Contributions {
    pub features: Vec<String>,
    /// One row per input row: feature `j`'s share of (prediction - base).
    pub values: Array2<f64>,
    /// The prediction (for a binary classifier: the log-odds) at the baseline.
    pub base: f64,
}

impl ModelBundle {
    /// A bundle of a plain OLS model over numeric features (no preprocessing).
    pub fn linear(model: &LinearRegression, feature_names: Vec<String>, target: String) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            model_type: "linear".into(),
            task: Task::Regression,
            inputs: feature_names
                .iter()
                .map(|n| InputField {
                    name: n.clone(),
                    kind: ColumnKind::Numeric,
                })
                .collect(),
            target,
            classes: Vec::new(),
            preprocessing: Preprocessor::default(),
            baseline: vec![0.0; feature_names.len()],
            features: feature_names,
            estimator: Estimator::Linear {
                coefficients: model.coefficients.to_vec(),
                intercept: model.intercept,
            },
            training: TrainingInfo::default(),
            profile: None,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a bundle always serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, MlError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| MlError::Bundle(e.to_string()))?;
        let version = value.get("format_version").and_then(|v| v.as_u64());
        let bundle = match version {
            Some(1) => Self::from_format_one(
                serde_json::from_value(value).map_err(|e| MlError::Bundle(e.to_string()))?,
            )?,
            Some(v) if v == u64::from(FORMAT_VERSION) => {
                serde_json::from_value(value).map_err(|e| MlError::Bundle(e.to_string()))?
            }
            Some(v) => {
                return Err(MlError::Bundle(format!(
                    "format_version {v} is not supported (this build reads 1 and {FORMAT_VERSION})"
                )));
            }
            None => return Err(MlError::Bundle("format_version is missing".into())),
        };
        bundle.validate()?;
        Ok(bundle)
    }

    fn from_format_one(old: FormatOne) -> Result<Self, MlError> {
        if old.model_type != "linear" {
            return Err(MlError::Bundle(format!(
                "unknown model_type {:?}",
                old.model_type
            )));
        }
        if old.coefficients.len() != old.feature_names.len() {
            return Err(MlError::Bundle(format!(
                "{} coefficients for {} features",
                old.coefficients.len(),
                old.feature_names.len()
            )));
        }
        debug_assert_eq!(old.format_version, 1);
        let bundle = Self::linear(
            &LinearRegression {
                coefficients: Array1::from(old.coefficients),
                intercept: old.intercept,
                rank: 0,
            },
            old.feature_names,
            old.target,
        );
        Ok(bundle)
    }

    fn validate(&self) -> Result<(), MlError> {
        if self.inputs.is_empty() {
            return Err(MlError::Bundle("a model needs at least one feature".into()));
        }
        if self.features.len() != self.estimator.features() {
            return Err(MlError::Bundle(format!(
                "the estimator takes {} features, the bundle names {}",
                self.estimator.features(),
                self.features.len()
            )));
        }
        if self.baseline.len() != self.features.len() {
            return Err(MlError::Bundle(format!(
                "{} baseline values for {} features",
                self.baseline.len(),
                self.features.len()
            )));
        }
        if self.task == Task::Classification && self.classes.len() < 2 {
            return Err(MlError::Bundle(
                "a classifier needs at least two classes".into(),
            ));
        }
        self.estimator.validate(self.task, self.classes.len())
    }

    pub fn input_names(&self) -> Vec<String> {
        self.inputs.iter().map(|i| i.name.clone()).collect()
    }

    pub fn feature_count(&self) -> usize {
        self.inputs.len()
    }

    /// Whether every input is numeric, so a plain `[N, F]` matrix can feed it.
    pub fn numeric_inputs(&self) -> bool {
        self.inputs.iter().all(|i| i.kind == ColumnKind::Numeric)
    }

    /// Applies the preprocessing to input rows and returns the estimator's feature matrix.
    pub fn features_of(&self, inputs: Frame) -> Result<Array2<f64>, MlError> {
        for field in &self.inputs {
            match inputs.column(&field.name) {
                Some(c) if c.values.kind() == field.kind => {}
                Some(c) => {
                    return Err(MlError::Input(format!(
                        "input {:?} must be {:?}, got {:?}",
                        field.name,
                        field.kind,
                        c.values.kind()
                    )));
                }
                None => {
                    return Err(MlError::Input(format!(
                        "input {:?} is missing (inputs: {})",
                        field.name,
                        self.input_names().join(", ")
                    )));
                }
            }
        }
        let ordered = Frame::new(
            self.inputs
                .iter()
                .map(|f| inputs.column(&f.name).expect("checked above").clone())
                .collect(),
        )?;
        let transformed = self.preprocessing.transform(ordered)?;
        if transformed.names() != self.features {
            return Err(MlError::Input(format!(
                "preprocessing produced features [{}], the model expects [{}]",
                transformed.names().join(", "),
                self.features.join(", ")
            )));
        }
        transformed.to_matrix()
    }

    pub fn predict_frame(&self, inputs: Frame) -> Result<Prediction, MlError> {
        let x = self.features_of(inputs)?;
        self.estimator.predict(x.view(), self.classes.len())
    }

    /// Checks rows of numeric inputs: their count, the model's input kinds, and finiteness
    /// when no imputer will see them.
    fn check_numeric(&self, x: ArrayView2<f64>) -> Result<(), MlError> {
        if x.ncols() != self.feature_count() {
            return Err(MlError::Shape(format!(
                "model takes {} features ({}), input has {}",
                self.feature_count(),
                self.input_names().join(", "),
                x.ncols()
            )));
        }
        if !self.numeric_inputs() {
            return Err(MlError::Input(format!(
                "this model has categorical inputs: send one tensor per input ({})",
                self.input_names().join(", ")
            )));
        }
        if self.preprocessing.steps.is_empty() && x.iter().any(|v| !v.is_finite()) {
            return Err(MlError::Input(
                "features must be finite numbers (no NaN or infinity)".into(),
            ));
        }
        Ok(())
    }

    fn numeric_frame(&self, x: ArrayView2<f64>) -> Result<Frame, MlError> {
        self.check_numeric(x)?;
        Frame::from_matrix(&self.input_names(), x)
    }

    /// Predicts from rows of numeric inputs in `inputs` order.
    pub fn predict(&self, x: ArrayView2<f64>) -> Result<Prediction, MlError> {
        if self.preprocessing.steps.is_empty() {
            // The inputs are the estimator's features: the serving hot path, no copies.
            self.check_numeric(x)?;
            return self.estimator.predict(x, self.classes.len());
        }
        self.predict_frame(self.numeric_frame(x)?)
    }

    /// Per-feature contributions for linear models and binary logistic regression (in
    /// log-odds): `coefficient x (value - training mean)`, which sum to the prediction minus
    /// `base`, the prediction at the training mean.
    pub fn contributions_frame(&self, inputs: Frame) -> Result<Contributions, MlError> {
        self.contributions_of(self.features_of(inputs)?.view())
    }

    /// Contributions from the estimator's features (the preprocessing's output).
    pub fn contributions_of(&self, x: ArrayView2<f64>) -> Result<Contributions, MlError> {
        let (coefficients, intercept) = match &self.estimator {
            Estimator::Linear {
                coefficients,
                intercept,
            } => (coefficients.clone(), *intercept),
            Estimator::Logistic {
                coefficients,
                intercepts,
            } if coefficients.len() == 1 => (coefficients[0].clone(), intercepts[0]),
            _ => {
                return Err(MlError::Input(format!(
                    "per-prediction contributions need a linear model or a binary logistic one; \
                     {} supports permutation importance",
                    self.model_type
                )));
            }
        };
        if x.ncols() != coefficients.len() {
            return Err(MlError::Shape(format!(
                "the model has {} features, the input {}",
                coefficients.len(),
                x.ncols()
            )));
        }
        let baseline = Array1::from(self.baseline.clone());
        let w = Array1::from(coefficients);
        let values = (&x - &baseline) * &w;
        Ok(Contributions {
            features: self.features.clone(),
            values,
            base: intercept + baseline.dot(&w),
        })
    }

    pub fn contributions(&self, x: ArrayView2<f64>) -> Result<Contributions, MlError> {
        if self.preprocessing.steps.is_empty() {
            self.check_numeric(x)?;
            return self.contributions_of(x);
        }
        self.contributions_frame(self.numeric_frame(x)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn a_bundle_without_features_is_refused() {
        let empty = r#"{"format_version":1,"model_type":"linear","feature_names":[],"target":"y","coefficients":[],"intercept":1.0}"#;
        assert!(ModelBundle::from_json(empty.as_bytes()).is_err());
    }

    #[test]
    fn format_one_still_loads_and_predicts() {
        let old = br#"{"format_version":1,"model_type":"linear","feature_names":["a","b"],"target":"y","coefficients":[2.0,-1.0],"intercept":0.5}"#;
        let bundle = ModelBundle::from_json(old).unwrap();
        let Prediction::Values(p) = bundle.predict(array![[1.0, 1.0]].view()).unwrap() else {
            panic!("regression")
        };
        assert_eq!(p[0], 1.5);
        let shares = bundle.contributions(array![[1.0, 1.0]].view()).unwrap();
        assert_eq!(shares.base, 0.5);
        assert_eq!(shares.values.row(0).to_vec(), vec![2.0, -1.0]);
    }

    #[test]
    fn round_trips_and_predicts_like_the_model() {
        let x = array![[1.0, 2.0], [2.0, 0.5], [3.0, -1.0]];
        let y = array![1.0, 4.0, 2.0];
        let model = LinearRegression::fit(x.view(), y.view()).unwrap();
        let bundle = ModelBundle::linear(&model, vec!["a".into(), "b".into()], "y".into());
        let back = ModelBundle::from_json(&bundle.to_json()).unwrap();
        assert_eq!(back, bundle);
        let Prediction::Values(p) = back.predict(x.view()).unwrap() else {
            panic!("regression")
        };
        assert_eq!(p, model.predict(x.view()).unwrap());
        assert!(back.predict(array![[1.0]].view()).is_err());
        assert!(back.predict(array![[1.0, f64::NAN]].view()).is_err());
    }

    #[test]
    fn rejects_inconsistent_bundles() {
        let bad = br#"{"format_version":1,"model_type":"linear","feature_names":["a"],"target":"y","coefficients":[],"intercept":0}"#;
        assert!(ModelBundle::from_json(bad).is_err());
        assert!(ModelBundle::from_json(b"{}").is_err());
        assert!(ModelBundle::from_json(br#"{"format_version":9}"#).is_err());
    }
}
