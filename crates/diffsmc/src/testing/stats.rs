//! Small numerical helpers of the checkers: the normal CDF, the 1-Wasserstein distance of a
//! weighted sample to a normal law, and running means.

/// `erfc(x)` with fractional error below 1.2e-7 everywhere (Chebyshev fit of Press et al.,
/// *Numerical Recipes*, §6.2).
pub(crate) fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let ans = t * poly.exp();
    if x >= 0.0 { ans } else { 2.0 - ans }
}

/// The standard normal CDF `Φ(x)`.
pub(crate) fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// The standard normal density `φ(x)`.
pub(crate) fn normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// `G(x) = ∫_{−∞}^x Φ = x Φ(x) + φ(x)`.
fn int_cdf(x: f64) -> f64 {
    x * normal_cdf(x) + normal_pdf(x)
}

/// `∫_a^b |c − Φ(x)| dx` for `a ≤ b`, splitting at the crossing `Φ(x*) = c` if there is one.
fn int_abs_gap(a: f64, b: f64, c: f64) -> f64 {
    if b <= a {
        return 0.0;
    }
    let (fa, fb) = (normal_cdf(a), normal_cdf(b));
    let signed = |lo: f64, hi: f64| c * (hi - lo) - (int_cdf(hi) - int_cdf(lo));
    if fa >= c || fb <= c {
        return signed(a, b).abs();
    }
    // Φ(a) < c < Φ(b): bisection for the crossing.
    let (mut lo, mut hi) = (a, b);
    for _ in 0..80 {
        let mid = 0.5 * (lo + hi);
        if normal_cdf(mid) < c {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let x = 0.5 * (lo + hi);
    signed(a, x).abs() + signed(x, b).abs()
}

/// `W1(Σ_i w_i δ_{x_i}, N(m, s²)) = ∫ |F_n − Φ((· − m)/s)|`, exactly up to the accuracy of `Φ`
/// (weights need not be normalised; non-positive weights are ignored).
pub(crate) fn w1_to_normal(x: &[f64], w: &[f64], m: f64, s: f64) -> f64 {
    let mut pts: Vec<(f64, f64)> = x
        .iter()
        .zip(w)
        .filter(|(_, w)| **w > 0.0)
        .map(|(x, w)| ((x - m) / s, *w))
        .collect();
    if pts.is_empty() {
        return f64::NAN;
    }
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = pts.iter().map(|p| p.1).sum();
    let first = pts[0].0;
    let last = pts[pts.len() - 1].0;
    // Left tail: F_n = 0. Right tail: F_n = 1, ∫_b^∞ (1 − Φ) = φ(b) − b Φ(−b).
    let mut acc = int_cdf(first) + (normal_pdf(last) - last * normal_cdf(-last));
    let mut cum = 0.0;
    for k in 0..pts.len() - 1 {
        cum += pts[k].1;
        acc += int_abs_gap(pts[k].0, pts[k + 1].0, (cum / total).min(1.0));
    }
    acc * s
}

/// Mean and standard error (sample sd / √n) of a sample; `(NaN, NaN)` when empty, `se = 0`
/// for a single value.
pub(crate) fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (m, 0.0);
    }
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64;
    (m, (var / n as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_matches_reference_values() {
        // Values of Φ to 16 digits.
        for (x, p) in [
            (0.0, 0.5),
            (1.0, 0.841_344_746_068_542_9),
            (1.96, 0.975_002_104_851_779_5),
            (-3.0, 0.001_349_898_031_630_094_6),
            (-6.0, 9.865_876_450_376_98e-10),
        ] {
            let got = normal_cdf(x);
            assert!((got - p).abs() <= 2e-7 * p, "Φ({x}) = {got} vs {p}");
        }
    }

    /// W1 of a point mass at m to N(m, 1) is E|Z| = √(2/π); a large stratified sample of the
    /// normal (quantiles) has W1 close to 0; shifting by δ moves W1 to about δ.
    #[test]
    fn w1_known_cases() {
        let w1 = w1_to_normal(&[2.0], &[1.0], 2.0, 1.0);
        assert!(
            (w1 - (2.0 / std::f64::consts::PI).sqrt()).abs() < 1e-6,
            "{w1}"
        );
        let w1s = w1_to_normal(&[2.0], &[1.0], 2.0, 3.0);
        assert!((w1s - 3.0 * (2.0 / std::f64::consts::PI).sqrt()).abs() < 1e-6);
        // Quantiles of N(0,1) at (i + 0.5)/n by bisection on Φ.
        let n = 2000;
        let q: Vec<f64> = (0..n)
            .map(|i| {
                let p = (i as f64 + 0.5) / n as f64;
                let (mut lo, mut hi) = (-10.0, 10.0);
                for _ in 0..100 {
                    let mid = 0.5 * (lo + hi);
                    if normal_cdf(mid) < p {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                0.5 * (lo + hi)
            })
            .collect();
        let w = vec![1.0; n];
        let w0 = w1_to_normal(&q, &w, 0.0, 1.0);
        assert!(w0 < 2e-3, "{w0}");
        let shifted: Vec<f64> = q.iter().map(|v| v + 0.3).collect();
        let w3 = w1_to_normal(&shifted, &w, 0.0, 1.0);
        assert!((w3 - 0.3).abs() < 3e-3, "{w3}");
    }

    #[test]
    fn mean_se_of_small_samples() {
        assert!(mean_se(&[]).0.is_nan());
        assert_eq!(mean_se(&[3.0]), (3.0, 0.0));
        let (m, se) = mean_se(&[1.0, 3.0]);
        assert_eq!(m, 2.0);
        assert!((se - 1.0).abs() < 1e-15);
    }
}
