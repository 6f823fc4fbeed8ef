//! Small dense linear algebra, generic over the [`Scalar`].
//!
//! The engine needs only a few decompositions (a Cholesky factor, triangular solves and the
//! log-determinant from the factor). They are written here once, on plain row-major slices,
//! with no `nalgebra::RealField` bound, so they run on `f64`, on every `num-dual` dual number,
//! and on any future scalar that implements [`Scalar`] from num-dual's trait alone.
//!
//! Conventions: a `d × d` matrix is a slice of length `d * d` in row-major order
//! (`a[i * d + j]` is row `i`, column `j`); a `d × m` right-hand side is row-major too. Every
//! function panics if a slice is shorter than its stated shape (a programming error), and
//! returns a typed error only where the *values* can be wrong (a matrix that is not positive
//! definite).
//!
//! ```
//! use diffsmc::linalg::{cholesky, cholesky_solve, log_det_from_cholesky};
//!
//! // A = [[4, 2], [2, 3]]: det = 8.
//! let a = [4.0_f64, 2.0, 2.0, 3.0];
//! let l = cholesky(&a, 2).unwrap();
//! assert!((log_det_from_cholesky(&l, 2) - 8f64.ln()).abs() < 1e-14);
//! let mut b = [2.0, 1.0]; // solve A x = b: x = (0.5, 0)
//! cholesky_solve(&l, 2, &mut b);
//! assert!((b[0] - 0.5).abs() < 1e-15 && b[1].abs() < 1e-15);
//! ```

use std::ops::Mul;

use crate::error::{Result, SmcError};
use crate::scalar::Scalar;

#[inline]
fn check_square(len: usize, d: usize, what: &'static str) -> Result<()> {
    if len != d * d {
        return Err(SmcError::DimensionMismatch {
            what,
            expected: d * d,
            got: len,
        });
    }
    Ok(())
}

/// The lower-triangular Cholesky factor `L` (row-major, zeros above the diagonal) of the
/// symmetric positive definite `d × d` matrix `a` (row-major), so that `a = L Lᵀ`.
///
/// Only the lower triangle of `a` is read. Fails with [`SmcError::DimensionMismatch`] when
/// `a.len() != d * d` and with [`SmcError::NotPositiveDefinite`] (`what: "matrix"`) when a
/// pivot is not strictly positive (or is NaN/inf) on its value part. Use [`cholesky_named`]
/// to name the matrix in the error.
///
/// The derivative parts of dual numbers propagate through the factorisation exactly.
///
/// ```
/// use diffsmc::linalg::cholesky;
/// let l = cholesky(&[4.0_f64, 2.0, 2.0, 3.0], 2).unwrap();
/// assert_eq!(l, vec![2.0, 0.0, 1.0, 2f64.sqrt()]);
/// assert!(cholesky(&[1.0_f64, 2.0, 2.0, 1.0], 2).is_err()); // indefinite
/// ```
pub fn cholesky<S: Scalar>(a: &[S], d: usize) -> Result<Vec<S>> {
    cholesky_named(a, d, "matrix")
}

/// [`cholesky`], naming the matrix `what` in a [`SmcError::NotPositiveDefinite`] error.
///
/// ```
/// use diffsmc::{SmcError, linalg::cholesky_named};
/// let err = cholesky_named(&[-1.0_f64], 1, "Q").unwrap_err();
/// assert_eq!(err, SmcError::NotPositiveDefinite { what: "Q" });
/// ```
pub fn cholesky_named<S: Scalar>(a: &[S], d: usize, what: &'static str) -> Result<Vec<S>> {
    cholesky_with_tolerance(a, d, 0.0, what)
}

/// [`cholesky_named`] with a pivot tolerance: fails unless every pivot's value part is finite
/// and `> tol` (used to detect near-singular covariances before adding jitter).
///
/// ```
/// use diffsmc::linalg::cholesky_with_tolerance;
/// let nearly_singular = [1.0_f64, 1.0, 1.0, 1.0 + 1e-14];
/// assert!(cholesky_with_tolerance(&nearly_singular, 2, 0.0, "Σ").is_ok());
/// assert!(cholesky_with_tolerance(&nearly_singular, 2, 1e-12, "Σ").is_err());
/// ```
pub fn cholesky_with_tolerance<S: Scalar>(
    a: &[S],
    d: usize,
    tol: f64,
    what: &'static str,
) -> Result<Vec<S>> {
    check_square(a.len(), d, "matrix buffer length (d * d)")?;
    let mut l = vec![S::zero(); d * d];
    for j in 0..d {
        let mut s = a[j * d + j];
        for k in 0..j {
            let ljk = l[j * d + k];
            s -= ljk * ljk;
        }
        let r = s.re();
        if !(r > tol && r.is_finite()) {
            return Err(SmcError::NotPositiveDefinite { what });
        }
        let ljj = s.sqrt();
        l[j * d + j] = ljj;
        for i in j + 1..d {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= l[i * d + k] * l[j * d + k];
            }
            l[i * d + j] = s / ljj;
        }
    }
    Ok(l)
}

/// Solves `L x = b` in place (forward substitution) for a lower-triangular `d × d` row-major
/// `l` with a non-zero diagonal; `b` (length `d`) is overwritten with `x`.
///
/// With `L` the Cholesky factor of a covariance `Σ` and `b = x - μ`, the result is the
/// whitened vector `L⁻¹(x - μ)`, and its squared norm is the Mahalanobis distance.
///
/// ```
/// use diffsmc::linalg::solve_lower;
/// let l = [2.0_f64, 0.0, 1.0, 1.0];
/// let mut b = [2.0, 3.0];
/// solve_lower(&l, 2, &mut b);
/// assert_eq!(b, [1.0, 2.0]);
/// ```
///
/// # Panics
/// If `l.len() < d * d` or `b.len() < d`.
pub fn solve_lower<S: Scalar>(l: &[S], d: usize, b: &mut [S]) {
    assert!(l.len() >= d * d && b.len() >= d, "solve_lower: shapes");
    for i in 0..d {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * d + k] * b[k];
        }
        b[i] = s / l[i * d + i];
    }
}

/// Solves `Lᵀ x = b` in place (back substitution with the transpose of the lower-triangular
/// row-major `l`, without forming it). After [`solve_lower`], this completes a solve with
/// `L Lᵀ` (see [`cholesky_solve`]); on its own it maps white noise `u` to `L⁻ᵀ u`.
///
/// ```
/// use diffsmc::linalg::solve_lower_transpose;
/// let l = [2.0_f64, 0.0, 1.0, 1.0]; // Lᵀ = [[2, 1], [0, 1]]
/// let mut b = [4.0, 2.0];
/// solve_lower_transpose(&l, 2, &mut b);
/// assert_eq!(b, [1.0, 2.0]);
/// ```
///
/// # Panics
/// If `l.len() < d * d` or `b.len() < d`.
pub fn solve_lower_transpose<S: Scalar>(l: &[S], d: usize, b: &mut [S]) {
    assert!(
        l.len() >= d * d && b.len() >= d,
        "solve_lower_transpose: shapes"
    );
    for i in (0..d).rev() {
        let mut s = b[i];
        for k in i + 1..d {
            s -= l[k * d + i] * b[k];
        }
        b[i] = s / l[i * d + i];
    }
}

/// Solves `U x = b` in place for an upper-triangular `d × d` row-major `u` with a non-zero
/// diagonal (back substitution).
///
/// ```
/// use diffsmc::linalg::solve_upper;
/// let u = [2.0_f64, 1.0, 0.0, 1.0];
/// let mut b = [4.0, 2.0];
/// solve_upper(&u, 2, &mut b);
/// assert_eq!(b, [1.0, 2.0]);
/// ```
///
/// # Panics
/// If `u.len() < d * d` or `b.len() < d`.
pub fn solve_upper<S: Scalar>(u: &[S], d: usize, b: &mut [S]) {
    assert!(u.len() >= d * d && b.len() >= d, "solve_upper: shapes");
    for i in (0..d).rev() {
        let mut s = b[i];
        for k in i + 1..d {
            s -= u[i * d + k] * b[k];
        }
        b[i] = s / u[i * d + i];
    }
}

/// Solves `A x = b` in place given the Cholesky factor `l` of `A = L Lᵀ`.
///
/// ```
/// use diffsmc::linalg::{cholesky, cholesky_solve};
/// let a = [4.0_f64, 2.0, 2.0, 3.0];
/// let l = cholesky(&a, 2).unwrap();
/// let mut b = [6.0, 5.0]; // A (1, 1) = (6, 5)
/// cholesky_solve(&l, 2, &mut b);
/// assert!((b[0] - 1.0).abs() < 1e-15 && (b[1] - 1.0).abs() < 1e-15);
/// ```
///
/// # Panics
/// If `l.len() < d * d` or `b.len() < d`.
pub fn cholesky_solve<S: Scalar>(l: &[S], d: usize, b: &mut [S]) {
    solve_lower(l, d, b);
    solve_lower_transpose(l, d, b);
}

/// Solves `L X = B` in place for a `d × m` row-major right-hand side `b` (all `m` columns at
/// once).
///
/// ```
/// use diffsmc::linalg::solve_lower_mat;
/// let l = [2.0_f64, 0.0, 1.0, 1.0];
/// let mut b = [2.0, 4.0, 3.0, 4.0]; // columns (2, 3) and (4, 4)
/// solve_lower_mat(&l, 2, &mut b, 2);
/// assert_eq!(b, [1.0, 2.0, 2.0, 2.0]);
/// ```
///
/// # Panics
/// If `l.len() < d * d` or `b.len() < d * m`.
pub fn solve_lower_mat<S: Scalar>(l: &[S], d: usize, b: &mut [S], m: usize) {
    assert!(
        l.len() >= d * d && b.len() >= d * m,
        "solve_lower_mat: shapes"
    );
    for i in 0..d {
        for k in 0..i {
            let lik = l[i * d + k];
            for c in 0..m {
                let bk = b[k * m + c];
                b[i * m + c] -= lik * bk;
            }
        }
        let lii = l[i * d + i];
        for c in 0..m {
            b[i * m + c] /= lii;
        }
    }
}

/// Solves `Lᵀ X = B` in place for a `d × m` row-major right-hand side `b`.
///
/// ```
/// use diffsmc::linalg::solve_lower_transpose_mat;
/// let l = [2.0_f64, 0.0, 1.0, 1.0];
/// let mut b = [4.0, 2.0, 2.0, 2.0]; // columns (4, 2) and (2, 2)
/// solve_lower_transpose_mat(&l, 2, &mut b, 2);
/// assert_eq!(b, [1.0, 0.0, 2.0, 2.0]);
/// ```
///
/// # Panics
/// If `l.len() < d * d` or `b.len() < d * m`.
pub fn solve_lower_transpose_mat<S: Scalar>(l: &[S], d: usize, b: &mut [S], m: usize) {
    assert!(
        l.len() >= d * d && b.len() >= d * m,
        "solve_lower_transpose_mat: shapes"
    );
    for i in (0..d).rev() {
        for k in i + 1..d {
            let lki = l[k * d + i];
            for c in 0..m {
                let bk = b[k * m + c];
                b[i * m + c] -= lki * bk;
            }
        }
        let lii = l[i * d + i];
        for c in 0..m {
            b[i * m + c] /= lii;
        }
    }
}

/// Solves `A X = B` in place for a `d × m` row-major `b`, given the Cholesky factor `l` of
/// `A`. This is how the engine applies an inverse covariance: it never forms `A⁻¹`.
///
/// ```
/// use diffsmc::linalg::{cholesky, cholesky_solve_mat};
/// let l = cholesky(&[4.0_f64, 2.0, 2.0, 3.0], 2).unwrap();
/// let mut b = [4.0, 2.0, 2.0, 3.0]; // B = A, so X = I
/// cholesky_solve_mat(&l, 2, &mut b, 2);
/// for (x, e) in b.iter().zip([1.0, 0.0, 0.0, 1.0]) {
///     assert!((x - e).abs() < 1e-15);
/// }
/// ```
///
/// # Panics
/// If `l.len() < d * d` or `b.len() < d * m`.
pub fn cholesky_solve_mat<S: Scalar>(l: &[S], d: usize, b: &mut [S], m: usize) {
    solve_lower_mat(l, d, b, m);
    solve_lower_transpose_mat(l, d, b, m);
}

/// `log det A = 2 Σ_i ln L_ii` from the Cholesky factor `l` of `A`.
///
/// ```
/// use diffsmc::linalg::log_det_from_cholesky;
/// let l = [2.0_f64, 0.0, 1.0, 3.0];
/// assert!((log_det_from_cholesky(&l, 2) - 36f64.ln()).abs() < 1e-14);
/// ```
///
/// # Panics
/// If `l.len() < d * d`.
pub fn log_det_from_cholesky<S: Scalar>(l: &[S], d: usize) -> S {
    assert!(l.len() >= d * d, "log_det_from_cholesky: shape");
    let mut s = S::zero();
    for i in 0..d {
        s += l[i * d + i].ln();
    }
    s * 2.0
}

/// `out = L z` for a lower-triangular row-major `l` (only the lower triangle is read); `z`
/// may be `f64` noise or scalars of the same type as `l`. This is the reparameterised draw
/// `x = μ + L ξ` (add `μ` afterwards) and the un-whitening map.
///
/// ```
/// use diffsmc::linalg::lower_mul_vec;
/// let l = [2.0_f64, 0.0, 1.0, 3.0];
/// let mut out = [0.0; 2];
/// lower_mul_vec(&l, 2, &[1.0, 1.0], &mut out);
/// assert_eq!(out, [2.0, 4.0]);
/// ```
///
/// # Panics
/// If `l.len() < d * d`, `z.len() < d` or `out.len() < d`.
pub fn lower_mul_vec<S, Z>(l: &[S], d: usize, z: &[Z], out: &mut [S])
where
    S: Scalar + Mul<Z, Output = S>,
    Z: Copy,
{
    assert!(
        l.len() >= d * d && z.len() >= d && out.len() >= d,
        "lower_mul_vec: shapes"
    );
    for i in 0..d {
        let mut s = S::zero();
        for k in 0..=i {
            s += l[i * d + k] * z[k];
        }
        out[i] = s;
    }
}

/// Whether the `d × d` row-major `a` is symmetric up to a relative tolerance on the value
/// parts: `|a_ij − a_ji| ≤ rel_tol · max(|a_ij|, |a_ji|)` for all `i < j` (NaN entries make
/// it non-symmetric).
///
/// ```
/// use diffsmc::linalg::is_symmetric;
/// assert!(is_symmetric(&[1.0_f64, 2.0, 2.0, 1.0], 2, 1e-12));
/// assert!(!is_symmetric(&[1.0_f64, 2.0, 2.1, 1.0], 2, 1e-12));
/// ```
///
/// # Panics
/// If `a.len() < d * d`.
pub fn is_symmetric<S: Scalar>(a: &[S], d: usize, rel_tol: f64) -> bool {
    assert!(a.len() >= d * d, "is_symmetric: shape");
    for i in 0..d {
        for j in i + 1..d {
            let (x, y) = (a[i * d + j].re(), a[j * d + i].re());
            let diff = (x - y).abs();
            if diff.is_nan() || diff > rel_tol * x.abs().max(y.abs()) {
                return false;
            }
        }
    }
    true
}

/// `C = A B` for row-major `A` (`n × k`) and `B` (`k × m`), accumulated in the order
/// `l = 0, 1, …` for every entry.
///
/// # Panics
/// If `a` is shorter than `n · k` or `b` shorter than `k · m`.
///
/// ```
/// use diffsmc::linalg::matmul;
/// let c = matmul(&[1.0, 2.0, 3.0, 4.0], &[1.0, 1.0], 2, 2, 1);
/// assert_eq!(c, vec![3.0, 7.0]);
/// ```
pub fn matmul<S: Scalar>(a: &[S], b: &[S], n: usize, k: usize, m: usize) -> Vec<S> {
    let mut c = vec![S::zero(); n * m];
    for i in 0..n {
        for l in 0..k {
            let ail = a[i * k + l];
            for j in 0..m {
                c[i * m + j] += ail * b[l * m + j];
            }
        }
    }
    c
}

/// `out = M x` for row-major `M` (`rows × cols`), without allocating (the same operations as
/// [`matmul`] with one column).
///
/// # Panics
/// If `m` is shorter than `rows · cols`, `x` shorter than `cols` or `out` than `rows`.
///
/// ```
/// use diffsmc::linalg::mat_vec;
/// let mut out = [0.0; 2];
/// mat_vec(&[1.0, 2.0, 3.0, 4.0], 2, 2, &[1.0, 1.0], &mut out);
/// assert_eq!(out, [3.0, 7.0]);
/// ```
#[inline]
pub fn mat_vec<S: Scalar>(m: &[S], rows: usize, cols: usize, x: &[S], out: &mut [S]) {
    for i in 0..rows {
        out[i] = m[i * cols..(i + 1) * cols]
            .iter()
            .zip(&x[..cols])
            .fold(S::zero(), |acc, (&mij, &xj)| acc + mij * xj);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_dual::{Dual64, DualStruct};

    fn spd(d: usize, seed: u64) -> Vec<f64> {
        // B Bᵀ + d I with a deterministic B.
        let b: Vec<f64> = (0..d * d)
            .map(|k| (((k as u64 + 1) * 2654435761 + seed) % 1000) as f64 / 500.0 - 1.0)
            .collect();
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                for k in 0..d {
                    a[i * d + j] += b[i * d + k] * b[j * d + k];
                }
            }
            a[i * d + i] += d as f64;
        }
        a
    }

    #[test]
    fn cholesky_reconstructs_and_matches_nalgebra() {
        for d in [1, 2, 3, 5, 8] {
            let a = spd(d, d as u64);
            let l = cholesky(&a, d).unwrap();
            for i in 0..d {
                for j in 0..d {
                    let mut s = 0.0;
                    for k in 0..d {
                        s += l[i * d + k] * l[j * d + k];
                    }
                    assert!((s - a[i * d + j]).abs() < 1e-12, "d={d} ({i},{j})");
                    if j > i {
                        assert_eq!(l[i * d + j], 0.0);
                    }
                }
            }
            let na = nalgebra::DMatrix::from_row_slice(d, d, &a);
            let nl = na.clone().cholesky().unwrap().l();
            for i in 0..d {
                for j in 0..d {
                    assert!((nl[(i, j)] - l[i * d + j]).abs() < 1e-12);
                }
            }
            let ld = log_det_from_cholesky(&l, d);
            assert!((ld - na.determinant().ln()).abs() < 1e-10);
        }
    }

    #[test]
    fn solves_invert_products() {
        let d = 4;
        let a = spd(d, 9);
        let l = cholesky(&a, d).unwrap();
        let x = [0.3, -1.2, 2.0, 0.7];
        // b = A x
        let mut b: Vec<f64> = (0..d)
            .map(|i| (0..d).map(|j| a[i * d + j] * x[j]).sum())
            .collect();
        cholesky_solve(&l, d, &mut b);
        for i in 0..d {
            assert!((b[i] - x[i]).abs() < 1e-12);
        }
        // L z then solve_lower gives z back; Lᵀ via solve_upper on the transpose.
        let mut lz = vec![0.0; d];
        lower_mul_vec(&l, d, &x, &mut lz);
        solve_lower(&l, d, &mut lz);
        for i in 0..d {
            assert!((lz[i] - x[i]).abs() < 1e-12);
        }
        let mut u = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                u[i * d + j] = l[j * d + i];
            }
        }
        let mut b1 = x.to_vec();
        let mut b2 = x.to_vec();
        solve_upper(&u, d, &mut b1);
        solve_lower_transpose(&l, d, &mut b2);
        assert_eq!(b1, b2);
        // Matrix right-hand sides agree with column-by-column solves.
        let m = 3;
        let rhs: Vec<f64> = (0..d * m).map(|k| (k as f64).sin()).collect();
        let mut bm = rhs.clone();
        cholesky_solve_mat(&l, d, &mut bm, m);
        for c in 0..m {
            let mut col: Vec<f64> = (0..d).map(|i| rhs[i * m + c]).collect();
            cholesky_solve(&l, d, &mut col);
            for i in 0..d {
                assert!((col[i] - bm[i * m + c]).abs() < 1e-13);
            }
        }
    }

    #[test]
    fn errors_are_typed() {
        assert_eq!(
            cholesky(&[1.0_f64, 0.0, 0.0], 2).unwrap_err(),
            SmcError::DimensionMismatch {
                what: "matrix buffer length (d * d)",
                expected: 4,
                got: 3
            }
        );
        for bad in [
            [1.0, 2.0, 2.0, 1.0],
            [0.0, 0.0, 0.0, 1.0],
            [f64::NAN, 0.0, 0.0, 1.0],
            [f64::INFINITY, 0.0, 0.0, 1.0],
        ] {
            assert_eq!(
                cholesky_named(&bad, 2, "P").unwrap_err(),
                SmcError::NotPositiveDefinite { what: "P" }
            );
        }
        assert!(cholesky::<f64>(&[], 0).unwrap().is_empty());
        assert!(!is_symmetric(&[1.0, f64::NAN, 0.0, 1.0], 2, 1e-12));
    }

    #[test]
    fn dual_derivative_of_log_det() {
        // d/dt log det(A + t E) at t = 0 is tr(A⁻¹ E); with E = I it is tr(A⁻¹).
        let d = 3;
        let a = spd(d, 4);
        let ad: Vec<Dual64> = (0..d * d)
            .map(|k| Dual64::new(a[k], if k % (d + 1) == 0 { 1.0 } else { 0.0 }))
            .collect();
        let l = cholesky(&ad, d).unwrap();
        let ld = log_det_from_cholesky(&l, d);
        let lf = cholesky(&a, d).unwrap();
        let mut tr = 0.0;
        for i in 0..d {
            let mut e = vec![0.0; d];
            e[i] = 1.0;
            cholesky_solve(&lf, d, &mut e);
            tr += e[i];
        }
        assert!((ld.eps - tr).abs() < 1e-12);
        assert!((ld.re() - log_det_from_cholesky(&lf, d)).abs() < 1e-14);
    }
}
