//! Regression and classification metrics with scikit-learn's definitions.

use ndarray::{Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    pub mse: f64,
    pub rmse: f64,
    pub mae: f64,
    pub r2: f64,
    pub explained_variance: f64,
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
        // Explained variance: like R2 but on the variance of the residuals (their mean removed).
        let mean_residual = truth
            .iter()
            .zip(predicted.iter())
            .map(|(t, p)| t - p)
            .sum::<f64>()
            / n;
        let ss_res_centred: f64 = truth
            .iter()
            .zip(predicted.iter())
            .map(|(t, p)| (t - p - mean_residual).powi(2))
            .sum();
        let explained_variance = if ss_tot == 0.0 {
            if ss_res_centred == 0.0 { 1.0 } else { 0.0 }
        } else {
            1.0 - ss_res_centred / ss_tot
        };
        Self {
            mse,
            rmse: mse.sqrt(),
            mae,
            r2,
            explained_variance,
        }
    }

    /// (name, value) pairs in a stable order, the names used in every API.
    pub fn named(&self) -> [(&'static str, f64); 5] {
        [
            ("mse", self.mse),
            ("rmse", self.rmse),
            ("mae", self.mae),
            ("r2", self.r2),
            ("explained_variance", self.explained_variance),
        ]
    }
}

/// Counts: `matrix[[true, predicted]]`.
pub fn confusion_matrix(truth: &[usize], predicted: &[usize], classes: usize) -> Array2<u64> {
    let mut matrix = Array2::zeros((classes, classes));
    for (&t, &p) in truth.iter().zip(predicted) {
        matrix[[t, p]] += 1;
    }
    matrix
}

/// Precision, recall and F1 of one class (0 when undefined, scikit-learn's `zero_division`).
fn class_scores(matrix: &Array2<u64>, k: usize) -> (f64, f64, f64) {
    let tp = matrix[[k, k]] as f64;
    let predicted = matrix.column(k).sum() as f64;
    let actual = matrix.row(k).sum() as f64;
    let precision = if predicted > 0.0 { tp / predicted } else { 0.0 };
    let recall = if actual > 0.0 { tp / actual } else { 0.0 };
    let f1 = if predicted + actual > 0.0 {
        2.0 * tp / (predicted + actual)
    } else {
        0.0
    };
    (precision, recall, f1)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    pub accuracy: f64,
    /// For two classes: of the second class (the positive one); otherwise macro averages.
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub precision_macro: f64,
    pub recall_macro: f64,
    pub f1_macro: f64,
    pub precision_weighted: f64,
    pub recall_weighted: f64,
    pub f1_weighted: f64,
    /// Binary ROC AUC, or the one-vs-rest macro average for more classes; NaN when a class is
    /// absent from the truth.
    pub roc_auc: f64,
    pub log_loss: f64,
    pub confusion_matrix: Vec<Vec<u64>>,
}

impl ClassificationMetrics {
    /// `proba` has one column per class; predictions are its argmax.
    pub fn compute(truth: &[usize], proba: ArrayView2<f64>) -> Self {
        let classes = proba.ncols();
        let predicted = argmax_rows(proba);
        let matrix = confusion_matrix(truth, &predicted, classes);
        let n = truth.len() as f64;
        let accuracy = (0..classes).map(|k| matrix[[k, k]]).sum::<u64>() as f64 / n;
        let scores: Vec<(f64, f64, f64)> = (0..classes).map(|k| class_scores(&matrix, k)).collect();
        let support: Vec<f64> = (0..classes).map(|k| matrix.row(k).sum() as f64).collect();
        let macro_avg =
            |f: fn(&(f64, f64, f64)) -> f64| scores.iter().map(f).sum::<f64>() / classes as f64;
        let weighted = |f: fn(&(f64, f64, f64)) -> f64| {
            scores
                .iter()
                .zip(&support)
                .map(|(s, w)| f(s) * w)
                .sum::<f64>()
                / n
        };
        let (precision_macro, recall_macro, f1_macro) =
            (macro_avg(|s| s.0), macro_avg(|s| s.1), macro_avg(|s| s.2));
        let (precision, recall, f1) = if classes == 2 {
            scores[1]
        } else {
            (precision_macro, recall_macro, f1_macro)
        };
        let roc_auc = if classes == 2 {
            roc_auc(truth.iter().map(|&t| t == 1), proba.column(1))
        } else {
            (0..classes)
                .map(|k| roc_auc(truth.iter().map(|&t| t == k), proba.column(k)))
                .sum::<f64>()
                / classes as f64
        };
        Self {
            accuracy,
            precision,
            recall,
            f1,
            precision_macro,
            recall_macro,
            f1_macro,
            precision_weighted: weighted(|s| s.0),
            recall_weighted: weighted(|s| s.1),
            f1_weighted: weighted(|s| s.2),
            roc_auc,
            log_loss: log_loss(truth, proba),
            confusion_matrix: matrix.rows().into_iter().map(|r| r.to_vec()).collect(),
        }
    }

    /// (name, value) pairs in a stable order, the names used in every API.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("accuracy", self.accuracy),
            ("precision", self.precision),
            ("recall", self.recall),
            ("f1", self.f1),
            ("precision_macro", self.precision_macro),
            ("recall_macro", self.recall_macro),
            ("f1_macro", self.f1_macro),
            ("precision_weighted", self.precision_weighted),
            ("recall_weighted", self.recall_weighted),
            ("f1_weighted", self.f1_weighted),
            ("roc_auc", self.roc_auc),
            ("log_loss", self.log_loss),
        ]
    }
}

pub fn argmax_rows(proba: ArrayView2<f64>) -> Vec<usize> {
    proba
        .rows()
        .into_iter()
        .map(|row| {
            // The first maximum, as numpy's argmax.
            let mut best = 0;
            for (k, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = k;
                }
            }
            best
        })
        .collect()
}

/// Area under the ROC curve: the Mann-Whitney statistic with tied scores sharing ranks.
pub fn roc_auc(positive: impl Iterator<Item = bool>, scores: ArrayView1<f64>) -> f64 {
    let labels: Vec<bool> = positive.collect();
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut positives) = (0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        for &row in &order[i..=j] {
            if labels[row] {
                rank_sum += average_rank;
                positives += 1.0;
            }
        }
        i = j + 1;
    }
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return f64::NAN;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// Mean negative log-likelihood of the true classes, probabilities clipped to `[eps, 1 - eps]`.
pub fn log_loss(truth: &[usize], proba: ArrayView2<f64>) -> f64 {
    let eps = f64::EPSILON;
    let total: f64 = truth
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let row_sum: f64 = proba.row(i).iter().map(|p| p.clamp(eps, 1.0 - eps)).sum();
            -(proba[[i, t]].clamp(eps, 1.0 - eps) / row_sum).ln()
        })
        .sum();
    total / truth.len() as f64
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

    mod properties {
        use super::super::*;
        use ndarray::Array2;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn regression_metric_invariants(
                pairs in proptest::collection::vec((-1e3f64..1e3, -1e3f64..1e3), 2..50),
            ) {
                let truth: Vec<f64> = pairs.iter().map(|p| p.0).collect();
                let predicted: Vec<f64> = pairs.iter().map(|p| p.1).collect();
                let m = RegressionMetrics::compute(
                    ndarray::ArrayView1::from(&truth[..]),
                    ndarray::ArrayView1::from(&predicted[..]),
                );
                prop_assert!(m.mse >= 0.0 && m.mae >= 0.0);
                prop_assert!((m.rmse - m.mse.sqrt()).abs() <= 1e-12 * m.rmse.max(1.0));
                prop_assert!(m.mae <= m.rmse + 1e-9);
                prop_assert!(m.r2 <= 1.0 + 1e-12 && m.explained_variance >= m.r2 - 1e-9);
                let perfect = RegressionMetrics::compute(
                    ndarray::ArrayView1::from(&truth[..]),
                    ndarray::ArrayView1::from(&truth[..]),
                );
                prop_assert_eq!(perfect.mse, 0.0);
                prop_assert_eq!(perfect.r2, 1.0);
            }

            #[test]
            fn classification_metric_invariants(
                rows in proptest::collection::vec((0usize..3, 0.0f64..1.0, 0.0f64..1.0), 3..60),
            ) {
                let truth: Vec<usize> = rows.iter().map(|r| r.0).collect();
                let proba = Array2::from_shape_fn((rows.len(), 3), |(i, k)| {
                    let (a, b) = (rows[i].1, rows[i].2);
                    let raw = [a, b * (1.0 - a), (1.0 - a) * (1.0 - b)];
                    raw[k].max(1e-9)
                });
                let sums = proba.sum_axis(ndarray::Axis(1));
                let proba = &proba / &sums.insert_axis(ndarray::Axis(1));
                let m = ClassificationMetrics::compute(&truth, proba.view());
                let total: u64 = m.confusion_matrix.iter().flatten().sum();
                prop_assert_eq!(total, truth.len() as u64);
                for v in [m.accuracy, m.precision_macro, m.recall_macro, m.f1_macro, m.f1_weighted] {
                    prop_assert!((0.0..=1.0).contains(&v), "{}", v);
                }
                // Weighted recall is accuracy.
                prop_assert!((m.recall_weighted - m.accuracy).abs() < 1e-12);
                prop_assert!(m.log_loss >= 0.0);
                // Binary: reversing the scores mirrors the AUC.
                let positive: Vec<bool> = truth.iter().map(|&t| t == 1).collect();
                let scores = proba.column(1).to_owned();
                let reversed = scores.mapv(|s| -s);
                let auc = roc_auc(positive.iter().copied(), scores.view());
                let mirrored = roc_auc(positive.iter().copied(), reversed.view());
                if auc.is_finite() {
                    prop_assert!((auc + mirrored - 1.0).abs() < 1e-12);
                }
            }
        }
    }
}
