//! Small dense-vector helpers (no allocation).

/// Dot product.
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Euclidean norm, robust against overflow/underflow of the sum of squares.
///
/// Returns NaN if any entry is NaN and ∞ if any entry is infinite.
pub(crate) fn norm2(a: &[f64]) -> f64 {
    let naive = dot(a, a).sqrt();
    if naive > 1e-150 && naive < 1e150 {
        return naive;
    }
    // Slow path: rescale by the largest magnitude.
    let mut scale = 0.0_f64;
    for &x in a {
        if x.is_nan() {
            return f64::NAN;
        }
        scale = scale.max(x.abs());
    }
    if scale == 0.0 || scale.is_infinite() {
        return scale;
    }
    let s: f64 = a.iter().map(|x| (x / scale) * (x / scale)).sum();
    scale * s.sqrt()
}

/// Largest absolute entry (NaN if any entry is NaN).
pub(crate) fn norm_inf(a: &[f64]) -> f64 {
    let mut m = 0.0_f64;
    for &x in a {
        if x.is_nan() {
            return f64::NAN;
        }
        m = m.max(x.abs());
    }
    m
}

/// Whether every entry is finite.
pub(crate) fn all_finite(a: &[f64]) -> bool {
    a.iter().all(|x| x.is_finite())
}

/// `out = x + alpha * p`.
pub(crate) fn axpy_into(out: &mut [f64], x: &[f64], alpha: f64, p: &[f64]) {
    for ((o, xi), pi) in out.iter_mut().zip(x).zip(p) {
        *o = xi + alpha * pi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm2_is_robust_to_overflow_and_underflow() {
        assert_eq!(norm2(&[3.0, 4.0]), 5.0);
        assert!((norm2(&[3e200, 4e200]) / 5e200 - 1.0).abs() < 1e-15);
        assert!((norm2(&[3e-200, 4e-200]) / 5e-200 - 1.0).abs() < 1e-15);
        assert_eq!(norm2(&[0.0, 0.0]), 0.0);
        assert!(norm2(&[1.0, f64::NAN]).is_nan());
        assert_eq!(norm2(&[1.0, f64::INFINITY]), f64::INFINITY);
        assert_eq!(norm_inf(&[1.0, -7.0, 3.0]), 7.0);
        assert!(norm_inf(&[1.0, f64::NAN]).is_nan());
    }
}
