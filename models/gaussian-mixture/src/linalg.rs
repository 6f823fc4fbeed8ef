//! Small dense helpers shared by the mixture and the problem (all `f64`, all private).

use nalgebra::{Cholesky, DMatrix};

use crate::error::{GmError, Result};

/// `ln(2π)`.
pub(crate) const LN_2PI: f64 = 1.837_877_066_409_345_3;

/// Relative tolerance for accepting a matrix as symmetric before symmetrising it.
const SYMMETRY_RTOL: f64 = 1e-9;

/// `ln Σ exp(xs)`, stable; `-inf` for an empty slice or all `-inf`.
pub(crate) fn logsumexp(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY || m.is_nan() {
        return m;
    }
    if m == f64::INFINITY {
        return m;
    }
    m + xs.iter().map(|&x| (x - m).exp()).sum::<f64>().ln()
}

/// Normalises log-weights: returns `(l_p − ln Σ exp l, ln Σ exp l)`, computed as
/// `(l_p − m) − ln s` with `m` the maximum and `s = Σ exp(l_p − m)`, which keeps equal
/// log-weights exactly equal and loses no precision to a large common offset.
/// `None` when the slice is empty or no entry is finite.
pub(crate) fn normalise_log(xs: &[f64]) -> Option<(Vec<f64>, f64)> {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return None;
    }
    let ln_s = xs.iter().map(|&x| (x - m).exp()).sum::<f64>().ln();
    Some((xs.iter().map(|&x| (x - m) - ln_s).collect(), m + ln_s))
}

/// Checks every entry of `a` is finite.
pub(crate) fn check_finite_matrix(a: &DMatrix<f64>, what: &'static str) -> Result<()> {
    for (index, &value) in a.iter().enumerate() {
        if !value.is_finite() {
            return Err(GmError::NonFinite { what, index, value });
        }
    }
    Ok(())
}

/// Checks every entry of `xs` is finite.
pub(crate) fn check_finite(xs: &[f64], what: &'static str) -> Result<()> {
    for (index, &value) in xs.iter().enumerate() {
        if !value.is_finite() {
            return Err(GmError::NonFinite { what, index, value });
        }
    }
    Ok(())
}

/// Checks that the square matrix `a` is symmetric up to rounding and returns `(a + aᵀ) / 2`
/// (bit-identical to `a` when `a` is exactly symmetric).
pub(crate) fn symmetrised(
    a: &DMatrix<f64>,
    what: &'static str,
    index: Option<usize>,
) -> Result<DMatrix<f64>> {
    let n = a.nrows();
    let mut out = a.clone();
    for i in 0..n {
        for j in 0..i {
            let (aij, aji) = (a[(i, j)], a[(j, i)]);
            let scale = a[(i, i)].abs().max(a[(j, j)].abs()).max(f64::MIN_POSITIVE);
            if (aij - aji).abs() > SYMMETRY_RTOL * scale {
                return Err(GmError::NotSymmetric { what, index });
            }
            let s = 0.5 * (aij + aji);
            out[(i, j)] = s;
            out[(j, i)] = s;
        }
    }
    Ok(out)
}

/// The lower Cholesky factor `L` of the symmetric matrix `a` (`a = L Lᵀ`).
pub(crate) fn cholesky_lower(
    a: &DMatrix<f64>,
    what: &'static str,
    index: Option<usize>,
) -> Result<DMatrix<f64>> {
    let l = Cholesky::new(a.clone())
        .ok_or(GmError::NotPositiveDefinite { what, index })?
        .unpack();
    if (0..l.nrows()).any(|i| !(l[(i, i)] > 0.0 && l[(i, i)].is_finite())) {
        return Err(GmError::NotPositiveDefinite { what, index });
    }
    Ok(l)
}

/// `Σ ln L_jj` (half the log-determinant of `L Lᵀ`).
pub(crate) fn half_log_det(l: &DMatrix<f64>) -> f64 {
    (0..l.nrows()).map(|i| l[(i, i)].ln()).sum()
}

/// Solves `L z = r` by forward substitution (`L` lower triangular) and returns `|z|²`.
/// `z` is scratch of the same length as `r`.
#[inline]
pub(crate) fn forward_sub_sq_norm(l: &DMatrix<f64>, r: &[f64], z: &mut [f64]) -> f64 {
    let n = r.len();
    debug_assert_eq!(l.nrows(), n);
    debug_assert_eq!(z.len(), n);
    let mut sq = 0.0;
    for i in 0..n {
        let mut s = r[i];
        for j in 0..i {
            s -= l[(i, j)] * z[j];
        }
        let zi = s / l[(i, i)];
        z[i] = zi;
        sq += zi * zi;
    }
    sq
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logsumexp_edge_cases() {
        assert_eq!(logsumexp(&[]), f64::NEG_INFINITY);
        assert_eq!(
            logsumexp(&[f64::NEG_INFINITY, f64::NEG_INFINITY]),
            f64::NEG_INFINITY
        );
        let v = logsumexp(&[1000.0, 1000.0]);
        assert!((v - (1000.0 + 2f64.ln())).abs() < 1e-12);
        let v = logsumexp(&[0.0, f64::NEG_INFINITY]);
        assert_eq!(v, 0.0);
    }

    #[test]
    fn normalise_log_keeps_equal_weights_equal() {
        let (l, lse) = normalise_log(&[-1000.0, -1000.0, f64::NEG_INFINITY]).unwrap();
        assert_eq!(l[0], l[1]);
        assert_eq!(l[0], -(2f64.ln()));
        assert_eq!(l[2], f64::NEG_INFINITY);
        assert!((lse - (-1000.0 + 2f64.ln())).abs() < 1e-12);
        assert!(normalise_log(&[]).is_none());
        assert!(normalise_log(&[f64::NEG_INFINITY]).is_none());
    }

    #[test]
    fn ln_2pi_constant() {
        assert!((LN_2PI - (2.0 * std::f64::consts::PI).ln()).abs() < 1e-15);
    }

    #[test]
    fn forward_substitution_solves() {
        let a = DMatrix::from_row_slice(3, 3, &[4.0, 2.0, 0.4, 2.0, 3.0, 0.5, 0.4, 0.5, 2.0]);
        let l = cholesky_lower(&a, "a", None).unwrap();
        let r = [1.0, -2.0, 0.5];
        let mut z = [0.0; 3];
        let sq = forward_sub_sq_norm(&l, &r, &mut z);
        // |L⁻¹ r|² = rᵀ A⁻¹ r.
        let rv = nalgebra::DVector::from_row_slice(&r);
        let quad = rv.dot(&a.clone().cholesky().unwrap().solve(&rv));
        assert!((sq - quad).abs() < 1e-12);
    }

    #[test]
    fn symmetry_and_definiteness_are_checked() {
        let a = DMatrix::from_row_slice(2, 2, &[1.0, 0.5, 0.4, 1.0]);
        assert_eq!(
            symmetrised(&a, "a", Some(1)),
            Err(GmError::NotSymmetric {
                what: "a",
                index: Some(1)
            })
        );
        let b = DMatrix::from_row_slice(2, 2, &[1.0, 2.0, 2.0, 1.0]);
        assert_eq!(
            cholesky_lower(&b, "b", None),
            Err(GmError::NotPositiveDefinite {
                what: "b",
                index: None
            })
        );
    }
}
