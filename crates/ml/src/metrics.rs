//! Regression metrics with scikit-learn's definitions.

use ndarray::ArrayView1;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    pub mse: f64,
    pub rmse: f64,
    pub mae: f64,
    pub r2: f64,
}

impl RegressionMetrics {
    /// Panics never; an empty input gives NaN metrics.
    pub fn compute(truth: ArrayView1<f64>, predicted: ArrayView1<f64>) -> Self {
        let n = truth.len().min(predicted.len()) as f64;
        let residuals = truth.iter().zip(predicted.iter()).map(|(t, p)| t - p);
        let ss_res: f64 = residuals.clone().map(|r| r * r).sum();
        let mae = residuals.map(f64::abs).sum::<f64>() / n;
        let mean = truth.iter().sum::<f64>() / n;
        let ss_tot: f64 = truth.iter().map(|t| (t - mean) * (t - mean)).sum();
        // scikit-learn's `force_finite`: a constant target scores 1 when predicted perfectly.
        let r2 = if ss_tot == 0.0 {
            if ss_res == 0.0 { 1.0 } else { 0.0 }
        } else {
            1.0 - ss_res / ss_tot
        };
        let mse = ss_res / n;
        Self {
            mse,
            rmse: mse.sqrt(),
            mae,
            r2,
        }
    }

    /// (name, value) pairs in a stable order, the names used in every API.
    pub fn named(&self) -> [(&'static str, f64); 4] {
        [
            ("mse", self.mse),
            ("rmse", self.rmse),
            ("mae", self.mae),
            ("r2", self.r2),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn matches_hand_computed_values() {
        let m = RegressionMetrics::compute(
            array![3.0, -0.5, 2.0, 7.0].view(),
            array![2.5, 0.0, 2.0, 8.0].view(),
        );
        // sklearn: mean_squared_error = 0.375, mean_absolute_error = 0.5, r2_score = 0.9486081370449679
        assert!((m.mse - 0.375).abs() < 1e-12);
        assert!((m.mae - 0.5).abs() < 1e-12);
        assert!((m.r2 - 0.948_608_137_044_967_9).abs() < 1e-12);
        assert!((m.rmse - 0.375f64.sqrt()).abs() < 1e-12);
    }
}
