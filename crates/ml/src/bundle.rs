//! The model bundle: everything inference needs to reproduce training's predictions, as
//! versioned JSON. It carries its input schema (feature names in order) and its target.

use ndarray::{Array1, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::{LinearRegression, MlError};

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelBundle {
    pub format_version: u32,
    pub model_type: String,
    pub feature_names: Vec<String>,
    pub target: String,
    pub coefficients: Vec<f64>,
    pub intercept: f64,
}

impl ModelBundle {
    pub fn linear(model: &LinearRegression, feature_names: Vec<String>, target: String) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            model_type: "linear".into(),
            feature_names,
            target,
            coefficients: model.coefficients.to_vec(),
            intercept: model.intercept,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a bundle always serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, MlError> {
        let bundle: Self =
            serde_json::from_slice(bytes).map_err(|e| MlError::Bundle(e.to_string()))?;
        if bundle.format_version != FORMAT_VERSION {
            return Err(MlError::Bundle(format!(
                "format_version {} is not supported (expected {FORMAT_VERSION})",
                bundle.format_version
            )));
        }
        if bundle.model_type != "linear" {
            return Err(MlError::Bundle(format!(
                "unknown model_type {:?}",
                bundle.model_type
            )));
        }
        if bundle.feature_names.is_empty() {
            return Err(MlError::Bundle("a model needs at least one feature".into()));
        }
        if bundle.coefficients.len() != bundle.feature_names.len() {
            return Err(MlError::Bundle(format!(
                "{} coefficients for {} features",
                bundle.coefficients.len(),
                bundle.feature_names.len()
            )));
        }
        Ok(bundle)
    }

    pub fn feature_count(&self) -> usize {
        self.feature_names.len()
    }

    /// Predicts one value per row; rows hold the features in `feature_names` order.
    pub fn predict(&self, x: ArrayView2<f64>) -> Result<Array1<f64>, MlError> {
        if x.ncols() != self.feature_count() {
            return Err(MlError::Shape(format!(
                "model takes {} features ({}), input has {}",
                self.feature_count(),
                self.feature_names.join(", "),
                x.ncols()
            )));
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(MlError::Input(
                "features must be finite numbers (no NaN or infinity)".into(),
            ));
        }
        Ok(x.dot(&Array1::from(self.coefficients.clone())) + self.intercept)
    }

    /// Each feature's share of each prediction: `coefficient x value`. A row's shares plus the
    /// intercept (the base value) sum to its prediction exactly.
    pub fn contributions(&self, x: ArrayView2<f64>) -> Result<ndarray::Array2<f64>, MlError> {
        self.predict(x)?;
        Ok(&x * &ndarray::ArrayView1::from(&self.coefficients[..]))
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
    fn round_trips_and_predicts_like_the_model() {
        let x = array![[1.0, 2.0], [2.0, 0.5], [3.0, -1.0]];
        let y = array![1.0, 4.0, 2.0];
        let model = LinearRegression::fit(x.view(), y.view()).unwrap();
        let bundle = ModelBundle::linear(&model, vec!["a".into(), "b".into()], "y".into());
        let back = ModelBundle::from_json(&bundle.to_json()).unwrap();
        assert_eq!(back, bundle);
        let shares = back.contributions(x.view()).unwrap();
        let summed = shares.sum_axis(ndarray::Axis(1)) + back.intercept;
        for (a, b) in summed.iter().zip(back.predict(x.view()).unwrap().iter()) {
            assert!((a - b).abs() < 1e-12);
        }
        assert_eq!(
            back.predict(x.view()).unwrap(),
            model.predict(x.view()).unwrap()
        );
        assert!(back.predict(array![[1.0]].view()).is_err());
        assert!(back.predict(array![[1.0, f64::NAN]].view()).is_err());
    }

    #[test]
    fn rejects_inconsistent_bundles() {
        let bad = br#"{"format_version":1,"model_type":"linear","feature_names":["a"],"target":"y","coefficients":[],"intercept":0}"#;
        assert!(ModelBundle::from_json(bad).is_err());
        assert!(ModelBundle::from_json(b"{}").is_err());
    }
}
