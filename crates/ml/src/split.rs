//! The seeded train/test split.

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
}
