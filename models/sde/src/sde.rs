//! The [`Sde`] trait and the small Gaussian helpers the bridge weights are built from.

use diffsmc::Scalar;
use diffsmc::linalg::solve_lower;

/// `ln(2π)`.
pub(crate) const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Scratch buffers of at most this many scalars live on the stack.
const STACK_SCRATCH: usize = 16;

/// Runs `f` on a zeroed scratch slice of length `len`: on the stack for small lengths (the
/// common d = 1, 2 cases allocate nothing), on the heap otherwise.
#[inline]
pub(crate) fn with_scratch<S: Scalar, R>(len: usize, f: impl FnOnce(&mut [S]) -> R) -> R {
    if len <= STACK_SCRATCH {
        let mut a = [S::zero(); STACK_SCRATCH];
        f(&mut a[..len])
    } else {
        let mut v = vec![S::zero(); len];
        f(&mut v)
    }
}

/// A time-homogeneous Itô SDE `dX = b_θ(X) dt + σ_θ(X) dW` in `R^d` with a square `d × d`
/// diffusion coefficient, written once for any [`Scalar`] (so θ may be dual numbers).
///
/// The bridge weights need the drift `b(x)` and a lower-triangular Cholesky factor `L(x)` of
/// the diffusion covariance `a(x) = σ(x) σ(x)ᵀ`; the default [`Sde::diffusion_cholesky`] forms
/// `a(x)` from [`Sde::diffusion`] and factors it. Implement it directly when the factor is
/// known (diagonal or triangular σ), and return `true` from [`Sde::is_diffusion_constant`]
/// when σ does not depend on the state (the bridge then factors it once per interval).
///
/// ```
/// use diffsmc::Scalar;
/// use diffsmc_sde::Sde;
///
/// /// Geometric Brownian motion dX = r X dt + s X dW.
/// struct Gbm<S> { r: S, s: S }
/// impl<S: Scalar> Sde<S> for Gbm<S> {
///     fn dim(&self) -> usize { 1 }
///     fn drift(&self, x: &[S], b: &mut [S]) { b[0] = self.r * x[0]; }
///     fn diffusion(&self, x: &[S], sigma: &mut [S]) { sigma[0] = self.s * x[0]; }
/// }
///
/// let g = Gbm { r: 0.1_f64, s: 0.2 };
/// let mut l = [0.0_f64];
/// assert!(g.diffusion_cholesky(&[-2.0], &mut l)); // the factor of a = σ² is |σ|
/// assert!((l[0] - 0.4).abs() < 1e-15);
/// assert!(!g.diffusion_cholesky(&[0.0], &mut l)); // a(0) = 0 is singular
/// ```
pub trait Sde<S: Scalar>: Sync {
    /// State dimension `d ≥ 1`.
    fn dim(&self) -> usize;
    /// Writes the drift `b(x)` into `b` (length `d`).
    fn drift(&self, x: &[S], b: &mut [S]);
    /// Writes the diffusion coefficient `σ(x)` (`d × d`, row-major) into `sigma`.
    fn diffusion(&self, x: &[S], sigma: &mut [S]);
    /// Writes the lower Cholesky factor `L(x)` of `a(x) = σ(x)σ(x)ᵀ` (`d × d`, row-major,
    /// zeros above the diagonal) into `l`; returns `false` when `a(x)` is not positive
    /// definite (on its value part), in which case the bridge gives the path zero weight.
    fn diffusion_cholesky(&self, x: &[S], l: &mut [S]) -> bool {
        let d = self.dim();
        with_scratch(d * d, |sigma: &mut [S]| {
            self.diffusion(x, sigma);
            for i in 0..d {
                for j in 0..=i {
                    let mut s = S::zero();
                    for k in 0..d {
                        s += sigma[i * d + k] * sigma[j * d + k];
                    }
                    l[i * d + j] = s;
                }
                for j in i + 1..d {
                    l[i * d + j] = S::zero();
                }
            }
            cholesky_in_place(l, d)
        })
    }
    /// Whether σ does not depend on the state (default `false`).
    fn is_diffusion_constant(&self) -> bool {
        false
    }
}

impl<S: Scalar, D: Sde<S> + ?Sized> Sde<S> for &D {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn drift(&self, x: &[S], b: &mut [S]) {
        (**self).drift(x, b)
    }
    fn diffusion(&self, x: &[S], sigma: &mut [S]) {
        (**self).diffusion(x, sigma)
    }
    fn diffusion_cholesky(&self, x: &[S], l: &mut [S]) -> bool {
        (**self).diffusion_cholesky(x, l)
    }
    fn is_diffusion_constant(&self) -> bool {
        (**self).is_diffusion_constant()
    }
}

/// Overwrites the lower triangle of the symmetric `d × d` row-major `a` with its Cholesky
/// factor (zeros above the diagonal); `false` if a pivot is not strictly positive and finite.
/// No allocation: this runs once per particle and sub-step for state-dependent diffusions.
pub(crate) fn cholesky_in_place<S: Scalar>(a: &mut [S], d: usize) -> bool {
    for j in 0..d {
        let mut s = a[j * d + j];
        for k in 0..j {
            let ljk = a[j * d + k];
            s -= ljk * ljk;
        }
        let r = s.re();
        if !(r > 0.0 && r.is_finite()) {
            return false;
        }
        let ljj = s.sqrt();
        a[j * d + j] = ljj;
        for i in j + 1..d {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = s / ljj;
        }
        for k in j + 1..d {
            a[j * d + k] = S::zero();
        }
    }
    true
}

/// `|L⁻¹ r|²` by forward substitution (overwrites `r` with `L⁻¹ r`).
#[inline]
pub(crate) fn whitened_sq_norm<S: Scalar>(l: &[S], d: usize, r: &mut [S]) -> S {
    if d == 1 {
        let z = r[0] / l[0];
        r[0] = z;
        return z * z;
    }
    solve_lower(l, d, r);
    let mut s = S::zero();
    for z in r.iter() {
        s += *z * *z;
    }
    s
}

/// `Σ_i ln L_ii` (half the log-determinant of `L Lᵀ`).
#[inline]
pub(crate) fn half_log_det<S: Scalar>(l: &[S], d: usize) -> S {
    let mut s = S::zero();
    for i in 0..d {
        s += l[i * d + i].ln();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Full;
    impl Sde<f64> for Full {
        fn dim(&self) -> usize {
            2
        }
        fn drift(&self, _x: &[f64], b: &mut [f64]) {
            b.fill(0.0);
        }
        fn diffusion(&self, x: &[f64], s: &mut [f64]) {
            s.copy_from_slice(&[1.0 + x[0] * x[0], 0.3, -0.2, 0.8]);
        }
    }

    #[test]
    fn default_cholesky_factors_sigma_sigma_t() {
        let x = [0.5, 0.0];
        let mut l = [f64::NAN; 4];
        assert!(Full.diffusion_cholesky(&x, &mut l));
        let mut s = [0.0; 4];
        Full.diffusion(&x, &mut s);
        let a = |i: usize, j: usize| (0..2).map(|k| s[i * 2 + k] * s[j * 2 + k]).sum::<f64>();
        let llt = |i: usize, j: usize| (0..2).map(|k| l[i * 2 + k] * l[j * 2 + k]).sum::<f64>();
        assert_eq!(l[1], 0.0);
        for i in 0..2 {
            for j in 0..2 {
                assert!((a(i, j) - llt(i, j)).abs() < 1e-14);
            }
        }
        let mut r = [1.0, 2.0];
        let q = whitened_sq_norm(&l, 2, &mut r);
        // |L⁻¹ r|² = rᵀ a⁻¹ r, checked with the explicit 2×2 inverse (test only).
        let det = a(0, 0) * a(1, 1) - a(0, 1) * a(1, 0);
        let expect = (a(1, 1) * 1.0 - 2.0 * a(0, 1) * 2.0 + a(0, 0) * 4.0) / det;
        assert!((q - expect).abs() < 1e-12);
        assert!((2.0 * half_log_det(&l, 2) - det.ln()).abs() < 1e-12);
    }

    #[test]
    fn singular_is_rejected() {
        let mut a = [1.0, 1.0, 1.0, 1.0];
        assert!(!cholesky_in_place(&mut a, 2));
        let mut a = [f64::NAN];
        assert!(!cholesky_in_place(&mut a, 1));
    }
}
