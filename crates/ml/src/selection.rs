//! Model selection: the seeded train/test split (optionally stratified), k-fold and stratified
//! k-fold cross-validation with scikit-learn's fold assignment, and univariate F scores.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::MlError;

/// Shuffles row indices with a seeded ChaCha8 generator and holds out `ceil(n * test_fraction)`
/// rows (as scikit-learn's `train_test_split` sizes it). Same seed, same split, on every machine.
pub fn train_test_split(
    rows: usize,
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), MlError> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(MlError::Input(format!(
            "test_fraction must be in (0, 1), got {test_fraction}"
        )));
    }
    let test = (rows as f64 * test_fraction).ceil() as usize;
    if test == 0 || test >= rows {
        return Err(MlError::Input(format!(
            "{rows} rows cannot be split with test_fraction {test_fraction}: both parts need a row"
        )));
    }
    let mut order: Vec<usize> = (0..rows).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let train = order.split_off(test);
    Ok((train, order))
}

/// A stratified split: each class holds out its share of `ceil(n * test_fraction)` test rows
/// (largest remainders get the leftover rows), shuffled with the seed.
pub fn stratified_train_test_split(
    labels: &[usize],
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), MlError> {
    let rows = labels.len();
    let (_, plain_test) = train_test_split(rows, test_fraction, seed)?;
    let test_total = plain_test.len();
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    labels
        .iter()
        .enumerate()
        .for_each(|(i, &l)| by_class[l].push(i));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    by_class.iter_mut().for_each(|rows| rows.shuffle(&mut rng));
    let exact: Vec<f64> = by_class
        .iter()
        .map(|r| r.len() as f64 * test_total as f64 / rows as f64)
        .collect();
    let mut take: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut by_remainder: Vec<usize> = (0..classes).collect();
    by_remainder.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    let mut missing = test_total - take.iter().sum::<usize>();
    for &k in by_remainder.iter().cycle().take(classes * 2) {
        if missing == 0 {
            break;
        }
        if take[k] < by_class[k].len() {
            take[k] += 1;
            missing -= 1;
        }
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (k, rows) in by_class.iter().enumerate() {
        test.extend_from_slice(&rows[..take[k]]);
        train.extend_from_slice(&rows[take[k]..]);
    }
    train.shuffle(&mut rng);
    test.shuffle(&mut rng);
    Ok((train, test))
}

fn check_folds(rows: usize, folds: usize) -> Result<(), MlError> {
    if folds < 2 {
        return Err(MlError::Input(format!(
            "cv_folds must be at least 2, got {folds}"
        )));
    }
    if folds > rows {
        return Err(MlError::Input(format!(
            "cv_folds ({folds}) cannot exceed the number of training rows ({rows})"
        )));
    }
    Ok(())
}

/// K-fold test sets over `0..rows`: consecutive blocks, the first `rows % folds` one row
/// larger (scikit-learn's `KFold`); with a seed, over a seeded shuffle of the rows.
pub fn k_fold(
    rows: usize,
    folds: usize,
    shuffle_seed: Option<u64>,
) -> Result<Vec<Vec<usize>>, MlError> {
    check_folds(rows, folds)?;
    let mut order: Vec<usize> = (0..rows).collect();
    if let Some(seed) = shuffle_seed {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    }
    let mut out = Vec::with_capacity(folds);
    let mut start = 0;
    for f in 0..folds {
        let size = rows / folds + usize::from(f < rows % folds);
        out.push(order[start..start + size].to_vec());
        start += size;
    }
    Ok(out)
}

/// Stratified k-fold test sets, assigned exactly as scikit-learn's `StratifiedKFold`
/// (without shuffling): classes ordered by first appearance, each class's rows dealt to folds
/// so that every fold gets its share.
pub fn stratified_k_fold(labels: &[usize], folds: usize) -> Result<Vec<Vec<usize>>, MlError> {
    let rows = labels.len();
    check_folds(rows, folds)?;
    // Re-encode classes by first appearance.
    let mut first_seen: Vec<usize> = Vec::new();
    let encoded: Vec<usize> = labels
        .iter()
        .map(|l| match first_seen.iter().position(|s| s == l) {
            Some(k) => k,
            None => {
                first_seen.push(*l);
                first_seen.len() - 1
            }
        })
        .collect();
    let classes = first_seen.len();
    let mut counts = vec![0usize; classes];
    encoded.iter().for_each(|&k| counts[k] += 1);
    // As scikit-learn: an error only when no class has a row for every fold.
    if counts.iter().all(|&c| c < folds) {
        let largest = counts.iter().max().copied().unwrap_or(0);
        return Err(MlError::Input(format!(
            "cv_folds ({folds}) is more than the rows of every class (the largest has {largest})"
        )));
    }
    let mut sorted = encoded.clone();
    sorted.sort_unstable();
    // allocation[f][k]: rows of class k in fold f = bincount(sorted[f::folds]).
    let mut allocation = vec![vec![0usize; classes]; folds];
    for (i, &k) in sorted.iter().enumerate() {
        allocation[i % folds][k] += 1;
    }
    let mut test_fold = vec![0usize; rows];
    for k in 0..classes {
        let assignment: Vec<usize> = allocation
            .iter()
            .enumerate()
            .flat_map(|(f, counts)| std::iter::repeat_n(f, counts[k]))
            .collect();
        let mut next = assignment.into_iter();
        for (i, &e) in encoded.iter().enumerate() {
            if e == k {
                test_fold[i] = next.next().expect("allocation covers the class");
            }
        }
    }
    Ok((0..folds)
        .map(|f| (0..rows).filter(|&i| test_fold[i] == f).collect())
        .collect())
}

/// The training rows of a fold: all rows not in its test set.
pub fn complement(rows: usize, test: &[usize]) -> Vec<usize> {
    let mut in_test = vec![false; rows];
    test.iter().for_each(|&i| in_test[i] = true);
    (0..rows).filter(|&i| !in_test[i]).collect()
}

/// Univariate F statistic of each feature against the target: scikit-learn's `f_regression`
/// for a numeric target, `f_classif` (one-way ANOVA) for classes.
pub fn f_scores(x: ndarray::ArrayView2<f64>, target: &crate::Target) -> Vec<f64> {
    let n = x.nrows() as f64;
    match target {
        crate::Target::Regression(y) => {
            let y_mean = y.mean().unwrap_or(0.0);
            let y_norm = y.iter().map(|v| (v - y_mean).powi(2)).sum::<f64>().sqrt();
            x.columns()
                .into_iter()
                .map(|c| {
                    let mean = c.mean().unwrap_or(0.0);
                    let norm = c.iter().map(|v| (v - mean).powi(2)).sum::<f64>().sqrt();
                    let cov: f64 = c
                        .iter()
                        .zip(y.iter())
                        .map(|(a, b)| (a - mean) * (b - y_mean))
                        .sum();
                    let r = cov / (norm * y_norm);
                    r * r / (1.0 - r * r) * (n - 2.0)
                })
                .collect()
        }
        crate::Target::Classification { labels, classes } => {
            let k = *classes as f64;
            x.columns()
                .into_iter()
                .map(|c| {
                    let mean = c.mean().unwrap_or(0.0);
                    let mut sums = vec![0.0; *classes];
                    let mut counts = vec![0.0; *classes];
                    for (v, &l) in c.iter().zip(labels) {
                        sums[l] += v;
                        counts[l] += 1.0;
                    }
                    let between: f64 = (0..*classes)
                        .filter(|&g| counts[g] > 0.0)
                        .map(|g| counts[g] * (sums[g] / counts[g] - mean).powi(2))
                        .sum();
                    let within: f64 = c
                        .iter()
                        .zip(labels)
                        .map(|(v, &l)| (v - sums[l] / counts[l]).powi(2))
                        .sum();
                    (between / (k - 1.0)) / (within / (n - k))
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_disjoint_and_sized() {
        let (train, test) = train_test_split(442, 0.2, 42).unwrap();
        assert_eq!(test.len(), 89);
        assert_eq!(train.len(), 353);
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..442).collect::<Vec<_>>());
        assert_eq!(
            train_test_split(442, 0.2, 42).unwrap(),
            (train.clone(), test.clone())
        );
        assert_ne!(train_test_split(442, 0.2, 7).unwrap().1, test);
    }

    #[test]
    fn rejects_impossible_fractions() {
        assert!(train_test_split(10, 0.0, 1).is_err());
        assert!(train_test_split(10, 1.0, 1).is_err());
        assert!(train_test_split(1, 0.5, 1).is_err());
        assert!(train_test_split(10, f64::NAN, 1).is_err());
    }

    #[test]
    fn k_fold_matches_scikit_learn_sizes() {
        let folds = k_fold(10, 3, None).unwrap();
        assert_eq!(folds, vec![vec![0, 1, 2, 3], vec![4, 5, 6], vec![7, 8, 9]]);
        assert!(k_fold(3, 4, None).is_err());
        assert!(k_fold(3, 1, None).is_err());
    }

    #[test]
    fn stratified_k_fold_matches_scikit_learn() {
        // StratifiedKFold(3).split(X, [0,0,0,0,1,1,1,1,1,1]) test sets:
        // [0 1 4 5], [2 6 7], [3 8 9]
        let labels = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1];
        assert_eq!(
            stratified_k_fold(&labels, 3).unwrap(),
            vec![vec![0, 1, 4, 5], vec![2, 6, 7], vec![3, 8, 9]]
        );
    }

    #[test]
    fn stratified_split_keeps_class_shares() {
        let labels: Vec<usize> = (0..100).map(|i| usize::from(i % 4 == 0)).collect();
        let (train, test) = stratified_train_test_split(&labels, 0.2, 3).unwrap();
        assert_eq!(test.len(), 20);
        assert_eq!(train.len() + test.len(), 100);
        assert_eq!(test.iter().filter(|&&i| labels[i] == 1).count(), 5);
    }
}
