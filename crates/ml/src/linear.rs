//! Linear regression: ordinary least squares (exact), ridge, lasso and elastic net, gradient
//! descent, and the sufficient statistics that let ridge and OLS train chunk by chunk.
//!
//! The exact OLS solver takes a QR of the centred design, then a thin SVD of its small R factor,
//! and drops singular values below `eps * max(n, p) * s_max`: the minimum-norm least-squares
//! solution scipy's `lstsq` (and so scikit-learn's `LinearRegression`) returns. A rank-deficient design (collinear or
//! duplicated columns) therefore fits, and still predicts exactly on exactly linear data.

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, MatRef, Par, Side};
use ndarray::{Array1, ArrayView1, ArrayView2, Axis};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::MlError;

fn par() -> Par {
    faer::get_global_parallelism()
}

/// Rows per block of the cross-product pass: a block's centred copy (here 2 MiB at 64
/// features) stays in cache and its buffer is reused, so no pass over fresh memory.
const BLOCK_ROWS: usize = 2048;

/// Runs `work(start, end)` over contiguous shares of `0..n`, one per core (at most one per
/// block), and returns the results in row order: tall-and-skinny passes parallelise over rows.
fn over_row_ranges<T: Send>(n: usize, work: impl Fn(usize, usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(n.div_ceil(BLOCK_ROWS))
        .max(1);
    if threads == 1 {
        return vec![work(0, n)];
    }
    let share = n.div_ceil(threads);
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (start, end) = (t * share, ((t + 1) * share).min(n));
                scope.spawn(move || work(start, end))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("row-range worker"))
            .collect()
    })
}

/// One chunk's statistics: row count, means and centred cross-products.
struct ChunkStats {
    mean_x: Array1<f64>,
    mean_y: f64,
    xtx: Mat<f64>,
    xty: Vec<f64>,
    yty: f64,
}

/// The centred cross-products of a chunk in one pass over it. Values are shifted by the
/// chunk's first row (close to the mean, so no cancellation) and the exact centring is applied
/// afterwards: `Xc'Xc = S'S - m d d'` with `d` the mean shifted value. Tall-and-skinny products
/// parallelise poorly over the small `p x p` output, so rows are split between threads instead;
/// each shifts its blocks into one reused, cache-sized buffer.
fn chunk_stats(x: ArrayView2<f64>, y: ArrayView1<f64>) -> ChunkStats {
    let (n, p) = x.dim();
    let shift_x = x.row(0).to_vec();
    let shift_slice = &shift_x[..];
    let shift_y = y[0];
    let partial = |start: usize, end: usize| {
        let mut sxx = Mat::<f64>::zeros(p, p);
        let mut sxy = Mat::<f64>::zeros(p, 1);
        let mut sums = Mat::<f64>::zeros(p, 1);
        let ones = Mat::<f64>::from_fn(BLOCK_ROWS, 1, |_, _| 1.0);
        let (mut sum_y, mut syy) = (0.0, 0.0);
        let mut block = vec![0.0; BLOCK_ROWS.min(end - start) * p];
        let mut y_block = vec![0.0; BLOCK_ROWS.min(end - start)];
        let mut at = start;
        while at < end {
            let rows = BLOCK_ROWS.min(end - at);
            for (r, row) in x
                .slice(ndarray::s![at..at + rows, ..])
                .rows()
                .into_iter()
                .enumerate()
            {
                let out = &mut block[r * p..(r + 1) * p];
                match row.as_slice() {
                    Some(row) => {
                        for ((o, v), s) in out.iter_mut().zip(row).zip(shift_slice) {
                            *o = v - s;
                        }
                    }
                    None => out
                        .iter_mut()
                        .zip(row.iter().zip(shift_slice))
                        .for_each(|(o, (v, s))| *o = v - s),
                }
                let yc = y[at + r] - shift_y;
                y_block[r] = yc;
                sum_y += yc;
                syy += yc * yc;
            }
            let b = MatRef::from_row_major_slice(&block[..rows * p], rows, p);
            let yb = MatRef::from_column_major_slice(&y_block[..rows], rows, 1);
            // The product is symmetric: the lower triangle is half the work.
            triangular::matmul(
                &mut sxx,
                BlockStructure::TriangularLower,
                Accum::Add,
                b.transpose(),
                BlockStructure::Rectangular,
                b,
                BlockStructure::Rectangular,
                1.0,
                Par::Seq,
            );
            matmul(&mut sxy, Accum::Add, b.transpose(), yb, 1.0, Par::Seq);
            matmul(
                &mut sums,
                Accum::Add,
                b.transpose(),
                ones.subrows(0, rows),
                1.0,
                Par::Seq,
            );
            at += rows;
        }
        (sxx, sxy, sums, sum_y, syy)
    };
    let parts = over_row_ranges(n, partial);
    let mut xtx = Mat::<f64>::zeros(p, p);
    let mut sxy = vec![0.0; p];
    let mut sums = vec![0.0; p];
    let (mut sum_y, mut syy) = (0.0, 0.0);
    for (a, b, c, d, e) in parts {
        xtx += a;
        for j in 0..p {
            sxy[j] += b[(j, 0)];
            sums[j] += c[(j, 0)];
        }
        sum_y += d;
        syy += e;
    }
    let m = n as f64;
    let d: Vec<f64> = sums.iter().map(|s| s / m).collect();
    let d_y = sum_y / m;
    // Centre, and mirror the lower triangle.
    for i in 0..p {
        for j in 0..=i {
            xtx[(i, j)] -= m * d[i] * d[j];
            xtx[(j, i)] = xtx[(i, j)];
        }
    }
    ChunkStats {
        mean_x: Array1::from_shape_fn(p, |j| shift_x[j] + d[j]),
        mean_y: shift_y + d_y,
        xty: (0..p).map(|j| sxy[j] - m * d[j] * d_y).collect(),
        xtx,
        yty: syy - m * d_y * d_y,
    }
}

/// The R factor of the QR of `[x - mean_x | y - mean_y]` by tall-skinny QR: each thread
/// folds blocks of rows into a running R (a QR of R stacked on the next block, all in cache),
/// and the threads' Rs are folded last. The same R as one big Householder QR, up to signs,
/// without an `n x p` copy.
fn tall_skinny_r(
    x: ArrayView2<f64>,
    mean_x: &Array1<f64>,
    y: ArrayView1<f64>,
    mean_y: f64,
) -> Mat<f64> {
    let (n, p) = x.dim();
    let width = p + 1;
    // Folds `rows` (given as a closure filling a column-major block) under the running R.
    fn fold(r: Option<Mat<f64>>, block: Mat<f64>) -> Mat<f64> {
        let stacked = match r {
            None => block,
            Some(r) => {
                let (top, width) = (r.nrows(), r.ncols());
                Mat::from_fn(top + block.nrows(), width, |i, j| {
                    if i < top {
                        r[(i, j)]
                    } else {
                        block[(i - top, j)]
                    }
                })
            }
        };
        let qr = stacked.qr();
        let thin = qr.thin_R();
        let rows = thin.nrows().min(thin.ncols());
        thin.subrows(0, rows).to_owned()
    }
    let partial = |start: usize, end: usize| {
        let mut r: Option<Mat<f64>> = None;
        let mut at = start;
        while at < end {
            let rows = BLOCK_ROWS.min(end - at);
            let block = Mat::from_fn(rows, width, |i, j| {
                if j < p {
                    x[[at + i, j]] - mean_x[j]
                } else {
                    y[at + i] - mean_y
                }
            });
            r = Some(fold(r, block));
            at += rows;
        }
        r
    };
    over_row_ranges(n, partial)
        .into_iter()
        .flatten()
        .fold(None, |acc, r| Some(fold(acc, r)))
        .unwrap_or_else(|| Mat::zeros(0, width))
}

fn check_xy(x: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<(), MlError> {
    let (n, _) = x.dim();
    if n != y.len() {
        return Err(MlError::Shape(format!(
            "{n} rows of features but {} targets",
            y.len()
        )));
    }
    if n == 0 {
        return Err(MlError::Fit("no rows".into()));
    }
    crate::check_finite_features(x)?;
    if let Some((i, v)) = y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(MlError::Fit(format!(
            "target at row {i} is {v}: the target must be finite numbers"
        )));
    }
    Ok(())
}

/// A fitted linear model: `y = x . coefficients + intercept`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    pub coefficients: Array1<f64>,
    pub intercept: f64,
}

impl LinearModel {
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

#[derive(Debug, Clone, PartialEq)]
pub struct LinearRegression {
    pub coefficients: Array1<f64>,
    pub intercept: f64,
    /// Numerical rank of the centred design.
    pub rank: usize,
}

impl LinearRegression {
    pub fn fit(x: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<Self, MlError> {
        check_xy(x, y)?;
        let (n, p) = x.dim();
        let x_mean = x.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(p));
        let y_mean = y.mean().unwrap_or_default();
        if p == 0 {
            return Ok(Self {
                coefficients: Array1::zeros(0),
                intercept: y_mean,
                rank: 0,
            });
        }
        // QR of the centred design with the centred target as an extra column: R's last
        // column is Q'y, and R's leading block has X's singular values. Its small SVD then
        // gives the minimum-norm solution without ever forming Q or an n x p SVD.
        let r_full = tall_skinny_r(x, &x_mean, y, y_mean);
        let k = r_full.nrows().min(p);
        let r = r_full.submatrix(0, 0, k, p);
        let qty = r_full.submatrix(0, p, k, 1);
        let svd = r
            .thin_svd()
            .map_err(|e| MlError::Fit(format!("SVD did not converge: {e:?}")))?;
        let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
        let s_max = if s.nrows() > 0 { s[0] } else { 0.0 };
        let cutoff = f64::EPSILON * n.max(p) as f64 * s_max;
        let mut uty = Mat::<f64>::zeros(u.ncols(), 1);
        matmul(&mut uty, Accum::Replace, u.transpose(), qty, 1.0, par());
        let mut coefficients = Array1::<f64>::zeros(p);
        let mut rank = 0;
        for k in 0..s.nrows() {
            if s[k] <= cutoff || s[k] == 0.0 {
                continue;
            }
            rank += 1;
            let projection = uty[(k, 0)] / s[k];
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

    pub fn model(&self) -> LinearModel {
        LinearModel {
            coefficients: self.coefficients.clone(),
            intercept: self.intercept,
        }
    }
}
/// Centred sufficient statistics of `(x, y)`: row count, means, and the centred cross-products
/// `Xc'Xc`, `Xc'yc`, `yc'yc`. Chunks merge exactly (Chan et al.'s pairwise update), so a fit on
/// statistics accumulated chunk by chunk equals the fit on all rows at once, in memory bounded
/// by one chunk plus a `p x p` matrix.
#[derive(Debug, Clone)]
pub struct SufficientStats {
    rows: u64,
    mean_x: Array1<f64>,
    mean_y: f64,
    xtx: Mat<f64>,
    xty: Array1<f64>,
    yty: f64,
}

impl SufficientStats {
    pub fn new(features: usize) -> Self {
        Self {
            rows: 0,
            mean_x: Array1::zeros(features),
            mean_y: 0.0,
            xtx: Mat::zeros(features, features),
            xty: Array1::zeros(features),
            yty: 0.0,
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Adds a chunk of rows.
    pub fn update(&mut self, x: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<(), MlError> {
        check_xy(x, y)?;
        let (m, p) = x.dim();
        if p != self.mean_x.len() {
            return Err(MlError::Shape(format!(
                "chunk has {p} features, earlier chunks had {}",
                self.mean_x.len()
            )));
        }
        let ChunkStats {
            mean_x: chunk_mean_x,
            mean_y: chunk_mean_y,
            xtx: chunk_xtx,
            xty: chunk_xty,
            yty: chunk_yty,
        } = chunk_stats(x, y);
        let (na, nb) = (self.rows as f64, m as f64);
        let n = na + nb;
        let dx = &chunk_mean_x - &self.mean_x;
        let dy = chunk_mean_y - self.mean_y;
        let w = na * nb / n;
        for a in 0..p {
            for b in 0..p {
                self.xtx[(a, b)] += chunk_xtx[(a, b)] + w * dx[a] * dx[b];
            }
            self.xty[a] += chunk_xty[a] + w * dx[a] * dy;
        }
        self.yty += chunk_yty + w * dy * dy;
        self.mean_x = &self.mean_x + &(dx * (nb / n));
        self.mean_y += dy * nb / n;
        self.rows += m as u64;
        Ok(())
    }

    fn intercept_for(&self, coefficients: &Array1<f64>) -> f64 {
        self.mean_y - self.mean_x.dot(coefficients)
    }

    /// Ridge (scikit-learn's `Ridge` with an intercept): solves `(Xc'Xc + alpha I) w = Xc'yc`
    /// by Cholesky. `alpha = 0` is OLS through the normal equations (full rank only).
    pub fn ridge(&self, alpha: f64) -> Result<LinearModel, MlError> {
        if !(alpha >= 0.0 && alpha.is_finite()) {
            return Err(MlError::Input(format!("alpha must be >= 0, got {alpha}")));
        }
        if self.rows == 0 {
            return Err(MlError::Fit("no rows".into()));
        }
        let p = self.mean_x.len();
        let mut a = self.xtx.clone();
        for j in 0..p {
            a[(j, j)] += alpha;
        }
        let b = Mat::from_fn(p, 1, |j, _| self.xty[j]);
        let coefficients = match a.llt(Side::Lower) {
            Ok(llt) => {
                use faer::linalg::solvers::Solve;
                let w = llt.solve(&b);
                Array1::from_shape_fn(p, |j| w[(j, 0)])
            }
            Err(_) => self.min_norm_solution(&a, &b)?,
        };
        Ok(LinearModel {
            intercept: self.intercept_for(&coefficients),
            coefficients,
        })
    }

    /// OLS from the statistics: the minimum-norm solution through an eigendecomposition of
    /// `Xc'Xc`, with eigenvalues below `eps * p * max` treated as zero (a rank-deficient design
    /// fits as with the exact solver).
    pub fn ols(&self) -> Result<LinearModel, MlError> {
        if self.rows == 0 {
            return Err(MlError::Fit("no rows".into()));
        }
        let p = self.mean_x.len();
        let b = Mat::from_fn(p, 1, |j, _| self.xty[j]);
        let coefficients = self.min_norm_solution(&self.xtx, &b)?;
        Ok(LinearModel {
            intercept: self.intercept_for(&coefficients),
            coefficients,
        })
    }

    fn min_norm_solution(&self, a: &Mat<f64>, b: &Mat<f64>) -> Result<Array1<f64>, MlError> {
        let p = a.nrows();
        let eigen = a
            .self_adjoint_eigen(Side::Lower)
            .map_err(|e| MlError::Fit(format!("eigendecomposition failed: {e:?}")))?;
        let (values, vectors) = (eigen.S().column_vector(), eigen.U());
        let largest = (0..p).map(|k| values[k].abs()).fold(0.0, f64::max);
        // Eigenvalues are squared singular values, so the cutoff is squared relative accuracy.
        let cutoff = largest * f64::EPSILON * p.max(1) as f64 * 10.0;
        let mut coefficients = Array1::zeros(p);
        for k in 0..p {
            if values[k] <= cutoff {
                continue;
            }
            let projection: f64 =
                (0..p).map(|j| vectors[(j, k)] * b[(j, 0)]).sum::<f64>() / values[k];
            for j in 0..p {
                coefficients[j] += vectors[(j, k)] * projection;
            }
        }
        Ok(coefficients)
    }
}

/// Ridge regression on rows in memory.
pub fn ridge(x: ArrayView2<f64>, y: ArrayView1<f64>, alpha: f64) -> Result<LinearModel, MlError> {
    let mut stats = SufficientStats::new(x.ncols());
    stats.update(x, y)?;
    stats.ridge(alpha)
}

/// Elastic net by cyclic coordinate descent, as scikit-learn's `ElasticNet` (and `Lasso` at
/// `l1_ratio = 1`): minimises `1/(2n) |y - Xw - b|^2 + alpha l1_ratio |w|_1 +
/// alpha (1 - l1_ratio) / 2 |w|^2`, stopping on the duality gap `<= tol * |yc|^2`.
#[derive(Debug, Clone, PartialEq)]
pub struct ElasticNet {
    pub coefficients: Array1<f64>,
    pub intercept: f64,
    pub iterations: usize,
    pub converged: bool,
}

impl ElasticNet {
    pub fn fit(
        x: ArrayView2<f64>,
        y: ArrayView1<f64>,
        alpha: f64,
        l1_ratio: f64,
        tol: f64,
        max_iter: usize,
    ) -> Result<Self, MlError> {
        check_xy(x, y)?;
        if !(alpha >= 0.0 && alpha.is_finite()) {
            return Err(MlError::Input(format!("alpha must be >= 0, got {alpha}")));
        }
        if !(0.0..=1.0).contains(&l1_ratio) {
            return Err(MlError::Input(format!(
                "l1_ratio must be in [0, 1], got {l1_ratio}"
            )));
        }
        if tol.is_nan() || tol <= 0.0 || max_iter == 0 {
            return Err(MlError::Input(
                "tol must be > 0 and max_iter at least 1".into(),
            ));
        }
        let (n, p) = x.dim();
        let x_mean = x.mean_axis(Axis(0)).expect("rows checked");
        let y_mean = y.mean().expect("rows checked");
        // Column-major centred copy: coordinate descent walks one column at a time.
        let columns: Vec<Vec<f64>> = (0..p)
            .map(|j| x.column(j).iter().map(|v| v - x_mean[j]).collect())
            .collect();
        let yc: Vec<f64> = y.iter().map(|v| v - y_mean).collect();
        let norm_cols: Vec<f64> = columns.iter().map(|c| dot(c, c)).collect();
        let alpha_s = alpha * l1_ratio * n as f64;
        let beta_s = alpha * (1.0 - l1_ratio) * n as f64;
        let tol_s = tol * dot(&yc, &yc);
        let mut w = vec![0.0; p];
        let mut r = yc.clone();
        let (mut iterations, mut converged) = (0, false);
        for iteration in 0..max_iter {
            iterations = iteration + 1;
            let (mut w_max, mut d_w_max) = (0.0f64, 0.0f64);
            for j in 0..p {
                if norm_cols[j] == 0.0 {
                    continue;
                }
                let old = w[j];
                if old != 0.0 {
                    axpy(old, &columns[j], &mut r);
                }
                let rho = dot(&columns[j], &r);
                let new = rho.signum() * (rho.abs() - alpha_s).max(0.0) / (norm_cols[j] + beta_s);
                w[j] = new;
                if new != 0.0 {
                    axpy(-new, &columns[j], &mut r);
                }
                d_w_max = d_w_max.max((new - old).abs());
                w_max = w_max.max(new.abs());
            }
            if w_max == 0.0 || d_w_max / w_max < tol || iteration == max_iter - 1 {
                let gap = duality_gap(&columns, &r, &yc, &w, alpha_s, beta_s);
                if gap <= tol_s {
                    converged = true;
                    break;
                }
            }
        }
        let coefficients = Array1::from(w);
        Ok(Self {
            intercept: y_mean - x_mean.dot(&coefficients),
            coefficients,
            iterations,
            converged,
        })
    }

    pub fn model(&self) -> LinearModel {
        LinearModel {
            coefficients: self.coefficients.clone(),
            intercept: self.intercept,
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    y.iter_mut().zip(x).for_each(|(yi, xi)| *yi += a * xi);
}

fn duality_gap(
    columns: &[Vec<f64>],
    r: &[f64],
    y: &[f64],
    w: &[f64],
    alpha_s: f64,
    beta_s: f64,
) -> f64 {
    let dual_norm = columns
        .iter()
        .zip(w)
        .map(|(c, wj)| (dot(c, r) - beta_s * wj).abs())
        .fold(0.0, f64::max);
    let r_norm2 = dot(r, r);
    let w_norm2 = dot(w, w);
    let (constant, mut gap) = if dual_norm > alpha_s {
        let c = alpha_s / dual_norm;
        (c, 0.5 * (r_norm2 + r_norm2 * c * c))
    } else {
        (1.0, r_norm2)
    };
    let l1: f64 = w.iter().map(|v| v.abs()).sum();
    gap +=
        alpha_s * l1 - constant * dot(r, y) + 0.5 * beta_s * (1.0 + constant * constant) * w_norm2;
    gap
}

/// Settings of the gradient-descent regressor.
#[derive(Debug, Clone, PartialEq)]
pub struct GradientDescentSettings {
    pub learning_rate: f64,
    pub epochs: usize,
    /// Rows per update; 0 (or >= rows) is full-batch gradient descent.
    pub batch_size: usize,
    /// Stop after five epochs in a row that lower the best loss by less than this.
    pub tol: f64,
    pub seed: u64,
}

/// Epochs without improvement after which gradient descent stops.
const NO_CHANGE_EPOCHS: usize = 5;

/// Linear regression by gradient descent on the MSE loss, exactly the textbook update:
/// `w := w - alpha * dL/dw`, `b := b - alpha * dL/db` with `L = 1/m sum (x.w + b - y)^2` over
/// each batch of `m` rows, so `dL/dw = 2/m X'(Xw + b - y)` and `dL/db = 2/m sum(Xw + b - y)`.
#[derive(Debug, Clone, PartialEq)]
pub struct GradientDescent {
    pub coefficients: Array1<f64>,
    pub intercept: f64,
    /// The MSE over all rows after each epoch (index 0 is after the first epoch).
    pub loss_per_epoch: Vec<f64>,
    pub stopped_early: bool,
}

impl GradientDescent {
    pub fn fit(
        x: ArrayView2<f64>,
        y: ArrayView1<f64>,
        settings: &GradientDescentSettings,
    ) -> Result<Self, MlError> {
        Self::fit_with(x, y, settings, &mut |_, _| {})
    }

    /// As [`GradientDescent::fit`], calling `on_epoch(epoch, loss)` after each epoch.
    pub fn fit_with(
        x: ArrayView2<f64>,
        y: ArrayView1<f64>,
        settings: &GradientDescentSettings,
        on_epoch: &mut dyn FnMut(usize, f64),
    ) -> Result<Self, MlError> {
        check_xy(x, y)?;
        let lr = settings.learning_rate;
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(MlError::Input(format!(
                "learning_rate must be > 0, got {lr}"
            )));
        }
        if settings.epochs == 0 {
            return Err(MlError::Input("epochs must be at least 1".into()));
        }
        if settings.tol.is_nan() || settings.tol < 0.0 {
            return Err(MlError::Input(format!(
                "tol must be >= 0, got {}",
                settings.tol
            )));
        }
        let (n, p) = x.dim();
        let batch = if settings.batch_size == 0 || settings.batch_size >= n {
            n
        } else {
            settings.batch_size
        };
        let mut w = Array1::<f64>::zeros(p);
        let mut b = 0.0;
        let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
        let mut order: Vec<usize> = (0..n).collect();
        let mut loss_per_epoch = Vec::with_capacity(settings.epochs);
        let mut stopped_early = false;
        let (mut best_loss, mut stale_epochs) = (f64::INFINITY, 0);
        for epoch in 0..settings.epochs {
            if batch < n {
                order.shuffle(&mut rng);
            }
            for rows in order.chunks(batch) {
                let (gradient_w, gradient_b) = if batch == n {
                    let residual = x.dot(&w) + b - y;
                    (
                        x.t().dot(&residual) * (2.0 / n as f64),
                        residual.sum() * 2.0 / n as f64,
                    )
                } else {
                    let xb = x.select(Axis(0), rows);
                    let yb = y.select(Axis(0), rows);
                    let m = rows.len() as f64;
                    let residual = xb.dot(&w) + b - yb;
                    (xb.t().dot(&residual) * (2.0 / m), residual.sum() * 2.0 / m)
                };
                w.scaled_add(-lr, &gradient_w);
                b -= lr * gradient_b;
            }
            let residual = x.dot(&w) + b - y;
            let loss = residual.dot(&residual) / n as f64;
            if !loss.is_finite()
                || loss_per_epoch
                    .first()
                    .is_some_and(|first: &f64| loss > first * 1e6 && loss > 1e6)
            {
                return Err(MlError::Fit(format!(
                    "gradient descent diverged at epoch {} (loss {loss:e}): learning_rate {lr} is \
                     likely too large; lower it (e.g. {}) or standardize the features",
                    epoch + 1,
                    lr / 10.0
                )));
            }
            loss_per_epoch.push(loss);
            on_epoch(epoch + 1, loss);
            // scikit-learn's rule (n_iter_no_change = 5): stop after five epochs in a row that
            // do not beat the best loss by `tol`, so one noisy mini-batch epoch does not stop it.
            if loss < best_loss - settings.tol {
                stale_epochs = 0;
            } else {
                stale_epochs += 1;
            }
            best_loss = best_loss.min(loss);
            if stale_epochs >= NO_CHANGE_EPOCHS {
                stopped_early = epoch + 1 < settings.epochs;
                break;
            }
        }
        Ok(Self {
            coefficients: w,
            intercept: b,
            loss_per_epoch,
            stopped_early,
        })
    }

    pub fn model(&self) -> LinearModel {
        LinearModel {
            coefficients: self.coefficients.clone(),
            intercept: self.intercept,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2, array};

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

    #[test]
    fn the_seed_case_collinear_columns_predicts_eleven() {
        let x = array![[1.0, 2.0], [2.0, 3.0], [3.0, 4.0], [4.0, 5.0]];
        let y = array![3.0, 5.0, 7.0, 9.0];
        let model = LinearRegression::fit(x.view(), y.view()).unwrap();
        let p = model.predict(array![[5.0, 6.0]].view()).unwrap();
        assert!((p[0] - 11.0).abs() < 1e-9, "{p}");
        let stats = {
            let mut s = SufficientStats::new(2);
            s.update(x.view(), y.view()).unwrap();
            s
        };
        let p = stats
            .ols()
            .unwrap()
            .predict(array![[5.0, 6.0]].view())
            .unwrap();
        assert!((p[0] - 11.0).abs() < 1e-9, "{p}");
        let gd = GradientDescent::fit(
            x.view(),
            y.view(),
            &GradientDescentSettings {
                learning_rate: 0.01,
                epochs: 20_000,
                batch_size: 0,
                tol: 0.0,
                seed: 1,
            },
        )
        .unwrap();
        let p = gd.model().predict(array![[5.0, 6.0]].view()).unwrap();
        assert!((p[0] - 11.0).abs() < 1e-6, "{p}");
    }

    #[test]
    fn chunked_statistics_equal_one_pass() {
        let x = Array2::from_shape_fn((50, 3), |(i, j)| {
            ((i * 31 + j * 17) % 13) as f64 + 100.0 * j as f64
        });
        let y = Array1::from_shape_fn(50, |i| (i % 7) as f64 * 2.0 + x[[i, 0]] - 0.5 * x[[i, 2]]);
        let whole = ridge(x.view(), y.view(), 0.5).unwrap();
        let mut chunked = SufficientStats::new(3);
        for start in (0..50).step_by(7) {
            let end = (start + 7).min(50);
            chunked
                .update(
                    x.slice(ndarray::s![start..end, ..]),
                    y.slice(ndarray::s![start..end]),
                )
                .unwrap();
        }
        let parts = chunked.ridge(0.5).unwrap();
        for (a, b) in whole.coefficients.iter().zip(parts.coefficients.iter()) {
            assert!((a - b).abs() < 1e-9 * a.abs().max(1.0), "{a} vs {b}");
        }
        assert!((whole.intercept - parts.intercept).abs() < 1e-8);
    }

    #[test]
    fn diverging_gradient_descent_names_the_learning_rate() {
        let x = array![[1.0, 200.0], [2.0, 300.0], [3.0, 400.0]];
        let y = array![1.0, 2.0, 3.0];
        let err = GradientDescent::fit(
            x.view(),
            y.view(),
            &GradientDescentSettings {
                learning_rate: 0.5,
                epochs: 500,
                batch_size: 0,
                tol: 0.0,
                seed: 1,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("learning_rate 0.5"), "{err}");
    }

    #[test]
    fn blocked_qr_agrees_with_the_normal_equations_across_many_blocks() {
        // 3 features, 10,000 rows: several blocks per thread, folded across threads.
        let x = Array2::from_shape_fn((10_000, 3), |(i, j)| {
            ((i * (j + 3) * 7919) % 1000) as f64 / 100.0 + j as f64 * 50.0
        });
        let y = Array1::from_shape_fn(10_000, |i| {
            1.5 * x[[i, 0]] - 2.0 * x[[i, 1]] + 0.25 * x[[i, 2]] + ((i * 31) % 17) as f64 * 0.1
        });
        let exact = LinearRegression::fit(x.view(), y.view()).unwrap();
        let mut stats = SufficientStats::new(3);
        stats.update(x.view(), y.view()).unwrap();
        let normal = stats.ols().unwrap();
        for (a, b) in exact.coefficients.iter().zip(normal.coefficients.iter()) {
            assert!((a - b).abs() < 1e-9 * a.abs().max(1.0), "{a} vs {b}");
        }
        assert!((exact.intercept - normal.intercept).abs() < 1e-7);
        assert_eq!(exact.rank, 3);
    }
}
