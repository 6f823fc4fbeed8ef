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
    cholesky_named, cholesky_solve_mat, is_symmetric, log_det_from_cholesky, solve_lower,
};
use crate::scalar::Scalar;

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

/// Checks one observation: its length, and no `±inf` (NaN is missing and allowed).
pub(crate) fn check_observation(y: &[f64], dy: usize, step: usize) -> Result<()> {
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

/// `C = A B` for row-major `A` (`n × k`) and `B` (`k × m`).
fn matmul<S: Scalar>(a: &[S], b: &[S], n: usize, k: usize, m: usize) -> Vec<S> {
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

/// `C = A B Aᵀ` for row-major `A` (`n × k`) and `B` (`k × k`), symmetrised.
fn sandwich<S: Scalar>(a: &[S], b: &[S], n: usize, k: usize) -> Vec<S> {
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
fn symmetrise<S: Scalar>(c: &mut [S], n: usize) {
    for i in 0..n {
        for j in 0..i {
            let s = (c[i * n + j] + c[j * n + i]) * 0.5;
            c[i * n + j] = s;
            c[j * n + i] = s;
        }
    }
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

    /// Runs the Kalman filter on observations `ys` (`T` vectors of length `dy`; NaN
    /// components are missing).
    ///
    /// Errors: [`SmcError::DimensionMismatch`] for an observation of the wrong length,
    /// [`SmcError::NonFinite`] (`what: "observation"`) for a `±inf` component, and
    /// [`SmcError::NotPositiveDefinite`] (`what: "innovation covariance"`) if `H P Hᵀ + R`
    /// loses positive definiteness numerically. `T = 0` gives an empty output with
    /// log-likelihood 0.
    ///
    /// ```
    /// use diffsmc::kalman::LinearGaussian;
    /// use nalgebra::{DMatrix, DVector};
    /// let i1 = DMatrix::from_element(1, 1, 1.0);
    /// let lg = LinearGaussian::new(
    ///     i1.clone(), i1.clone(), i1.clone(), i1.clone(), DVector::zeros(1), i1,
    /// )?;
    /// let ys = vec![vec![0.1], vec![0.2]];
    /// let out = lg.filter(&ys)?;
    /// assert_eq!(out.len(), 2);
    /// assert_eq!(out.predicted_covs[1], vec![1.5]); // 1·0.5·1 + 1
    /// assert!(lg.filter(&[[f64::INFINITY]]).is_err());
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn filter<Y: AsRef<[f64]>>(&self, ys: &[Y]) -> Result<KalmanOutput<S>> {
        let (dx, dy) = (self.dx, self.dy);
        for (t, y) in ys.iter().enumerate() {
            check_observation(y.as_ref(), dy, t)?;
        }
        let steps = ys.len();
        let mut out = KalmanOutput {
            log_likelihood: S::zero(),
            log_likelihood_increments: Vec::with_capacity(steps),
            predicted_means: Vec::with_capacity(steps),
            predicted_covs: Vec::with_capacity(steps),
            filter_means: Vec::with_capacity(steps),
            filter_covs: Vec::with_capacity(steps),
        };
        let mut m = self.m0.clone();
        let mut p = self.p0.clone();
        let mut observed = Vec::with_capacity(dy);
        for (t, y) in ys.iter().enumerate() {
            let y = y.as_ref();
            if t > 0 {
                m = matmul(&self.a, &m, dx, dx, 1);
                p = sandwich(&self.a, &p, dx, dx);
                for (pij, qij) in p.iter_mut().zip(&self.q) {
                    *pij += *qij;
                }
            }
            out.predicted_means.push(m.clone());
            out.predicted_covs.push(p.clone());
            observed.clear();
            observed.extend((0..dy).filter(|&i| !y[i].is_nan()));
            let inc = if observed.is_empty() {
                S::zero()
            } else {
                self.update(y, &observed, &mut m, &mut p)?
            };
            out.log_likelihood += inc;
            out.log_likelihood_increments.push(inc);
            out.filter_means.push(m.clone());
            out.filter_covs.push(p.clone());
        }
        Ok(out)
    }

    /// The exact log-likelihood `log p(y_0, …, y_{T-1})` (see [`filter`](Self::filter)).
    ///
    /// ```
    /// use diffsmc::kalman::LinearGaussian;
    /// use nalgebra::{DMatrix, DVector};
    /// let i1 = DMatrix::from_element(1, 1, 1.0);
    /// let lg = LinearGaussian::new(
    ///     i1.clone(), i1.clone(), i1.clone(), i1.clone(), DVector::zeros(1), i1,
    /// )?;
    /// // y_0 ~ N(0, 2)
    /// let ll = lg.log_likelihood(&[[0.0]])?;
    /// assert!((ll + 0.5 * (4.0 * std::f64::consts::PI).ln()).abs() < 1e-14);
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn log_likelihood<Y: AsRef<[f64]>>(&self, ys: &[Y]) -> Result<S> {
        Ok(self.filter(ys)?.log_likelihood)
    }

    /// One measurement update with the observed components `obs` of `y`; returns the
    /// log-likelihood increment.
    fn update(&self, y: &[f64], obs: &[usize], m: &mut [S], p: &mut Vec<S>) -> Result<S> {
        let (dx, dy) = (self.dx, self.dy);
        let k = obs.len();
        // H_o (k × dx), R_o (k × k), innovation v = y_o − H_o m.
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
        let hm = matmul(&ho, m, k, dx, 1);
        let v: Vec<S> = obs
            .iter()
            .zip(&hm)
            .map(|(&i, &hmi)| S::cst(y[i]) - hmi)
            .collect();
        // Innovation covariance S = H_o P H_oᵀ + R_o and its Cholesky factor.
        let mut s = sandwich(&ho, p, k, dx);
        for (sij, rij) in s.iter_mut().zip(&ro) {
            *sij += *rij;
        }
        let ls = cholesky_named(&s, k, "innovation covariance")?;
        let mut u = v.clone();
        solve_lower(&ls, k, &mut u);
        let quad = u.iter().fold(S::zero(), |acc, &x| acc + x * x);
        let inc = (quad + log_det_from_cholesky(&ls, k) + LN_2PI * k as f64) * -0.5;
        // Kᵀ = S⁻¹ H_o P (k × dx), with H_o P = (P H_oᵀ)ᵀ as P is symmetric.
        let mut kt = matmul(&ho, p, k, dx, dx);
        cholesky_solve_mat(&ls, k, &mut kt, dx);
        // m ← m + K v.
        for i in 0..k {
            for a in 0..dx {
                m[a] += kt[i * dx + a] * v[i];
            }
        }
        // Joseph form: P ← (I − K H_o) P (I − K H_o)ᵀ + K R_o Kᵀ.
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
        let mut kmat = vec![S::zero(); dx * k];
        for i in 0..k {
            for a in 0..dx {
                kmat[a * k + i] = kt[i * dx + a];
            }
        }
        let mut pn = sandwich(&ikh, p, dx, dx);
        let krk = sandwich(&kmat, &ro, dx, k);
        for (pij, x) in pn.iter_mut().zip(&krk) {
            *pij += *x;
        }
        *p = pn;
        Ok(inc)
    }

    /// The Rauch–Tung–Striebel smoother on a filter output of this model:
    /// `G_t = P_{t|t} Aᵀ P_{t+1|t}⁻¹` (by Cholesky solves),
    /// `m_{t|T} = m_{t|t} + G_t (m_{t+1|T} − m_{t+1|t})`,
    /// `P_{t|T} = P_{t|t} + G_t (P_{t+1|T} − P_{t+1|t}) G_tᵀ` (symmetrised).
    ///
    /// Errors: [`SmcError::DimensionMismatch`] if `filtered` does not come from a model of
    /// this state dimension; [`SmcError::NotPositiveDefinite`]
    /// (`what: "predicted covariance"`) if some `P_{t+1|t}` is numerically singular.
    ///
    /// ```
    /// use diffsmc::kalman::LinearGaussian;
    /// use nalgebra::{DMatrix, DVector};
    /// let i1 = DMatrix::from_element(1, 1, 1.0);
    /// let lg = LinearGaussian::new(
    ///     i1.clone(), i1.clone(), i1.clone(), i1.clone(), DVector::zeros(1), i1,
    /// )?;
    /// let f = lg.filter(&[[1.0], [1.0]])?;
    /// let s = lg.rts(&f)?;
    /// assert_eq!(s.means[1], f.filter_means[1]); // the last step is the filter's
    /// assert!(s.covs[0][0] < f.filter_covs[0][0]); // more data, less uncertainty
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn rts(&self, filtered: &KalmanOutput<S>) -> Result<RtsOutput<S>> {
        let dx = self.dx;
        let steps = filtered.filter_means.len();
        for (what, len) in [
            ("filter covariances (steps)", filtered.filter_covs.len()),
            ("predicted means (steps)", filtered.predicted_means.len()),
            (
                "predicted covariances (steps)",
                filtered.predicted_covs.len(),
            ),
        ] {
            if len != steps {
                return Err(SmcError::DimensionMismatch {
                    what,
                    expected: steps,
                    got: len,
                });
            }
        }
        for t in 0..steps {
            for (what, len, expected) in [
                ("filter mean length", filtered.filter_means[t].len(), dx),
                (
                    "filter covariance size",
                    filtered.filter_covs[t].len(),
                    dx * dx,
                ),
                (
                    "predicted mean length",
                    filtered.predicted_means[t].len(),
                    dx,
                ),
                (
                    "predicted covariance size",
                    filtered.predicted_covs[t].len(),
                    dx * dx,
                ),
            ] {
                if len != expected {
                    return Err(SmcError::DimensionMismatch {
                        what,
                        expected,
                        got: len,
                    });
                }
            }
        }
        let mut means = filtered.filter_means.clone();
        let mut covs = filtered.filter_covs.clone();
        for t in (0..steps.saturating_sub(1)).rev() {
            let pp = &filtered.predicted_covs[t + 1];
            let lp = cholesky_named(pp, dx, "predicted covariance")?;
            // Gᵀ = P_{t+1|t}⁻¹ A P_{t|t}.
            let mut gt = matmul(&self.a, &filtered.filter_covs[t], dx, dx, dx);
            cholesky_solve_mat(&lp, dx, &mut gt, dx);
            let mut g = vec![S::zero(); dx * dx];
            for i in 0..dx {
                for j in 0..dx {
                    g[i * dx + j] = gt[j * dx + i];
                }
            }
            let dm: Vec<S> = means[t + 1]
                .iter()
                .zip(&filtered.predicted_means[t + 1])
                .map(|(&a, &b)| a - b)
                .collect();
            let gdm = matmul(&g, &dm, dx, dx, 1);
            for (mi, x) in means[t].iter_mut().zip(&gdm) {
                *mi += *x;
            }
            let mut dp: Vec<S> = covs[t + 1].iter().zip(pp).map(|(&a, &b)| a - b).collect();
            symmetrise(&mut dp, dx);
            let corr = sandwich(&g, &dp, dx, dx);
            for (pij, x) in covs[t].iter_mut().zip(&corr) {
                *pij += *x;
            }
            symmetrise(&mut covs[t], dx);
        }
        Ok(RtsOutput { means, covs })
    }

    /// Filter and smoother in one call.
    ///
    /// ```
    /// use diffsmc::kalman::LinearGaussian;
    /// use nalgebra::{DMatrix, DVector};
    /// let i1 = DMatrix::from_element(1, 1, 1.0);
    /// let lg = LinearGaussian::new(
    ///     i1.clone(), i1.clone(), i1.clone(), i1.clone(), DVector::zeros(1), i1,
    /// )?;
    /// let (f, s) = lg.smooth(&[[1.0], [f64::NAN], [1.0]])?;
    /// assert_eq!((f.len(), s.means.len()), (3, 3));
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn smooth<Y: AsRef<[f64]>>(&self, ys: &[Y]) -> Result<(KalmanOutput<S>, RtsOutput<S>)> {
        let f = self.filter(ys)?;
        let s = self.rts(&f)?;
        Ok((f, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Purpose, StreamKey, standard_normal};
    use nalgebra::{DMatrix, DVector};
    use num_dual::Dual64;

    /// Random model with dx = 2, dy = 2 (or other dims): A with spectral scale < 1,
    /// covariances B Bᵀ + c I.
    fn random_model(dx: usize, dy: usize, seed: u64) -> LinearGaussian<f64> {
        let mut rng = StreamKey::new(seed, 0, Purpose::Other(77)).rng(0);
        let mut g = |r: usize, c: usize, s: f64| {
            DMatrix::from_fn(r, c, |_, _| s * standard_normal(&mut rng))
        };
        let a = g(dx, dx, 0.4);
        let h = g(dy, dx, 1.0);
        let bq = g(dx, dx, 0.5);
        let br = g(dy, dy, 0.5);
        let bp = g(dx, dx, 0.7);
        let m0 = DVector::from_iterator(dx, g(dx, 1, 1.0).iter().copied());
        let q = &bq * bq.transpose() + DMatrix::identity(dx, dx) * 0.3;
        let r = &br * br.transpose() + DMatrix::identity(dy, dy) * 0.2;
        let p0 = &bp * bp.transpose() + DMatrix::identity(dx, dx) * 0.5;
        LinearGaussian::new(a, q, h, r, m0, p0).unwrap()
    }

    fn random_ys(dy: usize, steps: usize, seed: u64) -> Vec<Vec<f64>> {
        let key = StreamKey::new(seed, 0, Purpose::Other(78));
        (0..steps)
            .map(|t| {
                let mut rng = key.rng(t);
                (0..dy).map(|_| 1.5 * standard_normal(&mut rng)).collect()
            })
            .collect()
    }

    /// The dense joint Gaussian of (z_0..z_{T-1}, y_0..y_{T-1}), conditioned on the
    /// observed (non-NaN) components of y_0..y_{upto-1}, computed with nalgebra's own f64
    /// Cholesky: (log p(y_obs), E[z | y_obs], Cov[z | y_obs]).
    struct Dense {
        loglik: f64,
        mean: DVector<f64>,
        cov: DMatrix<f64>,
    }

    fn dense(lg: &LinearGaussian<f64>, ys: &[Vec<f64>], upto: usize) -> Dense {
        let (dx, dy, steps) = (lg.state_dim(), lg.obs_dim(), ys.len());
        let (a, q, h, r) = (lg.a(), lg.q(), lg.h(), lg.r());
        let nz = steps * dx;
        // Marginal variances V_t and means A^t m0.
        let mut v = vec![lg.p0().clone()];
        let mut mu = vec![lg.m0().clone()];
        for t in 1..steps {
            v.push(a * &v[t - 1] * a.transpose() + q);
            mu.push(a * &mu[t - 1]);
        }
        let mut sz = DMatrix::zeros(nz, nz);
        for t in 0..steps {
            let mut blk = v[t].clone(); // Cov(z_s, z_t) = A^{s-t} V_t for s ≥ t
            for s in t..steps {
                sz.view_mut((s * dx, t * dx), (dx, dx)).copy_from(&blk);
                sz.view_mut((t * dx, s * dx), (dx, dx))
                    .copy_from(&blk.transpose());
                blk = a * blk;
            }
        }
        let mz = DVector::from_iterator(nz, mu.iter().flat_map(|m| m.iter().copied()));
        // Observed components among the first `upto` steps.
        let obs: Vec<(usize, usize)> = (0..upto)
            .flat_map(|t| (0..dy).map(move |i| (t, i)))
            .filter(|&(t, i)| !ys[t][i].is_nan())
            .collect();
        let no = obs.len();
        // Rows of the big H for the observed components.
        let mut hb = DMatrix::zeros(no, nz);
        for (row, &(t, i)) in obs.iter().enumerate() {
            for k in 0..dx {
                hb[(row, t * dx + k)] = h[(i, k)];
            }
        }
        let mut sy = &hb * &sz * hb.transpose();
        for (p, &(t1, i)) in obs.iter().enumerate() {
            for (q_, &(t2, j)) in obs.iter().enumerate() {
                if t1 == t2 {
                    sy[(p, q_)] += r[(i, j)];
                }
            }
        }
        let yv = DVector::from_iterator(no, obs.iter().map(|&(t, i)| ys[t][i]));
        let resid = yv - &hb * &mz;
        if no == 0 {
            return Dense {
                loglik: 0.0,
                mean: mz,
                cov: sz,
            };
        }
        let ch = sy.clone().cholesky().expect("dense Σ_y is PD");
        let alpha = ch.solve(&resid);
        let logdet = 2.0 * ch.l().diagonal().iter().map(|x| x.ln()).sum::<f64>();
        let loglik = -0.5 * (resid.dot(&alpha) + logdet + no as f64 * LN_2PI);
        let szy = &sz * hb.transpose();
        let mean = mz + &szy * alpha;
        let cov = &sz - &szy * ch.solve(&szy.transpose());
        Dense { loglik, mean, cov }
    }

    fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{what}: {a} vs {b} (diff {:e})",
            a - b
        );
    }

    /// Filter log-likelihood (and increments), filtering moments and smoothing moments
    /// against the dense computation.
    fn check_against_dense(lg: &LinearGaussian<f64>, ys: &[Vec<f64>]) {
        let (dx, steps) = (lg.state_dim(), ys.len());
        let (f, s) = lg.smooth(ys).unwrap();
        let full = dense(lg, ys, steps);
        assert_close(f.log_likelihood, full.loglik, 1e-11, "log-likelihood");
        let mut prev = 0.0;
        for t in 0..steps {
            let d = dense(lg, ys, t + 1);
            assert_close(
                f.log_likelihood_increments[t],
                d.loglik - prev,
                1e-10,
                "increment",
            );
            prev = d.loglik;
            for a in 0..dx {
                assert_close(
                    f.filter_means[t][a],
                    d.mean[t * dx + a],
                    1e-10,
                    "filter mean",
                );
                assert_close(s.means[t][a], full.mean[t * dx + a], 1e-10, "smoother mean");
                for b in 0..dx {
                    let (i, j) = (t * dx + a, t * dx + b);
                    assert_close(
                        f.filter_covs[t][a * dx + b],
                        d.cov[(i, j)],
                        1e-10,
                        "filter cov",
                    );
                    assert_close(
                        s.covs[t][a * dx + b],
                        full.cov[(i, j)],
                        1e-10,
                        "smoother cov",
                    );
                }
            }
            if t + 1 < steps {
                // Predicted moments of step t+1 = dense moments given y_0..y_t.
                for a in 0..dx {
                    let i = (t + 1) * dx + a;
                    assert_close(f.predicted_means[t + 1][a], d.mean[i], 1e-10, "pred mean");
                    for b in 0..dx {
                        let j = (t + 1) * dx + b;
                        assert_close(
                            f.predicted_covs[t + 1][a * dx + b],
                            d.cov[(i, j)],
                            1e-10,
                            "pred cov",
                        );
                    }
                }
            }
            // Symmetry is exact.
            for a in 0..dx {
                for b in 0..dx {
                    assert_eq!(f.filter_covs[t][a * dx + b], f.filter_covs[t][b * dx + a]);
                    assert_eq!(s.covs[t][a * dx + b], s.covs[t][b * dx + a]);
                }
            }
        }
    }

    #[test]
    fn kalman_matches_dense_joint_gaussian() {
        for seed in 0..4 {
            let lg = random_model(2, 2, seed);
            let ys = random_ys(2, 5, seed);
            check_against_dense(&lg, &ys);
        }
        // Other shapes: dy < dx, dy > dx, scalar.
        for (dx, dy) in [(3, 1), (1, 3), (1, 1), (4, 2)] {
            let lg = random_model(dx, dy, 10 + dx as u64);
            let ys = random_ys(dy, 5, 20 + dy as u64);
            check_against_dense(&lg, &ys);
        }
    }

    #[test]
    fn kalman_missing_observations_match_marginalised_dense() {
        let lg = random_model(2, 2, 3);
        let mut ys = random_ys(2, 5, 3);
        ys[1] = vec![f64::NAN, f64::NAN]; // fully missing
        ys[2][0] = f64::NAN; // partially missing
        ys[4][1] = f64::NAN; // partially missing, last step
        check_against_dense(&lg, &ys);
        let f = lg.filter(&ys).unwrap();
        assert_eq!(f.log_likelihood_increments[1], 0.0);
        // A fully missing step leaves the prediction untouched.
        assert_eq!(f.filter_means[1], f.predicted_means[1]);
        assert_eq!(f.filter_covs[1], f.predicted_covs[1]);
        // First and all missing.
        let mut ys2 = random_ys(2, 5, 4);
        ys2[0] = vec![f64::NAN, f64::NAN];
        ys2[3][1] = f64::NAN;
        check_against_dense(&lg, &ys2);
        let all_missing = vec![vec![f64::NAN; 2]; 4];
        check_against_dense(&lg, &all_missing);
        assert_eq!(lg.log_likelihood(&all_missing).unwrap(), 0.0);
        // dy = 3 with two of three missing.
        let lg3 = random_model(2, 3, 5);
        let mut ys3 = random_ys(3, 5, 6);
        ys3[2] = vec![f64::NAN, 0.4, f64::NAN];
        ys3[3][2] = f64::NAN;
        check_against_dense(&lg3, &ys3);
    }

    #[test]
    fn kalman_empty_and_single_step() {
        let lg = random_model(2, 2, 1);
        let f = lg.filter::<Vec<f64>>(&[]).unwrap();
        assert!(f.is_empty() && f.log_likelihood == 0.0);
        assert!(lg.rts(&f).unwrap().means.is_empty());
        check_against_dense(&lg, &random_ys(2, 1, 2));
    }

    fn to_dual(m: &DMatrix<f64>) -> DMatrix<Dual64> {
        m.map(Dual64::from)
    }

    #[test]
    fn dual64_gradient_matches_finite_differences() {
        let lg = random_model(2, 2, 7);
        let mut ys = random_ys(2, 6, 7);
        ys[2][1] = f64::NAN;
        // Perturb one entry of each matrix in a fixed direction.
        let dir = |r: usize, c: usize, k: usize| {
            DMatrix::from_fn(r, c, |i, j| ((i + 2 * j + k) % 3) as f64 - 1.0)
        };
        let (da, dh, dm0) = (
            dir(2, 2, 0),
            dir(2, 2, 1),
            DVector::from_vec(vec![0.5, -1.0]),
        );
        // Symmetric perturbations for covariances.
        let sym = |k: usize| {
            let d = dir(2, 2, k);
            (&d + d.transpose()) * 0.25
        };
        let (dq, dr, dp0) = (sym(2), sym(3), sym(4));
        let build = |eps: f64| {
            LinearGaussian::new(
                lg.a() + &da * eps,
                lg.q() + &dq * eps,
                lg.h() + &dh * eps,
                lg.r() + &dr * eps,
                lg.m0() + &dm0 * eps,
                lg.p0() + &dp0 * eps,
            )
            .unwrap()
        };
        let h = 1e-5;
        let fd = (build(h).log_likelihood(&ys).unwrap() - build(-h).log_likelihood(&ys).unwrap())
            / (2.0 * h);
        let dual = |m: &DMatrix<f64>, d: &DMatrix<f64>| {
            DMatrix::from_fn(m.nrows(), m.ncols(), |i, j| {
                Dual64::new(m[(i, j)], d[(i, j)])
            })
        };
        let lgd = LinearGaussian::new(
            dual(lg.a(), &da),
            dual(lg.q(), &dq),
            dual(lg.h(), &dh),
            dual(lg.r(), &dr),
            DVector::from_fn(2, |i, _| Dual64::new(lg.m0()[i], dm0[i])),
            dual(lg.p0(), &dp0),
        )
        .unwrap();
        let (f, s) = lgd.smooth(&ys).unwrap();
        assert!((f.log_likelihood.re - lg.log_likelihood(&ys).unwrap()).abs() < 1e-12);
        assert_close(f.log_likelihood.eps, fd, 1e-7, "dual vs finite difference");
        // Smoother means carry derivatives too.
        let sm_fd = (build(h).smooth(&ys).unwrap().1.means[0][0]
            - build(-h).smooth(&ys).unwrap().1.means[0][0])
            / (2.0 * h);
        assert_close(s.means[0][0].eps, sm_fd, 1e-7, "smoother mean derivative");
        // Constant duals give zero derivatives.
        let lgc = LinearGaussian::new(
            to_dual(lg.a()),
            to_dual(lg.q()),
            to_dual(lg.h()),
            to_dual(lg.r()),
            lg.m0().map(Dual64::from),
            to_dual(lg.p0()),
        )
        .unwrap();
        assert_eq!(lgc.log_likelihood(&ys).unwrap().eps, 0.0);
    }

    type Params = (
        DMatrix<f64>,
        DMatrix<f64>,
        DMatrix<f64>,
        DMatrix<f64>,
        DVector<f64>,
        DMatrix<f64>,
    );

    fn base() -> Params {
        let i2 = DMatrix::<f64>::identity(2, 2);
        (
            i2.clone() * 0.5,
            i2.clone(),
            DMatrix::from_row_slice(1, 2, &[1.0, 1.0]),
            DMatrix::from_element(1, 1, 0.5),
            DVector::zeros(2),
            i2,
        )
    }

    fn dm(what: &'static str, expected: usize, got: usize) -> SmcError {
        SmcError::DimensionMismatch {
            what,
            expected,
            got,
        }
    }

    #[test]
    fn constructor_errors_are_typed() {
        let (a, q, h, r, m0, p0) = base();
        let ok = LinearGaussian::new(
            a.clone(),
            q.clone(),
            h.clone(),
            r.clone(),
            m0.clone(),
            p0.clone(),
        );
        assert!(ok.is_ok());
        let new = |a: &DMatrix<f64>,
                   q: &DMatrix<f64>,
                   h: &DMatrix<f64>,
                   r: &DMatrix<f64>,
                   m0: &DVector<f64>,
                   p0: &DMatrix<f64>| {
            LinearGaussian::new(
                a.clone(),
                q.clone(),
                h.clone(),
                r.clone(),
                m0.clone(),
                p0.clone(),
            )
            .unwrap_err()
        };
        let z = DMatrix::<f64>::zeros(0, 0);
        assert_eq!(
            new(&z, &q, &h, &r, &m0, &p0),
            dm("state dimension (rows of A), at least", 1, 0)
        );
        assert_eq!(
            new(&a, &q, &DMatrix::zeros(0, 2), &r, &m0, &p0),
            dm("observation dimension (rows of H), at least", 1, 0)
        );
        assert_eq!(
            new(&DMatrix::zeros(2, 3), &q, &h, &r, &m0, &p0),
            dm("columns of A (= rows of A)", 2, 3)
        );
        assert_eq!(
            new(&a, &DMatrix::identity(3, 3), &h, &r, &m0, &p0),
            dm("rows of Q (= state dimension)", 2, 3)
        );
        assert_eq!(
            new(&a, &DMatrix::identity(2, 3), &h, &r, &m0, &p0),
            dm("columns of Q", 2, 3)
        );
        assert_eq!(
            new(&a, &q, &DMatrix::zeros(1, 3), &r, &m0, &p0),
            dm("columns of H (= state dimension)", 2, 3)
        );
        assert_eq!(
            new(&a, &q, &h, &DMatrix::identity(2, 2), &m0, &p0),
            dm("rows of R (= observation dimension)", 1, 2)
        );
        assert_eq!(
            new(&a, &q, &h, &DMatrix::zeros(1, 2), &m0, &p0),
            dm("columns of R", 1, 2)
        );
        assert_eq!(
            new(&a, &q, &h, &r, &DVector::zeros(3), &p0),
            dm("length of m0 (= state dimension)", 2, 3)
        );
        assert_eq!(
            new(&a, &q, &h, &r, &m0, &DMatrix::identity(1, 1)),
            dm("rows of P0 (= state dimension)", 2, 1)
        );
        assert_eq!(
            new(&a, &q, &h, &r, &m0, &DMatrix::identity(2, 1)),
            dm("columns of P0", 2, 1)
        );
        // Not positive definite (symmetric but indefinite or singular).
        let indef = DMatrix::from_row_slice(2, 2, &[1.0, 2.0, 2.0, 1.0]);
        assert_eq!(
            new(&a, &indef, &h, &r, &m0, &p0),
            SmcError::NotPositiveDefinite { what: "Q" }
        );
        assert_eq!(
            new(&a, &q, &h, &DMatrix::zeros(1, 1), &m0, &p0),
            SmcError::NotPositiveDefinite { what: "R" }
        );
        assert_eq!(
            new(&a, &q, &h, &r, &m0, &DMatrix::zeros(2, 2)),
            SmcError::NotPositiveDefinite { what: "P0" }
        );
        // Non-symmetric and non-finite inputs.
        let nonsym = DMatrix::from_row_slice(2, 2, &[2.0, 0.5, 0.0, 2.0]);
        assert!(matches!(
            new(&a, &q, &h, &r, &m0, &nonsym),
            SmcError::InvalidParameter { name: "P0", .. }
        ));
        let mut anan = a.clone();
        anan[(1, 0)] = f64::NAN;
        assert!(matches!(
            new(&anan, &q, &h, &r, &m0, &p0),
            SmcError::InvalidParameter { name: "A", .. }
        ));
        let mut hinf = h.clone();
        hinf[(0, 1)] = f64::INFINITY;
        assert!(matches!(
            new(&a, &q, &hinf, &r, &m0, &p0),
            SmcError::InvalidParameter { name: "H", .. }
        ));
        assert!(matches!(
            new(&a, &q, &h, &r, &DVector::from_element(2, f64::NAN), &p0),
            SmcError::InvalidParameter { name: "m0", .. }
        ));
        let mut qnan = q.clone();
        qnan[(0, 0)] = f64::NAN;
        assert!(matches!(
            new(&a, &qnan, &h, &r, &m0, &p0),
            SmcError::InvalidParameter { name: "Q", .. }
        ));
    }

    #[test]
    fn observation_and_smoother_errors_are_typed() {
        let (a, q, h, r, m0, p0) = base();
        let lg = LinearGaussian::new(a, q, h, r, m0, p0).unwrap();
        assert_eq!(
            lg.filter(&[vec![0.1], vec![0.2, 0.3]]).unwrap_err(),
            dm("observation length", 1, 2)
        );
        for value in [f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                lg.filter(&[[0.1], [0.2], [value]]).unwrap_err(),
                SmcError::NonFinite {
                    what: "observation",
                    step: 2,
                    component: 0,
                    value
                }
            );
        }
        let lg2 = random_model(2, 3, 1);
        assert_eq!(
            lg2.filter(&[[0.0, f64::NAN, f64::NEG_INFINITY]])
                .unwrap_err(),
            SmcError::NonFinite {
                what: "observation",
                step: 0,
                component: 2,
                value: f64::NEG_INFINITY
            }
        );
        // The smoother rejects outputs of another model or inconsistent outputs.
        let f = lg.filter(&[[0.1], [0.2]]).unwrap();
        let other = random_model(3, 1, 2);
        assert_eq!(other.rts(&f).unwrap_err(), dm("filter mean length", 3, 2));
        let mut broken = f.clone();
        broken.predicted_covs.pop();
        assert_eq!(
            lg.rts(&broken).unwrap_err(),
            dm("predicted covariances (steps)", 2, 1)
        );
        let mut singular = f.clone();
        singular.predicted_covs[1] = vec![0.0; 4];
        assert_eq!(
            lg.rts(&singular).unwrap_err(),
            SmcError::NotPositiveDefinite {
                what: "predicted covariance"
            }
        );
    }

    #[test]
    fn innovation_covariance_loss_of_definiteness_is_typed() {
        // R is PD, but a huge H makes H P Hᵀ + R overflow to inf on the value part.
        let big = 1e200;
        let lg = LinearGaussian::new(
            DMatrix::from_element(1, 1, 1.0),
            DMatrix::from_element(1, 1, 1.0),
            DMatrix::from_element(1, 1, big),
            DMatrix::from_element(1, 1, 1.0),
            DVector::zeros(1),
            DMatrix::from_element(1, 1, 1.0),
        )
        .unwrap();
        assert_eq!(
            lg.filter(&[[0.0]]).unwrap_err(),
            SmcError::NotPositiveDefinite {
                what: "innovation covariance"
            }
        );
    }
}
