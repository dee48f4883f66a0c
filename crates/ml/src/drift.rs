//! Data profiles and drift: a compact reference distribution of each input (from the training
//! rows, carried in the bundle), and per-feature drift of a window of live values against it.
//!
//! Methods and thresholds are Evidently's defaults: numeric features use the two-sample
//! Kolmogorov-Smirnov test (drift when p <= 0.05) for up to 1,000 live values and the
//! Wasserstein distance normalised by the reference std (drift when >= 0.1) beyond; categorical
//! features use the chi-square test (p <= 0.05) and the Jensen-Shannon distance (>= 0.1).
//! PSI over the reference deciles is reported for every feature as well.

use std::collections::BTreeMap;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::frame::{Frame, Values};
use crate::stats::{mean_std, quantile_sorted, sorted_finite};

/// Live values up to which the statistical tests are used; larger windows use distances.
pub const SMALL_SAMPLE: usize = 1000;
pub const P_VALUE_THRESHOLD: f64 = 0.05;
pub const DISTANCE_THRESHOLD: f64 = 0.1;
/// Categories kept by name in a profile; the rest are pooled as "other".
const TOP_CATEGORIES: usize = 50;
/// Shares below this are floored in PSI and the chi-square test, as Evidently does.
const MIN_SHARE: f64 = 1e-4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeatureProfile {
    Numeric {
        count: u64,
        missing: u64,
        mean: f64,
        std: f64,
        min: f64,
        max: f64,
        /// The 0%, 1%, ..., 100% quantiles (101 values).
        quantiles: Vec<f64>,
        /// Equal-width histogram over [min, max]: `bins + 1` edges and `bins` counts.
        histogram_edges: Vec<f64>,
        histogram_counts: Vec<u64>,
    },
    Categorical {
        count: u64,
        missing: u64,
        distinct: u64,
        /// Most frequent categories and their shares of the non-missing values.
        top: BTreeMap<String, f64>,
        /// Share of all other categories.
        other: f64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedProfile {
    pub name: String,
    pub profile: FeatureProfile,
}

/// Profiles of every column of a frame, in order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Profile {
    pub features: Vec<NamedProfile>,
}

impl Profile {
    pub fn of(frame: &Frame) -> Self {
        Self {
            features: frame
                .columns()
                .iter()
                .map(|c| NamedProfile {
                    name: c.name.clone(),
                    profile: FeatureProfile::of(&c.values),
                })
                .collect(),
        }
    }

    pub fn feature(&self, name: &str) -> Option<&FeatureProfile> {
        self.features
            .iter()
            .find(|f| f.name == name)
            .map(|f| &f.profile)
    }
}

impl FeatureProfile {
    pub fn of(values: &Values) -> Self {
        match values {
            Values::Numeric(v) => Self::numeric(v),
            Values::Categorical(v) => Self::categorical(v.iter().map(Option::as_deref)),
        }
    }

    /// The profile of numbers (NaN: missing).
    pub fn numeric(v: &[f64]) -> Self {
        let mut summary = NumericSummary::default();
        summary.push_batch(v);
        summary.finish()
    }

    /// The profile of text values (`None`: missing).
    pub fn categorical<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> Self {
        let mut summary = CategoricalSummary::default();
        values.into_iter().for_each(|v| summary.push(v));
        summary.finish()
    }
}

/// Values a numeric summary keeps exactly; past this, quantiles and the histogram come from a
/// KLL sketch (rank error well under 1%) in fixed memory, however many values stream through.
const SKETCH_CAPACITY: usize = 2048;
const HISTOGRAM_BINS: usize = 20;
/// The lowest levels keep at least this many: compacting a few values at a time spends more
/// on starting sorts than on sorting (a profile of ingestion showed it), and a larger floor only
/// makes the sketch more exact.
const MIN_LEVEL_CAPACITY: usize = 256;
/// Accumulators a pass over a batch sums into, side by side: each lane's additions wait on
/// none of the others', so the pass runs at the adder's throughput rather than its latency
/// (it was most of what a batch's moments cost), and the terms pair up more evenly.
const LANES: usize = 8;

/// The sum of `term` over the values, in `LANES` lanes.
fn lane_sum(values: &[f64], term: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0.0; LANES];
    let runs = values.chunks_exact(LANES);
    let rest: f64 = runs.remainder().iter().map(|&x| term(x)).sum();
    for run in runs {
        lanes
            .iter_mut()
            .zip(run)
            .for_each(|(lane, &x)| *lane += term(x));
    }
    lanes.iter().sum::<f64>() + rest
}

/// Halvings a large batch gets by sorting, after sampling: the sample holds 2^this times the
/// sketch's capacity.
const SORTED_HALVINGS: u32 = 4;

/// A numeric profile built one value at a time in bounded memory: count, missing, min, max,
/// mean and std are exact (Welford past the exact range); quantiles and histogram are exact up
/// to `SKETCH_CAPACITY` values and from a deterministic KLL sketch beyond.
#[derive(Debug, Clone, Default)]
pub struct NumericSummary {
    count: u64,
    missing: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    /// Level h holds values standing for 2^h values each.
    levels: Vec<Vec<f64>>,
    /// Each level's capacity, recomputed when a level is added.
    capacities: Vec<usize>,
    compactions: u64,
}

impl NumericSummary {
    pub fn push(&mut self, x: f64) {
        if x.is_nan() {
            self.missing += 1;
            return;
        }
        self.count += 1;
        if self.count == 1 {
            (self.min, self.max) = (x, x);
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
        if self.levels.is_empty() {
            self.add_level();
        }
        self.levels[0].push(x);
        // Only a full lowest level starts a compaction (which may cascade upwards).
        if self.levels[0].len() >= self.capacities[0] {
            self.compact();
        }
    }

    /// Adds a level on top; KLL's capacities: the top level keeps `SKETCH_CAPACITY`, each
    /// lower one 2/3 of the next.
    fn add_level(&mut self) {
        self.levels.push(Vec::new());
        self.fit_capacities();
    }

    fn fit_capacities(&mut self) {
        let height = self.levels.len();
        self.capacities = (0..height)
            .map(|level| {
                let depth = (height - 1 - level) as i32;
                ((SKETCH_CAPACITY as f64) * (2.0f64 / 3.0).powi(depth))
                    .ceil()
                    .max(MIN_LEVEL_CAPACITY as f64) as usize
            })
            .collect();
    }

    /// Halves every full level into the next, from the bottom up: sorted, every other value
    /// kept, the kept half alternating between compactions (deterministic, so the same data
    /// gives the same profile).
    fn compact(&mut self) {
        let mut level = 0;
        while level < self.levels.len() {
            if self.levels[level].len() >= self.capacities[level] {
                if level + 1 == self.levels.len() {
                    self.add_level();
                }
                let mut items = std::mem::take(&mut self.levels[level]);
                items.sort_unstable_by(f64::total_cmp);
                if items.len() % 2 == 1 {
                    self.levels[level].push(items.pop().expect("odd, so not empty"));
                }
                let offset = (self.compactions % 2) as usize;
                self.compactions += 1;
                self.levels[level + 1].extend(items.iter().skip(offset).step_by(2));
            }
            level += 1;
        }
    }

    /// Adds many values at once (NaN: missing). Moments, min and max come from every value
    /// (summed in lanes, so rounded unlike one running sum, in the last bits); a large batch
    /// goes into the sketch as KLL's sampler and compactors would take it: one value drawn at
    /// random from each run of 2^s values (weight 2^s), then sorted once and halved down to the
    /// sketch's capacity. Sorting the whole batch was most of the profile's cost; a sample of 16
    /// times the capacity keeps the sampler's rank error within the compactions' own (eight
    /// times gave 0.7% on a million values, 16 times 0.2%).
    pub fn push_batch(&mut self, values: &[f64]) {
        // One pass for the missing values, the sum, min and max.
        let (mut sum, mut min, mut max) = (
            [0.0; LANES],
            [f64::INFINITY; LANES],
            [f64::NEG_INFINITY; LANES],
        );
        let mut nans = 0;
        let mut add = |lane: usize, x: f64| {
            // A NaN compares false: it moves neither bound. (Between -0 and +0, the first seen
            // in a lane stays, where `f64::min` may keep either.)
            nans += u64::from(x.is_nan());
            sum[lane] += if x.is_nan() { 0.0 } else { x };
            min[lane] = if x < min[lane] { x } else { min[lane] };
            max[lane] = if x > max[lane] { x } else { max[lane] };
        };
        let runs = values.chunks_exact(LANES);
        let rest = runs.remainder();
        runs.for_each(|run| run.iter().enumerate().for_each(|(lane, &x)| add(lane, x)));
        rest.iter().for_each(|&x| add(0, x));
        let sum: f64 = sum.iter().sum();
        let min = min.into_iter().fold(f64::INFINITY, f64::min);
        let max = max.into_iter().fold(f64::NEG_INFINITY, f64::max);
        // Copied only if some are missing.
        let present: Vec<f64>;
        let values = if nans > 0 {
            present = values.iter().copied().filter(|x| !x.is_nan()).collect();
            &present[..]
        } else {
            values
        };
        if values.len() <= SKETCH_CAPACITY {
            self.missing += nans;
            values.iter().for_each(|&x| self.push(x));
            return;
        }
        let count = values.len() as f64;
        let mean = if sum.is_finite() {
            sum / count
        } else {
            // The sum of large values overflowed: each term divided first.
            values.iter().map(|&x| x / count).sum::<f64>()
        };
        let mut batch = NumericSummary {
            count: values.len() as u64,
            missing: nans,
            mean,
            m2: lane_sum(values, |x| (x - mean).powi(2)),
            min,
            max,
            ..Default::default()
        };
        // f64::total_cmp's order, as integers: negative numbers' magnitude bits flipped (its
        // own inverse, so the same turns a key back into the number's bits).
        let flip = |bits: i64| bits ^ (((bits >> 63) as u64) >> 1) as i64;
        let value = |k: i64| f64::from_bits(flip(k) as u64);
        let key = |x: f64| flip(x.to_bits() as i64);
        let halvings = (0u32..)
            .find(|&h| values.len() >> h <= SKETCH_CAPACITY)
            .expect("a length halves to the capacity");
        let sampled = halvings.saturating_sub(SORTED_HALVINGS);
        let run = 1usize << sampled;
        let whole = values.len() / run * run;
        // Seeded by the length alone: the same values give the same profile. A run's length is
        // a power of two, so its pick is `sampled` random bits, drawn 64 at a time.
        let mut rng = ChaCha8Rng::seed_from_u64(values.len() as u64);
        let (mut bits, mut left) = (0u64, 0u32);
        let mut keys: Vec<i64> = values[..whole]
            .chunks_exact(run)
            .map(|run_values| {
                if left < sampled {
                    (bits, left) = (rng.next_u64(), 64);
                }
                let pick = (bits & (run as u64 - 1)) as usize;
                (bits, left) = (bits.checked_shr(sampled).unwrap_or(0), left - sampled);
                key(run_values[pick])
            })
            .collect();
        batch.levels.resize_with(sampled as usize, Vec::new);
        if let Some(bottom) = batch.levels.first_mut() {
            // The values after the last whole run stand for themselves.
            bottom.extend_from_slice(&values[whole..]);
        }
        // By bytes (radix), not comparisons: a quarter less time on these samples, and this
        // sort was most of what profiling a chunk cost.
        radsort::sort(&mut keys);
        while keys.len() > SKETCH_CAPACITY {
            // As a compaction does: an odd one out stays at its level, the rest are halved.
            let odd = (keys.len() % 2 == 1).then(|| keys.pop().expect("odd, so not empty"));
            batch.levels.push(odd.into_iter().map(value).collect());
            let offset = (batch.compactions % 2) as usize;
            batch.compactions += 1;
            // Every other key, moved down in place.
            let kept = (keys.len() - offset).div_ceil(2);
            (0..kept).for_each(|i| keys[i] = keys[offset + 2 * i]);
            keys.truncate(kept);
        }
        batch.levels.push(keys.into_iter().map(value).collect());
        self.merge(batch);
    }

    /// Adds another summary's values (of a later part of the same stream): counts, mean and
    /// std exactly (Chan et al.'s pairwise update), the sketches level by level.
    pub fn merge(&mut self, other: NumericSummary) {
        self.missing += other.missing;
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            let missing = self.missing;
            *self = other;
            self.missing = missing;
            self.fit_capacities();
            self.compact();
            return;
        }
        let total = self.count + other.count;
        let delta = other.mean - self.mean;
        // Weighted, not `mean + delta * share`: the difference of large means overflows.
        self.mean = self.mean * (self.count as f64 / total as f64)
            + other.mean * (other.count as f64 / total as f64);
        self.m2 +=
            other.m2 + delta * delta * (self.count as f64 * other.count as f64) / total as f64;
        self.count = total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.compactions += other.compactions;
        for (level, items) in other.levels.into_iter().enumerate() {
            while self.levels.len() <= level {
                self.add_level();
            }
            self.levels[level].extend(items);
        }
        self.compact();
    }

    /// Values held, whatever the count streamed through.
    pub fn retained(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    pub fn finish(self) -> FeatureProfile {
        if self.count == 0 {
            return FeatureProfile::Numeric {
                count: 0,
                missing: self.missing,
                mean: f64::NAN,
                std: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                quantiles: Vec::new(),
                histogram_edges: Vec::new(),
                histogram_counts: Vec::new(),
            };
        }
        let (min, max) = (self.min, self.max);
        let width = (max - min) / HISTOGRAM_BINS as f64;
        let bin = |x: f64| {
            if width > 0.0 {
                (((x - min) / width) as usize).min(HISTOGRAM_BINS - 1)
            } else {
                0
            }
        };
        let mut histogram_counts = vec![0u64; HISTOGRAM_BINS];
        let (mean, std, quantiles) = if self.levels.len() == 1 {
            // Every value is still here: exact, as NumPy computes them.
            let mut sorted = self.levels.into_iter().next().expect("one level");
            sorted.sort_unstable_by(f64::total_cmp);
            sorted.iter().for_each(|&x| histogram_counts[bin(x)] += 1);
            let (mean, std) = mean_std(&sorted);
            let quantiles = (0..=100)
                .map(|q| quantile_sorted(&sorted, q as f64 / 100.0))
                .collect();
            (mean, std, quantiles)
        } else {
            let mut weighted: Vec<(f64, u64)> = self
                .levels
                .iter()
                .enumerate()
                .flat_map(|(h, items)| items.iter().map(move |&x| (x, 1u64 << h)))
                .collect();
            weighted.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
            weighted
                .iter()
                .for_each(|&(x, w)| histogram_counts[bin(x)] += w);
            let total: u64 = weighted.iter().map(|w| w.1).sum();
            let quantiles = (0..=100)
                .map(|q| match q {
                    0 => min,
                    100 => max,
                    q => {
                        let rank = q as f64 / 100.0 * total as f64;
                        let mut seen = 0u64;
                        weighted
                            .iter()
                            .find(|(_, w)| {
                                seen += w;
                                seen as f64 >= rank
                            })
                            .map_or(max, |w| w.0)
                    }
                })
                .collect();
            let std = (self.m2 / self.count as f64).sqrt();
            (self.mean, std, quantiles)
        };
        FeatureProfile::Numeric {
            count: self.count,
            missing: self.missing,
            mean,
            std,
            min,
            max,
            quantiles,
            histogram_edges: (0..=HISTOGRAM_BINS)
                .map(|i| min + width * i as f64)
                .collect(),
            histogram_counts,
        }
    }
}

/// Distinct categories a categorical summary counts exactly; past this, the rarest half is
/// dropped whenever it fills (the frequent ones, which the profile keeps, stay counted), so
/// memory stays bounded and `distinct` becomes an estimate.
const CATEGORY_CAPACITY: usize = 20_000;

/// A categorical profile built one value at a time.
#[derive(Debug, Clone, Default)]
pub struct CategoricalSummary {
    /// Hashed fast (the order of the map never shows: `finish` ranks by count, then name).
    counts: foldhash::HashMap<String, u64>,
    missing: u64,
    present: u64,
    /// Categories dropped to stay within `CATEGORY_CAPACITY`.
    dropped: u64,
}

impl CategoricalSummary {
    pub fn push(&mut self, value: Option<&str>) {
        let Some(value) = value else {
            self.missing += 1;
            return;
        };
        self.present += 1;
        if let Some(count) = self.counts.get_mut(value) {
            *count += 1;
            return;
        }
        self.counts.insert(value.to_owned(), 1);
        self.bound();
    }

    /// Adds another summary's counts (of a later part of the same stream).
    pub fn merge(&mut self, other: CategoricalSummary) {
        self.missing += other.missing;
        self.present += other.present;
        self.dropped += other.dropped;
        for (value, count) in other.counts {
            *self.counts.entry(value).or_insert(0) += count;
        }
        self.bound();
    }

    /// Past the capacity, drops the rarer half.
    fn bound(&mut self) {
        if self.counts.len() > CATEGORY_CAPACITY {
            let mut by_count: Vec<u64> = self.counts.values().copied().collect();
            let (_, &mut median, _) = by_count.select_nth_unstable(CATEGORY_CAPACITY / 2);
            let before = self.counts.len();
            self.counts.retain(|_, c| *c > median);
            self.dropped += (before - self.counts.len()) as u64;
        }
    }

    pub fn finish(self) -> FeatureProfile {
        let present = self.present;
        let mut ranked: Vec<(&str, u64)> =
            self.counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let top: BTreeMap<String, f64> = ranked
            .iter()
            .take(TOP_CATEGORIES)
            .map(|(k, c)| (k.to_string(), *c as f64 / present.max(1) as f64))
            .collect();
        let other = 1.0 - top.values().sum::<f64>();
        FeatureProfile::Categorical {
            count: present,
            missing: self.missing,
            distinct: self.counts.len() as u64 + self.dropped,
            top,
            other: if present == 0 { 0.0 } else { other.max(0.0) },
        }
    }
}

/// Drift of one feature's live window against its profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    pub feature: String,
    /// `ks`, `wasserstein`, `chi_square` or `jensen_shannon`.
    pub method: String,
    /// The test's statistic or the distance.
    pub statistic: f64,
    /// For the tests; NaN for distances.
    pub p_value: f64,
    /// PSI over the reference deciles (numeric) or categories.
    pub psi: f64,
    pub threshold: f64,
    pub drifted: bool,
    pub samples: usize,
}

/// Drift of `live` (NaN / `None` for missing values, which are skipped) against `profile`.
/// `None` when there is no live value or no reference.
pub fn feature_drift(name: &str, profile: &FeatureProfile, live: &Values) -> Option<FeatureDrift> {
    match (profile, live) {
        (
            FeatureProfile::Numeric {
                count,
                std,
                quantiles,
                ..
            },
            Values::Numeric(v),
        ) => {
            let sorted = sorted_finite(v);
            if sorted.is_empty() || quantiles.len() < 2 {
                return None;
            }
            let m = sorted.len();
            let psi = numeric_psi(quantiles, &sorted);
            let (method, statistic, p_value, threshold, drifted) = if m <= SMALL_SAMPLE {
                let d = ks_statistic(quantiles, &sorted);
                let p = ks_p_value(d, *count as f64, m as f64);
                ("ks", d, p, P_VALUE_THRESHOLD, p <= P_VALUE_THRESHOLD)
            } else {
                let w = wasserstein(quantiles, &sorted) / std.max(1e-3);
                let drifted = w >= DISTANCE_THRESHOLD;
                ("wasserstein", w, f64::NAN, DISTANCE_THRESHOLD, drifted)
            };
            Some(FeatureDrift {
                feature: name.into(),
                method: method.into(),
                statistic,
                p_value,
                psi,
                threshold,
                drifted,
                samples: m,
            })
        }
        (FeatureProfile::Categorical { top, other, .. }, Values::Categorical(v)) => {
            let present: Vec<&str> = v.iter().flatten().map(String::as_str).collect();
            if present.is_empty() {
                return None;
            }
            let m = present.len() as f64;
            // Buckets: the profile's categories, then "other" (everything else).
            let names: Vec<&String> = top.keys().collect();
            let mut live_counts = vec![0.0; names.len() + 1];
            for value in &present {
                match names.binary_search_by(|n| n.as_str().cmp(value)) {
                    Ok(k) => live_counts[k] += 1.0,
                    Err(_) => live_counts[names.len()] += 1.0,
                }
            }
            let mut expected: Vec<f64> = top.values().copied().collect();
            expected.push(*other);
            let actual: Vec<f64> = live_counts.iter().map(|c| c / m).collect();
            let psi = psi(&expected, &actual);
            let (method, statistic, p_value, threshold, drifted) = if present.len() <= SMALL_SAMPLE
            {
                let (chi, dof) = chi_square(&expected, &live_counts, m);
                let p = chi_square_p_value(chi, dof);
                (
                    "chi_square",
                    chi,
                    p,
                    P_VALUE_THRESHOLD,
                    p <= P_VALUE_THRESHOLD,
                )
            } else {
                let js = jensen_shannon(&expected, &actual);
                (
                    "jensen_shannon",
                    js,
                    f64::NAN,
                    DISTANCE_THRESHOLD,
                    js >= DISTANCE_THRESHOLD,
                )
            };
            Some(FeatureDrift {
                feature: name.into(),
                method: method.into(),
                statistic,
                p_value,
                psi,
                threshold,
                drifted,
                samples: present.len(),
            })
        }
        _ => None,
    }
}

/// The reference CDF at `x`, from the quantile function by linear interpolation
/// (right-continuous where quantiles tie).
fn reference_cdf(quantiles: &[f64], x: f64) -> f64 {
    let last = quantiles.len() - 1;
    if x < quantiles[0] {
        return 0.0;
    }
    if x >= quantiles[last] {
        return 1.0;
    }
    // The last quantile <= x.
    let k = quantiles.partition_point(|&q| q <= x) - 1;
    let (lo, hi) = (quantiles[k], quantiles[k + 1]);
    let within = if hi > lo { (x - lo) / (hi - lo) } else { 1.0 };
    (k as f64 + within) / last as f64
}

/// The reference quantile function at `u` in [0, 1].
fn reference_quantile(quantiles: &[f64], u: f64) -> f64 {
    let position = u * (quantiles.len() - 1) as f64;
    let k = (position.floor() as usize).min(quantiles.len() - 2);
    let t = position - k as f64;
    quantiles[k] + (quantiles[k + 1] - quantiles[k]) * t
}

/// Two-sample KS statistic: the largest gap between the live ECDF and the reference CDF.
fn ks_statistic(quantiles: &[f64], sorted: &[f64]) -> f64 {
    let m = sorted.len() as f64;
    let mut d = 0.0f64;
    let mut i = 0;
    while i < sorted.len() {
        let x = sorted[i];
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == x {
            j += 1;
        }
        let f = reference_cdf(quantiles, x);
        // Just below x the ECDF is i/m; at x it is (j+1)/m.
        let below = reference_cdf(quantiles, x - x.abs().max(1.0) * 1e-12);
        d = d
            .max((i as f64 / m - below).abs())
            .max(((j + 1) as f64 / m - f).abs());
        i = j + 1;
    }
    d
}

/// Asymptotic two-sample KS p-value (Numerical Recipes' `probks` with the small-sample
/// correction), with effective size `n m / (n + m)`.
fn ks_p_value(d: f64, n: f64, m: f64) -> f64 {
    let en = (n * m / (n + m)).sqrt();
    let lambda = (en + 0.12 + 0.11 / en) * d;
    if lambda < 1e-3 {
        return 1.0;
    }
    let mut sum = 0.0;
    let mut sign = 1.0;
    for k in 1..=100 {
        let term = sign * 2.0 * (-2.0 * (k as f64 * lambda).powi(2)).exp();
        sum += term;
        if term.abs() < 1e-12 {
            break;
        }
        sign = -sign;
    }
    sum.clamp(0.0, 1.0)
}

/// Wasserstein-1 distance between the live sample and the reference, as the integral of the
/// gap between the two quantile functions.
fn wasserstein(quantiles: &[f64], sorted: &[f64]) -> f64 {
    const STEPS: usize = 2000;
    let m = sorted.len();
    (0..STEPS)
        .map(|s| {
            let u = (s as f64 + 0.5) / STEPS as f64;
            let live = sorted[((u * m as f64) as usize).min(m - 1)];
            (live - reference_quantile(quantiles, u)).abs()
        })
        .sum::<f64>()
        / STEPS as f64
}

fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    expected
        .iter()
        .zip(actual)
        .map(|(e, a)| {
            let (e, a) = (e.max(MIN_SHARE), a.max(MIN_SHARE));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// PSI over the ten reference deciles.
fn numeric_psi(quantiles: &[f64], sorted: &[f64]) -> f64 {
    let edges: Vec<f64> = (1..10)
        .map(|d| reference_quantile(quantiles, d as f64 / 10.0))
        .collect();
    let mut counts = [0.0; 10];
    for &x in sorted {
        counts[edges.partition_point(|&e| e < x)] += 1.0;
    }
    let m = sorted.len() as f64;
    let actual: Vec<f64> = counts.iter().map(|c| c / m).collect();
    psi(&[0.1; 10], &actual)
}

/// Pearson's chi-square of live counts against the reference shares; buckets the reference
/// never saw count against the floored share. Returns the statistic and degrees of freedom.
fn chi_square(expected: &[f64], observed: &[f64], m: f64) -> (f64, f64) {
    let used: Vec<(f64, f64)> = expected
        .iter()
        .zip(observed)
        .filter(|(e, o)| **e > 0.0 || **o > 0.0)
        .map(|(e, o)| (e.max(MIN_SHARE) * m, *o))
        .collect();
    let statistic = used.iter().map(|(e, o)| (o - e) * (o - e) / e).sum();
    (statistic, (used.len().max(2) - 1) as f64)
}

fn chi_square_p_value(statistic: f64, dof: f64) -> f64 {
    upper_incomplete_gamma(dof / 2.0, statistic / 2.0)
}

/// Jensen-Shannon distance (natural log, as scipy's default): the square root of the mean KL
/// divergence of each distribution from their average.
fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
    let kl = |a: &[f64], b: &[f64]| -> f64 {
        a.iter()
            .zip(b)
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, y)| x * (x / y).ln())
            .sum()
    };
    let mid: Vec<f64> = p.iter().zip(q).map(|(a, b)| (a + b) / 2.0).collect();
    ((kl(p, &mid) + kl(q, &mid)) / 2.0).max(0.0).sqrt()
}

fn ln_gamma(x: f64) -> f64 {
    // Lanczos approximation (g = 7, n = 9).
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = COEFFICIENTS[0];
    let t = x + 7.5;
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularised upper incomplete gamma function Q(a, x) (Numerical Recipes' `gammq`).
fn upper_incomplete_gamma(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let front = (-x + a * x.ln() - ln_gamma(a)).exp();
    if x < a + 1.0 {
        // Series for P, then Q = 1 - P.
        let (mut sum, mut term, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..500 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        (1.0 - sum * front).clamp(0.0, 1.0)
    } else {
        // Continued fraction (Lentz).
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..500 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-15 {
                break;
            }
        }
        (front * h).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Column;

    fn normal_like(n: usize, shift: f64, scale: f64) -> Vec<f64> {
        // A deterministic bell-shaped sample: sums of three uniform-ish sequences.
        (0..n)
            .map(|i| {
                let a = ((i * 7919) % 1000) as f64 / 1000.0;
                let b = ((i * 104_729) % 997) as f64 / 997.0;
                let c = ((i * 1_299_709) % 991) as f64 / 991.0;
                (a + b + c - 1.5) * scale + shift
            })
            .collect()
    }

    fn reference(values: Vec<f64>) -> FeatureProfile {
        FeatureProfile::of(&Values::Numeric(values))
    }

    #[test]
    fn streaming_summaries_stay_exact_when_small_and_close_when_large() {
        let small = normal_like(2000, 3.0, 2.0);
        let FeatureProfile::Numeric {
            quantiles, mean, ..
        } = FeatureProfile::numeric(&small)
        else {
            unreachable!()
        };
        let sorted = sorted_finite(&small);
        assert_eq!(quantiles[37], quantile_sorted(&sorted, 0.37));
        assert_eq!(mean, mean_std(&sorted).0);

        // A million values through the sketch: every quantile within 1% in rank.
        let n: usize = 1_000_000;
        let values: Vec<f64> = (0..n).map(|i| ((i * 7_919) % n) as f64).collect();
        let FeatureProfile::Numeric {
            count,
            quantiles,
            histogram_counts,
            mean,
            min,
            max,
            ..
        } = FeatureProfile::numeric(&values)
        else {
            unreachable!()
        };
        assert_eq!(count, n as u64);
        assert_eq!(histogram_counts.iter().sum::<u64>(), n as u64);
        let mut summary = NumericSummary::default();
        values.iter().for_each(|&x| summary.push(x));
        assert!(
            summary.retained() <= 4 * SKETCH_CAPACITY,
            "{}",
            summary.retained()
        );
        assert_eq!((min, max), (0.0, (n - 1) as f64));
        assert!((mean - (n - 1) as f64 / 2.0).abs() < 1e-6);
        for (q, value) in quantiles.iter().enumerate() {
            let rank_error = (value / n as f64 - q as f64 / 100.0).abs();
            assert!(rank_error < 0.01, "quantile {q}: {value}");
        }
        // The same values summarised in parts and merged (as parallel ingestion does): exact
        // moments, quantiles within 1% in rank, and a small stream still exact.
        let mut merged = NumericSummary::default();
        for (i, part) in values.chunks(65_536).enumerate() {
            let mut summary = NumericSummary::default();
            // One by one, and in batches (sorted once, halved to the sketch).
            if i % 2 == 0 {
                part.iter().for_each(|&x| summary.push(x));
            } else {
                summary.push_batch(part);
            }
            merged.merge(summary);
        }
        let FeatureProfile::Numeric {
            count: merged_count,
            quantiles: merged_quantiles,
            histogram_counts: merged_histogram,
            mean: merged_mean,
            ..
        } = merged.finish()
        else {
            unreachable!()
        };
        assert_eq!(merged_count, n as u64);
        assert_eq!(merged_histogram.iter().sum::<u64>(), n as u64);
        assert!((merged_mean - mean).abs() < 1e-6);
        for (q, value) in merged_quantiles.iter().enumerate() {
            let rank_error = (value / n as f64 - q as f64 / 100.0).abs();
            assert!(rank_error < 0.01, "merged quantile {q}: {value}");
        }
        let (mut left, mut right) = (NumericSummary::default(), NumericSummary::default());
        small[..3].iter().for_each(|&x| left.push(x));
        small[3..].iter().for_each(|&x| right.push(x));
        left.merge(right);
        assert_eq!(left.finish(), FeatureProfile::numeric(&small));

        // Categories past the exact capacity: the frequent ones keep their shares.
        let mut summary = CategoricalSummary::default();
        for i in 0..200_000u64 {
            let text = if i % 2 == 0 {
                "common".to_string()
            } else {
                format!("rare{i}")
            };
            summary.push(Some(&text));
        }
        let FeatureProfile::Categorical { top, count, .. } = summary.finish() else {
            unreachable!()
        };
        assert_eq!(count, 200_000);
        assert_eq!(top["common"], 0.5);
    }

    #[test]
    fn a_large_batch_is_sampled_within_the_sketchs_error() {
        // Sorted (each sampled run holds neighbours) and scrambled, with a length that leaves
        // a part-run at the end; the sampled runs are 32 values long at this size.
        let n: usize = 1_000_003;
        let scrambled: Vec<f64> = (0..n).map(|i| ((i * 7_919) % n) as f64).collect();
        let sorted: Vec<f64> = (0..n).map(|i| i as f64).collect();
        for values in [&scrambled, &sorted] {
            let mut summary = NumericSummary::default();
            summary.push_batch(&[values.as_slice(), &[f64::NAN]].concat());
            assert!(summary.retained() <= 2 * SKETCH_CAPACITY);
            let mut again = NumericSummary::default();
            again.push_batch(&[values.as_slice(), &[f64::NAN]].concat());
            let profile = summary.finish();
            assert_eq!(profile, again.finish(), "the same values, the same profile");
            let FeatureProfile::Numeric {
                count,
                missing,
                quantiles,
                histogram_counts,
                mean,
                min,
                max,
                ..
            } = profile
            else {
                unreachable!()
            };
            assert_eq!((count, missing), (n as u64, 1));
            assert_eq!(histogram_counts.iter().sum::<u64>(), n as u64);
            assert_eq!((min, max), (0.0, (n - 1) as f64));
            assert!((mean - (n - 1) as f64 / 2.0).abs() < 1e-6);
            for (q, value) in quantiles.iter().enumerate() {
                let rank_error = (value / n as f64 - q as f64 / 100.0).abs();
                assert!(rank_error < 0.005, "quantile {q}: {value}");
            }
            // Each histogram bin holds a twentieth of these uniform values, give or take the
            // sketch's error.
            for (bin, &c) in histogram_counts.iter().enumerate() {
                let share = c as f64 / n as f64;
                assert!((share - 0.05).abs() < 0.005, "bin {bin}: {share}");
            }
        }
    }

    #[test]
    fn same_distribution_does_not_drift_and_a_shift_does() {
        let profile = reference(normal_like(20_000, 0.0, 1.0));
        for (n, method) in [(500, "ks"), (5000, "wasserstein")] {
            let same =
                feature_drift("x", &profile, &Values::Numeric(normal_like(n, 0.0, 1.0))).unwrap();
            assert_eq!(same.method, method);
            assert!(!same.drifted, "{same:?}");
            assert!(same.psi < 0.1, "{same:?}");
            let shifted =
                feature_drift("x", &profile, &Values::Numeric(normal_like(n, 0.8, 1.0))).unwrap();
            assert!(shifted.drifted, "{shifted:?}");
            assert!(shifted.psi > 0.1, "{shifted:?}");
        }
    }

    #[test]
    fn categorical_drift_uses_chi_square_then_jensen_shannon() {
        let values = |n: usize, share_b: f64| -> Values {
            Values::Categorical(
                (0..n)
                    .map(|i| {
                        Some(
                            if (i as f64 / n as f64) < share_b {
                                "b"
                            } else {
                                "a"
                            }
                            .to_string(),
                        )
                    })
                    .collect(),
            )
        };
        let profile = FeatureProfile::of(&values(10_000, 0.3));
        let same = feature_drift("c", &profile, &values(600, 0.3)).unwrap();
        assert_eq!(same.method, "chi_square");
        assert!(!same.drifted && same.p_value > 0.5, "{same:?}");
        let moved = feature_drift("c", &profile, &values(600, 0.6)).unwrap();
        assert!(moved.drifted && moved.p_value < 1e-6, "{moved:?}");
        let large = feature_drift("c", &profile, &values(5000, 0.7)).unwrap();
        assert_eq!(large.method, "jensen_shannon");
        assert!(large.drifted, "{large:?}");
    }

    #[test]
    fn special_functions_match_known_values() {
        // chi2.sf(3.84, 1) = 0.05004352; chi2.sf(10, 4) = 0.04042768.
        assert!((chi_square_p_value(3.84, 1.0) - 0.050_043_52).abs() < 1e-6);
        assert!((chi_square_p_value(10.0, 4.0) - 0.040_427_68).abs() < 1e-6);
        // The Kolmogorov distribution: Q(1.36) ~ 0.0495.
        assert!((ks_p_value(1.36 / 1e3f64.sqrt(), 1e9, 1e3) - 0.0495).abs() < 3e-3);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn a_profile_summarises_a_frame() {
        let frame = Frame::new(vec![
            Column::numeric("x", vec![1.0, 2.0, 3.0, f64::NAN]),
            Column::categorical(
                "c",
                vec![Some("u".into()), None, Some("u".into()), Some("v".into())],
            ),
        ])
        .unwrap();
        let profile = Profile::of(&frame);
        let FeatureProfile::Numeric {
            count,
            missing,
            quantiles,
            histogram_counts,
            ..
        } = profile.feature("x").unwrap()
        else {
            panic!()
        };
        assert_eq!((*count, *missing), (3, 1));
        assert_eq!(quantiles[50], 2.0);
        assert_eq!(histogram_counts.iter().sum::<u64>(), 3);
        let FeatureProfile::Categorical {
            top,
            missing,
            distinct,
            ..
        } = profile.feature("c").unwrap()
        else {
            panic!()
        };
        assert_eq!((*missing, *distinct), (1, 2));
        assert!((top["u"] - 2.0 / 3.0).abs() < 1e-12);
    }
}
