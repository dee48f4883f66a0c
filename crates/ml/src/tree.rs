//! A CART decision tree (scikit-learn's `DecisionTreeRegressor` / `DecisionTreeClassifier`
//! with the best splitter): squared error for regression, Gini impurity for classification,
//! thresholds halfway between neighbouring distinct values.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::MlError;

#[derive(Debug, Clone, PartialEq)]
pub struct TreeSettings {
    pub max_depth: Option<usize>,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
}

impl Default for TreeSettings {
    fn default() -> Self {
        Self {
            max_depth: None,
            min_samples_split: 2,
            min_samples_leaf: 1,
        }
    }
}

/// A node: a split (`feature`, `threshold`, children) or a leaf (`value`: the mean for
/// regression, the class shares for classification).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub feature: usize,
    pub threshold: f64,
    pub left: usize,
    pub right: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionTree {
    pub features: usize,
    /// Width of a leaf value: 1 for regression, the class count for classification.
    pub outputs: usize,
    pub nodes: Vec<Node>,
}

/// What a tree fits: numbers, or class indices.
pub enum TreeTarget<'a> {
    Regression(&'a [f64]),
    Classes { labels: &'a [usize], classes: usize },
}

// scikit-learn's FEATURE_THRESHOLD: values closer than this are not split apart.
const FEATURE_THRESHOLD: f64 = 1e-7;

impl DecisionTree {
    pub fn fit(
        x: ArrayView2<f64>,
        target: TreeTarget,
        settings: &TreeSettings,
    ) -> Result<Self, MlError> {
        let (n, p) = x.dim();
        let rows = match &target {
            TreeTarget::Regression(y) => y.len(),
            TreeTarget::Classes { labels, .. } => labels.len(),
        };
        if rows != n {
            return Err(MlError::Shape(format!(
                "{n} rows of features but {rows} targets"
            )));
        }
        if n == 0 {
            return Err(MlError::Fit("no rows".into()));
        }
        crate::check_finite_features(x)?;
        if let TreeTarget::Regression(y) = &target
            && let Some((i, v)) = y.iter().enumerate().find(|(_, v)| !v.is_finite())
        {
            return Err(MlError::Fit(format!("target at row {i} is {v}")));
        }
        if let TreeTarget::Classes { classes, .. } = &target
            && *classes < 2
        {
            return Err(MlError::Fit(
                "the target has a single class: a classifier needs at least two".into(),
            ));
        }
        if settings.min_samples_split < 2 || settings.min_samples_leaf < 1 {
            return Err(MlError::Input(
                "min_samples_split must be >= 2 and min_samples_leaf >= 1".into(),
            ));
        }
        if settings.max_depth == Some(0) {
            return Err(MlError::Input("max_depth must be at least 1".into()));
        }
        let outputs = match &target {
            TreeTarget::Regression(_) => 1,
            TreeTarget::Classes { classes, .. } => *classes,
        };
        let mut builder = Builder {
            x,
            target,
            settings,
            outputs,
            nodes: Vec::new(),
        };
        let mut all: Vec<usize> = (0..n).collect();
        builder.grow(&mut all, 0);
        Ok(Self {
            features: p,
            outputs,
            nodes: builder.nodes,
        })
    }

    fn leaf(&self, row: ndarray::ArrayView1<f64>) -> &[f64] {
        let mut node = &self.nodes[0];
        while let Some(split) = &node.split {
            node = if row[split.feature] <= split.threshold {
                &self.nodes[split.left]
            } else {
                &self.nodes[split.right]
            };
        }
        &node.value
    }

    /// One row per input row: the predicted value, or the class shares.
    pub fn predict(&self, x: ArrayView2<f64>) -> Result<Array2<f64>, MlError> {
        if x.ncols() != self.features {
            return Err(MlError::Shape(format!(
                "model takes {} features, input has {}",
                self.features,
                x.ncols()
            )));
        }
        let mut out = Array2::zeros((x.nrows(), self.outputs));
        for (i, row) in x.rows().into_iter().enumerate() {
            out.row_mut(i)
                .assign(&ndarray::ArrayView1::from(self.leaf(row)));
        }
        Ok(out)
    }

    /// Checks a deserialised tree: children in range and after their parent (so no cycles).
    pub fn validate(&self) -> Result<(), MlError> {
        if self.nodes.is_empty() {
            return Err(MlError::Bundle("a tree needs at least one node".into()));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            match &node.split {
                Some(s)
                    if s.feature >= self.features
                        || s.left <= i
                        || s.right <= i
                        || s.left >= self.nodes.len()
                        || s.right >= self.nodes.len() =>
                {
                    return Err(MlError::Bundle(format!("tree node {i} is malformed")));
                }
                Some(_) => {}
                None if node.value.len() != self.outputs => {
                    return Err(MlError::Bundle(format!(
                        "tree leaf {i} has {} values, expected {}",
                        node.value.len(),
                        self.outputs
                    )));
                }
                None => {}
            }
        }
        Ok(())
    }
}

struct Builder<'a> {
    x: ArrayView2<'a, f64>,
    target: TreeTarget<'a>,
    settings: &'a TreeSettings,
    outputs: usize,
    nodes: Vec<Node>,
}

impl Builder<'_> {
    fn leaf_value(&self, rows: &[usize]) -> Vec<f64> {
        match &self.target {
            TreeTarget::Regression(y) => {
                vec![rows.iter().map(|&i| y[i]).sum::<f64>() / rows.len() as f64]
            }
            TreeTarget::Classes { labels, classes } => {
                let mut counts = vec![0.0; *classes];
                rows.iter().for_each(|&i| counts[labels[i]] += 1.0);
                counts.iter().map(|c| c / rows.len() as f64).collect()
            }
        }
    }

    fn impurity(&self, rows: &[usize]) -> f64 {
        match &self.target {
            TreeTarget::Regression(y) => {
                let n = rows.len() as f64;
                let mean = rows.iter().map(|&i| y[i]).sum::<f64>() / n;
                rows.iter().map(|&i| (y[i] - mean).powi(2)).sum::<f64>() / n
            }
            TreeTarget::Classes { labels, classes } => {
                let mut counts = vec![0.0; *classes];
                rows.iter().for_each(|&i| counts[labels[i]] += 1.0);
                let n = rows.len() as f64;
                1.0 - counts.iter().map(|c| (c / n) * (c / n)).sum::<f64>()
            }
        }
    }

    /// Adds the subtree over `rows` and returns its node index.
    fn grow(&mut self, rows: &mut [usize], depth: usize) -> usize {
        let index = self.nodes.len();
        self.nodes.push(Node {
            split: None,
            value: self.leaf_value(rows),
        });
        let n = rows.len();
        let can_split = n >= self.settings.min_samples_split
            && n >= 2 * self.settings.min_samples_leaf
            && self.settings.max_depth.is_none_or(|d| depth < d)
            && self.impurity(rows) > 0.0;
        if !can_split {
            return index;
        }
        let Some((feature, threshold)) = self.best_split(rows) else {
            return index;
        };
        // Partition rows in place: left first.
        let mut left_len = 0;
        for i in 0..n {
            if self.x[[rows[i], feature]] <= threshold {
                rows.swap(i, left_len);
                left_len += 1;
            }
        }
        let (left_rows, right_rows) = rows.split_at_mut(left_len);
        let left = self.grow(left_rows, depth + 1);
        let right = self.grow(right_rows, depth + 1);
        self.nodes[index] = Node {
            split: Some(Split {
                feature,
                threshold,
                left,
                right,
            }),
            value: Vec::new(),
        };
        index
    }

    /// The split with the largest impurity decrease, honouring `min_samples_leaf`.
    fn best_split(&self, rows: &[usize]) -> Option<(usize, f64)> {
        let n = rows.len();
        let min_leaf = self.settings.min_samples_leaf;
        let mut best: Option<(f64, usize, f64)> = None;
        let mut order = rows.to_vec();
        let k = self.outputs;
        for feature in 0..self.x.ncols() {
            order.sort_by(|&a, &b| self.x[[a, feature]].total_cmp(&self.x[[b, feature]]));
            let first = self.x[[order[0], feature]];
            let last = self.x[[order[n - 1], feature]];
            if last <= first + FEATURE_THRESHOLD {
                continue;
            }
            // Running sums: for regression (sum, sum of squares), for classes the counts.
            let mut left = vec![0.0; k.max(2)];
            let mut total = vec![0.0; k.max(2)];
            for &i in &order {
                self.accumulate(&mut total, i);
            }
            for split in 1..n {
                self.accumulate(&mut left, order[split - 1]);
                let (a, b) = (
                    self.x[[order[split - 1], feature]],
                    self.x[[order[split], feature]],
                );
                if b <= a + FEATURE_THRESHOLD || split < min_leaf || n - split < min_leaf {
                    continue;
                }
                let score = self.proxy(&left, &total, split, n);
                if best.is_none_or(|(s, _, _)| score > s) {
                    let mut threshold = a / 2.0 + b / 2.0;
                    if threshold == b || !threshold.is_finite() {
                        threshold = a;
                    }
                    best = Some((score, feature, threshold));
                }
            }
        }
        best.map(|(_, feature, threshold)| (feature, threshold))
    }

    fn accumulate(&self, sums: &mut [f64], row: usize) {
        match &self.target {
            TreeTarget::Regression(y) => {
                sums[0] += y[row];
                sums[1] += y[row] * y[row];
            }
            TreeTarget::Classes { labels, .. } => sums[labels[row]] += 1.0,
        }
    }

    /// Larger is better; equal to minus the weighted child impurity up to a constant.
    fn proxy(&self, left: &[f64], total: &[f64], n_left: usize, n: usize) -> f64 {
        let (nl, nr) = (n_left as f64, (n - n_left) as f64);
        match &self.target {
            TreeTarget::Regression(_) => {
                let sum_r = total[0] - left[0];
                left[0] * left[0] / nl + sum_r * sum_r / nr
            }
            TreeTarget::Classes { .. } => {
                let gini_left: f64 = left.iter().map(|c| c * c).sum::<f64>() / nl;
                let gini_right: f64 = left
                    .iter()
                    .zip(total)
                    .map(|(l, t)| (t - l) * (t - l))
                    .sum::<f64>()
                    / nr;
                gini_left + gini_right
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn fits_a_step_function_exactly() {
        let x = array![[1.0], [2.0], [3.0], [10.0], [11.0], [12.0]];
        let y = [0.0, 0.0, 0.0, 5.0, 5.0, 5.0];
        let tree = DecisionTree::fit(
            x.view(),
            TreeTarget::Regression(&y),
            &TreeSettings::default(),
        )
        .unwrap();
        tree.validate().unwrap();
        assert_eq!(tree.nodes.len(), 3);
        assert_eq!(tree.nodes[0].split.as_ref().unwrap().threshold, 6.5);
        let p = tree
            .predict(array![[0.0], [6.4], [6.6], [100.0]].view())
            .unwrap();
        assert_eq!(p.column(0).to_vec(), vec![0.0, 0.0, 5.0, 5.0]);
    }

    #[test]
    fn classifies_and_respects_depth() {
        let x = array![[0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]];
        let labels = [0, 1, 1, 0]; // xor: needs depth 2
        let target = || TreeTarget::Classes {
            labels: &labels,
            classes: 2,
        };
        let deep = DecisionTree::fit(x.view(), target(), &TreeSettings::default()).unwrap();
        let p = deep.predict(x.view()).unwrap();
        for (i, &l) in labels.iter().enumerate() {
            assert_eq!(p[[i, l]], 1.0);
        }
        let stump = DecisionTree::fit(
            x.view(),
            target(),
            &TreeSettings {
                max_depth: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(stump.nodes.len() <= 3);
    }
}
