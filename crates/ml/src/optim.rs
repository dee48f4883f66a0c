//! L-BFGS with a strong-Wolfe line search (Nocedal and Wright, algorithms 7.4, 3.5 and 3.6),
//! the minimiser behind logistic regression.

pub struct LbfgsResult {
    pub x: Vec<f64>,
    pub iterations: usize,
    pub converged: bool,
}

/// Minimises `f`, which returns the value and writes the gradient. Stops when the largest
/// gradient component is at most `gtol` (scipy's `pgtol`, which scikit-learn sets to `tol`).
pub fn lbfgs(
    mut f: impl FnMut(&[f64], &mut [f64]) -> f64,
    x0: Vec<f64>,
    gtol: f64,
    max_iter: usize,
) -> LbfgsResult {
    const MEMORY: usize = 10;
    let n = x0.len();
    let mut x = x0;
    let mut g = vec![0.0; n];
    let mut value = f(&x, &mut g);
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut iterations = 0;
    let inf_norm = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    while iterations < max_iter {
        if inf_norm(&g) <= gtol {
            return LbfgsResult {
                x,
                iterations,
                converged: true,
            };
        }
        iterations += 1;
        // Two-loop recursion: d = -H g.
        let mut q = g.clone();
        let mut alphas = vec![0.0; s_hist.len()];
        for k in (0..s_hist.len()).rev() {
            let rho = 1.0 / dot(&y_hist[k], &s_hist[k]);
            alphas[k] = rho * dot(&s_hist[k], &q);
            axpy(-alphas[k], &y_hist[k], &mut q);
        }
        let gamma = match (s_hist.last(), y_hist.last()) {
            (Some(s), Some(y)) => dot(s, y) / dot(y, y),
            _ => 1.0 / inf_norm(&g).max(1.0),
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for k in 0..s_hist.len() {
            let rho = 1.0 / dot(&y_hist[k], &s_hist[k]);
            let beta = rho * dot(&y_hist[k], &q);
            axpy(alphas[k] - beta, &s_hist[k], &mut q);
        }
        let mut direction: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &direction);
        if slope.is_nan() || slope >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            direction = g.iter().map(|v| -v).collect();
            slope = dot(&g, &direction);
        }
        let Some((step, new_value, new_g)) = line_search(&mut f, &x, value, &g, &direction, slope)
        else {
            break;
        };
        let s: Vec<f64> = direction.iter().map(|d| d * step).collect();
        let y: Vec<f64> = new_g.iter().zip(&g).map(|(a, b)| a - b).collect();
        x.iter_mut().zip(&s).for_each(|(xi, si)| *xi += si);
        let relative_decrease = (value - new_value) / value.abs().max(new_value.abs()).max(1.0);
        value = new_value;
        g = new_g;
        if dot(&s, &y) > 1e-12 * dot(&y, &y).sqrt() * dot(&s, &s).sqrt() {
            if s_hist.len() == MEMORY {
                s_hist.remove(0);
                y_hist.remove(0);
            }
            s_hist.push(s);
            y_hist.push(y);
        }
        // scipy's `ftol` stop, at the value scikit-learn passes (64 eps): the objective no longer
        // decreases measurably, which counts as converged, as it does there.
        if relative_decrease <= 64.0 * f64::EPSILON {
            return LbfgsResult {
                x,
                iterations,
                converged: true,
            };
        }
    }
    let converged = inf_norm(&g) <= gtol;
    LbfgsResult {
        x,
        iterations,
        converged,
    }
}

type Evaluation = (f64, f64, Vec<f64>);

fn line_search(
    f: &mut impl FnMut(&[f64], &mut [f64]) -> f64,
    x: &[f64],
    value0: f64,
    _g0: &[f64],
    direction: &[f64],
    slope0: f64,
) -> Option<(f64, f64, Vec<f64>)> {
    const C1: f64 = 1e-4;
    const C2: f64 = 0.9;
    let n = x.len();
    let mut eval = |step: f64| -> Evaluation {
        let point: Vec<f64> = x.iter().zip(direction).map(|(a, d)| a + step * d).collect();
        let mut g = vec![0.0; n];
        let v = f(&point, &mut g);
        (v, dot(&g, direction), g)
    };
    let (mut prev_step, mut prev_value, mut prev_slope) = (0.0, value0, slope0);
    let mut prev_g: Option<Vec<f64>> = None;
    let mut step = 1.0;
    for i in 0..30 {
        let (v, slope, g) = eval(step);
        if !v.is_finite() {
            step = 0.5 * (prev_step + step);
            continue;
        }
        if v > value0 + C1 * step * slope0 || (i > 0 && v >= prev_value) {
            return zoom(
                &mut eval,
                value0,
                slope0,
                (prev_step, prev_value, prev_slope, prev_g),
                (step, v, slope, Some(g)),
            );
        }
        if slope.abs() <= -C2 * slope0 {
            return Some((step, v, g));
        }
        if slope >= 0.0 {
            return zoom(
                &mut eval,
                value0,
                slope0,
                (step, v, slope, Some(g)),
                (prev_step, prev_value, prev_slope, prev_g),
            );
        }
        (prev_step, prev_value, prev_slope, prev_g) = (step, v, slope, Some(g));
        step *= 2.0;
    }
    prev_g.map(|g| (prev_step, prev_value, g))
}

type Point = (f64, f64, f64, Option<Vec<f64>>);

fn zoom(
    eval: &mut impl FnMut(f64) -> Evaluation,
    value0: f64,
    slope0: f64,
    mut lo: Point,
    mut hi: Point,
) -> Option<(f64, f64, Vec<f64>)> {
    const C1: f64 = 1e-4;
    const C2: f64 = 0.9;
    for _ in 0..40 {
        // Cubic interpolation would be faster; bisection with a safeguard is robust enough.
        let step = interpolate(&lo, &hi);
        let (v, slope, g) = eval(step);
        if v > value0 + C1 * step * slope0 || v >= lo.1 {
            hi = (step, v, slope, Some(g));
        } else {
            if slope.abs() <= -C2 * slope0 {
                return Some((step, v, g));
            }
            if slope * (hi.0 - lo.0) >= 0.0 {
                hi = lo;
            }
            lo = (step, v, slope, Some(g));
        }
        if (hi.0 - lo.0).abs() < 1e-16 {
            break;
        }
    }
    // Accept the best point found if it decreased the function at all.
    match lo {
        (step, v, _, Some(g)) if step > 0.0 && v < value0 => Some((step, v, g)),
        _ => None,
    }
}

/// The minimiser of the quadratic through both ends' values and the low end's slope, kept
/// inside the middle 80% of the interval.
fn interpolate(lo: &Point, hi: &Point) -> f64 {
    let (a, fa, da, _) = lo;
    let (b, fb, _, _) = hi;
    let width = b - a;
    let denominator = 2.0 * (fb - fa - da * width);
    let candidate = if denominator.abs() > 1e-300 {
        a - da * width * width / denominator
    } else {
        a + 0.5 * width
    };
    let (left, right) = if a < b { (*a, *b) } else { (*b, *a) };
    let margin = 0.1 * (right - left);
    if candidate.is_finite() {
        candidate.clamp(left + margin, right - margin)
    } else {
        0.5 * (left + right)
    }
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    y.iter_mut().zip(x).for_each(|(yi, xi)| *yi += a * xi);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_the_rosenbrock_function() {
        let result = lbfgs(
            |x, g| {
                let (a, b) = (x[0], x[1]);
                g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
                g[1] = 200.0 * (b - a * a);
                (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
            },
            vec![-1.2, 1.0],
            1e-10,
            1000,
        );
        assert!(result.converged);
        assert!((result.x[0] - 1.0).abs() < 1e-8 && (result.x[1] - 1.0).abs() < 1e-8);
    }
}
