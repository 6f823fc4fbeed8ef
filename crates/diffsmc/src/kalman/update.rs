//! The measurement update shared by the Kalman filter and by closed-form proposals built on a
//! [`LinearGaussian`] (the locally optimal proposal and the exact look-ahead of
//! `diffsmc-lgssm`): conditioning a Gaussian on some observed components, in the Joseph form.

use super::*;

/// The result of conditioning a Gaussian prior `N(m, P)` (`P` is `dx × dx`) on `k` observed
/// components `y_o = H_o x + N(0, R_o)`: what does not depend on `m` or `y_o`.
///
/// With `S = H_o P H_oᵀ + R_o` (the innovation covariance) and `K = P H_oᵀ S⁻¹` (the gain),
/// the posterior is `N(m + K (y_o − H_o m), (I − K H_o) P (I − K H_o)ᵀ + K R_o Kᵀ)`. Matrices
/// are row-major. With `k = 0` nothing is conditioned on: the gain and the innovation factor
/// are empty and the covariance is `P`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Conditioning<S> {
    /// The gain `K` (`dx × k`).
    pub gain: Vec<S>,
    /// The posterior covariance (`dx × dx`, Joseph form, symmetric).
    pub cov: Vec<S>,
    /// The lower Cholesky factor of the innovation covariance `S` (`k × k`).
    pub chol_innovation: Vec<S>,
    dx: usize,
    k: usize,
}

impl<S: Scalar> Conditioning<S> {
    /// `m ← m + K v` for an innovation `v = y_o − H_o m` (length `k`).
    ///
    /// # Panics
    /// If `v` is shorter than `k` or `m` shorter than `dx`.
    pub fn update_mean(&self, innovation: &[S], m: &mut [S]) {
        let (dx, k) = (self.dx, self.k);
        for (i, &v) in innovation[..k].iter().enumerate() {
            for a in 0..dx {
                m[a] += self.gain[a * k + i] * v;
            }
        }
    }
}

/// Conditions a Gaussian with covariance `p` (`dx × dx`, row-major, symmetric) on `k`
/// observed components with observation rows `ho` (`k × dx`) and noise block `ro` (`k × k`):
/// the gain, the posterior covariance (Joseph form) and the Cholesky factor of the
/// innovation covariance (see [`Conditioning`]). Works on any [`Scalar`], so derivatives flow
/// through. This is the Kalman filter's update ([`LinearGaussian::filter`]); use
/// [`LinearGaussian::observed_blocks`] for `ho` and `ro`.
///
/// Errors: [`SmcError::NotPositiveDefinite`] (`what: "innovation covariance"`) when
/// `H_o P H_oᵀ + R_o` is not numerically positive definite; [`SmcError::DimensionMismatch`]
/// when the slices do not have the sizes `dx` and `k` say.
///
/// ```
/// use diffsmc::kalman::condition;
/// // Prior N(0, 1), y = x + N(0, 1): gain 1/2, posterior variance 1/2.
/// let c = condition(&[1.0], &[1.0], &[1.0], 1, 1)?;
/// assert!((c.gain[0] - 0.5).abs() < 1e-15 && (c.cov[0] - 0.5).abs() < 1e-15);
/// assert!((c.chol_innovation[0] - 2f64.sqrt()).abs() < 1e-15);
/// let mut m = [0.0];
/// c.update_mean(&[3.0], &mut m); // y = 3
/// assert!((m[0] - 1.5).abs() < 1e-15);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
pub fn condition<S: Scalar>(
    p: &[S],
    ho: &[S],
    ro: &[S],
    dx: usize,
    k: usize,
) -> Result<Conditioning<S>> {
    for (what, expected, got) in [
        ("prior covariance size (dx · dx)", dx * dx, p.len()),
        ("observation rows size (k · dx)", k * dx, ho.len()),
        ("observation noise block size (k · k)", k * k, ro.len()),
    ] {
        if got != expected {
            return Err(SmcError::DimensionMismatch {
                what,
                expected,
                got,
            });
        }
    }
    if k == 0 {
        return Ok(Conditioning {
            gain: Vec::new(),
            cov: p.to_vec(),
            chol_innovation: Vec::new(),
            dx,
            k,
        });
    }
    // Innovation covariance S = H_o P H_oᵀ + R_o and its Cholesky factor.
    let mut s = sandwich(ho, p, k, dx);
    for (sij, rij) in s.iter_mut().zip(ro) {
        *sij += *rij;
    }
    let ls = cholesky_named(&s, k, "innovation covariance")?;
    // Kᵀ = S⁻¹ H_o P (k × dx), with H_o P = (P H_oᵀ)ᵀ as P is symmetric.
    let mut kt = matmul(ho, p, k, dx, dx);
    cholesky_solve_mat(&ls, k, &mut kt, dx);
    let mut gain = vec![S::zero(); dx * k];
    for i in 0..k {
        for a in 0..dx {
            gain[a * k + i] = kt[i * dx + a];
        }
    }
    // Joseph form: (I − K H_o) P (I − K H_o)ᵀ + K R_o Kᵀ.
    let mut ikh = vec![S::zero(); dx * dx];
    for a in 0..dx {
        for b in 0..dx {
            let mut s = if a == b { S::one() } else { S::zero() };
            for i in 0..k {
                s -= kt[i * dx + a] * ho[i * dx + b];
            }
            ikh[a * dx + b] = s;
        }
    }
    let mut cov = sandwich(&ikh, p, dx, dx);
    let krk = sandwich(&gain, ro, dx, k);
    for (pij, x) in cov.iter_mut().zip(&krk) {
        *pij += *x;
    }
    Ok(Conditioning {
        gain,
        cov,
        chol_innovation: ls,
        dx,
        k,
    })
}

impl<S: Scalar> LinearGaussian<S> {
    /// The rows of `H` (`k × dx`) and the block of `R` (`k × k`) of the observed components
    /// `obs` (indices into `0..dy`), row-major: the `ho` and `ro` of [`condition`].
    ///
    /// # Panics
    /// If an index in `obs` is not below `dy`.
    ///
    /// ```
    /// use diffsmc::kalman::LinearGaussian;
    /// use nalgebra::{DMatrix, DVector};
    /// let i2 = DMatrix::<f64>::identity(2, 2);
    /// let h = DMatrix::from_row_slice(2, 2, &[1.0, 2.0, 3.0, 4.0]);
    /// let r = DMatrix::from_row_slice(2, 2, &[1.0, 0.5, 0.5, 2.0]);
    /// let lg = LinearGaussian::new(i2.clone(), i2.clone(), h, r, DVector::zeros(2), i2)?;
    /// assert_eq!(lg.observed_blocks(&[1]), (vec![3.0, 4.0], vec![2.0]));
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn observed_blocks(&self, obs: &[usize]) -> (Vec<S>, Vec<S>) {
        let (dx, dy) = (self.dx, self.dy);
        let k = obs.len();
        let mut ho = Vec::with_capacity(k * dx);
        for &i in obs {
            ho.extend_from_slice(&self.h[i * dx..(i + 1) * dx]);
        }
        let mut ro = Vec::with_capacity(k * k);
        for &i in obs {
            for &j in obs {
                ro.push(self.r[i * dy + j]);
            }
        }
        (ho, ro)
    }
}

/// `C = A B Aᵀ` for row-major `A` (`n × k`) and `B` (`k × k`), symmetrised.
pub(super) fn sandwich<S: Scalar>(a: &[S], b: &[S], n: usize, k: usize) -> Vec<S> {
    let ab = matmul(a, b, n, k, k);
    let mut c = vec![S::zero(); n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = S::zero();
            for l in 0..k {
                s += ab[i * k + l] * a[j * k + l];
            }
            c[i * n + j] = s;
        }
    }
    symmetrise_lower(&mut c, n);
    c
}

/// Copies the lower triangle onto the upper one.
fn symmetrise_lower<S: Scalar>(c: &mut [S], n: usize) {
    for i in 0..n {
        for j in 0..i {
            c[j * n + i] = c[i * n + j];
        }
    }
}

/// Replaces `c` by `(c + cᵀ) / 2`.
pub(super) fn symmetrise<S: Scalar>(c: &mut [S], n: usize) {
    for i in 0..n {
        for j in 0..i {
            let s = (c[i * n + j] + c[j * n + i]) * 0.5;
            c[i * n + j] = s;
            c[j * n + i] = s;
        }
    }
}
