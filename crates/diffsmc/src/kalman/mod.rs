//! The Kalman filter and the Rauch–Tung–Striebel smoother, generic over the [`Scalar`].
//!
//! The model is the time-invariant linear Gaussian state-space model
//!
//! ```text
//! z_0 ~ N(m0, P0),   z_t = A z_{t-1} + N(0, Q)  (t ≥ 1),   y_t = H z_t + N(0, R)  (t ≥ 0)
//! ```
//!
//! with states in `R^dx` and observations in `R^dy` (there is no transition before `t = 0`:
//! `y_0` observes `z_0`). It is the exact reference for particle filters on linear Gaussian
//! models, and, run on `num-dual` dual numbers, gives the exact gradient of the
//! log-likelihood in the parameters.
//!
//! Numerics: covariances enter only through Cholesky factors and triangular solves
//! ([`crate::linalg`]), never through inverses; the covariance update is the Joseph form
//! `(I − K H) P (I − K H)ᵀ + K R Kᵀ`, symmetrised, so covariances stay symmetric and positive
//! semi-definite in floating point.
//!
//! Missing data: a NaN component of `y_t` is missing. A fully missing `y_t` skips the update
//! (and contributes 0 to the log-likelihood); a partially missing one updates with the
//! observed components only (the rows of `H` and the rows and columns of `R` that are
//! observed). `±inf` is an error ([`SmcError::NonFinite`]).
//!
//! Matrices are `nalgebra` containers at the interface (`DMatrix<S>`, `DVector<S>`); inside,
//! and in the outputs (like [`crate::SmcOutput`]), vectors are `Vec<S>` and matrices row-major
//! `Vec<S>`.
//!
//! ```
//! use diffsmc::kalman::LinearGaussian;
//! use nalgebra::{DMatrix, DVector};
//!
//! // Local level model: z_t = z_{t-1} + N(0, 1), y_t = z_t + N(0, 1), z_0 ~ N(0, 1).
//! let i1 = DMatrix::from_element(1, 1, 1.0);
//! let lg = LinearGaussian::new(
//!     i1.clone(), i1.clone(), i1.clone(), i1.clone(), DVector::zeros(1), i1,
//! )?;
//! let out = lg.filter(&[[0.5], [f64::NAN], [1.0]])?;
//! // y_0 ~ N(0, 2): the first increment is log N(0.5; 0, 2).
//! let lp0 = -0.5 * (0.25 / 2.0 + (2.0 * std::f64::consts::TAU).ln());
//! assert!((out.log_likelihood_increments[0] - lp0).abs() < 1e-14);
//! assert_eq!(out.log_likelihood_increments[1], 0.0); // missing
//! assert!((out.filter_means[0][0] - 0.25).abs() < 1e-15); // gain 1/2
//! # Ok::<(), diffsmc::SmcError>(())
//! ```

use nalgebra::{DMatrix, DVector};

use crate::error::{Result, SmcError};
use crate::linalg::{
    cholesky_named, cholesky_solve_mat, is_symmetric, log_det_from_cholesky, matmul, solve_lower,
};
use crate::scalar::Scalar;

mod filter;
#[cfg(test)]
mod tests;
mod update;

pub use update::{Conditioning, condition};
use update::{sandwich, symmetrise};

/// `ln(2π)`.
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Relative tolerance of the symmetry check of `Q`, `R` and `P0`.
const SYMMETRY_TOL: f64 = 1e-10;

/// A time-invariant linear Gaussian state-space model, validated: the exact Kalman filter
/// ([`filter`](Self::filter)) and RTS smoother ([`rts`](Self::rts),
/// [`smooth`](Self::smooth)) for any state dimension `dx ≥ 1` and observation dimension
/// `dy ≥ 1`, on any [`Scalar`].
///
/// `Q`, `R` and `P0` must be symmetric positive definite; their lower Cholesky factors are
/// kept ([`chol_q`](Self::chol_q), [`chol_r`](Self::chol_r), [`chol_p0`](Self::chol_p0)) so
/// that samplers built on the same model can reuse them.
///
/// ```
/// use diffsmc::kalman::LinearGaussian;
/// use nalgebra::{DMatrix, DVector};
/// use num_dual::Dual64;
///
/// // d log p(y) / d a for the AR(1) z_t = a z_{t-1} + N(0, 1), y_t = z_t + N(0, 0.5).
/// let a = Dual64::new(0.5, 1.0);
/// let one = Dual64::from(1.0);
/// let lg = LinearGaussian::new(
///     DMatrix::from_element(1, 1, a),
///     DMatrix::from_element(1, 1, one),
///     DMatrix::from_element(1, 1, one),
///     DMatrix::from_element(1, 1, Dual64::from(0.5)),
///     DVector::from_element(1, Dual64::from(0.0)),
///     DMatrix::from_element(1, 1, one),
/// )?;
/// let ll = lg.log_likelihood(&[[0.3], [0.1], [-0.4]])?;
/// assert!(ll.re.is_finite() && ll.eps.is_finite());
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LinearGaussian<S: Scalar> {
    dx: usize,
    dy: usize,
    a_mat: DMatrix<S>,
    q_mat: DMatrix<S>,
    h_mat: DMatrix<S>,
    r_mat: DMatrix<S>,
    m0_vec: DVector<S>,
    p0_mat: DMatrix<S>,
    // Row-major working copies and Cholesky factors.
    a: Vec<S>,
    q: Vec<S>,
    h: Vec<S>,
    r: Vec<S>,
    m0: Vec<S>,
    p0: Vec<S>,
    chol_q: Vec<S>,
    chol_r: Vec<S>,
    chol_p0: Vec<S>,
}

/// What the Kalman filter computed, per step `t = 0 .. T-1`. Vectors are `Vec<S>`, matrices
/// row-major `Vec<S>` (`dx × dx`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct KalmanOutput<S> {
    /// The exact log-likelihood `log p(y_0, …, y_{T-1}) = Σ_t log N(y_t; H m_{t|t-1},
    /// H P_{t|t-1} Hᵀ + R)` (observed components only).
    pub log_likelihood: S,
    /// Per step: `log p(y_t | y_0, …, y_{t-1})` (0 when `y_t` is fully missing).
    pub log_likelihood_increments: Vec<S>,
    /// Per step: the predicted mean `m_{t|t-1}` (`m0` at `t = 0`).
    pub predicted_means: Vec<Vec<S>>,
    /// Per step: the predicted covariance `P_{t|t-1}` (`P0` at `t = 0`).
    pub predicted_covs: Vec<Vec<S>>,
    /// Per step: the filtering mean `m_{t|t} = E[z_t | y_0, …, y_t]`.
    pub filter_means: Vec<Vec<S>>,
    /// Per step: the filtering covariance `P_{t|t}`.
    pub filter_covs: Vec<Vec<S>>,
}

impl<S> KalmanOutput<S> {
    /// Number of steps `T`.
    pub fn len(&self) -> usize {
        self.filter_means.len()
    }
    /// Whether there were no observations.
    pub fn is_empty(&self) -> bool {
        self.filter_means.is_empty()
    }
}

/// The RTS smoother's output: per step, `E[z_t | y_0, …, y_{T-1}]` and its covariance
/// (row-major `dx × dx`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RtsOutput<S> {
    /// Per step: the smoothing mean `m_{t|T-1}`.
    pub means: Vec<Vec<S>>,
    /// Per step: the smoothing covariance `P_{t|T-1}`.
    pub covs: Vec<Vec<S>>,
}

fn to_row_major<S: Scalar>(m: &DMatrix<S>) -> Vec<S> {
    let (r, c) = m.shape();
    let mut out = Vec::with_capacity(r * c);
    for i in 0..r {
        for j in 0..c {
            out.push(m[(i, j)]);
        }
    }
    out
}

fn check_shape<S: Scalar>(
    m: &DMatrix<S>,
    rows: usize,
    cols: usize,
    what_rows: &'static str,
    what_cols: &'static str,
) -> Result<()> {
    if m.nrows() != rows {
        return Err(SmcError::DimensionMismatch {
            what: what_rows,
            expected: rows,
            got: m.nrows(),
        });
    }
    if m.ncols() != cols {
        return Err(SmcError::DimensionMismatch {
            what: what_cols,
            expected: cols,
            got: m.ncols(),
        });
    }
    Ok(())
}

fn check_finite<'a, S: Scalar>(
    it: impl IntoIterator<Item = &'a S>,
    name: &'static str,
) -> Result<()> {
    for (k, x) in it.into_iter().enumerate() {
        if !x.re().is_finite() {
            return Err(SmcError::invalid(
                name,
                format!("{} at entry {k}", x.re()),
                "finite entries",
            ));
        }
    }
    Ok(())
}

/// Validates a covariance matrix (finite, symmetric, positive definite) and returns its
/// row-major copy and lower Cholesky factor.
fn covariance<S: Scalar>(m: &DMatrix<S>, name: &'static str) -> Result<(Vec<S>, Vec<S>)> {
    check_finite(m.iter(), name)?;
    let d = m.nrows();
    let rm = to_row_major(m);
    if !is_symmetric(&rm, d, SYMMETRY_TOL) {
        return Err(SmcError::invalid(
            name,
            "a non-symmetric matrix",
            "a symmetric positive definite matrix",
        ));
    }
    let l = cholesky_named(&rm, d, name)?;
    Ok((rm, l))
}

/// Checks one observation `y` of step `step` against the observation dimension `dy`: its
/// length, and no `±inf` component (NaN is missing and allowed). The check of
/// [`LinearGaussian::filter`], for models built on the same data.
///
/// Errors: [`SmcError::DimensionMismatch`] (`what: "observation length"`) and
/// [`SmcError::NonFinite`] (`what: "observation"`, with the step and component).
///
/// ```
/// use diffsmc::{SmcError, kalman::check_observation};
/// assert!(check_observation(&[0.1, f64::NAN], 2, 0).is_ok());
/// assert_eq!(
///     check_observation(&[0.1, f64::NEG_INFINITY], 2, 3).unwrap_err(),
///     SmcError::NonFinite { what: "observation", step: 3, component: 1, value: f64::NEG_INFINITY }
/// );
/// ```
pub fn check_observation(y: &[f64], dy: usize, step: usize) -> Result<()> {
    if y.len() != dy {
        return Err(SmcError::DimensionMismatch {
            what: "observation length",
            expected: dy,
            got: y.len(),
        });
    }
    for (component, &value) in y.iter().enumerate() {
        if value.is_infinite() {
            return Err(SmcError::NonFinite {
                what: "observation",
                step,
                component,
                value,
            });
        }
    }
    Ok(())
}

impl<S: Scalar> LinearGaussian<S> {
    /// The model with transition matrix `a` (`dx × dx`), transition noise covariance `q`
    /// (`dx × dx`), observation matrix `h` (`dy × dx`), observation noise covariance `r`
    /// (`dy × dy`), initial mean `m0` (`dx`) and initial covariance `p0` (`dx × dx`).
    ///
    /// Errors: [`SmcError::DimensionMismatch`] when shapes disagree (or `dx = 0`, `dy = 0`),
    /// [`SmcError::InvalidParameter`] for a non-finite entry or a non-symmetric covariance,
    /// [`SmcError::NotPositiveDefinite`] (`what` = `"Q"`, `"R"` or `"P0"`) when a covariance
    /// is not positive definite.
    ///
    /// ```
    /// use diffsmc::{SmcError, kalman::LinearGaussian};
    /// use nalgebra::{DMatrix, DVector};
    /// let i2 = DMatrix::<f64>::identity(2, 2);
    /// let h = DMatrix::from_row_slice(1, 2, &[1.0, 0.0]);
    /// let r = DMatrix::from_element(1, 1, 0.1);
    /// let lg = LinearGaussian::new(i2.clone(), i2.clone(), h, r, DVector::zeros(2), i2.clone())?;
    /// assert_eq!((lg.state_dim(), lg.obs_dim()), (2, 1));
    ///
    /// let bad_r = DMatrix::from_element(1, 1, -1.0);
    /// let h = DMatrix::from_row_slice(1, 2, &[1.0, 0.0]);
    /// let err = LinearGaussian::new(i2.clone(), i2.clone(), h, bad_r, DVector::zeros(2), i2);
    /// assert_eq!(err.unwrap_err(), SmcError::NotPositiveDefinite { what: "R" });
    /// # Ok::<(), SmcError>(())
    /// ```
    pub fn new(
        a: DMatrix<S>,
        q: DMatrix<S>,
        h: DMatrix<S>,
        r: DMatrix<S>,
        m0: DVector<S>,
        p0: DMatrix<S>,
    ) -> Result<Self> {
        let dx = a.nrows();
        let dy = h.nrows();
        if dx == 0 {
            return Err(SmcError::DimensionMismatch {
                what: "state dimension (rows of A), at least",
                expected: 1,
                got: 0,
            });
        }
        if dy == 0 {
            return Err(SmcError::DimensionMismatch {
                what: "observation dimension (rows of H), at least",
                expected: 1,
                got: 0,
            });
        }
        check_shape(&a, dx, dx, "rows of A", "columns of A (= rows of A)")?;
        check_shape(&q, dx, dx, "rows of Q (= state dimension)", "columns of Q")?;
        check_shape(&h, dy, dx, "rows of H", "columns of H (= state dimension)")?;
        check_shape(
            &r,
            dy,
            dy,
            "rows of R (= observation dimension)",
            "columns of R",
        )?;
        if m0.len() != dx {
            return Err(SmcError::DimensionMismatch {
                what: "length of m0 (= state dimension)",
                expected: dx,
                got: m0.len(),
            });
        }
        check_shape(
            &p0,
            dx,
            dx,
            "rows of P0 (= state dimension)",
            "columns of P0",
        )?;
        check_finite(a.iter(), "A")?;
        check_finite(h.iter(), "H")?;
        check_finite(m0.iter(), "m0")?;
        let (qr, chol_q) = covariance(&q, "Q")?;
        let (rr, chol_r) = covariance(&r, "R")?;
        let (p0r, chol_p0) = covariance(&p0, "P0")?;
        Ok(LinearGaussian {
            dx,
            dy,
            a: to_row_major(&a),
            h: to_row_major(&h),
            m0: m0.iter().copied().collect(),
            q: qr,
            r: rr,
            p0: p0r,
            chol_q,
            chol_r,
            chol_p0,
            a_mat: a,
            q_mat: q,
            h_mat: h,
            r_mat: r,
            m0_vec: m0,
            p0_mat: p0,
        })
    }

    /// State dimension `dx`.
    pub fn state_dim(&self) -> usize {
        self.dx
    }
    /// Observation dimension `dy`.
    pub fn obs_dim(&self) -> usize {
        self.dy
    }
    /// The transition matrix `A`.
    pub fn a(&self) -> &DMatrix<S> {
        &self.a_mat
    }
    /// The transition noise covariance `Q`.
    pub fn q(&self) -> &DMatrix<S> {
        &self.q_mat
    }
    /// The observation matrix `H`.
    pub fn h(&self) -> &DMatrix<S> {
        &self.h_mat
    }
    /// The observation noise covariance `R`.
    pub fn r(&self) -> &DMatrix<S> {
        &self.r_mat
    }
    /// The initial mean `m0`.
    pub fn m0(&self) -> &DVector<S> {
        &self.m0_vec
    }
    /// The initial covariance `P0`.
    pub fn p0(&self) -> &DMatrix<S> {
        &self.p0_mat
    }
    /// `A`, row-major.
    pub fn a_row_major(&self) -> &[S] {
        &self.a
    }
    /// `H`, row-major (`dy × dx`).
    pub fn h_row_major(&self) -> &[S] {
        &self.h
    }
    /// `Q`, row-major.
    pub fn q_row_major(&self) -> &[S] {
        &self.q
    }
    /// `R`, row-major (`dy × dy`).
    pub fn r_row_major(&self) -> &[S] {
        &self.r
    }
    /// `P0`, row-major.
    pub fn p0_row_major(&self) -> &[S] {
        &self.p0
    }
    /// `m0` as a slice.
    pub fn m0_slice(&self) -> &[S] {
        &self.m0
    }
    /// The lower Cholesky factor of `Q`, row-major.
    pub fn chol_q(&self) -> &[S] {
        &self.chol_q
    }
    /// The lower Cholesky factor of `R`, row-major.
    pub fn chol_r(&self) -> &[S] {
        &self.chol_r
    }
    /// The lower Cholesky factor of `P0`, row-major.
    pub fn chol_p0(&self) -> &[S] {
        &self.chol_p0
    }
}
