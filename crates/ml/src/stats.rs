//! Small numeric helpers with NumPy's definitions, so fitted states match scikit-learn's.

/// Mean and population standard deviation (ddof = 0) of the non-NaN values.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let (sum, n) = values
        .iter()
        .filter(|v| !v.is_nan())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = sum / n as f64;
    let var = values
        .iter()
        .filter(|v| !v.is_nan())
        .map(|v| (v - mean) * (v - mean))
        .sum::<f64>()
        / n as f64;
    (mean, var.sqrt())
}

/// The non-NaN values, sorted.
pub fn sorted_finite(values: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// `numpy.quantile(sorted, q)` with the default linear interpolation; `sorted` is non-empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let lower = position.floor() as usize;
    let upper = (lower + 1).min(sorted.len() - 1);
    let t = position - lower as f64;
    let (a, b) = (sorted[lower], sorted[upper]);
    // NumPy's _lerp: exact at both ends.
    if t >= 0.5 {
        b - (b - a) * (1.0 - t)
    } else {
        a + (b - a) * t
    }
}

/// Minimises a one-dimensional function with Brent's method, starting from the bracket search
/// scipy's `optimize.brent(f, brack=(a, b))` uses.
pub fn brent_minimize(f: impl Fn(f64) -> f64, a: f64, b: f64, tol: f64) -> f64 {
    const GOLD: f64 = 1.618_033_988_749_895;
    const CGOLD: f64 = 0.381_966_011_250_105;
    // Bracket: walk downhill from (a, b) with golden steps until f rises again.
    let (mut xa, mut xb) = (a, b);
    let (mut fa, mut fb) = (f(xa), f(xb));
    if fa < fb {
        std::mem::swap(&mut xa, &mut xb);
        std::mem::swap(&mut fa, &mut fb);
    }
    let mut xc = xb + GOLD * (xb - xa);
    let mut fc = f(xc);
    let mut steps = 0;
    while fc < fb && steps < 100 {
        xa = xb;
        xb = xc;
        fb = fc;
        xc = xb + GOLD * (xb - xa);
        fc = f(xc);
        steps += 1;
    }
    let (mut lo, mut hi) = if xa < xc { (xa, xc) } else { (xc, xa) };
    // Brent's parabolic interpolation with golden-section fallback (Numerical Recipes).
    let (mut x, mut w, mut v) = (xb, xb, xb);
    let (mut fx, mut fw, mut fv) = (fb, fb, fb);
    let (mut d, mut e) = (0.0f64, 0.0f64);
    for _ in 0..500 {
        let xm = 0.5 * (lo + hi);
        let tol1 = tol * x.abs() + 1e-11;
        let tol2 = 2.0 * tol1;
        if (x - xm).abs() <= tol2 - 0.5 * (hi - lo) {
            break;
        }
        let mut golden = true;
        if e.abs() > tol1 {
            let r = (x - w) * (fx - fv);
            let mut q = (x - v) * (fx - fw);
            let mut p = (x - v) * q - (x - w) * r;
            q = 2.0 * (q - r);
            if q > 0.0 {
                p = -p;
            }
            q = q.abs();
            let e_old = e;
            if p.abs() < (0.5 * q * e_old).abs() && p > q * (lo - x) && p < q * (hi - x) {
                e = d;
                d = p / q;
                let u = x + d;
                if u - lo < tol2 || hi - u < tol2 {
                    d = tol1.copysign(xm - x);
                }
                golden = false;
            }
        }
        if golden {
            e = if x >= xm { lo - x } else { hi - x };
            d = CGOLD * e;
        }
        let u = if d.abs() >= tol1 {
            x + d
        } else {
            x + tol1.copysign(d)
        };
        let fu = f(u);
        if fu <= fx {
            if u >= x {
                lo = x;
            } else {
                hi = x;
            }
            (v, fv, w, fw, x, fx) = (w, fw, x, fx, u, fu);
        } else {
            if u < x {
                lo = u;
            } else {
                hi = u;
            }
            if fu <= fw || w == x {
                (v, fv, w, fw) = (w, fw, u, fu);
            } else if fu <= fv || v == x || v == w {
                (v, fv) = (u, fu);
            }
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy() {
        let s = [1.0, 2.0, 4.0, 10.0];
        // numpy.quantile([1, 2, 4, 10], [0, .25, .5, .9, 1])
        assert_eq!(quantile_sorted(&s, 0.0), 1.0);
        assert!((quantile_sorted(&s, 0.25) - 1.75).abs() < 1e-15);
        assert!((quantile_sorted(&s, 0.5) - 3.0).abs() < 1e-15);
        assert!((quantile_sorted(&s, 0.9) - 8.2).abs() < 1e-12);
        assert_eq!(quantile_sorted(&s, 1.0), 10.0);
    }

    #[test]
    fn brent_finds_a_parabola_minimum_outside_the_start_bracket() {
        let x = brent_minimize(|x| (x - 3.7) * (x - 3.7) + 1.0, -2.0, 2.0, 1e-10);
        assert!((x - 3.7).abs() < 1e-7, "{x}");
    }
}
