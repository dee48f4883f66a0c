//! Logistic regression, binary and multinomial, with an L2 penalty, fitted by L-BFGS.
//!
//! The objective is scikit-learn's (`LogisticRegression(C=..)`, lbfgs): the mean log loss plus
//! `|W|^2 / (2 C n)`, the intercepts unpenalised. Two classes use one coefficient vector (the
//! second class's log-odds); more classes use the softmax with one vector per class.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef};
use ndarray::{Array2, ArrayView2};

use crate::MlError;
use crate::optim::lbfgs;

#[derive(Debug, Clone, PartialEq)]
pub struct LogisticSettings {
    /// Inverse regularisation strength; larger is weaker.
    pub c: f64,
    pub tol: f64,
    pub max_iter: usize,
}

impl Default for LogisticSettings {
    fn default() -> Self {
        Self {
            c: 1.0,
            tol: 1e-4,
            max_iter: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogisticRegression {
    /// One row per output: a single row for two classes, else one per class.
    pub coefficients: Array2<f64>,
    pub intercepts: Vec<f64>,
    pub classes: usize,
    pub iterations: usize,
    pub converged: bool,
}

impl LogisticRegression {
    /// `labels[i]` is the class index of row `i`, in `0..classes`.
    pub fn fit(
        x: ArrayView2<f64>,
        labels: &[usize],
        classes: usize,
        settings: &LogisticSettings,
    ) -> Result<Self, MlError> {
        let (n, p) = x.dim();
        if labels.len() != n {
            return Err(MlError::Shape(format!(
                "{n} rows of features but {} labels",
                labels.len()
            )));
        }
        if n == 0 {
            return Err(MlError::Fit("no rows".into()));
        }
        if classes < 2 {
            return Err(MlError::Fit(
                "the target has a single class: a classifier needs at least two".into(),
            ));
        }
        crate::check_finite_features(x)?;
        if !(settings.c > 0.0 && settings.c.is_finite()) {
            return Err(MlError::Input(format!("C must be > 0, got {}", settings.c)));
        }
        if settings.tol.is_nan() || settings.tol <= 0.0 || settings.max_iter == 0 {
            return Err(MlError::Input(
                "tol must be > 0 and max_iter at least 1".into(),
            ));
        }
        let outputs = if classes == 2 { 1 } else { classes };
        let owned;
        let x = if x.is_standard_layout() {
            x
        } else {
            owned = x.as_standard_layout().into_owned();
            owned.view()
        };
        let xf = MatRef::from_row_major_slice(x.as_slice().expect("standard layout"), n, p);
        let penalty = 1.0 / (settings.c * n as f64);
        let width = p + 1;
        let mut z = Mat::<f64>::zeros(n, outputs);
        let mut residual = Mat::<f64>::zeros(n, outputs);
        let mut grad_w = Mat::<f64>::zeros(p, outputs);
        let objective = |params: &[f64], grad: &mut [f64]| -> f64 {
            let w = MatRef::from_column_major_slice(params, width, outputs);
            matmul(
                &mut z,
                Accum::Replace,
                xf,
                w.subrows(0, p),
                1.0,
                faer::get_global_parallelism(),
            );
            let mut loss = 0.0;
            for i in 0..n {
                if outputs == 1 {
                    let zi = z[(i, 0)] + w[(p, 0)];
                    let yi = (labels[i] == 1) as u8 as f64;
                    loss += softplus(zi) - yi * zi;
                    residual[(i, 0)] = sigmoid(zi) - yi;
                } else {
                    let mut max = f64::NEG_INFINITY;
                    for k in 0..outputs {
                        z[(i, k)] += w[(p, k)];
                        max = max.max(z[(i, k)]);
                    }
                    let sum: f64 = (0..outputs).map(|k| (z[(i, k)] - max).exp()).sum();
                    let log_sum = max + sum.ln();
                    loss += log_sum - z[(i, labels[i])];
                    for k in 0..outputs {
                        residual[(i, k)] =
                            (z[(i, k)] - log_sum).exp() - (labels[i] == k) as u8 as f64;
                    }
                }
            }
            matmul(
                &mut grad_w,
                Accum::Replace,
                xf.transpose(),
                &residual,
                1.0 / n as f64,
                faer::get_global_parallelism(),
            );
            let mut norm2 = 0.0;
            for k in 0..outputs {
                for j in 0..p {
                    let wj = w[(j, k)];
                    norm2 += wj * wj;
                    grad[k * width + j] = grad_w[(j, k)] + penalty * wj;
                }
                grad[k * width + p] = (0..n).map(|i| residual[(i, k)]).sum::<f64>() / n as f64;
            }
            loss / n as f64 + 0.5 * penalty * norm2
        };
        let result = lbfgs(
            objective,
            vec![0.0; width * outputs],
            settings.tol,
            settings.max_iter,
        );
        let mut coefficients = Array2::zeros((outputs, p));
        let mut intercepts = vec![0.0; outputs];
        for k in 0..outputs {
            for j in 0..p {
                coefficients[[k, j]] = result.x[k * width + j];
            }
            intercepts[k] = result.x[k * width + p];
        }
        if outputs > 1 {
            // Softmax intercepts are defined up to a constant: centre them, as scikit-learn does.
            let mean = intercepts.iter().sum::<f64>() / outputs as f64;
            intercepts.iter_mut().for_each(|b| *b -= mean);
        }
        Ok(Self {
            coefficients,
            intercepts,
            classes,
            iterations: result.iterations,
            converged: result.converged,
        })
    }

    /// Class probabilities, one row per input row and one column per class.
    pub fn predict_proba(&self, x: ArrayView2<f64>) -> Result<Array2<f64>, MlError> {
        probabilities(&self.coefficients, &self.intercepts, self.classes, x)
    }
}

/// Probabilities from linear scores: the sigmoid for one output row, else the softmax.
pub fn probabilities(
    coefficients: &Array2<f64>,
    intercepts: &[f64],
    classes: usize,
    x: ArrayView2<f64>,
) -> Result<Array2<f64>, MlError> {
    if x.ncols() != coefficients.ncols() {
        return Err(MlError::Shape(format!(
            "model takes {} features, input has {}",
            coefficients.ncols(),
            x.ncols()
        )));
    }
    let mut scores = x.dot(&coefficients.t());
    for mut row in scores.rows_mut() {
        row.iter_mut().zip(intercepts).for_each(|(s, b)| *s += b);
    }
    let n = x.nrows();
    let mut proba = Array2::zeros((n, classes));
    for i in 0..n {
        if coefficients.nrows() == 1 {
            let p1 = sigmoid(scores[[i, 0]]);
            proba[[i, 0]] = 1.0 - p1;
            proba[[i, 1]] = p1;
        } else {
            let max = scores.row(i).fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let sum: f64 = scores.row(i).iter().map(|v| (v - max).exp()).sum();
            for k in 0..classes {
                proba[[i, k]] = (scores[[i, k]] - max).exp() / sum;
            }
        }
    }
    Ok(proba)
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn separates_two_classes_and_refuses_one() {
        let x = array![[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]];
        let labels = [0, 0, 1, 0, 1, 1];
        let model =
            LogisticRegression::fit(x.view(), &labels, 2, &LogisticSettings::default()).unwrap();
        assert!(model.converged);
        let p = model.predict_proba(array![[0.0], [5.0]].view()).unwrap();
        assert!(p[[0, 0]] > 0.5 && p[[1, 1]] > 0.5);
        assert!((p.row(0).sum() - 1.0).abs() < 1e-12);
        let err = LogisticRegression::fit(x.view(), &[0; 6], 1, &LogisticSettings::default())
            .unwrap_err();
        assert!(err.to_string().contains("single class"));
    }
}
