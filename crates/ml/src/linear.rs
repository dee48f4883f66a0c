//! Ordinary least squares with an intercept.
//!
//! The centred design is solved with a thin SVD and singular values below
//! `eps * max(n, p) * s_max` dropped, which is the minimum-norm least-squares solution scipy's
//! `lstsq` (and so scikit-learn's `LinearRegression`) returns. A rank-deficient design (collinear
//! or duplicated columns) therefore fits, and still predicts exactly on exactly linear data.

use ndarray::{Array1, ArrayView1, ArrayView2, Axis};

use crate::MlError;

#[derive(Debug, Clone, PartialEq)]
pub struct LinearRegression {
    pub coefficients: Array1<f64>,
    pub intercept: f64,
    /// Numerical rank of the centred design.
    pub rank: usize,
}

impl LinearRegression {
    pub fn fit(x: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<Self, MlError> {
        let (n, p) = x.dim();
        if n != y.len() {
            return Err(MlError::Shape(format!(
                "{n} rows of features but {} targets",
                y.len()
            )));
        }
        if n == 0 {
            return Err(MlError::Fit("no rows".into()));
        }
        if x.iter().chain(y.iter()).any(|v| !v.is_finite()) {
            return Err(MlError::Fit(
                "features and target must be finite numbers".into(),
            ));
        }
        let x_mean = x.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(p));
        let y_mean = y.mean().unwrap_or_default();
        if p == 0 {
            return Ok(Self {
                coefficients: Array1::zeros(0),
                intercept: y_mean,
                rank: 0,
            });
        }
        let centred = faer::Mat::from_fn(n, p, |i, j| x[[i, j]] - x_mean[j]);
        let svd = centred
            .thin_svd()
            .map_err(|e| MlError::Fit(format!("SVD did not converge: {e:?}")))?;
        let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
        let s_max = if s.nrows() > 0 { s[0] } else { 0.0 };
        let cutoff = f64::EPSILON * n.max(p) as f64 * s_max;
        let mut coefficients = Array1::<f64>::zeros(p);
        let mut rank = 0;
        for k in 0..s.nrows() {
            if s[k] <= cutoff || s[k] == 0.0 {
                continue;
            }
            rank += 1;
            let projection: f64 = (0..n).map(|i| u[(i, k)] * (y[i] - y_mean)).sum::<f64>() / s[k];
            for j in 0..p {
                coefficients[j] += v[(j, k)] * projection;
            }
        }
        let intercept = y_mean - x_mean.dot(&coefficients);
        Ok(Self {
            coefficients,
            intercept,
            rank,
        })
    }

    pub fn predict(&self, x: ArrayView2<f64>) -> Result<Array1<f64>, MlError> {
        if x.ncols() != self.coefficients.len() {
            return Err(MlError::Shape(format!(
                "model takes {} features, input has {}",
                self.coefficients.len(),
                x.ncols()
            )));
        }
        Ok(x.dot(&self.coefficients) + self.intercept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    #[test]
    fn recovers_an_exact_linear_relation() {
        let x = array![[1.0, 2.0], [2.0, 0.5], [3.0, -1.0], [4.0, 7.0], [0.0, 1.0]];
        let y = x.dot(&array![3.0, -2.0]) + 5.0;
        let model = LinearRegression::fit(x.view(), y.view()).unwrap();
        assert!((model.intercept - 5.0).abs() < 1e-10);
        assert!((model.coefficients[0] - 3.0).abs() < 1e-10);
        assert!((model.coefficients[1] + 2.0).abs() < 1e-10);
        assert_eq!(model.rank, 2);
    }

    #[test]
    fn rank_deficient_design_fits_and_predicts_exactly() {
        // Column 2 = 2 * column 0, column 3 is constant: rank 2 out of 4.
        let x = Array2::from_shape_fn((20, 4), |(i, j)| {
            let a = i as f64;
            let b = ((i * 7) % 5) as f64;
            [a, b, 2.0 * a, 1.0][j]
        });
        let y = x.column(0).mapv(|a| 1.5 * a) + x.column(1).mapv(|b| -0.5 * b) + 4.0;
        let model = LinearRegression::fit(x.view(), y.view()).unwrap();
        assert_eq!(model.rank, 2);
        let predicted = model.predict(x.view()).unwrap();
        for (p, t) in predicted.iter().zip(y.iter()) {
            assert!((p - t).abs() < 1e-9, "{p} vs {t}");
        }
        // Minimum norm: the weight on a and 2a is split as (w, 2w) with w + 4w = 1.5.
        assert!((model.coefficients[0] - 0.3).abs() < 1e-9);
        assert!((model.coefficients[2] - 0.6).abs() < 1e-9);
        assert!(model.coefficients[3].abs() < 1e-9);
    }

    #[test]
    fn rejects_bad_shapes_and_non_finite_values() {
        let x = array![[1.0], [2.0]];
        assert!(matches!(
            LinearRegression::fit(x.view(), array![1.0].view()),
            Err(MlError::Shape(_))
        ));
        assert!(matches!(
            LinearRegression::fit(x.view(), array![1.0, f64::NAN].view()),
            Err(MlError::Fit(_))
        ));
        let model = LinearRegression::fit(x.view(), array![1.0, 2.0].view()).unwrap();
        assert!(model.predict(array![[1.0, 2.0]].view()).is_err());
    }
}
